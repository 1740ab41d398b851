/**
 * How to ask InfluxDB 2.7 fast: the only Flux shapes its planner runs inside the storage engine
 * (query/stdlib/influxdata/influxdb/rules.go in the influxdb v2.7.12 module):
 *
 *   from |> range |> filter(tag ==, or-chains of ==, regex; _measurement/_field ==)
 *     |> aggregateWindow(every, fn: count|sum|min|max|mean|first|last, createEmpty: false)
 *        (PushDownAggregateWindowRule: every == period, offset ≥ 0, UTC; timeSrc "_start" keeps it)
 *     |> or a bare count|sum|min|max|mean|first|last (PushDownBareAggregateRule)
 *
 * Anything between `filter` and the aggregate (`map`, `pivot`, `sort`, `group`, `limit`, a stream
 * bound to a variable and used twice, `contains()` in the predicate, `window(period ≠ every)`)
 * makes Flux read every point instead. So: one query per pushable function, combined by the
 * caller (mean = Σsum/Σcount, stddev from count, sum and sum of squares), and stages after the
 * aggregate only.
 *
 * Both the API (literal values, escaped here) and the Grafana dashboards (Grafana's `v.*`
 * variables) build their queries from these functions, so a value is a Flux expression string.
 */
import { fluxDateTime, fluxDuration, fluxString } from "@influxdata/influxdb-client";

/** A Flux expression, e.g. a literal from `lit` or a Grafana variable such as `v.timeRangeStart`. */
export type FluxExpr = string;

/** Safe Flux literals for user-given values: they can only ever be values, never code. */
export const lit = {
  str: (value: string): FluxExpr => fluxString(value).toString(),
  time: (ms: number): FluxExpr => fluxDateTime(new Date(ms).toISOString()).toString(),
  duration: (ms: number): FluxExpr => fluxDuration(`${Math.round(ms)}ms`).toString(),
};

/** `r.<column> == <value>`; `column` is one of the schema's own names, never user input. */
export function eq(column: string, value: FluxExpr): string {
  return `r.${column} == ${value}`;
}

/**
 * `(r.c == a or r.c == b …)`: pushed down, unlike `contains()`. Empty = no condition. Built as a
 * balanced tree, so a thousand values nest ten deep, not a thousand (Flux refuses deep nesting).
 */
export function anyOf(column: string, values: readonly string[]): string {
  if (values.length === 0) return "";
  const tree = (from: number, to: number): string => {
    if (to - from === 1) return eq(column, lit.str(values[from] as string));
    const mid = (from + to) >> 1;
    return `(${tree(from, mid)} or ${tree(mid, to)})`;
  };
  return values.length === 1 ? `(${tree(0, 1)})` : tree(0, values.length);
}

/** The conditions that are not empty, joined with `and`. */
export function and(...conditions: string[]): string {
  return conditions.filter((c) => c !== "").join(" and ");
}

export interface Selection {
  bucket: FluxExpr;
  start: FluxExpr;
  stop: FluxExpr;
  /** A predicate over tags, _measurement and _field only (see `eq`, `anyOf`, `and`). */
  where: string;
}

export const PUSHABLE = ["count", "sum", "min", "max", "mean", "first", "last"] as const;
export type PushableFunction = (typeof PUSHABLE)[number];

function selected(s: Selection): string {
  return `from(bucket: ${s.bucket})
  |> range(start: ${s.start}, stop: ${s.stop})
  |> filter(fn: (r) => ${s.where})`;
}

/**
 * One function over epoch-aligned tumbling windows of `every`, computed in storage. Rows: one per
 * series and window, `_time` = the window's start (clipped to the range start).
 */
export function windowAggregate(
  s: Selection,
  every: FluxExpr,
  fn: PushableFunction,
  keep: readonly string[] = ["_time", "_value", "_field", "sensor_id"],
): string {
  return `${selected(s)}
  |> aggregateWindow(every: ${every}, fn: ${fn}, createEmpty: false, timeSrc: "_start")
  |> keep(columns: [${keep.map(lit.str).join(", ")}])`;
}

/** One function over the whole range per series, computed in storage. */
export function seriesAggregate(s: Selection, fn: PushableFunction, keep?: readonly string[]): string {
  const tail = keep === undefined ? "" : `\n  |> keep(columns: [${keep.map(lit.str).join(", ")}])`;
  return `${selected(s)}\n  |> ${fn}()${tail}`;
}

/** The raw points themselves, for what storage cannot compute (exact quantiles). */
export function rawPoints(s: Selection): string {
  return selected(s);
}
