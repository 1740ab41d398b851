/**
 * Flux as the dashboards write it: whole scripts built from common/flux-shapes.ts with Grafana's
 * values as the Flux expressions. Grafana replaces `v.timeRangeStart`, `v.timeRangeStop`,
 * `v.windowPeriod` and `v.defaultBucket` (the datasource's bucket) before the query runs, and
 * `${name}` with a dashboard variable's value, so `"${sensor}"` reaches InfluxDB as a literal and
 * a predicate on it is still pushed down.
 */
import {
  aggregate,
  and,
  covering,
  eq,
  lit,
  type PushableFunction,
  read,
  type TieredSelection,
  tiering,
  windowing,
} from "../common/flux-shapes.js";
import { ROLLUP_TIERS } from "../common/rollups.js";
import { MEASUREMENTS } from "../common/topics.js";
import { grafanaVariable } from "./model.js";

export const GRAFANA = {
  start: "v.timeRangeStart",
  stop: "v.timeRangeStop",
  windowPeriod: "v.windowPeriod",
  bucket: "v.defaultBucket",
} as const;

/** A dashboard variable's value as a Flux string literal (Grafana fills it in before Flux sees it). */
export const quoted = (name: string): string => `"${grafanaVariable(name)}"`;

export const FIELD = grafanaVariable("field");
/** Which data the readings panels read: auto (by the window), raw, or one rollup tier. */
export const TIERS = ["auto", "raw", ...ROLLUP_TIERS.map((t) => t.name)] as const;

/** The readings of the dashboard's field, raw and rolled up; `sensor` narrows to one sensor. */
export function readingsOf(sensor?: string): TieredSelection {
  return readingsWhere(sensor === undefined ? "" : eq("sensor_id", sensor));
}

/** The readings of the dashboard's field whose sensor passes `sensors` (a predicate on sensor_id). */
export function readingsWhere(sensors: string): TieredSelection {
  return {
    raw: and(eq("_measurement", lit.str(MEASUREMENTS.readings)), eq("_field", quoted("field")), sensors),
    rollup: and(eq("field", quoted("field")), sensors),
  };
}

/**
 * `r.sensor_id` is one of a hidden all-values variable's sensors: its query returns them escaped
 * for a Flux regex literal, and Grafana's `pipe` format joins them with `|` (no values: `^()$`,
 * which no sensor matches). A regex on a tag is pushed down like `==`.
 */
export const sensorIn = (variable: string): string => `r.sensor_id =~ /^(\${${variable}:pipe})$/`;

export function withImports(imports: string[], body: string): string {
  return imports.length === 0 ? body : `${imports.map((i) => `import ${lit.str(i)}`).join("\n")}\n\n${body}`;
}

/**
 * A script over the dashboard's range whose windows come from v.windowPeriod, widened where the
 * range would otherwise hold more than `maxDataPoints` of them (`every`, `start`, `stop`).
 */
export function windowed(maxDataPoints: number, ...statements: string[]): string {
  return [
    windowing({
      start: GRAFANA.start,
      stop: GRAFANA.stop,
      windowPeriod: GRAFANA.windowPeriod,
      maxWindows: maxDataPoints,
    }),
    ...statements,
  ].join("\n");
}

/** `windowed`, plus the tier the window picks and where its rollups end (see flux-shapes `tiering`). */
export function tieredScript(maxDataPoints: number, ...statements: string[]): string {
  return windowed(
    maxDataPoints,
    tiering({ forced: quoted("tier"), rawBucket: GRAFANA.bucket }),
    ...statements,
  );
}

/**
 * A script over exactly the dashboard's range (no windows), each part of it read from the coarsest
 * source holding it: the 1h rollups' whole hours, the 1m rollups' whole minutes around them and
 * raw readings for the rest (see flux-shapes `covering`, `covered`, `coveredLatest`).
 */
export function coveredScript(imports: string[], ...statements: string[]): string {
  return withImports(
    ["array", ...imports],
    [covering({ start: GRAFANA.start, stop: GRAFANA.stop, rawBucket: GRAFANA.bucket }), ...statements].join(
      "\n",
    ),
  );
}

/**
 * Events (anomaly flags, alert transitions) in the range: per series and window, the latest one
 * with its own time, so at most `maxPoints` per series whatever the range. Annotation queries get
 * no reliable v.windowPeriod from Grafana, so the window comes from the range alone.
 */
export function latestEvents(o: {
  maxPoints: number;
  where: string;
  windowPeriod?: boolean;
  after: string[];
}): string {
  return [
    windowing({
      start: GRAFANA.start,
      stop: GRAFANA.stop,
      ...(o.windowPeriod ? { windowPeriod: GRAFANA.windowPeriod } : {}),
      maxWindows: o.maxPoints,
    }),
    read({
      bucket: GRAFANA.bucket,
      start: GRAFANA.start,
      stop: GRAFANA.stop,
      where: o.where,
      aggregate: aggregate.selectInWindows("last"),
      after: o.after,
    }),
  ].join("\n");
}

/** One pushed-down function over the dashboard's range (in windows of `every` when given). */
export function over(where: string, fn: PushableFunction, after: string[], every?: string): string {
  return read({
    bucket: GRAFANA.bucket,
    start: every === undefined ? GRAFANA.start : "start",
    stop: every === undefined ? GRAFANA.stop : "stop",
    where,
    aggregate: every === undefined ? aggregate.whole(fn) : aggregate.windows(fn, every),
    after,
  });
}

/** Adds up per-series window values across series, leaving one series per `by`. */
export function sumAcross(by: string[]): string[] {
  return [
    `group(columns: [${[...by, "_time"].map(lit.str).join(", ")}])`,
    "sum()",
    `group(columns: [${by.map(lit.str).join(", ")}])`,
    'sort(columns: ["_time"])',
  ];
}

/** `keep(columns: [...])`. */
export function keep(columns: readonly string[]): string {
  return `keep(columns: [${columns.map(lit.str).join(", ")}])`;
}

/** One row per point with a column per field, for tables and annotations that show several fields. */
export const PIVOT_FIELDS = 'pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")';

/** Rounds a float to two decimals for annotation text. */
export const FMT = "fmt = (x) => string(v: math.round(x: x * 100.0) / 100.0)";

/** maxDataPoints of a time-series panel: its queries' windows keep each series within it. */
export const SERIES_POINTS = 500;
/** maxDataPoints of a stat or table panel (their queries return a handful of rows). */
export const FEW_POINTS = 100;
/** Series a per-sensor panel draws at most; its description says which. */
export const SENSOR_SERIES = 20;
