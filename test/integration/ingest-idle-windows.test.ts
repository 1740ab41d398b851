/**
 * Idle partitions close their windows: a sensor that sends and then falls silent gets its windows
 * out (sensor-readings-aggregated and the rollup buckets) by the worker's wall-clock timer, with no
 * further input on its partition.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  consumeAll,
  drained,
  type Env,
  eventually,
  fluxRows,
  isolatedEnv,
  produce,
  startWorker,
} from "../support/harness.js";

const IDLE_MS = 1000;
/** Timer period, settling after the batch, write and commit, on a loaded two-core machine. */
const SLACK_MS = 10_000;
const T0 = Date.UTC(2026, 5, 1, 12, 0, 0);

describe("idle partitions close their windows on the wall clock", () => {
  let env: Env;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let drainedAt = 0;

  beforeAll(async () => {
    env = await isolatedEnv("idle-windows", { WINDOW_IDLE_MS: String(IDLE_MS) });
    worker = await startWorker(env);
    // Three readings inside one minute and nothing after: no later reading can close the window.
    await produce(
      env,
      [0, 10, 20].map((s, i) => ({
        key: "idle_1",
        value: JSON.stringify({ sensor_id: "idle_1", temperature: 20 + i, timestamp: T0 + s * 1000 }),
      })),
    );
    await drained(env, 3);
    drainedAt = Date.now();
  });

  afterAll(async () => {
    await worker?.stop();
  });

  it("publishes the sensor's minute window within WINDOW_IDLE_MS plus slack of the last reading", async () => {
    const windows = await consumeAll(env, "aggregated", 1, IDLE_MS + SLACK_MS);
    expect(Date.now() - drainedAt).toBeLessThan(IDLE_MS + SLACK_MS + 5_000);
    expect(windows.map((m) => JSON.parse(m.value?.toString() ?? "{}"))).toEqual([
      {
        sensor_id: "idle_1",
        window_start: T0,
        window_end: T0 + 60_000,
        count: 3,
        avg_temperature: 21,
        min_temperature: 20,
        max_temperature: 22,
        count_temperature: 3,
      },
    ]);
  });

  it("writes the minute and hour rollup points of the closed windows", async () => {
    const rollup = (tier: string) =>
      fluxRows<{ _field: string; _value: number; _time: string }>(
        env,
        `from(bucket: "${env.INFLUX_BUCKET}_${tier}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "rollup" and r.sensor_id == "idle_1" and r._field == "count")`,
      );
    const minute = await eventually(
      "the 1m rollup point",
      () => rollup("1m"),
      (r) => r.length > 0,
      10_000,
    );
    expect(minute.map((r) => [Date.parse(r._time), r._value])).toEqual([[T0, 3]]);
    const hour = await eventually(
      "the 1h rollup point",
      () => rollup("1h"),
      (r) => r.length > 0,
      10_000,
    );
    expect(hour.map((r) => [Date.parse(r._time), r._value])).toEqual([[T0, 3]]);
  });
});
