/**
 * The real worker process is SIGKILLed mid-stream several times and restarted. The readings and
 * anomaly flags it leaves in InfluxDB must equal those of an uninterrupted run over the same
 * messages: detector state is restored from the changelog at exactly the committed offsets.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { simulate } from "../../ingest/simulation.js";
import {
  alertHistory,
  countPoints,
  drained,
  type Env,
  fluxRows,
  groupProgress,
  isolatedEnv,
  produce,
  sendJson,
  spawnWorker,
  startApi,
  startWorker,
} from "../support/harness.js";

// `npm run test:reliability` runs this at a larger scale.
const COUNT = Number(process.env.RELIABILITY_READINGS ?? 40_000);
const KILLS = Number(process.env.RELIABILITY_KILLS ?? 3);
/** Time-outs grow with the stream: at 500 ms per 1000 readings it takes longer to produce and to drain. */
const SCALE = Math.max(1, COUNT / 40_000);

async function anomalies(env: Env): Promise<string[]> {
  const rows = await fluxRows<{
    sensor_id: string;
    field: string;
    detector: string;
    _time: string;
    _value: number;
  }>(
    env,
    `from(bucket: "${env.INFLUX_BUCKET}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "anomalies" and r._field == "score")`,
  );
  return rows.map((r) => `${r.sensor_id}|${r.field}|${r.detector}|${r._time}|${r._value}`).sort();
}

describe("crash recovery: SIGKILL the worker mid-stream", () => {
  let crashy: Env;
  let reference: Env;
  let killsMidStream = 0;
  let distinctPoints = 0;

  beforeAll(async () => {
    // A killed worker never says goodbye: let the group notice within seconds.
    // Small batches: many commits to crash between, and a worker that cannot outrun the stream, so
    // each kill lands while it has work in hand.
    crashy = await isolatedEnv("crash", {
      INGEST_SESSION_TIMEOUT_MS: "6000",
      INGEST_MAX_BYTES_PER_PARTITION: "4096",
    });
    // Rules both runs evaluate: their transitions must come out identical too.
    const api = await startApi(crashy);
    try {
      for (const rule of [
        { name: "hot", condition: { type: "threshold", op: "above", value: 24 }, for: "3s", hysteresis: 0.5 },
        {
          name: "spiky",
          condition: { type: "anomaly", detectors: ["zscore", "ewma"] },
          resolve_after: "20s",
        },
        {
          name: "hot-minute",
          condition: { type: "window", fn: "max", window: "1m", op: "above", value: 26 },
        },
      ]) {
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
    const ref = await isolatedEnv("crash-ref");
    // Same raw topic, its own group, bucket and changelog.
    reference = { ...ref, KAFKA_TOPIC_PREFIX: crashy.KAFKA_TOPIC_PREFIX as string };
    const messages = [
      ...simulate({
        sensors: 25,
        count: COUNT,
        startTime: Date.UTC(2026, 0, 3),
        intervalMs: 1000,
        anomalyProbability: 0.02,
        outOfOrderFraction: 0.05,
        outOfOrderMs: 5000,
        lateFraction: 0,
        lateMs: 0,
        malformedFraction: 0,
        seed: 7,
      }),
    ].map((m) => ({ key: m.key, value: m.value }));
    // Out-of-order readings can land on a timestamp the sensor already used: one point in InfluxDB.
    distinctPoints = new Set(
      messages.map((m) => {
        const r = JSON.parse(m.value) as { sensor_id: string; timestamp: number };
        return `${r.sensor_id}|${r.timestamp}`;
      }),
    ).size;
    // The stream keeps arriving while the worker is killed and restarted; `position` counts what
    // has been handed to the producer so far.
    let position = 0;
    const sendNext = async (n: number) => {
      const chunk = messages.slice(position, position + n);
      position += chunk.length;
      await produce(crashy, chunk);
    };
    const producing = (async () => {
      while (position < messages.length) {
        await sendNext(1000);
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    await produce(crashy, []);

    let last = 0;
    for (let i = 0; i < KILLS; i++) {
      const child = spawnWorker(crashy);
      const exited = new Promise((resolve) => child.once("exit", resolve));
      // Kill once it has committed something new, at a random moment after that.
      const deadline = Date.now() + 60_000 * SCALE;
      let progress = await groupProgress(crashy);
      while (progress.committed <= last && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        progress = await groupProgress(crashy);
      }
      // Then hand it a burst, and kill it at a random point while it works through it.
      const before = progress.committed;
      await sendNext(3000);
      while (progress.committed <= before && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        progress = await groupProgress(crashy);
      }
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 100)));
      progress = await groupProgress(crashy);
      if (progress.committed < position) killsMidStream++;
      last = progress.committed;
      child.kill("SIGKILL");
      await exited;
    }
    await producing;
    const final = spawnWorker(crashy);
    try {
      await drained(crashy, COUNT, 120_000 * SCALE);
    } finally {
      final.kill("SIGTERM");
      await new Promise((resolve) => final.once("exit", resolve));
    }

    const ok = await startWorker(reference);
    try {
      await drained(reference, COUNT, 120_000 * SCALE);
    } finally {
      await ok.stop();
    }
  }, 400_000 * SCALE);

  it("killed the worker mid-stream every time", () => {
    expect(killsMidStream).toBe(KILLS);
  });

  it("stores every reading exactly once", async () => {
    expect(distinctPoints).toBeGreaterThan(COUNT * 0.99);
    expect(await countPoints(crashy, "readings", "temperature")).toBe(distinctPoints);
    expect(await countPoints(reference, "readings", "temperature")).toBe(distinctPoints);
  });

  it("records exactly the alert transitions of an uninterrupted run", async () => {
    const [got, want] = await Promise.all([alertHistory(crashy), alertHistory(reference)]);
    expect(want.length).toBeGreaterThan(20);
    expect(got).toEqual(want);
  });

  it("flags exactly the anomalies of an uninterrupted run", async () => {
    const [got, want] = await Promise.all([anomalies(crashy), anomalies(reference)]);
    expect(want.length).toBeGreaterThan(COUNT * 0.01);
    expect(got).toEqual(want);
  });
});
