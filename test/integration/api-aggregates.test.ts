/**
 * /v1/aggregates (every function, tumbling and sliding windows, range edges, sensor selection) and
 * /v1/aggregates/latest, on readings written by the real worker. Expected values are computed here
 * from the seeded readings.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { get, isoAt, type SeedReading, seedReadings } from "../support/api-helpers.js";
import { type Env, isolatedEnv, startApi } from "../support/harness.js";

const T0 = Date.UTC(2026, 0, 3, 9, 0, 0);
const MIN = 60_000;

interface Point {
  sensor: string;
  time: number;
  value: number;
}

const points: Point[] = [];
// sensor_1: every 10 s for 10 minutes, values that repeat out of order.
for (let i = 0; i < 60; i++)
  points.push({ sensor: "sensor_1", time: T0 + i * 10_000, value: 20 + ((i * 7) % 11) * 0.5 });
// sensor_2: every 15 s for 3 minutes, then silent, then one lone reading at 6m10s.
for (let i = 0; i < 12; i++) points.push({ sensor: "sensor_2", time: T0 + i * 15_000, value: 30 - i * 0.25 });
points.push({ sensor: "sensor_2", time: T0 + 6 * MIN + 10_000, value: 12.5 });
// sensor_3: a few readings, to check that filters leave it out.
for (let i = 0; i < 4; i++) points.push({ sensor: "sensor_3", time: T0 + i * 40_000, value: 100 + i });

const FNS = ["mean", "min", "max", "count", "sum", "stddev", "median", "p90", "p95", "p99"] as const;
type Fn = (typeof FNS)[number];

/** Linear interpolation between the two nearest order statistics (what "exact_mean" computes). */
function quantile(sorted: number[], q: number): number {
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.ceil(h);
  return (sorted[lo] as number) + (h - lo) * ((sorted[hi] as number) - (sorted[lo] as number));
}

function compute(values: number[]): Record<Fn, number | null> {
  const sorted = [...values].sort((a, b) => a - b);
  const n = values.length;
  const sum = values.reduce((a, b) => a + b, 0);
  const mean = sum / n;
  const variance = n > 1 ? values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1) : null;
  return {
    mean,
    min: sorted[0] as number,
    max: sorted[n - 1] as number,
    count: n,
    sum,
    stddev: variance === null ? null : Math.sqrt(variance),
    median: quantile(sorted, 0.5),
    p90: quantile(sorted, 0.9),
    p95: quantile(sorted, 0.95),
    p99: quantile(sorted, 0.99),
  };
}

interface Expected {
  sensor_id: string;
  window_start: string;
  window_end: string;
  values: Record<Fn, number | null>;
}

/** Windows [k·every, k·every + period) that overlap [start, stop) and hold readings, by sensor then time. */
function expectedWindows(
  sensors: string[],
  start: number,
  stop: number,
  every: number,
  period: number,
): Expected[] {
  const out: Expected[] = [];
  for (const sensor of [...sensors].sort()) {
    const first = Math.floor((start - period) / every) + 1;
    const last = Math.ceil(stop / every) - 1;
    for (let k = first; k <= last; k++) {
      const ws = k * every;
      const values = points
        .filter((p) => p.sensor === sensor && p.time >= ws && p.time < ws + period)
        .map((p) => p.value);
      if (values.length === 0) continue;
      out.push({
        sensor_id: sensor,
        window_start: isoAt(ws),
        window_end: isoAt(ws + period),
        values: compute(values),
      });
    }
  }
  return out;
}

type Window = { sensor_id: string; window_start: string; window_end: string } & Partial<
  Record<Fn, number | null>
>;

function expectMatches(actual: Window[], expected: Expected[], fns: readonly Fn[]): void {
  expect(actual.map((w) => `${w.sensor_id} ${w.window_start} ${w.window_end}`)).toEqual(
    expected.map((w) => `${w.sensor_id} ${w.window_start} ${w.window_end}`),
  );
  for (const [i, w] of actual.entries()) {
    const e = expected[i] as Expected;
    expect(Object.keys(w).sort()).toEqual(["sensor_id", "window_end", "window_start", ...fns].sort());
    for (const fn of fns) {
      const want = e.values[fn];
      if (want === null || fn === "count" || fn === "min" || fn === "max") expect(w[fn]).toBe(want);
      else expect(w[fn]).toBeCloseTo(want, 9);
    }
  }
}

describe("aggregates API", () => {
  let env: Env;
  let api: Awaited<ReturnType<typeof startApi>>;

  beforeAll(async () => {
    env = await isolatedEnv("api-aggregates");
    const readings: SeedReading[] = points.map((p) => ({
      sensor_id: p.sensor,
      timestamp: p.time,
      temperature: p.value,
    }));
    await seedReadings(env, readings);
    api = await startApi(env);
  });

  afterAll(async () => {
    await api?.stop();
  });

  const url = (query: string) => `${api.url}/v1/aggregates?${query}`;

  it("keeps the default response: mean/min/max/count of 1-minute tumbling windows", async () => {
    const { status, body } = await get<{ windows: Window[]; window: string; every: string; fn: string[] }>(
      url(`sensor_id=sensor_1&sensor_id=sensor_2&start=${isoAt(T0)}&stop=${isoAt(T0 + 10 * MIN)}`),
    );
    expect(status).toBe(200);
    expect(body).toMatchObject({ window: "1m", every: "1m", fn: ["mean", "min", "max", "count"] });
    expectMatches(body.windows, expectedWindows(["sensor_1", "sensor_2"], T0, T0 + 10 * MIN, MIN, MIN), [
      "mean",
      "min",
      "max",
      "count",
    ]);
    // sensor_2 is silent from 3m to 6m: those windows are omitted, not reported empty.
    expect(body.windows.filter((w) => w.sensor_id === "sensor_2").map((w) => w.window_start)).toEqual(
      [0, 1, 2, 6].map((m) => isoAt(T0 + m * MIN)),
    );
  });

  it("computes every function exactly over 2-minute windows, with null stddev for a lone reading", async () => {
    const fnQuery = FNS.map((f) => `fn=${f}`).join("&");
    const { status, body } = await get<{ windows: Window[] }>(
      url(
        `${fnQuery}&window=2m&sensor_id=sensor_1&sensor_id=sensor_2&start=${isoAt(T0)}&stop=${isoAt(T0 + 10 * MIN)}`,
      ),
    );
    expect(status).toBe(200);
    const expected = expectedWindows(["sensor_1", "sensor_2"], T0, T0 + 10 * MIN, 2 * MIN, 2 * MIN);
    expectMatches(body.windows, expected, FNS);
    const lone = body.windows.find(
      (w) => w.sensor_id === "sensor_2" && w.window_start === isoAt(T0 + 6 * MIN),
    );
    expect(lone).toMatchObject({ count: 1, stddev: null, median: 12.5, p99: 12.5 });
  });

  it("returns only the requested functions, in the documented order", async () => {
    const { body } = await get<{ windows: Window[]; fn: string[] }>(
      url(`fn=p95&fn=sum&window=5m&sensor_id=sensor_1&start=${isoAt(T0)}&stop=${isoAt(T0 + 10 * MIN)}`),
    );
    expect(body.fn).toEqual(["sum", "p95"]);
    expectMatches(body.windows, expectedWindows(["sensor_1"], T0, T0 + 10 * MIN, 5 * MIN, 5 * MIN), [
      "sum",
      "p95",
    ]);
  });

  it("computes sliding windows (every < window): each overlapping window whole, none clipped", async () => {
    const start = T0 + 2 * MIN + 30_000;
    const stop = T0 + 6 * MIN + 20_000;
    const { status, body } = await get<{ windows: Window[] }>(
      url(`window=3m&every=1m&fn=mean&fn=count&fn=max&start=${isoAt(start)}&stop=${isoAt(stop)}`),
    );
    expect(status).toBe(200);
    const expected = expectedWindows(["sensor_1", "sensor_2", "sensor_3"], start, stop, MIN, 3 * MIN);
    // The first window starts 2 minutes before the range (it overlaps start), the last at 6m.
    expect(expected[0]?.window_start).toBe(isoAt(T0));
    expectMatches(body.windows, expected, ["mean", "max", "count"]);
    expect(body.windows.filter((w) => w.sensor_id === "sensor_1")).toHaveLength(7);
  });

  it("widens a range edge inside a tumbling window to the whole window", async () => {
    const start = T0 + 90_000;
    const stop = T0 + 150_000;
    const { body } = await get<{ windows: Window[] }>(
      url(`sensor_id=sensor_1&start=${isoAt(start)}&stop=${isoAt(stop)}`),
    );
    expectMatches(body.windows, expectedWindows(["sensor_1"], start, stop, MIN, MIN), [
      "mean",
      "min",
      "max",
      "count",
    ]);
    expect(body.windows.map((w) => [w.window_start, w.count])).toEqual([
      [isoAt(T0 + MIN), 6],
      [isoAt(T0 + 2 * MIN), 6],
    ]);
  });

  it("serves all sensors when none is named, and one when one is", async () => {
    const range = `start=${isoAt(T0)}&stop=${isoAt(T0 + 10 * MIN)}&window=10m&fn=count`;
    const all = await get<{ windows: Window[] }>(url(range));
    expect(all.body.windows.map((w) => [w.sensor_id, w.count])).toEqual([
      ["sensor_1", 60],
      ["sensor_2", 13],
      ["sensor_3", 4],
    ]);
    const one = await get<{ windows: Window[] }>(url(`${range}&sensor_id=sensor_3`));
    expect(one.body.windows.map((w) => [w.sensor_id, w.count])).toEqual([["sensor_3", 4]]);
  });

  it("rejects every > window, unknown functions and too many windows with problem details", async () => {
    const hop = await get<{ detail: string }>(url("window=1m&every=2m"));
    expect(hop.status).toBe(422);
    expect(hop.body.detail).toContain("every=2m");
    const fn = await get<{ detail: string }>(url("fn=mode"));
    expect(fn.status).toBe(400);
    expect(fn.body.detail).toContain("fn");
    const many = await get<{ detail: string }>(url("window=1s&start=-30d"));
    expect(many.status).toBe(422);
    expect(many.body.detail).toContain("larger window");
  });

  it("gives each sensor's latest complete window at a time", async () => {
    const at = T0 + 5 * MIN + 30_000;
    const { status, body } = await get<{ windows: Window[]; at: string }>(
      `${api.url}/v1/aggregates/latest?at=${isoAt(at)}&lookback=1h`,
    );
    expect(status).toBe(200);
    expect(body.at).toBe(isoAt(at));
    // sensor_1's minute 5 is still open at 5m30s, so minute 4 is its latest complete one; sensor_2 fell
    // silent after minute 2, sensor_3 after minute 2 (its last reading is at 2m).
    const want = [
      ["sensor_1", T0 + 4 * MIN],
      ["sensor_2", T0 + 2 * MIN],
      ["sensor_3", T0 + 2 * MIN],
    ] as const;
    const expected = want.map(
      ([sensor, ws]) => expectedWindows([sensor], ws, ws + MIN, MIN, MIN)[0] as Expected,
    );
    expectMatches(body.windows, expected, ["mean", "min", "max", "count"]);
    const seed = await get<{ windows: Window[] }>(
      `${api.url}/v1/aggregates/latest?at=${isoAt(T0 + 7 * MIN)}&sensor_id=sensor_2&fn=mean`,
    );
    expect(seed.body.windows).toEqual([
      {
        sensor_id: "sensor_2",
        window_start: isoAt(T0 + 6 * MIN),
        window_end: isoAt(T0 + 7 * MIN),
        mean: 12.5,
      },
    ]);
    const silent = await get<{ windows: Window[] }>(
      `${api.url}/v1/aggregates/latest?at=${isoAt(T0 + 3 * 3_600_000)}&lookback=1h`,
    );
    expect(silent.body.windows).toEqual([]);
  });
});
