/**
 * Batches held for a shared commit: with a backlog, a partition's written batches are committed in
 * one Kafka transaction per INGEST_COMMIT_INTERVAL_MS, so each state key changed meanwhile reaches
 * the changelog once, and every output is what committing each batch on its own gives.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { changelogTopic } from "../../common/topics.js";
import { MARKER_KEY } from "../../ingest/transactions.js";
import {
  consumeAll,
  consumeTopic,
  drained,
  type Env,
  isolatedEnv,
  type Outgoing,
  produce,
  startWorker,
  storedPoints,
} from "../support/harness.js";

const SENSORS = 12;
const TICKS = 50;
const T0 = Date.UTC(2026, 5, 1, 12, 0, 0);

/** Readings sent in many small record batches, so the worker fetches them in many batches. */
function messages(): Outgoing[][] {
  const sends: Outgoing[][] = [];
  for (let t = 0; t < TICKS; t++) {
    sends.push(
      Array.from({ length: SENSORS }, (_, s) => ({
        key: `s${s}`,
        value: JSON.stringify({
          sensor_id: `s${s}`,
          temperature: 20 + ((s * 7 + t * 3) % 11),
          timestamp: T0 + t * 15_000 + s,
        }),
      })),
    );
  }
  return sends;
}

interface Run {
  env: Env;
  batches: number;
  changelogKeys: string[];
  windows: string[];
  readings: string[];
}

async function run(name: string, commitIntervalMs: number): Promise<Run> {
  const env = await isolatedEnv(name, {
    INGEST_COMMIT_INTERVAL_MS: String(commitIntervalMs),
    INGEST_MAX_BYTES_PER_PARTITION: "1024",
    INGEST_PARTITION_CONCURRENCY: "1",
  });
  for (const send of messages()) await produce(env, send);
  const worker = await startWorker(env);
  try {
    await drained(env, SENSORS * TICKS);
  } finally {
    await worker.stop();
  }
  const batches = (await worker.metrics.batchSize.get()).values.find((v) => v.metricName?.endsWith("_count"))
    ?.value as number;
  const changelog = await consumeTopic(
    env,
    changelogTopic(env.KAFKA_TOPIC_PREFIX ?? "", env.INGEST_GROUP_ID ?? ""),
    1,
  );
  const windows = await consumeAll(env, "aggregated", 1);
  const readings = await storedPoints(env, "readings");
  return {
    env,
    batches,
    changelogKeys: changelog
      .filter((m) => m.key !== MARKER_KEY)
      // State keys are per partition (each partition's state lives in its own changelog partition).
      .map((m) => `${m.partition} ${m.key}`),
    windows: windows.map((m) => `${m.key} ${m.value?.toString()}`).sort(),
    readings,
  };
}

describe("held batches share one commit under a backlog", () => {
  let each: Run;
  let shared: Run;

  beforeAll(async () => {
    each = await run("commit-each", 0);
    shared = await run("commit-shared", 60_000);
  }, 240_000);

  it("fetches the backlog in many batches either way", () => {
    expect(each.batches).toBeGreaterThan(6);
    expect(shared.batches).toBeGreaterThan(6);
  });

  it("commits each batch on its own with interval 0: state keys recur in the changelog", () => {
    expect(each.changelogKeys.length).toBeGreaterThan(new Set(each.changelogKeys).size);
  });

  it("writes each state key once when the whole backlog of a partition commits together", () => {
    expect(shared.changelogKeys.length).toBeGreaterThan(0);
    expect(shared.changelogKeys.length).toBe(new Set(shared.changelogKeys).size);
  });

  it("stores the same readings and publishes the same windows as committing each batch", () => {
    // One point per field of each reading: temperature only.
    expect(shared.readings).toHaveLength(SENSORS * TICKS);
    expect(shared.readings).toEqual(each.readings);
    expect(shared.windows.length).toBeGreaterThan(0);
    expect(shared.windows).toEqual(each.windows);
  });
});
