/**
 * Writes line protocol to InfluxDB for one Kafka batch and does not return until every line is
 * either stored or proven unstorable. Every failed attempt is classified once (`classifyWriteError`,
 * after Telegraf's outputs/influxdb_v2/http.go):
 *
 * - the data was refused (400, 413, 422): the batch is bisected so one bad point never blocks or
 *   loses the good ones around it (InfluxDB rejects a whole batch for one field-type conflict), and
 *   only the lines refused on their own come back as rejected;
 * - anything else (401/403 token revoked, 404 bucket or org gone, 5xx, 429, timeouts, network) says
 *   nothing about the data: the whole batch is retried with capped exponential backoff for as long as
 *   the caller wants to keep going, so its offsets are held and nothing is dead-lettered.
 *
 * Each attempt is one HTTP request with its own timeout (kept well inside the consumer's session
 * timeout) and the caller's heartbeat runs while it is in flight.
 *
 * Small writes share requests: the attempts to one bucket that are made in the same turn of the
 * event loop (the partitions of one fetch, each with a batch of a steady stream) go out as one
 * request of up to SHARED_REQUEST_LINES lines. InfluxDB spends about twice the CPU per line on
 * 180-line requests as on 1,000-line ones, and so does the HTTP client. Each caller still learns
 * its own outcome: when a shared request succeeds, every attempt in it did; when InfluxDB refuses
 * it, each attempt is sent again on its own, so a refused line is bisected within its own caller's
 * lines; any other failure fails every attempt in it, and each caller retries as it would alone.
 * A write of SHARED_REQUEST_LINES lines or more (a backlog's batch) always goes out on its own.
 */
import { HttpError, type InfluxDB } from "@influxdata/influxdb-client";
import type { TierName } from "../common/rollups.js";

export interface TaggedLine {
  line: string;
  /** Index of the Kafka message the line came from, so a rejected line can be dead-lettered. */
  source: number;
  /** The rollup tier whose bucket the line goes to; absent for the raw bucket. */
  bucket?: TierName;
}

export interface RejectedLine extends TaggedLine {
  status: number;
  message: string;
}

/** Why an attempt failed, and what to do about it. */
export type WriteFailure =
  | { action: "reject"; status: number; message: string }
  | { action: "retry"; cause: RetryCause; status?: number; retryAfterMs?: number; message: string };

export type RetryCause =
  | "unauthorized"
  | "not_found"
  | "throttled"
  | "unavailable"
  | "server_error"
  | "http_error"
  | "timeout"
  | "network";

/** Causes an operator must fix (a revoked token, a deleted bucket): logged as errors, not warnings. */
export const CONFIGURATION_CAUSES: ReadonlySet<RetryCause> = new Set(["unauthorized", "not_found"]);

/** The one place that decides what a failed write means. */
export function classifyWriteError(err: unknown): WriteFailure {
  if (err instanceof HttpError) {
    const status = err.statusCode;
    const message = `${status} ${err.body || err.message}`.slice(0, 500);
    if (status === 400 || status === 413 || status === 422) return { action: "reject", status, message };
    const retryAfterS = err.retryAfter();
    const retryAfterMs = retryAfterS > 0 ? retryAfterS * 1000 : undefined;
    const cause: RetryCause =
      status === 401 || status === 403
        ? "unauthorized"
        : status === 404
          ? "not_found"
          : status === 429
            ? "throttled"
            : status === 503
              ? "unavailable"
              : status >= 500
                ? "server_error"
                : "http_error";
    return { action: "retry", cause, status, retryAfterMs, message };
  }
  const e = err as { name?: string; message?: string };
  const message = String(e?.message ?? err).slice(0, 500);
  if (e?.name === "RequestTimedOutError" || e?.name === "AbortError" || e?.name === "TimeoutError")
    return { action: "retry", cause: "timeout", message };
  return { action: "retry", cause: "network", message };
}

export interface WriteHooks {
  /** Called while a write is in flight and between retries: keeps the consumer in its group. */
  heartbeat(): Promise<void>;
  /** False once the worker is stopping or the batch is stale; the write then gives up by throwing. */
  shouldContinue(): boolean;
  onRetry?(attempt: number, delayMs: number, error: unknown, failure: WriteFailure): void;
}

export class WriteAbandoned extends Error {
  override name = "WriteAbandoned";
}

export interface InfluxWriterOptions {
  org: string;
  bucket: string;
  rollupBuckets: Record<TierName, string>;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Longest one write request may take before it counts as failed (and is retried). */
  attemptTimeoutMs?: number;
  /** How often the caller's heartbeat runs while a request is in flight or a retry waits. */
  heartbeatIntervalMs?: number;
}

/** At most this many lines go in one shared request; a larger write is a request of its own. */
export const SHARED_REQUEST_LINES = 5000;

/** An attempt waiting for its bucket's next shared request. */
interface Queued {
  body: string;
  lines: number;
  resolve(): void;
  reject(err: unknown): void;
}

class Refused extends Error {
  constructor(readonly failure: Extract<WriteFailure, { action: "reject" }>) {
    super(failure.message);
  }
}

export class InfluxWriter {
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly heartbeatIntervalMs: number;
  private readonly paths = new Map<string, string>();
  /** Attempts waiting to share a request, by bucket, sent when the current turn of the event loop ends. */
  private readonly queued = new Map<string, Queued[]>();

  constructor(
    private readonly influx: InfluxDB,
    private readonly options: InfluxWriterOptions,
  ) {
    this.initialBackoffMs = options.initialBackoffMs ?? 200;
    this.maxBackoffMs = options.maxBackoffMs ?? 10_000;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 10_000;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 1000;
    for (const bucket of [options.bucket, ...Object.values(options.rollupBuckets)]) {
      const query = new URLSearchParams({ org: options.org, bucket, precision: "ms" });
      this.paths.set(bucket, `/api/v2/write?${query}`);
    }
  }

  /**
   * Resolves with the lines InfluxDB refused on their own; everything else is stored. Raw lines are
   * written before rollup lines, so a rollup is never visible before the readings it summarises.
   */
  async write(lines: TaggedLine[], hooks: WriteHooks): Promise<RejectedLine[]> {
    const rejected: RejectedLine[] = [];
    const byBucket = new Map<string, TaggedLine[]>([[this.options.bucket, []]]);
    for (const line of lines) {
      const bucket =
        line.bucket === undefined ? this.options.bucket : this.options.rollupBuckets[line.bucket];
      let group = byBucket.get(bucket);
      if (group === undefined) {
        group = [];
        byBucket.set(bucket, group);
      }
      group.push(line);
    }
    for (const [bucket, group] of byBucket) await this.writeRange(bucket, group, hooks, rejected);
    return rejected;
  }

  private async writeRange(
    bucket: string,
    lines: TaggedLine[],
    hooks: WriteHooks,
    rejected: RejectedLine[],
  ): Promise<void> {
    if (lines.length === 0) return;
    try {
      await this.writeWithRetry(bucket, lines, hooks);
    } catch (err) {
      if (!(err instanceof Refused)) throw err;
      if (lines.length === 1) {
        const [only] = lines as [TaggedLine];
        rejected.push({ ...only, status: err.failure.status, message: err.failure.message });
        return;
      }
      const mid = lines.length >> 1;
      await this.writeRange(bucket, lines.slice(0, mid), hooks, rejected);
      await this.writeRange(bucket, lines.slice(mid), hooks, rejected);
    }
  }

  private async writeWithRetry(bucket: string, lines: TaggedLine[], hooks: WriteHooks): Promise<void> {
    let delay = this.initialBackoffMs;
    const body = lines.map((l) => l.line).join("\n");
    for (let attempt = 1; ; attempt++) {
      try {
        await this.whileHeartbeating(this.attempt(bucket, body, lines.length), hooks);
        return;
      } catch (err) {
        const failure = classifyWriteError(err);
        if (failure.action === "reject") throw new Refused(failure);
        if (!hooks.shouldContinue())
          throw new WriteAbandoned(`gave up writing ${lines.length} lines: ${failure.message}`);
        const wait = Math.min(this.maxBackoffMs, Math.max(delay, failure.retryAfterMs ?? 0));
        hooks.onRetry?.(attempt, wait, err, failure);
        await this.sleepHeartbeating(wait, hooks);
        delay = Math.min(this.maxBackoffMs, delay * 2);
      }
    }
  }

  /** One attempt: a request of its own, or a share of the bucket's next shared request. */
  private attempt(bucket: string, body: string, lines: number): Promise<unknown> {
    if (lines >= SHARED_REQUEST_LINES) return this.post(bucket, body);
    return new Promise<void>((resolve, reject) => {
      let queue = this.queued.get(bucket);
      if (queue === undefined) {
        queue = [];
        this.queued.set(bucket, queue);
        setImmediate(() => this.sendQueued(bucket));
      }
      queue.push({ body, lines, resolve, reject });
    });
  }

  private sendQueued(bucket: string): void {
    const queue = this.queued.get(bucket) ?? [];
    this.queued.delete(bucket);
    let start = 0;
    while (start < queue.length) {
      let end = start;
      let lines = 0;
      while (
        end < queue.length &&
        (end === start || lines + (queue[end] as Queued).lines <= SHARED_REQUEST_LINES)
      )
        lines += (queue[end++] as Queued).lines;
      void this.sendShared(bucket, queue.slice(start, end));
      start = end;
    }
  }

  private async sendShared(bucket: string, attempts: Queued[]): Promise<void> {
    if (attempts.length === 1) {
      const [only] = attempts as [Queued];
      return this.post(bucket, only.body).then(only.resolve, only.reject);
    }
    try {
      await this.post(bucket, attempts.map((a) => a.body).join("\n"));
      for (const a of attempts) a.resolve();
    } catch (err) {
      if (classifyWriteError(err).action === "reject") {
        // One of them holds a line InfluxDB refuses: each on its own, to find whose.
        for (const a of attempts) void this.post(bucket, a.body).then(a.resolve, a.reject);
      } else for (const a of attempts) a.reject(err);
    }
  }

  /**
   * One request, nothing buffered: the client's WriteApi would flush early on its own (batch size,
   * bytes) and report such a flush's failure only to a callback, which loses it.
   */
  private post(bucket: string, body: string): Promise<unknown> {
    return this.influx.transport.request(this.paths.get(bucket) as string, body, {
      method: "POST",
      headers: { "content-type": "text/plain; charset=utf-8" },
      gzipThreshold: 1 << 30,
      signal: AbortSignal.timeout(this.attemptTimeoutMs),
    });
  }

  private async whileHeartbeating<T>(work: Promise<T>, hooks: WriteHooks): Promise<T> {
    const timer = setInterval(() => void hooks.heartbeat().catch(() => {}), this.heartbeatIntervalMs);
    try {
      return await work;
    } finally {
      clearInterval(timer);
    }
  }

  private async sleepHeartbeating(ms: number, hooks: WriteHooks): Promise<void> {
    const until = Date.now() + ms;
    while (Date.now() < until && hooks.shouldContinue()) {
      await hooks.heartbeat().catch(() => {});
      await new Promise((r) => setTimeout(r, Math.min(this.heartbeatIntervalMs, until - Date.now())));
    }
  }
}
