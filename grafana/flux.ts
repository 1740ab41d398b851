/**
 * Flux as the dashboards write it. Grafana replaces `v.timeRangeStart`, `v.timeRangeStop`,
 * `v.windowPeriod` and `v.defaultBucket` (the datasource's bucket) before the query runs, and
 * `${name}` with a dashboard variable's value.
 *
 * Aggregates come straight after `filter` where they can (count, sum, mean, last): InfluxDB then
 * computes them in storage instead of streaming every point through Flux.
 */
import { grafanaVariable } from "./model.js";

export const SENSOR = grafanaVariable("sensor");
export const FIELD = grafanaVariable("field");

const RANGE = "range(start: v.timeRangeStart, stop: v.timeRangeStop)";

function str(value: string): string {
  return JSON.stringify(value);
}

/** `r.<column> == "<value>"` for every entry, joined with `and`. */
export function where(conditions: Record<string, string>): string {
  return Object.entries(conditions)
    .map(([column, value]) => `r.${column} == ${str(value)}`)
    .join(" and ");
}

/** `r._field == "a" or r._field == "b"`, in parentheses. */
export function anyField(fields: readonly string[]): string {
  return `(${fields.map((f) => `r._field == ${str(f)}`).join(" or ")})`;
}

function pipeline(source: string, filter: string, stages: string[]): string {
  return [source, `filter(fn: (r) => ${filter})`, ...stages].join("\n  |> ");
}

/** The dashboard's time range, filtered, then `stages`. */
export function select(filter: string, ...stages: string[]): string {
  return pipeline(`from(bucket: v.defaultBucket)\n  |> ${RANGE}`, filter, stages);
}

/**
 * What holds at the end of the range, looking back `lookback`: used for "now" figures (firing
 * alerts, live workers) that must not depend on how far back the range starts.
 */
export function selectAsOfStop(lookback: string, filter: string, ...stages: string[]): string {
  return pipeline(
    `from(bucket: v.defaultBucket)\n  |> range(start: date.sub(d: ${lookback}, from: v.timeRangeStop), stop: v.timeRangeStop)`,
    filter,
    stages,
  );
}

export function withImports(imports: string[], body: string): string {
  return `${imports.map((i) => `import ${str(i)}`).join("\n")}\n\n${body}`;
}

/** Adds up per-series window values across series, leaving one series per `by`. */
export function sumAcross(by: string[]): string[] {
  const columns = by.map(str).join(", ");
  return [
    `group(columns: [${[...by.map(str), str("_time")].join(", ")}])`,
    "sum()",
    `group(columns: [${columns}])`,
    'sort(columns: ["_time"])',
  ];
}

/** `keep(columns: [...])`. */
export function keep(columns: readonly string[]): string {
  return `keep(columns: [${columns.map(str).join(", ")}])`;
}

/** One row per point with a column per field, for tables and annotations that show several fields. */
export const PIVOT_FIELDS = 'pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")';

/** Rounds a float to two decimals for annotation text. */
export const FMT = "fmt = (x) => string(v: math.round(x: x * 100.0) / 100.0)";
