/**
 * The input contract: what a message on sensor-readings-raw must be to count as a reading.
 * Everything that fails here goes to the dead-letter topic with one of the `DeadLetterReason` codes.
 */

export interface Reading {
  sensorId: string;
  /** Event time, epoch milliseconds. */
  time: number;
  /** Numeric fields, e.g. { temperature: 21.3 }. At least one. */
  fields: Record<string, number>;
  /** Optional string tags, e.g. { site: "north" }. */
  tags: Record<string, string>;
}

/** Why a message went to the dead-letter topic: the `dlq-reason` header. */
export const DEAD_LETTER_REASONS = [
  "empty",
  "oversize",
  "invalid_utf8",
  "invalid_json",
  "not_an_object",
  "missing_sensor_id",
  "invalid_sensor_id",
  "missing_timestamp",
  "invalid_timestamp",
  "timestamp_out_of_range",
  "future_timestamp",
  "no_fields",
  "invalid_key",
  "reserved_key",
  "non_finite_field",
  "field_out_of_range",
  "invalid_value_type",
  "invalid_tag_value",
  "too_many_keys",
  "influx_rejected",
] as const;
export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number];

export type ParseResult =
  | { ok: true; reading: Reading }
  | { ok: false; reason: DeadLetterReason; detail: string };

export interface ReadingLimits {
  /** Largest accepted message, in bytes. */
  maxBytes: number;
  /** How far ahead of the worker's clock an event time may be, in ms. */
  maxFutureMs: number;
  /** Earliest accepted event time (epoch ms). */
  minTime: number;
}

export const DEFAULT_LIMITS: ReadingLimits = {
  maxBytes: 64 * 1024,
  maxFutureMs: 5 * 60_000,
  minTime: Date.UTC(2000, 0, 1),
};

/** Longest sensor id, in UTF-8 bytes. */
export const MAX_SENSOR_ID_BYTES = 256;
/**
 * A sensor id or tag value: printable text (no C0/C1 control characters or DEL) that does not end
 * with a backslash. InfluxDB's line protocol cannot carry a trailing backslash in a tag value (it
 * would escape the separator after it); every other backslash is stored byte for byte.
 */
const CONTROL = "\\u0000-\\u001F\\u007F-\\u009F";
export const SENSOR_ID_SOURCE = `^[^${CONTROL}]*[^${CONTROL}\\\\]$`;
export const SENSOR_ID_PATTERN = new RegExp(SENSOR_ID_SOURCE, "u");
export const SENSOR_ID_RULE = `1-${MAX_SENSOR_ID_BYTES} bytes of printable UTF-8 (no control characters), not ending with a backslash`;

const encoder = new TextEncoder();

/**
 * Strings already found valid (sensor ids, keys): a fleet repeats the same few thousand in every
 * message, so each is checked once, not once per reading. Emptied when full.
 */
class KnownValid {
  private readonly seen = new Set<string>();
  constructor(private readonly capacity: number) {}
  has(text: string): boolean {
    return this.seen.has(text);
  }
  add(text: string): void {
    if (this.seen.size >= this.capacity) this.seen.clear();
    this.seen.add(text);
  }
}
const VALID_SENSOR_IDS = new KnownValid(100_000);
const VALID_KEYS = new KnownValid(10_000);

/** Why `id` is not a valid sensor id, or undefined when it is. */
export function sensorIdProblem(id: unknown): string | undefined {
  if (typeof id !== "string" || id.length === 0)
    return `sensor_id must be a non-empty string, got ${JSON.stringify(id)?.slice(0, 80) ?? typeName(id)}`;
  if (VALID_SENSOR_IDS.has(id)) return undefined;
  const bytes = encoder.encode(id).length;
  if (bytes > MAX_SENSOR_ID_BYTES || !SENSOR_ID_PATTERN.test(id)) {
    return `sensor_id ${JSON.stringify(id.slice(0, 80))} is not valid (${bytes} bytes): ${SENSOR_ID_RULE}`;
  }
  VALID_SENSOR_IDS.add(id);
  return undefined;
}
export const KEY_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
export const MAX_FIELDS = 32;
/** Larger magnitudes would overflow the detectors' sums of squares. */
export const MAX_FIELD_MAGNITUDE = 1e100;
export const MAX_TAGS = 16;
export const MAX_TAG_VALUE_LENGTH = 256;
/** Keys that InfluxDB, Flux or this schema already give a meaning to. */
export const RESERVED_KEYS = new Set([
  "time",
  "field",
  "detector",
  "rule_id",
  "severity",
  "state",
  "measurement",
]);

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;
function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return true;
  }
  return false;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function fail(reason: DeadLetterReason, detail: string): ParseResult {
  return { ok: false, reason, detail };
}

function parseTimestamp(value: unknown): number | string {
  if (typeof value === "number") {
    if (!Number.isInteger(value)) return `timestamp ${value} must be an integer number of epoch milliseconds`;
    return value;
  }
  if (typeof value === "string") {
    if (!RFC3339.test(value))
      return `timestamp ${JSON.stringify(value.slice(0, 64))} is not RFC 3339 (e.g. 2024-10-27T03:33:20Z)`;
    const ms = Date.parse(value.replace(" ", "T"));
    if (Number.isNaN(ms) || !realCalendarDate(value)) {
      return `timestamp ${JSON.stringify(value.slice(0, 64))} is not a real date and time`;
    }
    return ms;
  }
  return `timestamp must be epoch milliseconds (integer) or an RFC 3339 string, got ${typeName(value)}`;
}

/** Date.parse rolls 2024-02-30 over to March 1st and accepts hour 24; RFC 3339 allows neither. */
function realCalendarDate(text: string): boolean {
  const year = Number(text.slice(0, 4));
  const month = Number(text.slice(5, 7));
  const day = Number(text.slice(8, 10));
  const hour = Number(text.slice(11, 13));
  const minute = Number(text.slice(14, 16));
  const second = Number(text.slice(17, 19));
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return (
    month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59 && second <= 59
  );
}

function describeTime(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString();
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/**
 * Parses one Kafka message value. `now` is the worker's clock, used only for the future bound.
 * Pure: the same bytes and clock give the same result.
 */
export function parseReading(
  bytes: Uint8Array | null,
  now: number,
  limits: ReadingLimits = DEFAULT_LIMITS,
): ParseResult {
  if (bytes === null || bytes.length === 0) return fail("empty", "message value is empty");
  if (bytes.length > limits.maxBytes) {
    return fail("oversize", `message is ${bytes.length} bytes; the limit is ${limits.maxBytes}`);
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return fail("invalid_utf8", "message value is not valid UTF-8");
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return fail("invalid_json", `message value is not JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    return fail("not_an_object", `expected a JSON object, got ${typeName(doc)}`);
  }
  const obj = doc as Record<string, unknown>;

  const sensorId = obj.sensor_id;
  if (sensorId === undefined) return fail("missing_sensor_id", "sensor_id is missing");
  const sensorIdInvalid = sensorIdProblem(sensorId);
  if (sensorIdInvalid !== undefined) return fail("invalid_sensor_id", sensorIdInvalid);

  if (obj.timestamp === undefined) return fail("missing_timestamp", "timestamp is missing");
  const time = parseTimestamp(obj.timestamp);
  if (typeof time === "string") return fail("invalid_timestamp", time);
  if (time < limits.minTime) {
    return fail(
      "timestamp_out_of_range",
      `timestamp ${describeTime(time)} is before ${new Date(limits.minTime).toISOString()}, the earliest accepted time`,
    );
  }
  // Judged on the worker's clock: a sensor clock running ahead would otherwise hold event time (and
  // its windows) in the future.
  if (time > now + limits.maxFutureMs) {
    return fail(
      "future_timestamp",
      `timestamp ${describeTime(time)} is ${Math.round((time - now) / 1000)} s ahead of the worker's clock (${describeTime(now)}); at most ${limits.maxFutureMs / 1000} s ahead is accepted (READING_MAX_FUTURE_MS)`,
    );
  }

  const fields: Record<string, number> = {};
  const tags: Record<string, string> = {};
  let fieldCount = 0;
  let tagCount = 0;
  for (const key in obj) {
    if (key === "sensor_id" || key === "timestamp") continue;
    const value = obj[key];
    if (!VALID_KEYS.has(key)) {
      if (!KEY_PATTERN.test(key)) {
        return fail(
          "invalid_key",
          `key ${JSON.stringify(key.slice(0, 80))} is not valid: 1-64 characters of A-Z a-z 0-9 _, starting with a letter`,
        );
      }
      if (RESERVED_KEYS.has(key)) return fail("reserved_key", `key ${JSON.stringify(key)} is reserved`);
      VALID_KEYS.add(key);
    }
    if (typeof value === "number") {
      if (!Number.isFinite(value)) return fail("non_finite_field", `field ${key} is not a finite number`);
      if (Math.abs(value) > MAX_FIELD_MAGNITUDE) {
        return fail(
          "field_out_of_range",
          `field ${key} is ${value}; the accepted magnitude is at most ${MAX_FIELD_MAGNITUDE}`,
        );
      }
      if (++fieldCount > MAX_FIELDS) return fail("too_many_keys", `more than ${MAX_FIELDS} numeric fields`);
      fields[key] = value;
    } else if (typeof value === "string") {
      if (
        value.length === 0 ||
        value.length > MAX_TAG_VALUE_LENGTH ||
        hasControlCharacter(value) ||
        value.endsWith("\\")
      ) {
        return fail(
          "invalid_tag_value",
          `tag ${key} ${JSON.stringify(value.slice(0, 80))} is not valid: 1-${MAX_TAG_VALUE_LENGTH} characters without control characters, not ending with a backslash`,
        );
      }
      if (++tagCount > MAX_TAGS) return fail("too_many_keys", `more than ${MAX_TAGS} string tags`);
      tags[key] = value;
    } else {
      return fail(
        "invalid_value_type",
        `key ${key} has a ${typeName(value)} value; fields must be numbers and tags strings`,
      );
    }
  }
  if (fieldCount === 0)
    return fail("no_fields", "a reading needs at least one numeric field, e.g. temperature");
  return { ok: true, reading: { sensorId: sensorId as string, time, fields, tags } };
}
