/** Query parameters shared by several routes, and their checks beyond what JSON Schema can say. */
import { Type } from "@sinclair/typebox";
import { SENSOR_ID_PATTERN } from "../common/reading.js";
import { badRequest, tooLarge } from "./problem.js";

export const DURATION_PATTERN = "^[1-9][0-9]{0,8}(ms|s|m|h|d)$";
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function durationMs(text: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  if (!match) throw badRequest(`duration ${JSON.stringify(text)} is not valid: use e.g. 10s, 1m, 1h, 1d`);
  return Number(match[1]) * (UNIT_MS[match[2] as string] as number);
}

export const TimeParam = Type.String({
  description: "RFC 3339 time (2024-10-27T03:33:20Z), epoch milliseconds, or a duration before now (-1h)",
  examples: ["-1h", "2024-10-27T03:33:20Z", "1730000000000"],
});

export const SensorIdParam = Type.String({ pattern: SENSOR_ID_PATTERN.source, description: "A sensor id" });
export const FieldParam = Type.String({
  pattern: "^[A-Za-z][A-Za-z0-9_]{0,63}$",
  default: "temperature",
  description: "Numeric field",
});

/** Parses a start/stop parameter into epoch ms. */
export function parseTime(text: string, name: string, now: number): number {
  if (/^-\d+(ms|s|m|h|d)$/.test(text)) return now - durationMs(text.slice(1));
  if (/^\d{1,16}$/.test(text)) return Number(text);
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i.test(text)) {
    const ms = Date.parse(text);
    if (!Number.isNaN(ms)) return ms;
  }
  throw badRequest(
    `${name}=${JSON.stringify(text)} is not valid: use RFC 3339 (2024-10-27T03:33:20Z), epoch ms, or -<duration> (-1h)`,
  );
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
