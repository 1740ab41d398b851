/**
 * Writes line protocol to InfluxDB for one Kafka batch and does not return until every line is
 * either stored or proven unstorable. Transient failures (network, 5xx, 429) are retried with
 * capped exponential backoff for as long as the caller wants to keep going; a 4xx rejection is
 * narrowed down by bisection so one bad point never blocks or loses the good ones around it
 * (InfluxDB rejects a whole batch for a single field-type conflict).
 */
import { HttpError, type InfluxDB, type WriteOptions } from "@influxdata/influxdb-client";
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

export interface WriteHooks {
  /** Called between retries: keeps the consumer in its group while InfluxDB is away. */
  heartbeat(): Promise<void>;
  /** False once the worker is stopping or the batch is stale; the write then gives up by throwing. */
  shouldContinue(): boolean;
  onRetry?(attempt: number, delayMs: number, error: unknown): void;
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
}

function isPermanent(err: unknown): err is HttpError {
  return (
    err instanceof HttpError &&
    err.statusCode >= 400 &&
    err.statusCode < 500 &&
    err.statusCode !== 429 &&
    err.statusCode !== 408
  );
}

/** Worth retrying: InfluxDB overloaded or away (5xx, 429, 408), or the connection failed. */
function isTransient(err: unknown): boolean {
  if (err instanceof HttpError)
    return err.statusCode >= 500 || err.statusCode === 429 || err.statusCode === 408;
  const e = err as { name?: string; code?: unknown; message?: string };
  return (
    typeof e.code === "string" ||
    e.name === "RequestTimedOutError" ||
    e.name === "AbortError" ||
    /ECONN|socket|network|timed? ?out|EPIPE|ENOTFOUND/i.test(e.message ?? "")
  );
}

export class InfluxWriter {
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;

  constructor(
    private readonly influx: InfluxDB,
    private readonly options: InfluxWriterOptions,
  ) {
    this.initialBackoffMs = options.initialBackoffMs ?? 200;
    this.maxBackoffMs = options.maxBackoffMs ?? 10_000;
  }

  /**
   * Resolves with the lines InfluxDB refused permanently; everything else is stored. Raw lines are
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
      if (!isPermanent(err)) throw err;
      if (lines.length === 1) {
        const [only] = lines as [TaggedLine];
        rejected.push({ ...only, status: err.statusCode, message: err.body || err.message });
        return;
      }
      const mid = lines.length >> 1;
      await this.writeRange(bucket, lines.slice(0, mid), hooks, rejected);
      await this.writeRange(bucket, lines.slice(mid), hooks, rejected);
    }
  }

  private async writeWithRetry(bucket: string, lines: TaggedLine[], hooks: WriteHooks): Promise<void> {
    let delay = this.initialBackoffMs;
    for (let attempt = 1; ; attempt++) {
      try {
        // The client's own batching and retry loop are off: a batch is sized by the Kafka batch and
        // retried here, where the consumer can heartbeat and the commit can wait for the outcome.
        const options: Partial<WriteOptions> = {
          batchSize: lines.length + 1,
          flushInterval: 0,
          maxRetries: 0,
          gzipThreshold: 1 << 30,
        };
        const api = this.influx.getWriteApi(this.options.org, bucket, "ms", options);
        api.writeRecords(lines.map((l) => l.line));
        await api.close();
        return;
      } catch (err) {
        if (isPermanent(err) || !isTransient(err)) throw err;
        if (!hooks.shouldContinue())
          throw new WriteAbandoned(`gave up writing ${lines.length} lines: ${(err as Error).message}`);
        hooks.onRetry?.(attempt, delay, err);
        await sleepWithHeartbeat(delay, hooks);
        delay = Math.min(this.maxBackoffMs, delay * 2);
      }
    }
  }
}

async function sleepWithHeartbeat(ms: number, hooks: WriteHooks): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    await hooks.heartbeat().catch(() => {});
    await new Promise((r) => setTimeout(r, Math.min(1000, until - Date.now())));
  }
}
