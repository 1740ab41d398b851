/**
 * Keyset (cursor) pagination over time-ordered event points (alerts, anomaly flags). A page is
 * ordered by (_time, key tags…); the cursor is the last item's position, so the next page starts
 * strictly after it even when points arrive meanwhile. The cursor is opaque to clients: base64url
 * JSON, checked on the way back in.
 *
 * A page costs two pushed-down reads, never a pivot, group or sort in Flux (which read and reorder
 * every point of every series in the range: seconds for a few thousand series):
 *  1. locate: the first (newest first: last) point of one field every point has, per series
 *     (PushDownBareAggregateRule: one row per series). Ranked by time, the (limit+1)-th of them
 *     bounds the page: at least limit+1 points lie at or before it, so the page holds none after it,
 *     and only the series whose first point is within the bound can hold page points.
 *  2. fetch: every field up to the bound, of the series holding those series' values of one key
 *     tag (and the request's predicate), at most limit+2 points per series; the API pairs fields
 *     into points, sorts and cuts the page.
 */
import { Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { and, anyOf, eq, lit, rawPoints, seriesAggregate } from "../common/flux-shapes.js";
import type { FluxRunner } from "./influx-query.js";
import { epochMs } from "./params.js";
import { unprocessable } from "./problem.js";

export type Order = "asc" | "desc";

export interface Position {
  /** Event time, epoch ms. */
  t: number;
  /** The key tags' values, in the order of the page's key columns. */
  k: string[];
}

const PositionSchema = Type.Object(
  {
    t: Type.Integer({ minimum: 0, maximum: 8_640_000_000_000_000 }),
    k: Type.Array(Type.String({ maxLength: 512 }), { maxItems: 8 }),
  },
  { additionalProperties: false },
);

export function encodeCursor(position: Position): string {
  return Buffer.from(JSON.stringify(position)).toString("base64url");
}

export function decodeCursor(cursor: string, keyCount: number): Position {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    parsed = undefined;
  }
  if (!Value.Check(PositionSchema, parsed) || parsed.k.length !== keyCount) {
    // Well-formed (the schema's pattern) but not a position this API issued: 422, not 400.
    throw unprocessable(
      `cursor ${JSON.stringify(cursor.slice(0, 64))} is not valid: pass the next_cursor of the previous response unchanged, or omit cursor for the first page`,
    );
  }
  return parsed;
}

/** Strings in code point order (= UTF-8 byte order, as InfluxDB orders them), not UTF-16 unit order. */
export function compareText(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // A surrogate (a code point past U+FFFF) sorts after U+E000–U+FFFF, though its unit is lower.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs && !ys && y >= 0xe000) return 1;
    if (ys && !xs && x >= 0xe000) return -1;
    return x - y;
  }
  return a.length - b.length;
}

/** (t, keys) positions compared in ascending page order. */
export function comparePositions(a: Position, b: Position): number {
  if (a.t !== b.t) return a.t - b.t;
  for (let i = 0; i < a.k.length; i++) {
    const c = compareText(a.k[i] as string, b.k[i] as string);
    if (c !== 0) return c;
  }
  return 0;
}

export interface KeysetPageQuery {
  bucket: string;
  measurement: string;
  /** Tag columns that, after _time, identify a point; the page is sorted by (_time, ...keys). */
  keys: readonly string[];
  /**
   * The key tag the fetch selects series by (one of `keys`, the one with most distinct values): an
   * or-chain of one tag costs InfluxDB's index far less than one of whole series keys.
   */
  seriesTag: string;
  /** A field every point of the measurement has: read alone to locate the page. */
  probeField: string;
  /** A predicate over the key tags (flux-shapes `anyOf`, `eq`, `and`); "" for none. */
  where: string;
  start: number;
  stop: number;
  cursor: string | undefined;
  limit: number;
  order: Order;
}

/** One point: its position, and its fields as InfluxDB's text (the caller knows their types). */
export interface EventPoint extends Position {
  fields: Record<string, string>;
}

/** Past this many located series, the fetch selects by the request's predicate and the bound only. */
const MAX_SERIES_FILTER = 1000;

/** Sort order for this page's direction. */
const ordered = (order: Order) => (a: Position, b: Position) =>
  order === "asc" ? comparePositions(a, b) : comparePositions(b, a);

export async function keysetPage(
  runner: FluxRunner,
  name: string,
  q: KeysetPageQuery,
): Promise<{ points: EventPoint[]; nextCursor: string | null }> {
  const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor, q.keys.length);
  const desc = q.order === "desc";
  const cmp = ordered(q.order);
  const beyond = (p: Position) => after === undefined || cmp(p, after) > 0;
  // The range starts (or, newest first, ends) at the cursor's time; ties there are settled by the keys.
  const from = after === undefined || desc ? q.start : Math.max(q.start, after.t);
  const to = after === undefined || !desc ? q.stop : Math.min(q.stop, after.t + 1);
  if (from >= to) return { points: [], nextCursor: null };
  const measurement = eq("_measurement", lit.str(q.measurement));

  // 1. Locate: each series' first (last) point of the probe field in the range.
  const firsts = await runner.columns(
    `${name}_locate`,
    seriesAggregate(
      {
        bucket: lit.str(q.bucket),
        start: lit.time(from),
        stop: lit.time(to),
        where: and(measurement, eq("_field", lit.str(q.probeField)), q.where),
      },
      desc ? "last" : "first",
    ),
    ["_time", ...q.keys],
  );
  if (firsts.length === 0) return { points: [], nextCursor: null };
  const series = firsts.map(([time, ...k]) => ({ t: epochMs(time as string), k: k.map((v) => v ?? "") }));
  // A series whose first point is at or before the cursor ("spent", only at the cursor's own time)
  // may still hold page points after it, but does not count towards the bound.
  const live = series.filter(beyond).sort(cmp);
  const bound = live.length > q.limit ? (live[q.limit] as Position).t : desc ? from : to - 1;
  const within = series.filter((s) => (desc ? s.t >= bound : s.t <= bound));

  // 2. Fetch: every field of those series, up to the bound.
  const byKeys = within.length <= MAX_SERIES_FILTER;
  const tagAt = q.keys.indexOf(q.seriesTag);
  const rows = await runner.columns(
    `${name}_fetch`,
    // A series holds at most one point at the cursor's time: limit+2 points cover limit+1 beyond it.
    `${rawPoints({
      bucket: lit.str(q.bucket),
      start: lit.time(desc ? bound : from),
      stop: lit.time(desc ? to : bound + 1),
      where: and(
        measurement,
        // The series tag narrows to the located series' tag values; the request's predicate still
        // holds (other series share those values).
        byKeys ? anyOf(q.seriesTag, [...new Set(within.map((s) => s.k[tagAt] as string))]) : "",
        q.where,
      ),
    })}\n  |> ${desc ? "tail" : "limit"}(n: ${q.limit + 2})`,
    ["_time", "_field", "_value", ...q.keys],
  );
  const points = new Map<string, EventPoint>();
  for (const [time, field, value, ...k] of rows) {
    const id = `${time}\u0000${k.join("\u0000")}`;
    let point = points.get(id);
    if (point === undefined) {
      point = { t: epochMs(time as string), k: k.map((v) => v ?? ""), fields: {} };
      points.set(id, point);
    }
    point.fields[field as string] = value ?? "";
  }
  const page = [...points.values()].filter(beyond).sort(cmp);
  if (page.length <= q.limit) return { points: page, nextCursor: null };
  const kept = page.slice(0, q.limit);
  const last = kept[kept.length - 1] as EventPoint;
  return { points: kept, nextCursor: encodeCursor({ t: last.t, k: last.k }) };
}
