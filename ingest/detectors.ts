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
   * mask the next; sigma is at least 0.1 % of the level.
   */
  ewma: { alpha: number; threshold: number; warmup: number };
}

export const DEFAULT_DETECTORS: DetectorConfig = {
  delta: { threshold: 5 },
  zscore: { window: 30, threshold: 4, minSamples: 10 },
  ewma: { alpha: 0.1, threshold: 5, warmup: 10 },
};

export interface FieldState {
  /** Previous value, or null before the first reading. */
  prev: number | null;
  /** Ring buffer of the last `window` values, oldest at `head` once full. */
  ring: number[];
  head: number;
  sum: number;
  sumSq: number;
  /** Pushes since the sums were last recomputed from the ring (bounds floating-point drift). */
  sinceRecompute: number;
  mean: number;
  variance: number;
  n: number;
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
  return { prev: null, ring: [], head: 0, sum: 0, sumSq: 0, sinceRecompute: 0, mean: 0, variance: 0, n: 0 };
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
  const count = state.ring.length;
  if (count >= z.minSamples) {
    const mean = state.sum / count;
    // sumSq/n - mean² leaves rounding residue on a flat series (≈1e-12 relative); that is no spread.
    const variance = state.sumSq / count - mean * mean;
    const std = variance > 1e-12 * Math.max(1, mean * mean) ? Math.sqrt(variance) : 0;
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
    // A perfectly flat baseline has no spread at all; a floor of 0.1 % of the level keeps a spike
    // on it measurable (and clipped), so it neither goes unflagged nor masks the next one.
    const std = Math.max(Math.sqrt(state.variance), 1e-3 * Math.abs(state.mean));
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

function pushWindow(state: FieldState, x: number, window: number): void {
  if (state.ring.length < window) {
    state.ring.push(x);
    state.sum += x;
    state.sumSq += x * x;
  } else {
    const old = state.ring[state.head] as number;
    state.ring[state.head] = x;
    state.head = (state.head + 1) % window;
    state.sum += x - old;
    state.sumSq += x * x - old * old;
  }
  if (++state.sinceRecompute >= window) {
    let sum = 0;
    let sumSq = 0;
    for (const v of state.ring) {
      sum += v;
      sumSq += v * v;
    }
    state.sum = sum;
    state.sumSq = sumSq;
    state.sinceRecompute = 0;
  }
}
