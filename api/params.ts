/** Query parameters shared by several routes, and their checks beyond what JSON Schema can say. */
import { Type } from "@sinclair/typebox";
import {
  MAX_SENSOR_ID_BYTES,
  SENSOR_ID_PATTERN,
  SENSOR_ID_RULE,
  SENSOR_ID_SOURCE,
} from "../common/reading.js";
import { durationToMs } from "../common/rules.js";
import { badRequest, tooLarge } from "./problem.js";

export const DURATION_PATTERN = "^[1-9][0-9]{0,8}(ms|s|m|h|d)$";
/** A duration parameter in ms; the parsing is the rules' own, the error a 400 problem. */
export function durationMs(text: string): number {
  try {
    return durationToMs(text);
  } catch {
    throw badRequest(`duration ${JSON.stringify(text)} is not valid: use e.g. 10s, 1m, 1h, 1d`);
  }
}

export const TimeParam = Type.String({
  description: "RFC 3339 time (2024-10-27T03:33:20Z), epoch milliseconds, or a duration before now (-1h)",
  examples: ["-1h", "2024-10-27T03:33:20Z", "1730000000000"],
});

/**
 * The reading contract's sensor id. JSON Schema counts characters, not bytes: an id of up to 256
 * characters but more than 256 bytes passes here and matches no stored sensor.
 */
export const SensorIdParam = Type.String({
  pattern: SENSOR_ID_SOURCE,
  minLength: 1,
  maxLength: MAX_SENSOR_ID_BYTES,
  description: `A sensor id: ${SENSOR_ID_RULE} (URL-encoded in a path)`,
});
export const FieldParam = Type.String({
  pattern: "^[A-Za-z][A-Za-z0-9_]{0,63}$",
  default: "temperature",
  description: "Numeric field",
});

/** Times a query may name: InfluxDB holds nanoseconds in an int64 (to 2262); windows need slack beyond. */
export const MIN_TIME = 0;
export const MAX_TIME = Date.UTC(2200, 0, 1);

/** Parses a start/stop parameter into epoch ms. */
export function parseTime(text: string, name: string, now: number): number {
  const ms = parseTimeText(text, now);
  if (ms !== undefined && ms >= MIN_TIME && ms <= MAX_TIME) return ms;
  if (ms !== undefined) {
    throw badRequest(
      `${name}=${JSON.stringify(text)} is ${Number.isFinite(ms) && Math.abs(ms) < 8.64e15 ? new Date(ms).toISOString() : "out of range"}: use a time between ${new Date(MIN_TIME).toISOString()} and ${new Date(MAX_TIME).toISOString()}`,
    );
  }
  throw badRequest(
    `${name}=${JSON.stringify(text)} is not valid: use RFC 3339 (2024-10-27T03:33:20Z), epoch ms, or -<duration> (-1h)`,
  );
}

function parseTimeText(text: string, now: number): number | undefined {
  if (/^-\d+(ms|s|m|h|d)$/.test(text)) return now - durationMs(text.slice(1));
  if (/^\d{1,16}$/.test(text)) return Number(text);
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i.test(text)) {
    const ms = Date.parse(text);
    if (!Number.isNaN(ms)) return ms;
  }
  return undefined;
}

/** A duration parameter (window, every, gap, lookback) no longer than the widest range a query may cover. */
export function durationParam(text: string, name: string, maxRangeMs: number): number {
  const ms = durationMs(text);
  if (ms > maxRangeMs) {
    throw badRequest(
      `${name}=${text} is longer than the widest range a query may cover (${maxRangeMs / 86_400_000} days): use at most ${Math.floor(maxRangeMs / 3_600_000)}h`,
    );
  }
  return ms;
}

export interface TimeRange {
  start: number;
  stop: number;
}

export function parseRange(
  query: { start?: string; stop?: string },
  maxRangeMs: number,
  now = Date.now(),
): TimeRange {
  const start = parseTime(query.start ?? "-1h", "start", now);
  const stop = query.stop === undefined ? now : parseTime(query.stop, "stop", now);
  if (stop <= start)
    throw badRequest(
      `stop (${new Date(stop).toISOString()}) must be after start (${new Date(start).toISOString()})`,
    );
  if (stop - start > maxRangeMs) {
    throw tooLarge(
      `the range is ${Math.ceil((stop - start) / 86_400_000)} days; at most ${maxRangeMs / 86_400_000} days per query: narrow start/stop or split the query`,
    );
  }
  return { start, stop };
}

/** Ids that reach InfluxDB as tag values (sensor ids, rule ids): the sensor-id alphabet. */
export const IdParam = (description: string) =>
  Type.String({ pattern: SENSOR_ID_PATTERN.source, description });

export const MAX_PAGE = 1000;
export const LimitParam = Type.Integer({
  minimum: 1,
  maximum: MAX_PAGE,
  default: 100,
  description: `Most items per page (1–${MAX_PAGE})`,
});
export const CursorParam = Type.String({
  maxLength: 2048,
  description: "next_cursor from the previous page, unchanged; omit for the first page",
});

/** A default start that covers the widest range a query may have. */
export function widestStart(maxRangeMs: number, now = Date.now()): string {
  return String(now - maxRangeMs);
}

export const iso = (ms: number) => new Date(ms).toISOString();

/** A string from a fixed set, as a JSON Schema enum so a rejection lists the accepted values. */
export function StringEnum<T extends readonly string[]>(values: T, options: { description?: string } = {}) {
  return Type.Unsafe<T[number]>({ type: "string", enum: [...values], ...options });
}

export const OrderParam = {
  ...StringEnum(["asc", "desc"] as const, {
    description: "asc: oldest first (default); desc: newest first. Keep it the same across the pages.",
  }),
  default: "asc",
};
