/**
 * Streaming anomaly detectors, per sensor and field, O(1) time and bounded memory per reading.
 * All state is plain JSON-serialisable data so it can be checkpointed to the changelog and restored
 * bit-for-bit: a replay after a restore flags exactly what an uninterrupted run flags.
 */

export type DetectorName = "delta" | "zscore" | "ewma";

export interface DetectorConfig {
  /** The seed's check: |x - previous| > threshold (same unit as the field). */
  delta: { threshold: number };
  /** |x - mean| / stddev over the previous `window` readings > threshold. */
  zscore: { window: number; threshold: number; minSamples: number };
  /**
   * Robust EWMA: deviations are clipped at `threshold` sigmas before updating, so one spike does not
   * mask the next; sigma is at least SPREAD_FLOOR of the level.
   */
  ewma: { alpha: number; threshold: number; warmup: number };
}

export const DEFAULT_DETECTORS: DetectorConfig = {
  delta: { threshold: 5 },
  zscore: { window: 30, threshold: 4, minSamples: 10 },
  ewma: { alpha: 0.1, threshold: 5, warmup: 10 },
};

/**
 * The smallest spread either detector assumes, relative to the level. Far above float rounding
 * (~1e-16), far below any real sensor's noise: 101325 Pa ± 1 and 52.52 ± 1e-5 are both measurable.
 */
export const SPREAD_FLOOR = 1e-9;

export interface FieldState {
  /** Previous value, or null before the first reading. */
  prev: number | null;
  /** Ring buffer of the last `window` values, oldest at `head` once full. */
  ring: number[];
  head: number;
  /**
   * Welford's running mean and sum of squared deviations of the ring: unlike Σx² − n·mean², they
   * keep their precision when the spread is tiny next to the value.
   */
  windowMean: number;
  windowM2: number;
  /** Pushes since the window statistics were last recomputed from the ring (bounds drift). */
  sinceRecompute: number;
  /** EWMA level and variance. */
  mean: number;
  variance: number;
  n: number;
  /** Event time of the latest reading fed in (absent before the first, and in older checkpoints). */
  lastTime?: number;
  /**
   * Wall-clock arrival of the latest reading fed in, for the state TTL (set by the partition task;
   * absent in older checkpoints).
   */
  seenAt?: number;
}

export interface Anomaly {
  detector: DetectorName;
  value: number;
  /** How far out the value is: |Δ| for delta, sigmas for zscore and ewma. */
  score: number;
  threshold: number;
  /** What the detector expected: the previous value or the baseline mean. */
  expected: number;
}

export function newFieldState(): FieldState {
  return {
    prev: null,
    ring: [],
    head: 0,
    windowMean: 0,
    windowM2: 0,
    sinceRecompute: 0,
    mean: 0,
    variance: 0,
    n: 0,
  };
}

/**
 * Feeds a reading at event time `time` to the detectors of its sensor and field, in event-time
 * order: only a reading later than every one the state already consumed is fed. One at or before
 * that time (out of order, or a duplicate) returns undefined and leaves the state untouched: it is
 * still stored, but it neither flags nor shifts the baseline, so a late value between two readings
 * cannot make the delta detector flag the jump twice. Arrival order decides nothing else, so any
 * batching of the same stream gives the same flags.
 */
export function detectInOrder(
  state: FieldState,
  time: number,
  x: number,
  config: DetectorConfig,
): Anomaly[] | undefined {
  if (state.lastTime !== undefined && time <= state.lastTime) return undefined;
  state.lastTime = time;
  return detect(state, x, config);
}

/** Runs every detector on `x`, updates `state` in place, and returns the anomalies it found. */
export function detect(state: FieldState, x: number, config: DetectorConfig): Anomaly[] {
  const found: Anomaly[] = [];

  if (state.prev !== null) {
    const delta = Math.abs(x - state.prev);
    if (delta > config.delta.threshold) {
      found.push({
        detector: "delta",
        value: x,
        score: delta,
        threshold: config.delta.threshold,
        expected: state.prev,
      });
    }
  }
  state.prev = x;

  const z = config.zscore;
  // State checkpointed before the window statistics existed carries only the ring.
  if (!Number.isFinite(state.windowM2) || !Number.isFinite(state.windowMean)) recompute(state);
  const count = state.ring.length;
  if (count >= z.minSamples) {
    const mean = state.windowMean;
    const std = spread(state.windowM2 / count, mean);
    if (std > 0) {
      const score = finite(Math.abs(x - mean) / std);
      if (score > z.threshold)
        found.push({ detector: "zscore", value: x, score, threshold: z.threshold, expected: mean });
    }
  }
  pushWindow(state, x, z.window);

  const e = config.ewma;
  if (state.n === 0) {
    state.mean = x;
    state.variance = 0;
  } else {
    // A perfectly flat baseline has no spread at all; the floor keeps a spike on it measurable (and
    // clipped), so it neither goes unflagged nor masks the next one.
    const std = spread(state.variance, state.mean);
    let deviation = x - state.mean;
    if (state.n >= e.warmup && std > 0) {
      const score = finite(Math.abs(deviation) / std);
      if (score > e.threshold) {
        found.push({ detector: "ewma", value: x, score, threshold: e.threshold, expected: state.mean });
      }
      const limit = e.threshold * std;
      deviation = Math.max(-limit, Math.min(limit, deviation));
    }
    state.mean += e.alpha * deviation;
    state.variance = (1 - e.alpha) * (state.variance + e.alpha * deviation * deviation);
  }
  state.n++;
  return found;
}

/** Scores are stored as floats; an overflow (huge jump over a tiny spread) is the largest one. */
function finite(score: number): number {
  return Math.min(score, Number.MAX_VALUE);
}

/** The standard deviation for a variance, at least SPREAD_FLOOR of the level (0 for a flat 0). */
function spread(variance: number, level: number): number {
  return Math.max(Math.sqrt(Math.max(0, variance)), SPREAD_FLOOR * Math.abs(level));
}

function pushWindow(state: FieldState, x: number, window: number): void {
  if (state.ring.length < window) {
    state.ring.push(x);
    const d = x - state.windowMean;
    state.windowMean += d / state.ring.length;
    state.windowM2 += d * (x - state.windowMean);
  } else {
    // Replacing `old` by `x` at a constant count: Welford's update for a sliding window.
    const old = state.ring[state.head] as number;
    state.ring[state.head] = x;
    state.head = (state.head + 1) % window;
    const previousMean = state.windowMean;
    state.windowMean += (x - old) / window;
    state.windowM2 += (x - old) * (x - state.windowMean + old - previousMean);
  }
  if (++state.sinceRecompute >= window) recompute(state);
}

/** Two-pass mean and squared deviations of the ring: exact up to rounding, resets any drift. */
function recompute(state: FieldState): void {
  const n = state.ring.length;
  let sum = 0;
  for (const v of state.ring) sum += v;
  const mean = n === 0 ? 0 : sum / n;
  let m2 = 0;
  for (const v of state.ring) m2 += (v - mean) * (v - mean);
  state.windowMean = mean;
  state.windowM2 = m2;
  state.sinceRecompute = 0;
}
