/**
 * Outages on services of this file's own (so stopping them disturbs no other test): InfluxDB
 * stopped mid-run and the Kafka broker restarted mid-run. The worker must hold its offsets while it
 * cannot write, recover by itself, and end with every reading stored once.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { simulate } from "../../ingest/simulation.js";
import { type LocalServices, startLocalServices } from "../../scripts/services/local.js";
import {
  countPoints,
  drained,
  type Env,
  eventually,
  groupProgress,
  isolatedEnv,
  produce,
  startWorker,
} from "../support/harness.js";

// `npm run test:reliability` keeps InfluxDB away for longer.
const INFLUX_OUTAGE_S = Number(process.env.RELIABILITY_INFLUX_OUTAGE_S ?? 15);

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
  ].map((m) => ({ key: m.key, value: m.value }));
}

/** Sends `messages` in chunks over a few seconds, the way a live fleet would. */
async function stream(env: Env, messages: { key: string; value: string }[], chunk = 1000, pauseMs = 300) {
  for (let i = 0; i < messages.length; i += chunk) {
    await produce(env, messages.slice(i, i + chunk));
    await new Promise((r) => setTimeout(r, pauseMs));
  }
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
      try {
        await drained(env, 2000);
        await services.influx.stop();
        const rest = stream(env, messages.slice(2000), 1000, 200);
        // Offsets must not move while nothing can be written.
        const before = await groupProgress(env);
        await new Promise((r) => setTimeout(r, INFLUX_OUTAGE_S * 1000));
        const during = await groupProgress(env);
        expect(during.committed).toBe(before.committed);
        expect(during.end).toBeGreaterThan(during.committed);
        await services.influx.start();
        await rest;
        await drained(env, messages.length, 135_000 + INFLUX_OUTAGE_S * 1000);
        expect(await countPoints(env, "readings", "temperature")).toBe(messages.length);
        expect((await worker.metrics.writeRetries.get()).values[0]?.value).toBeGreaterThan(0);
      } finally {
        await worker.stop();
      }
    },
    225_000 + INFLUX_OUTAGE_S * 1000,
  );

  it("Kafka broker restarted mid-run: the worker reconnects, nothing lost or doubled", async () => {
    const env = await isolatedEnv("kafka-restart", {}, base);
    const messages = traffic(10_000, 2, Date.UTC(2026, 0, 5));
    await produce(env, messages.slice(0, 5000));
    const worker = await startWorker(env);
    try {
      await drained(env, 5000);
      await services.kafka.stop();
      await new Promise((r) => setTimeout(r, 3000));
      await services.kafka.start();
      // The broker needs a moment to elect itself leader of every partition again.
      await eventually(
        "partitions led again",
        () => groupProgress(env),
        (p) => p.end === 5000,
        60_000,
      );
      await produce(env, messages.slice(5000));
      await drained(env, messages.length);
      expect(await countPoints(env, "readings", "temperature")).toBe(messages.length);
    } finally {
      await worker.stop();
    }
  });
});
