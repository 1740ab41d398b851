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

/** True when `text` holds none of `,` `=` and space (`withEquals` false: none of `,` and space). */
function plain(text: string, withEquals: boolean): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 44 || c === 32 || (withEquals && c === 61)) return false;
  }
  return true;
}

export function escapeTag(text: string): string {
  return plain(text, true) ? text : text.replace(TAG_ESCAPE, "\\$&");
}

export function escapeMeasurement(text: string): string {
  return plain(text, false) ? text : text.replace(MEASUREMENT_ESCAPE, "\\$&");
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
  // An empty extra tag value is left out, like any empty tag value.
  return pointLineWith(measurement, "", "", tags, fields, timeMs);
}

/**
 * The same line as pointLine(measurement, { ...tags, [key]: value }, fields, timeMs), without
 * building the merged tag object (a reading's line: its tags plus sensor_id). `key` must not be a
 * key of `tags`.
 */
export function pointLineWith(
  measurement: string,
  key: string,
  value: string,
  tags: Record<string, string>,
  fields: Record<string, FieldValue>,
  timeMs: number,
): string {
  let line = escapeMeasurement(measurement);
  let pending = value === "" ? undefined : `,${escapeTag(key)}=${escapeTag(value)}`;
  let sorted: string[] | undefined;
  for (const k in tags) {
    sorted ??= [];
    sorted.push(k);
  }
  if (sorted !== undefined) {
    sorted.sort();
    for (const k of sorted) {
      const v = tags[k];
      if (v === undefined || v === "") continue;
      if (pending !== undefined && key < k) {
        line += pending;
        pending = undefined;
      }
      line += `,${escapeTag(k)}=${escapeTag(v)}`;
    }
  }
  if (pending !== undefined) line += pending;
  return withFields(line, measurement, fields, timeMs);
}

function withFields(
  head: string,
  measurement: string,
  fields: Record<string, FieldValue>,
  timeMs: number,
): string {
  let line = head;
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
