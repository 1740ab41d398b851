/**
 * Keyset (cursor) pagination over time-ordered points. A page is ordered by (_time, key tags…); the
 * cursor is the last item's position, so the next page starts strictly after it even when points
 * arrive meanwhile. The cursor is opaque to clients: base64url JSON, checked on the way back in.
 */
import {
  flux,
  fluxDateTime,
  fluxExpression,
  fluxInteger,
  type ParameterizedQuery,
} from "@influxdata/influxdb-client";
import { Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import type { FluxRunner } from "./influx-query.js";
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

/**
 * A Flux filter keeping rows after `position` in (_time, ...keys) order, or before it for "desc".
 * Column names come from code; the values are parameters.
 */
export function afterPosition(
  keys: readonly string[],
  position: Position,
  order: Order = "asc",
): ParameterizedQuery {
  const beyond = fluxExpression(order === "asc" ? ">" : "<");
  const time = fluxDateTime(new Date(position.t).toISOString());
  let tail: ParameterizedQuery | undefined;
  for (let i = keys.length - 1; i >= 0; i--) {
    const column = fluxExpression(`r.${keys[i]}`);
    const value = position.k[i] as string;
    tail = tail
      ? flux`(${column} ${beyond} ${value} or (${column} == ${value} and ${tail}))`
      : flux`${column} ${beyond} ${value}`;
  }
  const predicate = tail
    ? flux`r._time ${beyond} ${time} or (r._time == ${time} and ${tail})`
    : flux`r._time ${beyond} ${time}`;
  return flux`|> filter(fn: (r) => ${predicate})`;
}

export interface KeysetPageQuery {
  bucket: string;
  measurement: string;
  /** Tag columns that, after _time, identify a point; the page is sorted by (_time, ...keys). */
  keys: readonly string[];
  /** Extra `|> filter(...)` stages on tags. */
  filters: ParameterizedQuery[];
  start: number;
  stop: number;
  cursor: string | undefined;
  limit: number;
  order: Order;
}

export type PivotedPoint = Record<string, string | number | null | undefined> & { _time: string };

/**
 * One page of points of a measurement, fields pivoted into columns. Storage returns each series in
 * time order, so keeping the first (or, newest first, the last) limit+1 points of every series before
 * merging keeps the first limit+1 of all.
 */
export async function keysetPage(
  runner: FluxRunner,
  name: string,
  q: KeysetPageQuery,
): Promise<{ points: PivotedPoint[]; nextCursor: string | null }> {
  const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor, q.keys.length);
  const desc = q.order === "desc";
  // The range starts (or, newest first, ends) at the cursor's time; ties there are settled by the keys.
  const from = after === undefined || desc ? q.start : Math.max(q.start, after.t);
  const to = after === undefined || !desc ? q.stop : Math.min(q.stop, after.t + 1);
  if (from >= to) return { points: [], nextCursor: null };
  const n = fluxInteger(q.limit + 1);
  const query = flux`
from(bucket: ${q.bucket})
  |> range(start: ${fluxDateTime(new Date(from).toISOString())}, stop: ${fluxDateTime(new Date(to).toISOString())})
  |> filter(fn: (r) => r._measurement == ${q.measurement})
  ${fluxExpression(q.filters.map(String).join("\n  "))}
  ${after === undefined ? flux`` : afterPosition(q.keys, after, q.order)}
  |> ${desc ? flux`tail` : flux`limit`}(n: ${n})
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> group()
  |> sort(columns: ${["_time", ...q.keys]}, desc: ${desc})
  |> limit(n: ${n})`;
  const rows = await runner.rows<PivotedPoint>(name, query);
  if (rows.length <= q.limit) return { points: rows, nextCursor: null };
  const points = rows.slice(0, q.limit);
  const last = points[points.length - 1] as PivotedPoint;
  return {
    points,
    nextCursor: encodeCursor({ t: Date.parse(last._time), k: q.keys.map((key) => String(last[key] ?? "")) }),
  };
}
