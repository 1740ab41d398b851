/**
 * How to ask InfluxDB 2.7 fast: the only Flux shapes its planner runs inside the storage engine
 * (query/stdlib/influxdata/influxdb/rules.go in the influxdb v2.7.12 module):
 *
 *   from |> range |> filter(tag ==, or-chains of ==, regex; _measurement/_field ==)
 *     |> aggregateWindow(every, fn: count|sum|min|max|mean|first|last, createEmpty: false)
 *        (PushDownAggregateWindowRule: every == period, offset ≥ 0, UTC; timeSrc "_start" keeps it)
 *     |> or a bare count|sum|min|max|mean|first|last (PushDownBareAggregateRule)
 *     |> or window(every) |> one of them, which keeps a selected point's own time
 *        (PushDownWindowAggregateRule)
 *     |> or keep(columns: [tag]) |> group() |> distinct(column: tag): the tag index
 *        (PushDownReadTagValuesRule)
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
import { PROGRESS_MEASUREMENT, ROLLUP_MEASUREMENT, ROLLUP_TIERS } from "./rollups.js";

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

/** Past this many values, `anyOf` is one regular expression: InfluxDB's index evaluates an or-chain
 * term by term (about 0.8 ms each for a tag of 1,000 values), a regex once per tag value. */
const OR_CHAIN_MAX = 8;

/**
 * `r.c` equal to one of `values`, pushed down, unlike `contains()`: `(r.c == a or r.c == b …)` for a
 * few values (a balanced tree, as Flux refuses deep nesting), `r.c =~ /^(?:a|b|…)$/` with each value
 * quoted for more. Empty = no condition.
 */
export function anyOf(column: string, values: readonly string[]): string {
  if (values.length === 0) return "";
  if (values.length === 1) return `(${eq(column, lit.str(values[0] as string))})`;
  if (values.length > OR_CHAIN_MAX) return `r.${column} =~ /^(?:${values.map(quoteRegex).join("|")})$/`;
  const tree = (from: number, to: number): string => {
    if (to - from === 1) return eq(column, lit.str(values[from] as string));
    const mid = (from + to) >> 1;
    return `(${tree(from, mid)} or ${tree(mid, to)})`;
  };
  return tree(0, values.length);
}

/**
 * A value as a regular expression matching only itself, inside a Flux regex literal: RE2's
 * metacharacters escaped (Go's regexp.QuoteMeta), and the literal's `/` delimiter.
 */
export function quoteRegex(value: string): string {
  return value.replace(/[\\.+*?()|[\]{}^$]/g, "\\$&").replace(/\//g, "\\/");
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

/*
 * Shapes for queries whose range and window are themselves Flux expressions (Grafana's
 * `v.timeRangeStart`, `v.windowPeriod`, …). Each builds a whole script: a few statements that
 * compute the window, the tier and where rollups end, then functions each holding one pushable
 * read, called only on the branch that needs them (Flux evaluates `if` lazily, and the planner
 * only sees the reads a script really runs). Bucket names, windows and ranges may be computed:
 * they are evaluated before planning. Predicates may not: they must compare columns to literals.
 */

/** Nice window sizes (ns) a computed window is rounded up to; beyond the last, whole days. */
const NICE_WINDOWS_S = [
  1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];
const NS_PER_S = 1_000_000_000;

export interface Windowing {
  /** The range as Flux time expressions. */
  start: FluxExpr;
  stop: FluxExpr;
  /** The window the caller asks for (Grafana's v.windowPeriod); undefined: derive from the range. */
  windowPeriod?: FluxExpr;
  /** At most this many windows per series over the range. */
  maxWindows: number;
}

/**
 * Flux statements defining `every` (a duration), `everyNs`, `start` (the range start floored to
 * `every`, so every window is whole and rollup windows line up with raw ones) and `stop`.
 * `every` is `windowPeriod` unless the range would then hold more than `maxWindows` windows
 * (Grafana rounds its interval down as well as up): then the smallest nice size that fits.
 */
export function windowing(w: Windowing): string {
  if (!Number.isInteger(w.maxWindows) || w.maxWindows < 2) {
    throw new Error(`maxWindows ${w.maxWindows} is not valid: expected an integer of at least 2`);
  }
  const ladder = NICE_WINDOWS_S.map((s) => `if least <= ${s * NS_PER_S} then ${s * NS_PER_S}`).join(" else ");
  const day = 86_400 * NS_PER_S;
  return [
    `spanNs = int(v: ${w.stop}) - int(v: ${w.start})`,
    // One more window than the span holds may start before the range: hence maxWindows - 1.
    `least = spanNs / ${w.maxWindows - 1} + 1`,
    `fitting = ${ladder} else (least + ${day - 1}) / ${day} * ${day}`,
    w.windowPeriod === undefined
      ? "everyNs = fitting"
      : `everyNs = if int(v: ${w.windowPeriod}) >= fitting then int(v: ${w.windowPeriod}) else fitting`,
    "every = duration(v: everyNs)",
    `start = time(v: int(v: ${w.start}) / everyNs * everyNs)`,
    `stop = ${w.stop}`,
  ].join("\n");
}

/** A pushable read as a Flux function of no arguments: `() => from |> range |> filter |> <aggregate>`. */
export interface Read {
  bucket: FluxExpr;
  /** Range bounds: Flux time expressions, e.g. `start` and `boundary` of `tieredSource`. */
  start: FluxExpr;
  stop: FluxExpr;
  where: string;
  /** The pushed-down aggregate: a stage from `aggregate`. */
  aggregate: string;
  /** Stages after the aggregate (any). */
  after?: string[];
}

/** The aggregate stages storage runs itself. */
export const aggregate = {
  /** Per `every` window, `_time` = the window's start. */
  windows: (fn: PushableFunction, every: FluxExpr = "every") =>
    `aggregateWindow(every: ${every}, fn: ${fn}, createEmpty: false, timeSrc: "_start")`,
  /** Per window, the selected point itself (its own `_time`): `window |> first|last|min|max`. */
  selectInWindows: (fn: "first" | "last" | "min" | "max", every: FluxExpr = "every") =>
    `window(every: ${every})\n  |> ${fn}()\n  |> window(every: inf)`,
  /** Over the whole range, per series. */
  whole: (fn: PushableFunction) => `${fn}()`,
} as const;

export function read(r: Read): string {
  return [
    `from(bucket: ${r.bucket})`,
    `range(start: ${r.start}, stop: ${r.stop})`,
    `filter(fn: (r) => ${r.where})`,
    r.aggregate,
    ...(r.after ?? []),
  ].join("\n  |> ");
}

/**
 * The distinct values of one tag (or `_field`) where `where` holds, from the index
 * (PushDownReadTagValuesRule: no point is read).
 */
export function tagValues(s: Selection, tag: string): string {
  return `${selected(s)}
  |> keep(columns: [${lit.str(tag)}])
  |> group()
  |> distinct(column: ${lit.str(tag)})`;
}

/** Values of the rollup tiers the `tier` Flux variable takes, finest last; "raw" for none. */
function tierConditions(): string {
  const coarsestFirst = [...ROLLUP_TIERS].sort((a, b) => b.ms - a.ms);
  return coarsestFirst
    .map((t) => `if everyNs % ${t.ms * 1_000_000} == 0 then ${lit.str(t.name)}`)
    .join(" else ");
}

export interface Tiering {
  /** `"auto"`, or a tier name / `"raw"` to force one (e.g. a dashboard variable's value). */
  forced: FluxExpr;
  /** The raw bucket; the rollup buckets are named `<raw>_<tier>` (config.ts's default names). */
  rawBucket: FluxExpr;
}

/**
 * Flux statements (after `windowing`) defining `tier` — the coarsest rollup tier whose window
 * divides `every`, or "raw" — `rollupBucket`, and `boundary`: rollups answer [start, boundary),
 * raw readings [boundary, stop). The boundary is where every partition's windows of the tier are
 * closed (rollup_progress, the slowest partition), floored to `every` so no window is split.
 */
/**
 * Flux for how far every partition has closed the windows of the tier named by the Flux variable
 * `tier` (rollup_progress in the finest tier's bucket, the slowest partition): an array holding
 * epoch milliseconds, empty when nothing is known.
 */
function closedThroughRead(rawBucket: FluxExpr): string {
  return read({
    bucket: `${rawBucket} + "_${ROLLUP_TIERS[0].name}"`,
    start: "0",
    stop: "now()",
    where: and(eq("_measurement", lit.str(PROGRESS_MEASUREMENT)), eq("_field", lit.str("closed_through"))),
    aggregate: aggregate.whole("last"),
    after: [
      "filter(fn: (r) => r.tier == tier)",
      "group()",
      "min()",
      'findColumn(fn: (key) => true, column: "_value")',
    ],
  });
}

export function tiering(t: Tiering): string {
  return [
    `tier = if ${t.forced} != "auto" then ${t.forced} else ${tierConditions()} else "raw"`,
    `rawBucket = ${t.rawBucket}`,
    `rollupBucket = ${t.rawBucket} + "_" + tier`,
    `closed = if tier == "raw" then [] else ${closedThroughRead(t.rawBucket)}`,
    `closedNs = if length(arr: closed) == 0 then int(v: start) else int(v: closed[0]) * 1000000 / everyNs * everyNs`,
    "boundary = time(v: if closedNs < int(v: start) then int(v: start) else if closedNs > int(v: stop) then int(v: stop) else closedNs)",
    // A range may not be empty, so a source whose share is empty is not read at all.
    "tiered = (rollup, raw) => if boundary <= start then raw() else if boundary >= stop then rollup() else union(tables: [rollup(), raw()])",
  ].join("\n");
}

/** Readings of one field, as raw points and as rollup points: the two sides of a tiered read. */
export interface TieredSelection {
  /** Over raw readings: measurement, `_field` and sensors. */
  raw: string;
  /** Over rollup points: sensors and the `field` tag (the measurement and `_field` are added). */
  rollup: string;
}

export type TieredFunction = "count" | "sum" | "min" | "max";

/** How a rollup field combines into a wider window: counts and sums add up. */
const ROLLUP_FIELD_COMBINE: Record<TieredFunction, PushableFunction> = {
  count: "sum",
  sum: "sum",
  min: "min",
  max: "max",
};

/**
 * A Flux expression (after `windowing` and `tiering`): `fn` of the readings per series, in `every`
 * windows (`whole`: over the range), from rollups before `boundary` and raw readings after.
 * Rows: `_time`, `_value` (float), `_field` = `fn`, and the `by` columns.
 */
export function tiered(
  s: TieredSelection,
  fn: TieredFunction,
  by: readonly string[],
  span: "windows" | "whole" = "windows",
): string {
  const after = [
    "toFloat()",
    `set(key: "_field", value: ${lit.str(fn)})`,
    `keep(columns: [${["_time", "_value", "_field", ...by].map(lit.str).join(", ")}])`,
  ];
  const agg = (f: PushableFunction) => (span === "windows" ? aggregate.windows(f) : aggregate.whole(f));
  const rollup = read({
    bucket: "rollupBucket",
    start: "start",
    stop: "boundary",
    where: and(eq("_measurement", lit.str(ROLLUP_MEASUREMENT)), s.rollup, eq("_field", lit.str(fn))),
    aggregate: agg(ROLLUP_FIELD_COMBINE[fn]),
    after,
  });
  const raw = read({
    bucket: "rawBucket",
    start: "boundary",
    stop: "stop",
    where: s.raw,
    aggregate: agg(fn),
    after,
  });
  return `tiered(\n  rollup: () => ${rollup},\n  raw: () => ${raw},\n)`;
}

/** `tiered` for mean, which storage computes as Σsum / Σcount per window. Rows as `tiered`'s. */
export function tieredMean(s: TieredSelection, by: readonly string[]): string {
  return `union(tables: [${tiered(s, "sum", by)}, ${tiered(s, "count", by)}])
  |> group(columns: [${by.map(lit.str).join(", ")}])
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> map(fn: (r) => ({r with _field: "mean", _value: r.sum / r.count}))
  |> drop(columns: ["sum", "count"])`;
}

/**
 * Flux statement defining `name`: the `n` values of `by` whose `fn` over the whole range is
 * highest (pushed down per series, ranked after), for capping how many series a panel draws.
 */
export function topSeries(
  name: string,
  s: TieredSelection,
  fn: "max" | "count",
  by: string,
  n: number,
): string {
  return `${name} = ${tiered(s, fn, [by], "whole")}
  |> group(columns: [${lit.str(by)}])
  |> ${fn === "count" ? "sum" : "max"}()
  |> group()
  |> sort(columns: ["_value", ${lit.str(by)}], desc: true)
  |> limit(n: ${n})
  |> findColumn(fn: (key) => true, column: ${lit.str(by)})`;
}

/*
 * A covered read: the range itself, exactly, with no window of its own. Each rollup tier answers the
 * whole windows of its size that lie inside the range and are closed, nested coarsest innermost;
 * raw readings answer the rest (the edges off a window boundary and the tail not yet rolled up).
 * So a count, sum, min, max or latest over a week reads the 1h rollups for its whole hours, the 1m
 * rollups for the minutes around them and raw readings for seconds and the newest minutes: every
 * point is in exactly one piece, whatever the range.
 */

/** The statements `covering` defines for one tier: the name prefix of its `Lo`/`Hi` bounds (ns). */
const coverName = (tier: string) => `cover${tier}`;

/**
 * Flux statements (the script must `import "array"`) defining `rawBucket` and
 * `covered = (raw, rollup) => …`: the union of the non-empty pieces of [start, stop), each read by
 * `raw(lo, hi)` or `rollup(rollupBucket, lo, hi)` (functions of the piece's bounds returning one
 * pushed-down read; a range may not be empty, so an empty piece is not read at all).
 */
export function covering(c: { start: FluxExpr; stop: FluxExpr; rawBucket: FluxExpr }): string {
  const finestFirst = [...ROLLUP_TIERS].sort((a, b) => a.ms - b.ms);
  const statements = [
    `rawBucket = ${c.rawBucket}`,
    `coverStart = int(v: ${c.start})`,
    `coverStop = int(v: ${c.stop})`,
    // How far every partition has closed a tier's windows (rollup_progress, the slowest partition).
    `closedNs = (tier) => {
  closed = ${closedThroughRead(c.rawBucket)}
  return if length(arr: closed) == 0 then 0 else int(v: closed[0]) * 1000000
}`,
  ];
  // Each tier within the finer one's share [lo, hi): its whole, closed windows, or nothing.
  const pieces: string[] = [];
  let lo = "coverStart";
  let hi = "coverStop";
  let finer = "raw";
  for (const t of finestFirst) {
    const size = t.ms * 1_000_000;
    const n = coverName(t.name);
    statements.push(
      `${n}Closed = closedNs(tier: ${lit.str(t.name)})`,
      `${n}Lo0 = (${lo} + ${size - 1}) / ${size} * ${size}`,
      `${n}Hi0 = (if ${hi} < ${n}Closed then ${hi} else ${n}Closed) / ${size} * ${size}`,
      `${n}Lo = if ${n}Lo0 < ${n}Hi0 then ${n}Lo0 else ${hi}`,
      `${n}Hi = if ${n}Lo0 < ${n}Hi0 then ${n}Hi0 else ${hi}`,
    );
    pieces.push(piece(finer, lo, `${n}Lo`), piece(finer, `${n}Hi`, hi));
    lo = `${n}Lo`;
    hi = `${n}Hi`;
    finer = t.name;
  }
  pieces.push(piece(finer, lo, hi));
  const concat = pieces.reduceRight(
    (rest, p) => (rest === "" ? p : `array.concat(arr: ${p}, v: ${rest})`),
    "",
  );
  statements.push(`covered = (raw, rollup) => {
  pieces = ${concat}
  return if length(arr: pieces) == 1 then pieces[0] else union(tables: pieces)
}`);
  return statements.join("\n");
}

function piece(source: string, lo: string, hi: string): string {
  const bounds = `lo: time(v: ${lo}), hi: time(v: ${hi})`;
  const call =
    source === "raw"
      ? `raw(${bounds})`
      : `rollup(rollupBucket: rawBucket + ${lit.str(`_${source}`)}, ${bounds})`;
  return `(if ${lo} < ${hi} then [${call}] else [])`;
}

/**
 * A Flux expression (after `covering`): `fn` of the readings over each piece of the range, from
 * rollups or raw readings, grouped by `by` in storage (`group |> count|sum`, one table per group
 * and piece, not one per series). Rows: `_value` (float) and the `by` columns, to be combined by the
 * caller (counts and sums add up).
 */
export function covered(s: TieredSelection, fn: "count" | "sum", by: readonly string[]): string {
  const grouped = (f: "count" | "sum") => `group(columns: [${by.map(lit.str).join(", ")}])\n  |> ${f}()`;
  const after = ["toFloat()", `keep(columns: [${["_value", ...by].map(lit.str).join(", ")}])`];
  const rollup = read({
    bucket: "rollupBucket",
    start: "lo",
    stop: "hi",
    where: and(eq("_measurement", lit.str(ROLLUP_MEASUREMENT)), s.rollup, eq("_field", lit.str(fn))),
    aggregate: grouped(ROLLUP_FIELD_COMBINE[fn] as "sum"),
    after,
  });
  const raw = read({
    bucket: "rawBucket",
    start: "lo",
    stop: "hi",
    where: s.raw,
    aggregate: grouped(fn),
    after,
  });
  return `covered(\n  raw: (lo, hi) => ${raw},\n  rollup: (rollupBucket, lo, hi) => ${rollup},\n)`;
}

/**
 * A Flux expression (after `covering`): the latest reading in the range per value of the tag `by`,
 * as `_time` (the reading's own time), `_value` and `by`, in one table. Each piece reads its last
 * point per series (rollups: the `last` and `last_time` of their latest window); the latest wins.
 * Each piece is merged into one table straight after storage, so Flux handles a few tables, not
 * one per series and piece.
 */
export function coveredLatest(s: TieredSelection, by: string): string {
  const columns = `keep(columns: [${["_time", "_value", by].map(lit.str).join(", ")}])`;
  const rollup = read({
    bucket: "rollupBucket",
    start: "lo",
    stop: "hi",
    where: and(
      eq("_measurement", lit.str(ROLLUP_MEASUREMENT)),
      s.rollup,
      anyOf("_field", ["last", "last_time"]),
    ),
    aggregate: aggregate.whole("last"),
    after: [
      "group()",
      `pivot(rowKey: ["_time", ${lit.str(by)}], columnKey: ["_field"], valueColumn: "_value")`,
      "map(fn: (r) => ({r with _time: time(v: int(v: r.last_time) * 1000000), _value: float(v: r.last)}))",
      columns,
    ],
  });
  const raw = read({
    bucket: "rawBucket",
    start: "lo",
    stop: "hi",
    where: s.raw,
    aggregate: aggregate.whole("last"),
    after: ["group()", "toFloat()", columns],
  });
  return `covered(\n  raw: (lo, hi) => ${raw},\n  rollup: (rollupBucket, lo, hi) => ${rollup},\n)
  |> group()
  |> sort(columns: ["_time"], desc: true)
  |> unique(column: ${lit.str(by)})`;
}

/*
 * The pushdown check: every `from()` in a script must be followed by `range`, any number of
 * `filter`s with pushable predicates, then one of the shapes above, before anything else.
 */

interface Call {
  name: string;
  args: string;
}

/** The `|>` chain of calls that starts at `from(` at `at`. */
function chainAt(flux: string, at: number): Call[] {
  const calls: Call[] = [];
  let i = at;
  for (;;) {
    const name = /^[\w.]+/.exec(flux.slice(i))?.[0];
    if (name === undefined || flux[i + name.length] !== "(") break;
    let depth = 0;
    let j = i + name.length;
    let quoted = false;
    for (; j < flux.length; j++) {
      const c = flux[j];
      if (quoted) {
        if (c === "\\") j++;
        else if (c === '"') quoted = false;
      } else if (c === '"') quoted = true;
      else if (c === "(" || c === "[" || c === "{") depth++;
      else if (c === ")" || c === "]" || c === "}") {
        depth--;
        if (depth === 0) break;
      }
    }
    calls.push({ name, args: flux.slice(i + name.length + 1, j) });
    const next = /^\s*\|>\s*/.exec(flux.slice(j + 1));
    if (next === null) break;
    i = j + 1 + next[0].length;
  }
  return calls;
}

const PUSHABLE_SET = new Set<string>(PUSHABLE);
const LITERAL = String.raw`(?:"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|/(?:[^/\\]|\\.)+/)`;
const TAG_TEST = new RegExp(String.raw`^r\.\w+ (?:==|!=|=~|!~) ${LITERAL}$`);
const VALUE_TEST = new RegExp(String.raw`^r\._value (?:==|!=|<|<=|>|>=) ${LITERAL}$`);

/** True when a filter predicate is `and`/`or` of `r.<tag> op <literal>` (rules.go isPushableExpr). */
export function isPushablePredicate(predicate: string): boolean {
  const text = predicate.trim();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === "\\") i++;
    } else if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (depth === 0) {
      for (const op of [" and ", " or "]) {
        if (text.startsWith(op, i)) {
          return isPushablePredicate(text.slice(0, i)) && isPushablePredicate(text.slice(i + op.length));
        }
      }
    }
  }
  if (text.startsWith("(") && text.endsWith(")")) return isPushablePredicate(text.slice(1, -1));
  return TAG_TEST.test(text) || VALUE_TEST.test(text);
}

/** What keeps a chain from being read by storage alone, or undefined when it is. */
function chainProblem(calls: Call[]): string | undefined {
  const names = calls.map((c) => c.name);
  if (names[1] !== "range") return `from() is not followed by range(): ${names.join(" |> ")}`;
  let k = 2;
  for (; calls[k]?.name === "filter"; k++) {
    const predicate = /^\s*fn:\s*\(r\)\s*=>\s*([\s\S]*?)\s*,?\s*$/.exec(calls[k]?.args ?? "")?.[1];
    if (predicate === undefined || !isPushablePredicate(predicate)) {
      return `filter(${calls[k]?.args}) is not a pushable predicate`;
    }
  }
  const [first, second, third] = calls.slice(k);
  if (first === undefined) return "no aggregate: every point is read";
  if (first.name === "aggregateWindow") {
    const fn = /fn: (\w+)/.exec(first.args)?.[1] ?? "";
    if (!PUSHABLE_SET.has(fn)) return `aggregateWindow(fn: ${fn}) is not computed in storage`;
    if (!/createEmpty: false/.test(first.args)) return "aggregateWindow without createEmpty: false";
    if (/period:|offset: -|location:|column:/.test(first.args))
      return `aggregateWindow(${first.args}) is not pushable`;
    return undefined;
  }
  if (first.name === "window") {
    if (!/^every: [\w.]+$/.test(first.args.trim())) return `window(${first.args}) is not pushable`;
    if (second === undefined || !PUSHABLE_SET.has(second.name) || second.args.trim() !== "") {
      return `window() is not followed by a pushable aggregate`;
    }
    return undefined;
  }
  if (PUSHABLE_SET.has(first.name)) {
    return first.args.trim() === "" ? undefined : `${first.name}(${first.args}) is not pushable`;
  }
  if (first.name === "keep" && second?.name === "group" && third?.name === "distinct") {
    const column = /^columns: \[("\w+")\]$/.exec(first.args.trim())?.[1];
    if (column !== undefined && second.args.trim() === "" && third.args.trim() === `column: ${column}`) {
      return undefined;
    }
  }
  return `${first.name}() before any pushable aggregate`;
}

/** Aggregates InfluxDB 2.7 computes per group in storage after `group()` (PushDownGroupAggregateRule). */
const GROUPED_PUSHABLE = new Set(["count", "sum", "max"]);

/**
 * Every `from()` chain of a Flux script that InfluxDB 2.7 would not run in storage, with why;
 * empty when the whole script reads storage through pushed-down shapes only. Besides the window
 * and bare aggregates, `group(columns: [tags]) |> count()|sum()|max()` right after the filters is
 * run in storage too: it adds up within each group (ReadGroupAggregate), one table per group.
 */
export function pushdownProblems(flux: string): string[] {
  const problems: string[] = [];
  for (const m of flux.matchAll(/\bfrom\(/g)) {
    const calls = chainAt(flux, m.index);
    let k = 2;
    while (calls[k]?.name === "filter") k++;
    const [group, fn] = calls.slice(k);
    const groupedInStorage =
      group?.name === "group" &&
      /^\s*(columns: \[("\w+"(, "\w+")*)?\])?\s*$/.test(group.args) &&
      fn !== undefined &&
      GROUPED_PUSHABLE.has(fn.name) &&
      fn.args.trim() === "";
    const problem = chainProblem(groupedInStorage ? [...calls.slice(0, k), ...calls.slice(k + 1)] : calls);
    if (problem !== undefined) problems.push(problem);
  }
  return problems;
}
