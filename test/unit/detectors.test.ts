import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type Anomaly,
  DEFAULT_DETECTORS,
  type DetectorConfig,
  type DetectorName,
  detect,
  detectInOrder,
  type FieldState,
  newFieldState,
} from "../../ingest/detectors.js";
import { prng } from "../../ingest/simulation.js";

/** A config where only `name` can fire, so each detector is tested alone. */
function only(name: DetectorName, overrides: Partial<DetectorConfig> = {}): DetectorConfig {
  const off: DetectorConfig = {
    delta: { threshold: Number.MAX_VALUE },
    zscore: { window: 10, threshold: Number.MAX_VALUE, minSamples: 2 },
    ewma: { alpha: 0.1, threshold: Number.MAX_VALUE, warmup: 1 },
  };
  return { ...off, [name]: DEFAULT_DETECTORS[name], ...overrides };
}

function run(series: number[], config: DetectorConfig, state: FieldState = newFieldState()): Anomaly[][] {
  return series.map((x) => detect(state, x, config));
}

function flaggedAt(results: Anomaly[][], name: DetectorName): number[] {
  return results.flatMap((found, i) => (found.some((a) => a.detector === name) ? [i] : []));
}

/** Deterministic noise in [-amplitude, amplitude). */
function noisy(length: number, level: number, amplitude: number, seed: number): number[] {
  const random = prng(seed);
  return Array.from({ length }, () => level + (random() * 2 - 1) * amplitude);
}

// -0 is left out: a JSON round trip writes it as 0, which is the same reading.
const saneDouble = fc.double({ min: -1000, max: 1000, noNaN: true }).map((x) => (x === 0 ? 0 : x));
/** Sensor-like values: fast-check's doubles lean to edge cases (equal, tiny), these spread out. */
const sensorValue = fc.oneof(
  { arbitrary: fc.integer({ min: -1_000_000, max: 1_000_000 }).map((i) => i / 1000), weight: 3 },
  { arbitrary: saneDouble, weight: 1 },
);

describe("delta", () => {
  it("flags exactly when |x - previous| > threshold", () => {
    fc.assert(
      fc.property(
        fc.array(saneDouble, { minLength: 1, maxLength: 50 }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        (series, threshold) => {
          const config = only("delta", { delta: { threshold } });
          const results = run(series, config);
          expect(results[0]).toEqual([]);
          for (let i = 1; i < series.length; i++) {
            const prev = series[i - 1] as number;
            const x = series[i] as number;
            const expected =
              Math.abs(x - prev) > threshold
                ? [{ detector: "delta", value: x, score: Math.abs(x - prev), threshold, expected: prev }]
                : [];
            expect(results[i]).toEqual(expected);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("does not flag a step equal to the threshold", () => {
    const config = only("delta", { delta: { threshold: 5 } });
    expect(flaggedAt(run([10, 15, 20.5, 15.5], config), "delta")).toEqual([2]);
  });
});

describe("zscore", () => {
  function naiveStats(previous: number[]): { mean: number; std: number } {
    const mean = previous.reduce((s, v) => s + v, 0) / previous.length;
    const variance = previous.reduce((s, v) => s + (v - mean) * (v - mean), 0) / previous.length;
    return { mean, std: Math.sqrt(variance) };
  }

  it("matches a direct mean/stddev of the previous `window` values", () => {
    let compared = 0;
    const configArb = fc
      .record({
        window: fc.integer({ min: 2, max: 20 }),
        minSamples: fc.integer({ min: 2, max: 20 }),
        threshold: fc.double({ min: 0.5, max: 4, noNaN: true }),
      })
      .map((z) => ({ ...z, minSamples: Math.min(z.minSamples, z.window) }));
    fc.assert(
      fc.property(
        configArb,
        fc.array(sensorValue, { minLength: 1, maxLength: 120, size: "max" }),
        (z, series) => {
          const results = run(series, only("zscore", { zscore: z }));
          for (let i = 0; i < series.length; i++) {
            const x = series[i] as number;
            const previous = series.slice(Math.max(0, i - z.window), i);
            const found = (results[i] as Anomaly[]).filter((a) => a.detector === "zscore");
            if (previous.length < z.minSamples) {
              expect(found).toEqual([]);
              continue;
            }
            const { mean, std } = naiveStats(previous);
            // The detector keeps running sums, recomputed every `window` pushes, so their rounding
            // error scales with the values that went through them since: up to 2 windows back. Where
            // the spread is lost in that error (a flat or nearly flat window) the two computations
            // cannot agree, so only well-conditioned windows are compared here.
            const scale = Math.max(1, ...series.slice(Math.max(0, i - 2 * z.window), i).map(Math.abs));
            if (std < 1e-4 * scale) continue;
            const score = Math.abs(x - mean) / std;
            if (Math.abs(score - z.threshold) < 1e-6 * z.threshold) continue;
            compared++;
            if (score > z.threshold) {
              expect(found).toHaveLength(1);
              const anomaly = found[0] as Anomaly;
              expect(anomaly.value).toBe(x);
              expect(anomaly.threshold).toBe(z.threshold);
              expect(Math.abs(anomaly.score - score)).toBeLessThanOrEqual(1e-6 * score);
              expect(Math.abs(anomaly.expected - mean)).toBeLessThanOrEqual(1e-9 * scale);
            } else {
              expect(found).toEqual([]);
            }
          }
        },
      ),
      { numRuns: 200 },
    );
    // The comparison above must not be vacuous.
    expect(compared).toBeGreaterThan(1000);
  });

  it("flags a spike in a noisy series and uses only the previous `window` values", () => {
    const series = noisy(40, 20, 0.1, 7);
    series[25] = 25;
    const config = only("zscore", { zscore: { window: 10, threshold: 4, minSamples: 5 } });
    const results = run(series, config);
    expect(flaggedAt(results, "zscore")).toEqual([25]);
    const anomaly = (results[25] as Anomaly[])[0] as Anomaly;
    const previous = series.slice(15, 25);
    const mean = previous.reduce((s, v) => s + v, 0) / 10;
    expect(anomaly.expected).toBeCloseTo(mean, 9);
  });

  it("waits for minSamples before flagging", () => {
    const config = only("zscore", { zscore: { window: 10, threshold: 1, minSamples: 4 } });
    // After 3 samples the spike is not judged; after 4 it is.
    expect(flaggedAt(run([1, 2, 1, 100], config), "zscore")).toEqual([]);
    expect(flaggedAt(run([1, 2, 1, 2, 100], config), "zscore")).toEqual([4]);
  });

  it("stays exact over many window lengths despite periodic recomputes", () => {
    const z = { window: 7, threshold: 2, minSamples: 7 };
    const series = noisy(500, 1000, 50, 3);
    for (let i = 50; i < 500; i += 37) series[i] = 1300;
    const results = run(series, only("zscore", { zscore: z }));
    for (let i = 7; i < series.length; i++) {
      const { mean, std } = naiveStats(series.slice(i - 7, i));
      const score = Math.abs((series[i] as number) - mean) / std;
      expect(flaggedAt([results[i] as Anomaly[]], "zscore").length, `reading ${i}`).toBe(score > 2 ? 1 : 0);
    }
  });
});

describe("ewma", () => {
  it("never flags a constant series", () => {
    fc.assert(
      fc.property(saneDouble, fc.integer({ min: 1, max: 200 }), (value, length) => {
        const results = run(Array(length).fill(value), DEFAULT_DETECTORS);
        expect(results.flat()).toEqual([]);
      }),
      { numRuns: 100 },
    );
  });

  it("flags two spikes a few readings apart: the first does not mask the second", () => {
    const series = noisy(80, 20, 0.1, 11);
    series[50] = 30;
    series[54] = 30;
    const results = run(series, only("ewma"));
    expect(flaggedAt(results, "ewma")).toEqual([50, 54]);
    for (const i of [50, 54]) {
      const anomaly = (results[i] as Anomaly[])[0] as Anomaly;
      expect(anomaly.value).toBe(30);
      expect(anomaly.threshold).toBe(DEFAULT_DETECTORS.ewma.threshold);
      expect(anomaly.score).toBeGreaterThan(DEFAULT_DETECTORS.ewma.threshold);
      expect(Math.abs(anomaly.expected - 20)).toBeLessThan(1);
    }
  });

  it("judges a reading only once `warmup` readings came before it", () => {
    const { warmup } = DEFAULT_DETECTORS.ewma;
    const inWarmup = noisy(20, 20, 0.1, 5);
    inWarmup[warmup - 1] = 100;
    expect(flaggedAt(run(inWarmup, only("ewma")), "ewma")).toEqual([]);
    const afterWarmup = noisy(20, 20, 0.1, 5);
    afterWarmup[warmup] = 100;
    expect(flaggedAt(run(afterWarmup, only("ewma")), "ewma")).toEqual([warmup]);
  });
});

describe("state", () => {
  it("runs the same after a JSON round trip of the state at any point", () => {
    const configArb = fc.record({
      delta: fc.record({ threshold: fc.double({ min: 0, max: 50, noNaN: true }) }),
      zscore: fc
        .record({
          window: fc.integer({ min: 2, max: 15 }),
          threshold: fc.double({ min: 0.5, max: 4, noNaN: true }),
          minSamples: fc.integer({ min: 2, max: 15 }),
        })
        .map((z) => ({ ...z, minSamples: Math.min(z.minSamples, z.window) })),
      ewma: fc.record({
        alpha: fc.double({ min: 0.01, max: 1, noNaN: true }),
        threshold: fc.double({ min: 0.5, max: 6, noNaN: true }),
        warmup: fc.integer({ min: 1, max: 10 }),
      }),
    });
    fc.assert(
      fc.property(
        configArb,
        fc.array(sensorValue, { maxLength: 100, size: "max" }),
        fc.nat(),
        (config, series, cut) => {
          const split = series.length === 0 ? 0 : cut % (series.length + 1);
          const whole = run(series, config);
          const first = newFieldState();
          const before = run(series.slice(0, split), config, first);
          const restored = JSON.parse(JSON.stringify(first)) as FieldState;
          const after = run(series.slice(split), config, restored);
          expect([...before, ...after]).toEqual(whole);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("keeps the ring bounded by the window", () => {
    const state = newFieldState();
    run(noisy(100, 0, 1, 1), DEFAULT_DETECTORS, state);
    expect(state.ring).toHaveLength(DEFAULT_DETECTORS.zscore.window);
    expect(state.n).toBe(100);
  });
});

describe("ewma on a perfectly flat baseline", () => {
  it("flags both of two spikes a few readings apart", () => {
    const state = newFieldState();
    const flagged: number[] = [];
    const series = [...Array(30).fill(20), 30, 20, 20, 20, 30];
    series.forEach((x, i) => {
      if (detect(state, x, DEFAULT_DETECTORS).some((a) => a.detector === "ewma")) flagged.push(i);
    });
    expect(flagged).toEqual([30, 34]);
  });
});

describe("a tiny spread next to a large value", () => {
  // Pressure in Pa (101325 ± 1) and a coordinate-like reading (52.52 ± 1e-5): the noise is 1e-5 and
  // 2e-7 of the level, where Σx² − n·mean² loses it to rounding and a spread floor of a fixed
  // fraction of the level hides it.
  for (const { level, amplitude, spike } of [
    { level: 101_325, amplitude: 1, spike: 20 },
    { level: 52.52, amplitude: 1e-5, spike: 2e-4 },
  ]) {
    it(`${level} ± ${amplitude}: z-score and EWMA flag a ${spike} spike and nothing else`, () => {
      const series = noisy(80, level, amplitude, 13);
      series[60] = level + spike;
      const z = only("zscore");
      const zResults = run(series, z);
      expect(flaggedAt(zResults, "zscore")).toEqual([60]);
      const previous = series.slice(60 - DEFAULT_DETECTORS.zscore.window, 60);
      const mean = previous.reduce((s, v) => s + v, 0) / previous.length;
      const std = Math.sqrt(previous.reduce((s, v) => s + (v - mean) ** 2, 0) / previous.length);
      const anomaly = (zResults[60] as Anomaly[])[0] as Anomaly;
      expect(Math.abs(anomaly.score - spike / std)).toBeLessThan(0.05 * (spike / std) + 1);
      expect(flaggedAt(run(series, only("ewma")), "ewma")).toEqual([60]);
    });
  }

  it("still flags nothing on the same series without a spike", () => {
    for (const [level, amplitude] of [
      [101_325, 1],
      [52.52, 1e-5],
    ] as const) {
      expect(run(noisy(200, level, amplitude, 17), DEFAULT_DETECTORS).flat()).toEqual([]);
    }
  });
});

describe("event-time order per sensor and field", () => {
  it("feeds a reading only when it is later than every reading the state consumed", () => {
    const state = newFieldState();
    expect(detectInOrder(state, 1_000, 20, DEFAULT_DETECTORS)).toEqual([]);
    const before = JSON.stringify(state);
    expect(detectInOrder(state, 1_000, 40, DEFAULT_DETECTORS)).toBeUndefined();
    expect(detectInOrder(state, 500, 40, DEFAULT_DETECTORS)).toBeUndefined();
    expect(JSON.stringify(state)).toBe(before);
    expect(detectInOrder(state, 2_000, 21, DEFAULT_DETECTORS)).toEqual([]);
    expect(state.n).toBe(2);
  });

  it("an out-of-order reading between two readings does not make the delta detector flag twice", () => {
    const state = newFieldState();
    const delta = only("delta");
    const flags = [
      [1_000, 20],
      [3_000, 30],
      [2_000, 21],
      [4_000, 31],
    ].map(([time, x]) => detectInOrder(state, time as number, x as number, delta));
    expect(flags.map((f) => (f === undefined ? "late" : f.map((a) => a.detector).join()))).toEqual([
      "",
      "delta",
      "late",
      "",
    ]);
  });

  it("a state checkpointed before event times were kept takes the next reading", () => {
    const state = newFieldState();
    detect(state, 20, DEFAULT_DETECTORS);
    const restored = JSON.parse(JSON.stringify(state)) as FieldState;
    expect(detectInOrder(restored, 0, 21, DEFAULT_DETECTORS)).toEqual([]);
  });
});
