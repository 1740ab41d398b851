/**
 * The real worker process is SIGKILLed mid-stream several times and restarted. Each kill lands at
 * the worker's fault point between a batch's InfluxDB write and its Kafka commit (the
 * INGEST_FAULT_AFTER_WRITE hook in ingest/worker.ts), once the worker has committed progress past the
 * previous kill. What it leaves must equal an uninterrupted run over the same messages: every stored
 * point with its values, and every read-committed Kafka output as a multiset of (key, value).
 */

import { beforeAll, describe, expect, it } from "vitest";
import { influxConfig } from "../../common/config.js";
import { simulate } from "../../ingest/simulation.js";
import {
  committedOffsets,
  consumeAll,
  drained,
  type Env,
  eventually,
  exitOf,
  FAULT_POINT,
  isolatedEnv,
  kafkaFor,
  type Outgoing,
  produce,
  sendJson,
  spawnWorker,
  startApi,
  startWorker,
  storedPoints,
  topic,
  waitForLine,
} from "../support/harness.js";

// `npm run test:reliability` runs this at a larger scale.
const COUNT = Number(process.env.RELIABILITY_READINGS ?? 40_000);
const KILLS = Number(process.env.RELIABILITY_KILLS ?? 3);
/** Time-outs grow with the stream. */
const SCALE = Math.max(1, COUNT / 40_000);
const PARTITIONS = 3;

const RULES = [
  { name: "hot", condition: { type: "threshold", op: "above", value: 24 }, for: "3s", hysteresis: 0.5 },
  { name: "spiky", condition: { type: "anomaly", detectors: ["zscore", "ewma"] }, resolve_after: "20s" },
  { name: "hot-minute", condition: { type: "window", fn: "max", window: "1m", op: "above", value: 26 } },
];

interface Kill {
  /** The worker's INGEST_FAULT_AFTER_WRITE: which of its writes it was held after. */
  afterWrite: number;
  /** The raw partition of the held batch, and the offset its commit would have moved to. */
  partition: number;
  nextOffset: number;
  /** That partition's committed offset when the kill was sent. */
  heldCommitted: number;
  /** Total committed offsets at the previous kill (0 for the first) and at this one. */
  committedBefore: number;
  committedAtKill: number;
  signal: NodeJS.Signals | null;
}

/** Copies the alert rules verbatim (same ids), so both runs evaluate exactly the same rules. */
async function copyRules(from: Env, to: Env, count: number): Promise<void> {
  const consumer = kafkaFor(from).consumer({ groupId: `rules-copy-${Date.now()}` });
  const records: Outgoing[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic: topic(from, "alertRules"), fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`only ${records.length} of ${count} rule records within 30 s`)),
        30_000,
      );
      consumer
        .run({
          eachMessage: async ({ message }) => {
            records.push({ key: message.key?.toString() ?? null, value: message.value });
            if (records.length === count) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  await produce(to, records, "alertRules");
}

/** A Kafka output topic as a sorted multiset of key|value (and the dead-letter reason where there is one). */
async function outputs(env: Env, name: "aggregated" | "alerts" | "late" | "deadLetter"): Promise<string[]> {
  return (await consumeAll(env, name, 0, 120_000 * SCALE))
    .map((m) => `${m.key}|${m.value?.toString("base64")}|${m.headers["dlq-reason"] ?? ""}`)
    .sort();
}

describe("crash recovery: SIGKILL the worker between its InfluxDB write and its Kafka commit", () => {
  let crashy: Env;
  let reference: Env;
  const kills: Kill[] = [];
  let messages: (Outgoing & { kind: string })[] = [];
  let distinctReadings = 0;

  beforeAll(async () => {
    // A killed worker never says goodbye: let the group notice within seconds. Small batches: many
    // commits, so each kill has a stream ahead of it.
    crashy = await isolatedEnv("crash", {
      INGEST_SESSION_TIMEOUT_MS: "6000",
      INGEST_MAX_BYTES_PER_PARTITION: "4096",
      KAFKA_PARTITIONS: String(PARTITIONS),
    });
    // The uninterrupted run: its own topics, group and bucket; default batch sizes.
    reference = await isolatedEnv("crash-ref", { KAFKA_PARTITIONS: String(PARTITIONS) });
    const api = await startApi(crashy);
    try {
      for (const rule of RULES) {
        const created = await sendJson("POST", `${api.url}/v1/rules`, {
          sensors: { type: "all" },
          field: "temperature",
          severity: "warning",
          ...rule,
        });
        expect(created.status).toBe(201);
      }
    } finally {
      await api.stop();
    }
    await copyRules(crashy, reference, RULES.length);

    messages = [
      ...simulate({
        sensors: 25,
        count: COUNT,
        startTime: Date.UTC(2026, 0, 3),
        intervalMs: 1000,
        anomalyProbability: 0.02,
        // 30 s behind: past the 10 s allowed lateness when a minute has just ended, so those
        // readings revise their closed window (re-emitted, rollup rewritten).
        outOfOrderFraction: 0.05,
        outOfOrderMs: 30_000,
        // Past the 5-minute revision time: routed to the late topic (and stored).
        lateFraction: 0.005,
        lateMs: 15 * 60_000,
        malformedFraction: 0.003,
        seed: 7,
      }),
    ].map((m) => ({ key: m.key, value: m.value, kind: m.kind }));
    // Readings that share a sensor and timestamp are one point in InfluxDB.
    distinctReadings = new Set(
      messages
        .filter((m) => m.kind !== "malformed")
        .map((m) => {
          const r = JSON.parse(m.value as string) as { sensor_id: string; timestamp: number };
          return `${r.sensor_id}|${r.timestamp}`;
        }),
    ).size;
    // Same keys, same partition count, same order: each partition of both raw topics holds the same
    // messages at the same offsets.
    const raw = messages.map(({ key, value }) => ({ key, value }));
    await produce(reference, raw);
    // The crashed run's stream keeps arriving while the worker is killed and restarted.
    await produce(crashy, raw.slice(0, 2000));
    const producing = (async () => {
      for (let i = 2000; i < raw.length; i += 1000) await produce(crashy, raw.slice(i, i + 1000));
    })();

    let committedBefore = 0;
    for (let i = 0; i < KILLS; i++) {
      // More writes than partitions: some partition has finished a batch before the held one, so
      // the committed offsets have moved past the previous kill before this one.
      const afterWrite = PARTITIONS + 1 + ((i * 5) % 7);
      const child = spawnWorker({ ...crashy, INGEST_FAULT_AFTER_WRITE: String(afterWrite) });
      const held = await waitForLine(child, FAULT_POINT, 120_000 * SCALE).catch(async (err) => {
        child.kill("SIGKILL");
        await exitOf(child);
        throw err;
      });
      const partition = Number(held[1]);
      // A transactional offset commit becomes visible to readers a moment after it returns: look
      // until the progress shows (or report what was there at the deadline).
      const total = (o: Map<number, number>) => [...o.values()].reduce((n, v) => n + Math.max(0, v), 0);
      const offsets = await eventually(
        `committed offsets past ${committedBefore}`,
        () => committedOffsets(crashy),
        (o) => total(o) > committedBefore,
        15_000,
      ).catch(() => committedOffsets(crashy));
      const committedAtKill = total(offsets);
      child.kill("SIGKILL");
      const { signal } = await exitOf(child);
      kills.push({
        afterWrite,
        partition,
        nextOffset: Number(held[2]),
        heldCommitted: offsets.get(partition) ?? -1,
        committedBefore,
        committedAtKill,
        signal,
      });
      committedBefore = committedAtKill;
    }
    await producing;
    const final = spawnWorker(crashy);
    try {
      await drained(crashy, COUNT, 240_000 * SCALE);
    } finally {
      final.kill("SIGTERM");
      await exitOf(final);
    }

    const ok = await startWorker(reference);
    try {
      await drained(reference, COUNT, 240_000 * SCALE);
    } finally {
      await ok.stop();
    }
  }, 900_000 * SCALE);

  it("killed the worker mid-stream every time, between a batch's write and its commit, after new progress", () => {
    expect(kills).toHaveLength(KILLS);
    for (const [i, kill] of kills.entries()) {
      const where = `kill ${i + 1}: ${JSON.stringify(kill)}`;
      expect(kill.signal, where).toBe("SIGKILL");
      // The held batch was written and not committed: its partition's offset is still behind it.
      expect(kill.heldCommitted, where).toBeLessThan(kill.nextOffset);
      // The worker had committed past the previous kill point, and had not reached the end.
      expect(kill.committedAtKill, where).toBeGreaterThan(kill.committedBefore);
      expect(kill.committedAtKill, where).toBeLessThan(COUNT);
    }
  });

  it("stores exactly the readings of an uninterrupted run, values included", async () => {
    const [got, want] = await Promise.all([
      storedPoints(crashy, "readings"),
      storedPoints(reference, "readings"),
    ]);
    expect(want).toHaveLength(distinctReadings);
    expect(distinctReadings).toBeGreaterThan(COUNT * 0.98);
    expect(got).toEqual(want);
  });

  it("flags exactly the anomalies of an uninterrupted run, values included", async () => {
    const [got, want] = await Promise.all([
      storedPoints(crashy, "anomalies"),
      storedPoints(reference, "anomalies"),
    ]);
    // Four fields per flag: value, score, threshold, expected.
    expect(want.length).toBeGreaterThan(COUNT * 0.01 * 4);
    expect(got).toEqual(want);
  });

  it("records exactly the alert transitions of an uninterrupted run, values included", async () => {
    const [got, want] = await Promise.all([
      storedPoints(crashy, "alerts"),
      storedPoints(reference, "alerts"),
    ]);
    expect(want.length).toBeGreaterThan(20);
    expect(got).toEqual(want);
  });

  it("writes exactly the 1-minute and 1-hour rollups of an uninterrupted run, values included", async () => {
    for (const tier of ["1m", "1h"] as const) {
      const bucket = (e: Env) => influxConfig(e).rollupBuckets[tier];
      const [got, want] = await Promise.all([
        storedPoints(crashy, "rollup", bucket(crashy)),
        storedPoints(reference, "rollup", bucket(reference)),
      ]);
      expect(want.length, tier).toBeGreaterThan(tier === "1m" ? 100 : 10);
      expect(got, tier).toEqual(want);
    }
  });

  it("publishes exactly the windows (revisions included), alerts, late readings and dead letters of an uninterrupted run", async () => {
    const revisions = (await consumeAll(reference, "aggregated", 0, 120_000 * SCALE)).filter(
      (m) => JSON.parse(m.value?.toString() ?? "{}").revision !== undefined,
    ).length;
    expect(revisions).toBeGreaterThan(10);
    const malformed = messages.filter((m) => m.kind === "malformed").length;
    const late = messages.filter((m) => m.kind === "late").length;
    for (const name of ["aggregated", "alerts", "late", "deadLetter"] as const) {
      const [got, want] = await Promise.all([outputs(crashy, name), outputs(reference, name)]);
      if (name === "deadLetter") expect(want, name).toHaveLength(malformed);
      else
        expect(want.length, `${name} of the uninterrupted run`).toBeGreaterThan(
          name === "late" ? late / 2 : 20,
        );
      expect(got, name).toEqual(want);
    }
  });
});
