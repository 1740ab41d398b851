/**
 * The worker never stops silently, on the real broker and InfluxDB: its producers fenced by another
 * holder of their transactional ids, an output larger than its topic takes, and its InfluxDB token
 * revoked and restored mid-stream. Each time consumption goes on, and every reading is stored once,
 * every window emitted once, nothing dead-lettered that should not be.
 */
import { describe, expect, it } from "vitest";
import { kafkaConfig } from "../../common/config.js";
import { ensureTopics, withAdmin } from "../../common/kafka.js";
import { DEFAULT_LIMITS } from "../../common/reading.js";
import { DEFAULT_DETECTORS } from "../../ingest/detectors.js";
import type { IngestMetrics } from "../../ingest/metrics.js";
import { PartitionTask } from "../../ingest/partition-task.js";
import { DEFAULT_SIMULATION, simulate } from "../../ingest/simulation.js";
import { DEFAULT_WINDOWS } from "../../ingest/windows.js";
import {
  consumeAll,
  countPoints,
  drained,
  type Env,
  eventually,
  groupProgress,
  isolatedEnv,
  kafkaFor,
  type Outgoing,
  produce,
  startWorker,
  topic,
} from "../support/harness.js";

const PARTITIONS = 3;

function traffic(count: number, seed: number, startTime: number): Outgoing[] {
  return [...simulate({ ...DEFAULT_SIMULATION, sensors: 12, count, startTime, seed })].map((m) => ({
    key: m.key,
    value: m.value,
    partition: Number(m.key.split("_")[1]) % PARTITIONS,
  }));
}

/** "sensor|window start|count" of every window one uninterrupted task per partition emits. */
function expectedWindows(messages: Outgoing[]): string[] {
  const out: string[] = [];
  for (let p = 0; p < PARTITIONS; p++) {
    const task = new PartitionTask({
      detectors: DEFAULT_DETECTORS,
      windows: DEFAULT_WINDOWS,
      limits: DEFAULT_LIMITS,
    });
    const mine = messages
      .filter((m) => m.partition === p)
      .map((m) => ({ value: Buffer.from(m.value as string) }));
    for (const w of task.process(mine, Date.now()).windows)
      out.push(`${w.sensor_id}|${w.window_start}|${w.count}`);
  }
  return out.sort();
}

async function emittedWindows(env: Env, count: number): Promise<string[]> {
  return (await consumeAll(env, "aggregated", count))
    .map((m) => {
      const w = JSON.parse(m.value?.toString() ?? "{}") as {
        sensor_id: string;
        window_start: number;
        count: number;
      };
      return `${w.sensor_id}|${w.window_start}|${w.count}`;
    })
    .sort();
}

async function topicSize(env: Env, name: "deadLetter" | "late"): Promise<number> {
  return withAdmin(kafkaFor(env), async (admin) =>
    (await admin.fetchTopicOffsets(topic(env, name))).reduce((n, p) => n + Number(p.high), 0),
  );
}

async function counter(
  metrics: IngestMetrics,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  let total = 0;
  for (const v of (metric?.values ?? []) as { value: number; labels: Record<string, string | number> }[]) {
    if (Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)) total += v.value;
  }
  return total;
}

/** Sends `messages` in chunks over a few seconds, the way a live fleet would. */
async function stream(env: Env, messages: Outgoing[], chunk = 500, pauseMs = 200): Promise<void> {
  for (let i = 0; i < messages.length; i += chunk) {
    await produce(env, messages.slice(i, i + chunk));
    await new Promise((r) => setTimeout(r, pauseMs));
  }
}

describe("resilience", () => {
  it("producers fenced mid-stream: the consumer is rebuilt and resumes; nothing lost or doubled", async () => {
    const env = await isolatedEnv("fence");
    const messages = traffic(9000, 21, Date.UTC(2026, 0, 8));
    await produce(env, messages.slice(0, 3000));
    const worker = await startWorker(env);
    try {
      await drained(env, 3000);
      expect(worker.worker.ready).toBe(true);
      // Another holder of the worker's transactional ids: initialising them bumps the epochs, so
      // the worker's next transaction on each partition is refused as fenced.
      const kafka = kafkaFor(env);
      for (let p = 0; p < PARTITIONS; p++) {
        const zombie = kafka.producer({
          transactionalId: `${env.INGEST_GROUP_ID}-${topic(env, "raw")}-${p}`,
          idempotent: true,
          maxInFlightRequests: 1,
        });
        await zombie.connect();
        // kafkajs initialises the transactional id (and so fences) at the first transaction.
        const transaction = await zombie.transaction();
        await transaction.abort();
        await zombie.disconnect();
      }
      await stream(env, messages.slice(3000));
      await drained(env, messages.length, 180_000);
      // kafkajs gave up on the fenced producer's error; the worker replaced the consumer.
      expect(
        await counter(worker.metrics, "ingest_consumer_restarts_total", { by: "worker" }),
      ).toBeGreaterThanOrEqual(1);
      expect(worker.worker.ready).toBe(true);
      expect(await countPoints(env, "readings", "temperature")).toBe(messages.length);
      const expected = expectedWindows(messages);
      expect(expected.length).toBeGreaterThan(50);
      expect(await emittedWindows(env, expected.length)).toEqual(expected);
      expect(await topicSize(env, "deadLetter")).toBe(0);
    } finally {
      await worker.stop();
    }
  }, 300_000);

  it("a dead letter larger than its topic takes: cut to fit with its length noted; consumption goes on", async () => {
    const env = await isolatedEnv("too-large");
    // The dead-letter topic as an older deployment created it: the broker's 1 MiB default.
    await withAdmin(kafkaFor(env), async (admin) => {
      await admin.createTopics({
        waitForLeaders: true,
        topics: [{ topic: topic(env, "deadLetter"), numPartitions: PARTITIONS, replicationFactor: -1 }],
      });
      await ensureTopics(admin, kafkaConfig(env));
    });
    const messages = traffic(3000, 22, Date.UTC(2026, 0, 9));
    // Within the raw topic's 1 MiB as a record batch, over it once the dead-letter headers are added.
    const big = Buffer.alloc(1_048_400, 0x20);
    big.write('{"sensor_id":"sensor_0"', 0);
    const bigIndex = 1500;
    const all: Outgoing[] = [
      ...messages.slice(0, bigIndex),
      { key: "sensor_0", value: big, partition: 0 },
      ...messages.slice(bigIndex),
    ];
    // A send holds one record batch per partition: the big message goes in one of its own.
    await produce(env, all.slice(0, bigIndex));
    await produce(env, all.slice(bigIndex, bigIndex + 1));
    await produce(env, all.slice(bigIndex + 1));
    const worker = await startWorker(env);
    try {
      await drained(env, all.length, 180_000);
      expect(await countPoints(env, "readings", "temperature")).toBe(messages.length);
      const [letter, ...more] = await consumeAll(env, "deadLetter", 1);
      expect(more).toEqual([]);
      expect(letter?.headers["dlq-reason"]).toBe("oversize");
      expect(letter?.headers["truncated-from"]).toBe(String(big.length));
      const kept = letter?.value as Buffer;
      expect(kept.length).toBeGreaterThan(1_000_000);
      expect(kept.equals(big.subarray(0, kept.length))).toBe(true);
      expect(await counter(worker.metrics, "ingest_readings_written_total")).toBe(messages.length);
    } finally {
      await worker.stop();
    }
  }, 300_000);

  it("InfluxDB token revoked mid-stream, then restored: offsets held, nothing dead-lettered, nothing lost", async () => {
    const env = await isolatedEnv("revoke");
    const influx = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${env.INFLUX_URL}${path}`, {
        method,
        headers: { authorization: `Token ${env.INFLUX_TOKEN}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (!res.ok) throw new Error(`InfluxDB ${method} ${path}: ${res.status} ${await res.text()}`);
      return res.json() as Promise<Record<string, unknown>>;
    };
    const buckets = (
      await influx("GET", `/api/v2/buckets?name=${encodeURIComponent(env.INFLUX_BUCKET as string)}`)
    ).buckets as { id: string; orgID: string }[];
    const bucket = buckets[0] as { id: string; orgID: string };
    // Every bucket of the org: the raw bucket and the rollup buckets the worker creates.
    const resource = { type: "buckets", orgID: bucket.orgID };
    const auth = await influx("POST", "/api/v2/authorizations", {
      orgID: bucket.orgID,
      description: "ingest worker (revocation test)",
      permissions: [
        { action: "write", resource },
        { action: "read", resource },
      ],
    });
    const workerEnv = { ...env, INFLUX_TOKEN: auth.token as string };

    const messages = traffic(6000, 23, Date.UTC(2026, 0, 10));
    await produce(env, messages.slice(0, 2000));
    const worker = await startWorker(workerEnv);
    try {
      await drained(env, 2000);
      await influx("PATCH", `/api/v2/authorizations/${auth.id}`, { status: "inactive" });
      await stream(env, messages.slice(2000, 4000));
      await eventually(
        "writes refused as unauthorized",
        () => counter(worker.metrics, "ingest_influx_write_failures_total", { cause: "unauthorized" }),
        (n) => n >= 3,
        60_000,
      );
      const during = await groupProgress(env);
      expect(during).toEqual({ committed: 2000, end: 4000 });
      expect(await topicSize(env, "deadLetter")).toBe(0);

      await influx("PATCH", `/api/v2/authorizations/${auth.id}`, { status: "active" });
      await stream(env, messages.slice(4000));
      await drained(env, messages.length, 120_000);
      expect(await countPoints(env, "readings", "temperature")).toBe(messages.length);
      expect(await topicSize(env, "deadLetter")).toBe(0);
      expect(await counter(worker.metrics, "ingest_readings_written_total")).toBe(messages.length);
    } finally {
      await worker.stop();
    }
  }, 300_000);
});
