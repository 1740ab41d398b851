/**
 * The one aggregate of a set of readings. Event-time windows, rollup tiers and the API's answers all
 * hold this and merge it by adding counts and sums; the mean and the deviation are derived when read,
 * never stored, so a rollup of rollups equals a rollup of the raw readings.
 */

export interface Aggregate {
  count: number;
  sum: number;
  /** Sum of squares: with count and sum it gives the variance, and it adds up across windows. */
  sumsq: number;
  min: number;
  max: number;
  /** The earliest reading (by event time) and its time; on a tie, the one seen first. */
  first: number;
  firstTime: number;
  /** The latest reading (by event time) and its time; on a tie, the one seen last. */
  last: number;
  lastTime: number;
}

export function aggregateOf(value: number, time: number): Aggregate {
  return {
    count: 1,
    sum: value,
    sumsq: value * value,
    min: value,
    max: value,
    first: value,
    firstTime: time,
    last: value,
    lastTime: time,
  };
}

/** Adds one reading in place (the hot path allocates nothing). */
export function addReading(a: Aggregate, value: number, time: number): void {
  a.count++;
  a.sum += value;
  a.sumsq += value * value;
  if (value < a.min) a.min = value;
  if (value > a.max) a.max = value;
  if (time < a.firstTime) {
    a.first = value;
    a.firstTime = time;
  }
  if (time >= a.lastTime) {
    a.last = value;
    a.lastTime = time;
  }
}

/** The aggregate of both sets; `b` is taken as the later-seen one on time ties. */
export function mergeAggregates(a: Aggregate, b: Aggregate): Aggregate {
  const earlier = b.firstTime < a.firstTime ? b : a;
  const later = b.lastTime >= a.lastTime ? b : a;
  return {
    count: a.count + b.count,
    sum: a.sum + b.sum,
    sumsq: a.sumsq + b.sumsq,
    min: Math.min(a.min, b.min),
    max: Math.max(a.max, b.max),
    first: earlier.first,
    firstTime: earlier.firstTime,
    last: later.last,
    lastTime: later.lastTime,
  };
}

export function meanOf(a: Pick<Aggregate, "count" | "sum">): number {
  return a.sum / a.count;
}

/**
 * Sample standard deviation (n − 1), null for fewer than two readings. From sums it loses precision
 * only when the spread is below about 1e-7 of the values' magnitude; it never goes negative.
 */
export function stddevOf(a: Pick<Aggregate, "count" | "sum" | "sumsq">): number | null {
  if (a.count < 2) return null;
  const variance = (a.sumsq - (a.sum * a.sum) / a.count) / (a.count - 1);
  return variance > 0 ? Math.sqrt(variance) : 0;
}
