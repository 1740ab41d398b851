/**
 * Outages on services of this file's own (so stopping them disturbs no other test): InfluxDB
 * stopped mid-run, and the Kafka broker restarted while traffic flows and the worker is mid-batch.
 * The worker must hold its offsets while it cannot write, recover by itself, and end with every
 * reading stored once and every window published once.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_LIMITS } from "../../common/reading.js";
import { DEFAULT_DETECTORS } from "../../ingest/detectors.js";
import { PartitionTask } from "../../ingest/partition-task.js";
import { simulate } from "../../ingest/simulation.js";
import { DEFAULT_WINDOWS } from "../../ingest/windows.js";
import { type LocalServices, startLocalServices } from "../../scripts/services/local.js";
import {
  committedOffsets,
  consumeAll,
  countPoints,
  drained,
  type Env,
  eventually,
  exitOf,
  FAULT_POINT,
  groupProgress,
  isolatedEnv,
  kafkaFor,
  produce,
  spawnWorker,
  startWorker,
  topic,
  waitForLine,
} from "../support/harness.js";

// `npm run test:reliability` keeps InfluxDB away for longer.
const INFLUX_OUTAGE_S = Number(process.env.RELIABILITY_INFLUX_OUTAGE_S ?? 15);

const PARTITIONS = 3;

/** Readings of `sensors` sensors; each sensor's partition is fixed so a run can be replayed offline. */
function traffic(count: number, seed: number, startTime: number) {
  return [
    ...simulate({
      sensors: 10,
      count,
      startTime,
      intervalMs: 1000,
      anomalyProbability: 0.01,
      outOfOrderFraction: 0,
      outOfOrderMs: 0,
      lateFraction: 0,
      lateMs: 0,
      malformedFraction: 0,
      seed,
    }),
  ].map((m) => ({ key: m.key, value: m.value, partition: Number(m.key.split("_")[1]) % PARTITIONS }));
}

/** The windows one uninterrupted task per partition emits for `messages`, as sensor|start|count. */
function expectedWindows(messages: ReturnType<typeof traffic>): string[] {
  const out: string[] = [];
  for (let p = 0; p < PARTITIONS; p++) {
    const task = new PartitionTask({
      detectors: DEFAULT_DETECTORS,
      windows: DEFAULT_WINDOWS,
      limits: DEFAULT_LIMITS,
    });
    const mine = messages.filter((m) => m.partition === p).map((m) => ({ value: Buffer.from(m.value) }));
    for (const w of task.process(mine, Date.now()).windows)
      out.push(`${w.sensor_id}|${w.window_start}|${w.count}`);
  }
  return out.sort();
}

describe("outages", () => {
  let dir: string;
  let services: LocalServices;
  let base: Env;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "sensor-outage-"));
    services = await startLocalServices(dir);
    base = { ...services.env };
  });

  afterAll(async () => {
    await services?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it(
    `InfluxDB down for ${INFLUX_OUTAGE_S} s: offsets hold, the worker catches up alone, nothing lost`,
    async () => {
      const env = await isolatedEnv("influx-outage", {}, base);
      const messages = traffic(12_000, 1, Date.UTC(2026, 0, 4));
      await produce(env, messages.slice(0, 2000));
      const worker = await startWorker(env);
      const retries = async () => (await worker.metrics.writeRetries.get()).values[0]?.value ?? 0;
      try {
        await drained(env, 2000);
        await services.influx.stop();
        const outageEnds = Date.now() + INFLUX_OUTAGE_S * 1000;
        const rest = produce(env, messages.slice(2000));
        // The worker has met the outage: writes are failing and being retried, with traffic behind them.
        await eventually(
          "the worker retrying its writes against the stopped InfluxDB",
          async () => ({ retries: await retries(), progress: await groupProgress(env) }),
          (v) => v.retries >= 1 && v.progress.end > v.progress.committed,
          60_000,
        );
        // For the rest of the outage the committed offsets never move, however often we look.
        let samples = 0;
        while (Date.now() < outageEnds || samples < 3) {
          expect((await groupProgress(env)).committed).toBe(2000);
          samples++;
        }
        await services.influx.start();
        await rest;
        await drained(env, messages.length, 135_000 + INFLUX_OUTAGE_S * 1000);
        expect(await countPoints(env, "readings", "temperature")).toBe(messages.length);
      } finally {
        await worker.stop();
      }
    },
    225_000 + INFLUX_OUTAGE_S * 1000,
  );

  it("Kafka broker restarted while the producer produces and the worker holds a written batch: it reconnects, nothing lost or doubled", async () => {
    const env = await isolatedEnv("kafka-restart", { INGEST_MAX_BYTES_PER_PARTITION: "4096" }, base);
    const messages = traffic(10_000, 2, Date.UTC(2026, 0, 5));
    await produce(env, messages.slice(0, 3000));
    // The worker stops at its fault point: a batch written to InfluxDB, its Kafka commit still to come.
    const child = spawnWorker({ ...env, INGEST_FAULT_AFTER_WRITE: "6" });
    try {
      const held = await waitForLine(child, FAULT_POINT, 120_000);
      const heldPartition = Number(held[1]);
      const heldNext = Number(held[2]);
      expect((await committedOffsets(env)).get(heldPartition) ?? -1).toBeLessThan(heldNext);

      // One idempotent producer streams the rest: half before the broker goes down, half while it is
      // down and coming back (its retries outlast the restart; the broker drops any resent duplicate).
      let brokerDown: () => void = () => {};
      const down = new Promise<void>((resolve) => {
        brokerDown = resolve;
      });
      const rest = messages.slice(3000);
      let sentBeforeRestart = 0;
      const producing = (async () => {
        const producer = kafkaFor(env).producer({
          idempotent: true,
          maxInFlightRequests: 1,
          retry: { retries: 50, initialRetryTime: 300, maxRetryTime: 3000 },
        });
        await producer.connect();
        try {
          for (let i = 0; i < rest.length; i += 250) {
            if (i === 3500) {
              sentBeforeRestart = i;
              await down;
            }
            for (let attempt = 1; ; attempt++) {
              try {
                await producer.send({ topic: topic(env, "raw"), acks: -1, messages: rest.slice(i, i + 250) });
                break;
              } catch (err) {
                // A refused connection wrote nothing: once the broker answers again, send the chunk again.
                if (!(err as Error).message.includes("ECONNREFUSED") || attempt >= 10) throw err;
                await eventually(
                  "the broker back",
                  () => groupProgress(env),
                  () => true,
                  120_000,
                );
                await producer.connect();
              }
            }
          }
        } finally {
          await producer.disconnect();
        }
      })();
      await eventually(
        "the first half of the stream sent",
        async () => sentBeforeRestart,
        (n) => n > 0,
        60_000,
      );
      await services.kafka.stop();
      brokerDown();
      await services.kafka.start();
      // Let the held batch go: its commit and everything after it go to the restarted broker.
      child.kill("SIGUSR2");
      await producing;
      await drained(env, messages.length, 180_000);
      expect(child.exitCode, "the same worker process did the work").toBeNull();
      expect(await countPoints(env, "readings", "temperature")).toBe(messages.length);
      const windows = (await consumeAll(env, "aggregated", 0, 60_000)).map((m) => {
        const w = JSON.parse(m.value?.toString() ?? "{}") as {
          sensor_id: string;
          window_start: number;
          count: number;
        };
        return `${w.sensor_id}|${w.window_start}|${w.count}`;
      });
      const expected = expectedWindows(messages);
      expect(expected.length).toBeGreaterThan(100);
      expect(windows.sort()).toEqual(expected);
    } finally {
      child.kill("SIGTERM");
      await exitOf(child);
    }
  }, 300_000);
});
