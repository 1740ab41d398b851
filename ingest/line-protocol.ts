/**
 * InfluxDB line protocol, built by hand: it is the hot path, and a string template per point is
 * several times cheaper than the client's Point objects. Timestamps are epoch milliseconds
 * (write precision "ms"). Every number is written as a float, so a field never changes type.
 */

/**
 * InfluxDB unescapes only `\,`, `\=` and `\ ` in tag keys and values; any other backslash is stored
 * as written, so escaping it would store two. (A trailing backslash cannot be carried at all: the
 * reading contract refuses it.)
 */
const TAG_ESCAPE = /[,= ]/g;
const MEASUREMENT_ESCAPE = /[, ]/g;
const STRING_FIELD_ESCAPE = /["\\]/g;

export function escapeTag(text: string): string {
  return text.replace(TAG_ESCAPE, "\\$&");
}

export function escapeMeasurement(text: string): string {
  return text.replace(MEASUREMENT_ESCAPE, "\\$&");
}

export function stringField(text: string): string {
  return `"${text.replace(STRING_FIELD_ESCAPE, "\\$&")}"`;
}

export function floatField(value: number): string {
  if (!Number.isFinite(value)) throw new RangeError(`line protocol cannot carry ${value}`);
  return String(value);
}

export type FieldValue = number | string | boolean;

/**
 * One point. Tag keys are sorted (InfluxDB's preferred order, and it makes the line, and so the
 * point identity, independent of the order the message listed them in).
 */
export function pointLine(
  measurement: string,
  tags: Record<string, string>,
  fields: Record<string, FieldValue>,
  timeMs: number,
): string {
  let line = escapeMeasurement(measurement);
  for (const key of Object.keys(tags).sort()) {
    const value = tags[key];
    if (value === undefined || value === "") continue;
    line += `,${escapeTag(key)}=${escapeTag(value)}`;
  }
  let sep = " ";
  for (const key in fields) {
    const value = fields[key];
    let encoded: string;
    if (typeof value === "number") encoded = floatField(value);
    else if (typeof value === "string") encoded = stringField(value);
    else if (typeof value === "boolean") encoded = value ? "true" : "false";
    else continue;
    line += `${sep}${escapeTag(key)}=${encoded}`;
    sep = ",";
  }
  if (sep === " ") throw new Error(`point ${measurement} has no fields`);
  return `${line} ${Math.trunc(timeMs)}`;
}
