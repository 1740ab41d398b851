/**
 * Event-time tumbling windows with a watermark, per Kafka partition (Kafka Streams' "stream time").
 * The watermark is the largest event time seen on the partition minus the allowed lateness; a
 * window [start, end) is final, and emitted, once the watermark passes `end`. A reading for a
 * window that is already final is late: it is still stored, but counted and routed aside.
 */

export interface WindowConfig {
  sizeMs: number;
  allowedLatenessMs: number;
}

export const DEFAULT_WINDOWS: WindowConfig = { sizeMs: 60_000, allowedLatenessMs: 10_000 };

export interface FieldAggregate {
  count: number;
  sum: number;
  min: number;
  max: number;
}

/** Open windows of one sensor, keyed by window start (epoch ms). */
export type SensorWindows = Record<string, Record<string, FieldAggregate>>;

export interface WindowResult {
  sensor_id: string;
  window_start: number;
  window_end: number;
  /** Readings in the window (the most of any field's count). */
  count: number;
  /** Per field: avg_<field>, min_<field>, max_<field>, count_<field> (the seed's avg_temperature …). */
  [key: string]: string | number;
}

export function windowStart(time: number, sizeMs: number): number {
  return Math.floor(time / sizeMs) * sizeMs;
}

export function watermark(maxEventTime: number, config: WindowConfig): number {
  return maxEventTime - config.allowedLatenessMs;
}

/** True when the reading's window was already final under `maxEventTime`. */
export function isLate(time: number, maxEventTime: number, config: WindowConfig): boolean {
  return windowStart(time, config.sizeMs) + config.sizeMs <= watermark(maxEventTime, config);
}

export function addToWindow(
  windows: SensorWindows,
  time: number,
  fields: Record<string, number>,
  config: WindowConfig,
) {
  const key = String(windowStart(time, config.sizeMs));
  let window = windows[key];
  if (window === undefined) {
    window = {};
    windows[key] = window;
  }
  for (const field in fields) {
    const value = fields[field] as number;
    const agg = window[field];
    if (agg === undefined) window[field] = { count: 1, sum: value, min: value, max: value };
    else {
      agg.count++;
      agg.sum += value;
      if (value < agg.min) agg.min = value;
      if (value > agg.max) agg.max = value;
    }
  }
}

/** Removes and returns, oldest first, the windows of one sensor that the watermark has closed. */
export function closeWindows(
  sensorId: string,
  windows: SensorWindows,
  maxEventTime: number,
  config: WindowConfig,
): WindowResult[] {
  const wm = watermark(maxEventTime, config);
  const closed: WindowResult[] = [];
  for (const key of Object.keys(windows)) {
    const start = Number(key);
    if (start + config.sizeMs > wm) continue;
    const result: WindowResult = {
      sensor_id: sensorId,
      window_start: start,
      window_end: start + config.sizeMs,
      count: 0,
    };
    const fields = windows[key] as Record<string, FieldAggregate>;
    for (const field of Object.keys(fields).sort()) {
      const agg = fields[field] as FieldAggregate;
      result[`avg_${field}`] = agg.sum / agg.count;
      result[`min_${field}`] = agg.min;
      result[`max_${field}`] = agg.max;
      result[`count_${field}`] = agg.count;
      result.count = Math.max(result.count, agg.count);
    }
    closed.push(result);
    delete windows[key];
  }
  return closed.sort((a, b) => a.window_start - b.window_start);
}
