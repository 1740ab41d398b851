/** Query parameters shared by several routes, and their checks beyond what JSON Schema can say. */
import { Type } from "@sinclair/typebox";
import {
  MAX_SENSOR_ID_BYTES,
  SENSOR_ID_PATTERN,
  SENSOR_ID_RULE,
  SENSOR_ID_SOURCE,
} from "../common/reading.js";
import { durationToMs } from "../common/rules.js";
import { badRequest, tooLarge, unprocessable } from "./problem.js";

export const DURATION_PATTERN = "^[1-9][0-9]{0,8}(ms|s|m|h|d)$";
/** A duration parameter in ms; the parsing is the rules' own, the error a 400 problem. */
export function durationMs(text: string): number {
  try {
    return durationToMs(text);
  } catch {
    throw badRequest(`duration ${JSON.stringify(text)} is not valid: use e.g. 10s, 1m, 1h, 1d`);
  }
}

/** Relative times: a duration before now. */
export const RELATIVE_TIME_PATTERN = "^-[1-9][0-9]{0,8}(ms|s|m|h|d)$";
/**
 * Epoch milliseconds: 12 or 13 digits (1973-03-03 to 2286-11-20). Fewer digits are refused: a
 * 10-digit number is far more likely epoch seconds than a time in January 1970.
 */
export const EPOCH_MS_PATTERN = "^[1-9][0-9]{11,12}$";
const TIME_FORMS =
  "RFC 3339 with a zone (2024-10-27T03:33:20Z, 2024-10-27T05:33:20.5+02:00), epoch milliseconds (12–13 digits, 1730000000000), or a duration before now (-1h)";

export const TimeParam = Type.Union(
  [
    Type.String({ pattern: RELATIVE_TIME_PATTERN }),
    Type.String({ pattern: EPOCH_MS_PATTERN }),
    Type.String({ format: "date-time" }),
  ],
  { description: TIME_FORMS, examples: ["-1h", "2024-10-27T03:33:20Z", "1730000000000"] },
);

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

/**
 * Parses a start/stop/at parameter into epoch ms. A text that is none of the accepted forms (or a
 * date that does not exist, like February 30th) is a 400; a well-formed time outside what storage
 * can hold is a 422 (the schema cannot say it).
 */
export function parseTime(text: string, name: string, now: number): number {
  const ms = parseTimeText(text, now);
  if (ms === undefined) {
    throw badRequest(`${name}=${JSON.stringify(text)} is not valid: use ${TIME_FORMS}`);
  }
  if (ms >= MIN_TIME && ms <= MAX_TIME) return ms;
  throw unprocessable(
    `${name}=${JSON.stringify(text)} is ${Number.isFinite(ms) && Math.abs(ms) < 8.64e15 ? new Date(ms).toISOString() : "out of range"}: use a time between ${new Date(MIN_TIME).toISOString()} and ${new Date(MAX_TIME).toISOString()}`,
  );
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const leapYear = (y: number) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
/** RFC 3339 date-time, as the schema's `date-time` format (ajv-formats) accepts it. */
const DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:[Zz]|([+-])(\d{2})(?::?(\d{2}))?)$/;

/** Epoch ms of an RFC 3339 date-time, or undefined when it is malformed or names a day that does not exist. */
export function parseDateTime(text: string): number | undefined {
  const m = DATE_TIME.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as number[] as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const zoneH = Number(m[9] ?? 0);
  const zoneM = Number(m[10] ?? 0);
  const monthDays = month === 2 && leapYear(year) ? 29 : (DAYS_IN_MONTH[month - 1] ?? 0);
  if (month < 1 || month > 12 || day < 1 || day > monthDays) return undefined;
  if (hour > 23 || minute > 59 || second > 60 || zoneH > 23 || zoneM > 59) return undefined;
  const offset = (m[8] === "-" ? -1 : 1) * (zoneH * 60 + zoneM) * 60_000;
  const fraction = m[7] ? Math.floor(Number(`0${m[7]}`) * 1000) : 0;
  // A leap second (23:59:60 UTC) is counted as the last millisecond of its minute.
  const ms = Date.UTC(year, month - 1, day, hour, minute, Math.min(second, 59)) - offset;
  if (second === 60) {
    const utc = new Date(ms);
    if (utc.getUTCHours() !== 23 || utc.getUTCMinutes() !== 59) return undefined;
    return ms + 999;
  }
  return ms + fraction;
}

function parseTimeText(text: string, now: number): number | undefined {
  if (new RegExp(RELATIVE_TIME_PATTERN).test(text)) return now - durationMs(text.slice(1));
  if (new RegExp(EPOCH_MS_PATTERN).test(text)) return Number(text);
  return parseDateTime(text);
}

/**
 * A duration parameter (window, every, gap, lookback) no longer than the widest range a query may
 * cover. The schema's pattern says what a duration is; the limit is configuration: 422.
 */
export function durationParam(text: string, name: string, maxRangeMs: number): number {
  const ms = durationMs(text);
  if (ms > maxRangeMs) {
    throw tooLarge(
      `${name}=${text} is longer than the widest range a query may cover (${maxRangeMs / 86_400_000} days): use at most ${Math.floor(maxRangeMs / 3_600_000)}h`,
    );
  }
  return ms;
}

/** The range a query covers when it names no start: the hour before stop. */
export const DEFAULT_RANGE_MS = 3_600_000;

export interface TimeRange {
  start: number;
  stop: number;
}

/**
 * The [start, stop) range of a query. `stop` alone is fine: start is then `stop` − 1h. A range that
 * is empty or reversed is a 422: each time is valid alone, only together they ask for nothing.
 */
export function parseRange(
  query: { start?: string; stop?: string },
  maxRangeMs: number,
  now = Date.now(),
): TimeRange {
  const stop = query.stop === undefined ? now : parseTime(query.stop, "stop", now);
  const start =
    query.start === undefined
      ? Math.max(MIN_TIME, stop - DEFAULT_RANGE_MS)
      : parseTime(query.start, "start", now);
  if (stop <= start)
    throw unprocessable(
      `stop (${new Date(stop).toISOString()}) must be after start (${new Date(start).toISOString()}): the range [start, stop) is empty`,
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
  pattern: "^[A-Za-z0-9_-]{1,2048}$",
  description: "next_cursor from the previous page, unchanged; omit for the first page",
});

/** A default start that covers the widest range a query may have. */
export function widestStart(maxRangeMs: number, now = Date.now()): string {
  return String(now - maxRangeMs);
}

/**
 * Epoch ms as RFC 3339 UTC with milliseconds, as Date#toISOString writes it, computed from the
 * day number (civil-from-days) without a Date: answers format tens of thousands of times.
 */
export function iso(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0 || ms >= MAX_FOUR_DIGIT_YEAR_MS) return new Date(ms).toISOString();
  const days = Math.floor(ms / 86_400_000);
  const inDay = ms - days * 86_400_000;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const h = Math.floor(inDay / 3_600_000);
  const m = Math.floor(inDay / 60_000) % 60;
  const sec = Math.floor(inDay / 1000) % 60;
  const milli = inDay % 1000;
  return `${year}-${two(month)}-${two(day)}T${two(h)}:${two(m)}:${two(sec)}.${milli < 10 ? "00" : milli < 100 ? "0" : ""}${milli}Z`;
}
/** 10000-01-01T00:00:00Z: from then on toISOString writes a six-digit year. */
const MAX_FOUR_DIGIT_YEAR_MS = 253_402_300_800_000;
const TWO = Array.from({ length: 60 }, (_, i) => (i < 10 ? `0${i}` : `${i}`));
function two(n: number): string {
  return TWO[n] as string;
}

/**
 * InfluxDB's RFC 3339 UTC time (`2026-12-01T10:20:30Z`, maybe with a fraction) in epoch ms,
 * read digit by digit: many times faster than Date.parse, which the rare other form falls back to.
 */
export function epochMs(time: string): number {
  if (time.length < 20 || time.charCodeAt(10) !== 84 || time.charCodeAt(time.length - 1) !== 90) {
    return Date.parse(time);
  }
  let ms = 0;
  if (time.charCodeAt(19) === 46) {
    for (let i = 20, scale = 100; i < time.length - 1 && i < 23; i++, scale /= 10) {
      ms += (time.charCodeAt(i) - 48) * scale;
    }
  } else if (time.length !== 20) return Date.parse(time);
  return (
    daysFromCivil(digits(time, 0, 4), digits(time, 5, 2), digits(time, 8, 2)) * 86_400_000 +
    digits(time, 11, 2) * 3_600_000 +
    digits(time, 14, 2) * 60_000 +
    digits(time, 17, 2) * 1000 +
    ms
  );
}

/** Days since 1970-01-01 of a proleptic Gregorian date (month 1–12): `iso`'s inverse, no Date. */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/** The decimal number of `length` digits at `at` (a module function: no closure per call). */
function digits(text: string, at: number, length: number): number {
  let n = 0;
  for (let i = at; i < at + length; i++) n = n * 10 + text.charCodeAt(i) - 48;
  return n;
}

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
