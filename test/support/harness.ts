/**
 * Test harness over the real services: isolated topics and bucket per test, the real worker
 * (in-process or as a killable child process), the real API, and produce/query helpers.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import type { RouteOptions } from "fastify";
import { pino } from "pino";
import { afterAll, beforeAll, inject } from "vitest";
import { apiSettings } from "../../api/config.js";
import { buildServer } from "../../api/server.js";
import { influxConfig, kafkaConfig } from "../../common/config.js";
import { createInflux, ensureBuckets } from "../../common/influx.js";
import { createKafka, ensureTopics, type Kafka, withAdmin } from "../../common/kafka.js";
import { routeInfluxClientLogs } from "../../common/log.js";
import { type TopicName, topicName } from "../../common/topics.js";
import { ingestSettings } from "../../ingest/config.js";
import { IngestMetrics } from "../../ingest/metrics.js";
import { IngestWorker } from "../../ingest/worker.js";

export type Env = Record<string, string>;
export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const READ_TOKEN = "test-read-token-0123456789";
export const ADMIN_TOKEN = "test-admin-token-0123456789";

/** A fresh bucket and topic prefix on the shared services, so tests never see each other's data. */
export async function isolatedEnv(
  name: string,
  extra: Env = {},
  services: Env = { ...inject("services") },
): Promise<Env> {
  const id = `${name}-${randomBytes(4).toString("hex")}`;
  const bucket = `test-${id}`;
  // The raw bucket and its rollup buckets, as provisioning makes them: a worker with a write-only
  // token cannot create them.
  await ensureBuckets(influxConfig({ ...services, INFLUX_BUCKET: bucket }));
  return {
    ...services,
    INFLUX_BUCKET: bucket,
    KAFKA_TOPIC_PREFIX: `${id}.`,
    KAFKA_PARTITIONS: "3",
    INGEST_GROUP_ID: `ingest-${id}`,
    INGEST_METRICS_ENABLED: "false",
    API_READ_TOKENS: READ_TOKEN,
    API_ADMIN_TOKENS: ADMIN_TOKEN,
    LOG_LEVEL: "warn",
    ...extra,
  };
}

export function kafkaFor(env: Env): Kafka {
  return createKafka(kafkaConfig(env));
}

export async function createTopics(env: Env): Promise<void> {
  await withAdmin(kafkaFor(env), (admin) => ensureTopics(admin, kafkaConfig(env)));
}

export function topic(env: Env, name: TopicName): string {
  return topicName(env.KAFKA_TOPIC_PREFIX ?? "", name);
}

export interface Outgoing {
  key: string | null;
  value: string | Buffer | null;
  partition?: number;
}

export async function produce(env: Env, messages: Outgoing[], name: TopicName = "raw"): Promise<void> {
  await createTopics(env);
  await produceTo(env, topic(env, name), messages);
}

/** Sends to a topic by its full name, in order, 1,000 messages per request. */
async function produceTo(env: Env, name: string, messages: Outgoing[]): Promise<void> {
  // Idempotent, so a retry after a slow acknowledgement never writes a message twice.
  const producer = kafkaFor(env).producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += 1000) {
      await producer.send({ topic: name, acks: -1, messages: messages.slice(i, i + 1000) });
    }
  } finally {
    await producer.disconnect();
  }
}

export interface Consumed {
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
  partition: number;
  offset: string;
}

/** Keys of the end markers `consumeAll` places; never a sensor id (those start with a letter or digit). */
const END_MARKER = "__end-of-read__";

/**
 * Reads a topic from the beginning, read-committed, until `count` messages arrived, then on until
 * everything committed so far has been read: a marker produced to every partition at that moment is
 * read back behind all of it, so no quiet period is guessed. Markers are left out of the answer.
 * Not for the topics the product reads (raw readings, alert rules), where a marker would be input.
 */
export async function consumeAll(
  env: Env,
  name: TopicName,
  count: number,
  timeoutMs = 30_000,
): Promise<Consumed[]> {
  if (name === "raw" || name === "alertRules") {
    throw new Error(`consumeAll places end markers, so it reads output topics only, not ${name}`);
  }
  return consumeTopic(env, topic(env, name), count, timeoutMs);
}

/** `consumeAll` for a topic by its full name (e.g. the worker's state changelog). */
export async function consumeTopic(
  env: Env,
  name: string,
  count: number,
  timeoutMs = 30_000,
): Promise<Consumed[]> {
  const partitions = (await withAdmin(kafkaFor(env), (admin) => admin.fetchTopicOffsets(name))).map(
    (p) => p.partition,
  );
  const marker = `${END_MARKER}${randomBytes(6).toString("hex")}`;
  const markedPartitions = new Set<number>();
  let markerPlaced = false;
  const consumer = kafkaFor(env).consumer({ groupId: `reader-${randomBytes(6).toString("hex")}` });
  const out: Consumed[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic: name, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `${name}: ${out.length} of at least ${count} messages and the end of ${markedPartitions.size} of ${partitions.length} partitions read after ${timeoutMs} ms`,
            ),
          ),
        timeoutMs,
      );
      const check = () => {
        if (!markerPlaced && out.length >= count) {
          markerPlaced = true;
          produceTo(
            env,
            name,
            partitions.map((partition) => ({ key: marker, value: null, partition })),
          ).catch(reject);
        }
        if (markedPartitions.size === partitions.length) {
          clearTimeout(timer);
          resolve();
        }
      };
      check();
      consumer
        .run({
          eachMessage: async ({ message, partition }) => {
            const key = message.key?.toString() ?? null;
            if (key?.startsWith(END_MARKER)) {
              if (key === marker) markedPartitions.add(partition);
            } else {
              const headers: Record<string, string> = {};
              for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
              out.push({ key, value: message.value, headers, partition, offset: message.offset });
            }
            check();
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return out;
}

/** Resolves with how the child process ended (at once if it already has). */
export function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}

/**
 * The first line the child prints on stdout that matches `pattern`. Fails at the deadline, or as soon
 * as the child exits without printing it.
 */
export function waitForLine(
  child: ChildProcess,
  pattern: RegExp,
  timeoutMs: number,
): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let pending = "";
    const done = () => {
      clearTimeout(timer);
      child.stdout?.off("data", onData);
      child.off("exit", onExit);
    };
    const onData = (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        const match = pattern.exec(line);
        if (match) {
          done();
          resolve(match);
          return;
        }
      }
    };
    const onExit = (code: number | null, signal: string | null) => {
      done();
      reject(new Error(`the process exited (code ${code}, signal ${signal}) before printing ${pattern}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms`));
    }, timeoutMs);
    child.stdout?.on("data", onData);
    child.once("exit", onExit);
  });
}

/** The fault point the worker prints with INGEST_FAULT_AFTER_WRITE (see ingest/worker.ts). */
export const FAULT_POINT = /^FAULT_POINT after-write partition=(\d+) next-offset=(\d+)$/;

export const quietLogger = pino({ level: process.env.TEST_LOG_LEVEL ?? "error" });
routeInfluxClientLogs(quietLogger);

/** The real worker, in this process. */
let workersStarted = 0;

export async function startWorker(
  env: Env,
): Promise<{ worker: IngestWorker; metrics: IngestMetrics; stop(): Promise<void> }> {
  const settings = ingestSettings(env);
  const metrics = new IngestMetrics();
  // Several workers can share a test process: each one's log lines say which it is.
  const logger = quietLogger.child({ worker: ++workersStarted });
  const worker = new IngestWorker({ ...settings, logger, metrics });
  await worker.start();
  return { worker, metrics, stop: () => worker.stop() };
}

/** The real worker as a child process (`tsx ingest/main.ts`), for crash tests. */
export function spawnWorker(env: Env): ChildProcess {
  const child = spawn(process.execPath, ["--import", "tsx", "ingest/main.ts"], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stderr?.on("data", (d) => process.env.TEST_LOG_LEVEL && process.stderr.write(d));
  child.stdout?.on("data", (d) => process.env.TEST_LOG_LEVEL && process.stderr.write(d));
  return child;
}

/** The real API on an ephemeral port. */
export async function startApi(
  env: Env,
  onRoute?: (route: RouteOptions) => void,
): Promise<{ url: string; stop(): Promise<void> }> {
  const settings = apiSettings({ ...env, API_PORT: "0" });
  const app = await buildServer({ settings, kafka: createKafka(settings.kafka), onRoute });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, stop: () => app.close() };
}

export async function getJson<T = unknown>(
  url: string,
  token = READ_TOKEN,
): Promise<{ status: number; body: T }> {
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: (await res.json()) as T };
}

/** Flux straight to InfluxDB, for assertions that should not depend on the API. */
export async function fluxRows<T = Record<string, unknown>>(env: Env, query: string): Promise<T[]> {
  const config = influxConfig(env);
  return createInflux(config).getQueryApi(config.org).collectRows<T>(query);
}

export async function countPoints(env: Env, measurement: string, field: string): Promise<number> {
  const rows = await fluxRows<{ _value: number }>(
    env,
    `from(bucket: "${env.INFLUX_BUCKET}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "${measurement}" and r._field == "${field}") |> group() |> count()`,
  );
  return rows[0]?._value ?? 0;
}

export async function eventually<T>(
  what: string,
  fn: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (done(last)) return last;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(
    `${what}: not reached within ${timeoutMs} ms (last value ${JSON.stringify(last)}${lastError ? `, last error ${lastError}` : ""})`,
  );
}

/** The worker group's committed offset on each partition of the raw topic (-1: none yet). */
export async function committedOffsets(env: Env): Promise<Map<number, number>> {
  const groups = await withAdmin(kafkaFor(env), (admin) =>
    admin.fetchOffsets({ groupId: env.INGEST_GROUP_ID as string, topics: [topic(env, "raw")] }),
  );
  return new Map((groups[0]?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
}

/** Total committed offset of the worker's group on the raw topic, and the topic's end offset. */
export async function groupProgress(env: Env): Promise<{ committed: number; end: number }> {
  // A topic created moments ago, or a broker just restarted, can answer "not the leader" for a while.
  for (let attempt = 1; ; attempt++) {
    try {
      return await readGroupProgress(env);
    } catch (err) {
      if (attempt >= 40) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

async function readGroupProgress(env: Env): Promise<{ committed: number; end: number }> {
  return withAdmin(kafkaFor(env), async (admin) => {
    const [ends, groups] = await Promise.all([
      admin.fetchTopicOffsets(topic(env, "raw")),
      admin.fetchOffsets({ groupId: env.INGEST_GROUP_ID as string, topics: [topic(env, "raw")] }),
    ]);
    return {
      end: ends.reduce((n, p) => n + Number(p.high), 0),
      committed: (groups[0]?.partitions ?? []).reduce((n, p) => n + Math.max(0, Number(p.offset)), 0),
    };
  });
}

/** Waits until the raw topic holds `expected` messages and the group has committed all of them. */
export async function drained(env: Env, expected: number, timeoutMs = 120_000): Promise<void> {
  await eventually(
    `${expected} offsets committed`,
    () => groupProgress(env),
    (g) => g.end === expected && g.committed === expected,
    timeoutMs,
  );
}

export async function sendJson<T = unknown>(
  method: string,
  url: string,
  body: unknown,
  { token = ADMIN_TOKEN, headers = {} as Record<string, string> } = {},
): Promise<{ status: number; body: T; etag: string | null }> {
  const res = await fetch(url, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : null) as T, etag: res.headers.get("etag") };
}

export interface StoredAlert {
  rule_id: string;
  sensor_id: string;
  state: string;
  severity: string;
  _time: string;
  _value: number;
}

/** Every alert transition in the bucket as "rule|sensor|state|time", sorted by time. */
export async function alertHistory(env: Env, ruleNames: Map<string, string> = new Map()): Promise<string[]> {
  const rows = await fluxRows<StoredAlert>(
    env,
    `from(bucket: "${env.INFLUX_BUCKET}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "alerts" and r._field == "value") |> group() |> sort(columns: ["_time", "rule_id", "sensor_id"])`,
  );
  return rows.map(
    (r) =>
      `${ruleNames.get(r.rule_id) ?? r.rule_id}|${r.sensor_id}|${r.state}|${new Date(r._time).toISOString()}`,
  );
}

/**
 * Every point of a measurement as `tags|time|field=value`, sorted: what a run stored, identity and
 * values, for comparing two runs point for point.
 */
export async function storedPoints(
  env: Env,
  measurement: string,
  bucket = env.INFLUX_BUCKET,
): Promise<string[]> {
  const rows = await fluxRows<Record<string, unknown>>(
    env,
    `from(bucket: "${bucket}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "${measurement}")`,
  );
  return rows
    .map((r) => {
      const tags = Object.keys(r)
        .filter((k) => !k.startsWith("_") && k !== "result" && k !== "table")
        .sort()
        .map((k) => `${k}=${String(r[k])}`)
        .join(",");
      return `${tags}|${String(r._time)}|${String(r._field)}=${String(r._value)}`;
    })
    .sort();
}

/**
 * A worker and an API running on a fresh environment for a describe block, and `send`, which
 * produces temperature readings of one sensor, one a second from `start`, and waits until the
 * worker has consumed them. One reading of 10 is sent before the tests.
 */
export function liveSensor(name: string, sensor: string, start: number) {
  const live = {
    env: {} as Env,
    api: undefined as unknown as Awaited<ReturnType<typeof startApi>>,
    worker: undefined as unknown as Awaited<ReturnType<typeof startWorker>>,
    sent: 0,
    async send(...values: number[]): Promise<void> {
      await produce(
        live.env,
        values.map((temperature) => ({
          key: sensor,
          value: JSON.stringify({ sensor_id: sensor, temperature, timestamp: start + live.sent++ * 1000 }),
        })),
      );
      await drained(live.env, live.sent);
    },
  };
  beforeAll(async () => {
    live.env = await isolatedEnv(name);
    live.api = await startApi(live.env);
    live.worker = await startWorker(live.env);
    await live.send(10);
  });
  afterAll(async () => {
    await live.worker?.stop();
    await live.api?.stop();
  });
  return live;
}

/** Creates the rule the alert tests share: `field` (temperature) above 40 on one sensor. */
export function postThresholdRule(apiUrl: string, name: string, sensor: string, severity: string) {
  return sendJson<{ id: string }>("POST", `${apiUrl}/v1/rules`, {
    name,
    sensors: { type: "ids", ids: [sensor] },
    field: "temperature",
    condition: { type: "threshold", op: "above", value: 40 },
    severity,
  });
}
