/**
 * Two worker instances in one consumer group over a 3-partition topic, joining and leaving while
 * the stream flows: every reading stored once, every final window emitted once (read-committed),
 * the group's offsets at the end of the topic.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_LIMITS } from "../../common/reading.js";
import { DEFAULT_DETECTORS } from "../../ingest/detectors.js";
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
  type Outgoing,
  produce,
  startWorker,
} from "../support/harness.js";

const COUNT = 30_000;
const PARTITIONS = 3;

describe("scale-out: two workers share the partitions across rebalances", () => {
  let env: Env;
  let messages: Outgoing[];
  let emitted: string[];
  const expected: string[] = [];

  beforeAll(async () => {
    env = await isolatedEnv("scale");
    messages = [
      ...simulate({
        ...DEFAULT_SIMULATION,
        sensors: 30,
        count: COUNT,
        startTime: Date.UTC(2026, 0, 6),
        seed: 11,
      }),
    ].map((m) => ({ key: m.key, value: m.value, partition: Number(m.key.split("_")[1]) % PARTITIONS }));

    await produce(env, messages.slice(0, 5000));
    const first = await startWorker(env);
    let second: Awaited<ReturnType<typeof startWorker>> | undefined;
    try {
      for (let i = 5000; i < COUNT; i += 2500) {
        const before = await groupProgress(env);
        await produce(env, messages.slice(i, i + 2500));
        if (i === 10_000) second = await startWorker(env); // rebalance: 3 partitions over 2 workers
        if (i === 20_000) await first.stop(); // rebalance: all partitions to the second worker
        // The stream flows through the rebalances: wait for the group to commit more before the next chunk.
        await eventually(
          "the group commits more of the stream",
          () => groupProgress(env),
          (p) => p.committed > before.committed,
          60_000,
        );
      }
      await drained(env, COUNT);
    } finally {
      await first.stop();
      await second?.stop();
    }
    // What one uninterrupted task per partition emits.
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
        expected.push(`${w.sensor_id}|${w.window_start}|${w.count}`);
    }
    emitted = (await consumeAll(env, "aggregated", expected.length)).map((m) => {
      const w = JSON.parse(m.value?.toString() ?? "{}") as {
        sensor_id: string;
        window_start: number;
        count: number;
      };
      return `${w.sensor_id}|${w.window_start}|${w.count}`;
    });
  });

  it("commits every offset and stores every reading once", async () => {
    expect(await groupProgress(env)).toEqual({ end: COUNT, committed: COUNT });
    expect(await countPoints(env, "readings", "temperature")).toBe(COUNT);
  });

  it("emits each final window exactly once, as one uninterrupted task per partition would", () => {
    expect(expected.length).toBeGreaterThan(100);
    expect(emitted.sort()).toEqual(expected.sort());
  });
});
