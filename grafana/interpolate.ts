/**
 * What Grafana 11 sends to InfluxDB for a dashboard query, so tests and benchmarks can run every
 * panel's Flux as Grafana would: the interval it computes from the range, the panel's
 * maxDataPoints and its minimum interval (v.windowPeriod), and the text it substitutes.
 */
import { ROLLUP_TIERS } from "../common/rollups.js";
import { ALL_VALUE, type Dashboard, type Panel } from "./model.js";

/**
 * Grafana's interval rounding (rangeutil.roundInterval in @grafana/data): the raw interval
 * range / maxDataPoints snapped to the nice size of its band, which can be smaller than the raw
 * interval, so v.windowPeriod alone may give more than maxDataPoints windows.
 */
const ROUNDING: [below: number, to: number][] = [
  [15, 10],
  [35, 20],
  [75, 50],
  [150, 100],
  [350, 200],
  [750, 500],
  [1500, 1000],
  [3500, 2000],
  [7500, 5000],
  [12500, 10000],
  [17500, 15000],
  [25000, 20000],
  [45000, 30000],
  [90000, 60000],
  [210000, 120000],
  [450000, 300000],
  [750000, 600000],
  [1050000, 900000],
  [1500000, 1200000],
  [2700000, 1800000],
  [5400000, 3600000],
  [9000000, 7200000],
  [16200000, 10800000],
  [32400000, 21600000],
  [86400000, 43200000],
  [604800000, 86400000],
  [1814400000, 604800000],
  [3628800000, 2592000000],
];

export function roundInterval(ms: number): number {
  for (const [below, to] of ROUNDING) if (ms < below) return to;
  return 31536000000;
}

/** The datasource's minimum interval (grafana/provisioning/datasources/influxdb.yaml `timeInterval`). */
export const DATASOURCE_MIN_INTERVAL = "10s";

export function durationMs(text: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  if (!match) throw new Error(`interval ${JSON.stringify(text)} is not valid: expected e.g. 10s, 1m, 1h`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as "ms"];
  return Number(match[1]) * unit;
}

/** Grafana's interval for a query: the rounded range / maxDataPoints, at least the minimum interval. */
export function grafanaIntervalMs(rangeMs: number, maxDataPoints: number, minInterval?: string): number {
  const low = durationMs(minInterval ?? DATASOURCE_MIN_INTERVAL);
  return Math.max(roundInterval(rangeMs / maxDataPoints), low);
}

/** Go's time.Duration.String(), which Grafana uses to write v.windowPeriod into the query. */
export function goDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = `${(ms % 60_000) / 1000}s`;
  if (h > 0) return `${h}h${m}m${s}`;
  if (m > 0) return `${m}m${s}`;
  return s;
}

/**
 * The window (ms) a query built with common/flux-shapes `windowing` uses: v.windowPeriod, or the
 * smallest nice size that keeps the range within `maxWindows` windows when that is larger. The
 * same integer arithmetic as the Flux, in nanoseconds.
 */
export function queryWindowMs(rangeMs: number, windowPeriodMs: number, maxWindows: number): number {
  const least = (BigInt(rangeMs) * 1_000_000n) / BigInt(maxWindows - 1) + 1n;
  const nice = [
    1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
  ];
  const niceS = nice.find((s) => BigInt(s) * 1_000_000_000n >= least);
  const dayNs = 86_400_000_000_000n;
  const fitting =
    niceS === undefined ? ((least + dayNs - 1n) / dayNs) * dayNs : BigInt(niceS) * 1_000_000_000n;
  const wanted = BigInt(windowPeriodMs) * 1_000_000n;
  return Number((wanted >= fitting ? wanted : fitting) / 1_000_000n);
}

/** The tier an "auto" readings query reads for a window (the coarsest rollup tier dividing it). */
export function tierFor(windowMs: number): string {
  return [...ROLLUP_TIERS].sort((a, b) => b.ms - a.ms).find((t) => windowMs % t.ms === 0)?.name ?? "raw";
}

export interface QueryContext {
  from: number;
  to: number;
  intervalMs: number;
  bucket: string;
  org: string;
  /** Dashboard variables by name; an includeAll variable at "All" has all its query's values. */
  variables: Record<string, VariableValue>;
}

export type VariableValue = string | readonly string[];

/**
 * Grafana's formats for `${name:format}` (formatRegistry in @grafana/scenes), those the dashboards
 * use: none (a single value as is) and `pipe` (values joined with `|`, not escaped).
 */
function formatted(name: string, value: VariableValue, format: string | undefined): string {
  if (format === "pipe") return typeof value === "string" ? value : value.join("|");
  if (format === undefined && typeof value === "string") return value;
  throw new Error(
    `variable ${name} in format ${format ?? "(none)"} with ${JSON.stringify(value)} is not handled: expected a single value, or the pipe format`,
  );
}

/**
 * What Grafana sends to InfluxDB: the frontend replaces dashboard variables (`${name}`, `$name`,
 * `[[name]]`), then the backend replaces `v.timeRangeStart` and friends and `$__interval(_ms)`.
 */
export function interpolate(query: string, c: QueryContext): string {
  let flux = query.replace(
    /\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)\]\]/g,
    (whole, a?: string, format?: string, b?: string, d?: string) => {
      const name = a ?? b ?? d ?? "";
      const value = c.variables[name];
      return value === undefined ? whole : formatted(name, value, format);
    },
  );
  const replacements: Record<string, string> = {
    timeRangeStart: new Date(c.from).toISOString(),
    timeRangeStop: new Date(c.to).toISOString(),
    windowPeriod: goDuration(c.intervalMs),
    defaultBucket: JSON.stringify(c.bucket),
    organization: JSON.stringify(c.org),
  };
  flux = flux.replace(/\bv\.([a-zA-Z]+)\b/g, (whole, name: string) => replacements[name] ?? whole);
  return flux
    .replaceAll("$__interval_ms", String(c.intervalMs))
    .replaceAll("$__interval", goDuration(c.intervalMs));
}

export type QueryKind = "panel" | "annotation" | "variable";

export interface DashboardQuery {
  kind: QueryKind;
  /** "panel title / refId", "annotation name" or "variable name". */
  name: string;
  query: string;
  /** The panel, for panel queries. */
  panel?: Panel;
  /** What Grafana computes v.windowPeriod from. */
  maxDataPoints: number;
  minInterval?: string;
}

/**
 * Annotation and variable queries have no panel; Grafana derives their interval from the
 * dashboard's width in pixels. The queries here never depend on it (annotations window by the
 * range, variables read the tag index), so any value serves.
 */
const NO_PANEL_POINTS = 1000;

/** Every Flux query of a dashboard: each panel target, annotation and query variable. */
export function dashboardQueries(d: Dashboard): DashboardQuery[] {
  return [
    ...d.panels.flatMap((panel) =>
      panel.targets.map((t) => ({
        kind: "panel" as const,
        name: `${panel.title} / ${t.refId}`,
        query: t.query,
        panel,
        maxDataPoints: panel.maxDataPoints,
        ...(panel.interval === undefined ? {} : { minInterval: panel.interval }),
      })),
    ),
    ...d.annotations.list.map((a) => ({
      kind: "annotation" as const,
      name: a.name,
      query: a.target.query,
      maxDataPoints: NO_PANEL_POINTS,
    })),
    ...d.templating.list.flatMap((v) =>
      v.type === "query"
        ? [{ kind: "variable" as const, name: v.name, query: v.query.query, maxDataPoints: NO_PANEL_POINTS }]
        : [],
    ),
  ];
}

/**
 * The variables a dashboard is looked at with: each variable's current value, then `overrides`.
 * An includeAll variable at "All" needs its query's values: pass them in `overrides` (see
 * `allValueVariables`).
 */
export function variableValues(
  d: Dashboard,
  overrides: Record<string, VariableValue>,
): Record<string, VariableValue> {
  const values: Record<string, VariableValue> = {};
  for (const v of d.templating.list) {
    if ("value" in v.current && typeof v.current.value === "string" && v.current.value !== ALL_VALUE)
      values[v.name] = v.current.value;
  }
  return { ...values, ...overrides };
}

/**
 * The variable queries whose values (all of them: the variable is at "All") the panels use, as
 * Grafana runs them before the panels whenever the range changes.
 */
export function allValueVariables(d: Dashboard): DashboardQuery[] {
  const names = new Set(
    d.templating.list.filter((v) => v.type === "query" && v.includeAll).map((v) => v.name),
  );
  return dashboardQueries(d).filter((q) => q.kind === "variable" && names.has(q.name));
}
