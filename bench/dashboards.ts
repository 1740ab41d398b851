/**
 * The dashboards' queries at fleet scale: every panel, annotation and variable query of the built
 * dashboards, filled in as Grafana would for a few typical ranges, timed with the API's Flux runner.
 * bench/read.ts calls `benchDashboards` after it has loaded its data.
 */
import { Registry } from "prom-client";
import { FluxRunner } from "../api/influx-query.js";
import { influxConfig } from "../common/config.js";
import { createInflux } from "../common/influx.js";
import { dashboards } from "../grafana/catalog.js";
import { quoted } from "../grafana/flux.js";
import {
  allValueVariables,
  type DashboardQuery,
  dashboardQueries,
  grafanaIntervalMs,
  interpolate,
  queryWindowMs,
  tierFor,
  type VariableValue,
  variableValues,
} from "../grafana/interpolate.js";

export interface DashboardBenchOptions {
  influx: { url: string; token: string; org: string; bucket: string };
  /** The loaded data's range (epoch ms); the ranges timed end at rangeStop. */
  rangeStart: number;
  rangeStop: number;
  sensor: string;
  field: string;
  iterations: number;
  /** Only the queries whose "dashboard › panel" name matches (default: all). */
  only?: RegExp;
}

export interface DashboardBenchResult {
  dashboard: string;
  /** "panel title / refId", "annotation name" or "variable name", with the range. */
  panel: string;
  /** The source an auto-tiered readings query reads ("raw", "1m", "1h"); "raw" for the others. */
  tier: string;
  p50Ms: number;
  p99Ms: number;
  maxPointsPerSeries: number;
  maxDataPoints: number;
}

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

export async function benchDashboards(o: DashboardBenchOptions): Promise<DashboardBenchResult[]> {
  const span = o.rangeStop - o.rangeStart;
  const ranges = [
    { name: "15m", ms: 15 * MIN },
    { name: "6h", ms: 6 * HOUR },
    { name: "7d", ms: 7 * DAY },
    { name: "whole", ms: span },
  ].filter((r, i, all) => r.ms <= span && all.findIndex((x) => x.ms === r.ms) === i);
  const runner = new FluxRunner(
    createInflux(
      influxConfig({
        INFLUX_URL: o.influx.url,
        INFLUX_TOKEN: o.influx.token,
        INFLUX_ORG: o.influx.org,
        INFLUX_BUCKET: o.influx.bucket,
      }),
    ),
    o.influx.org,
    new Registry(),
    60_000,
  );
  // As Grafana: the variables standing for all their values are queried for the range first.
  const cases = [];
  for (const { dashboard } of dashboards()) {
    for (const range of ranges) {
      const context = (q: DashboardQuery, variables: Record<string, VariableValue>) => ({
        from: o.rangeStop - range.ms,
        to: o.rangeStop,
        intervalMs: grafanaIntervalMs(range.ms, q.maxDataPoints, q.minInterval),
        bucket: o.influx.bucket,
        org: o.influx.org,
        variables: variableValues(dashboard, variables),
      });
      const variables: Record<string, VariableValue> = { sensor: o.sensor, field: o.field };
      for (const q of allValueVariables(dashboard)) {
        const rows = await runner.columns("dashboard", interpolate(q.query, context(q, variables)), [
          "_value",
        ]);
        variables[q.name] = rows.map(([value = ""]) => value);
      }
      for (const q of dashboardQueries(dashboard)) {
        if (o.only !== undefined && !o.only.test(`${dashboard.title} › ${q.name}`)) continue;
        const c = context(q, variables);
        const flux = interpolate(q.query, c);
        const intervalMs = c.intervalMs;
        const tiered = q.query.includes(quoted("tier"));
        cases.push({
          dashboard: dashboard.title,
          panel: `${q.kind === "panel" ? "" : `${q.kind} `}${q.name} (${range.name})`,
          tier: tiered ? tierFor(queryWindowMs(range.ms, intervalMs, q.maxDataPoints)) : "raw",
          maxDataPoints: q.maxDataPoints,
          flux,
          times: [] as number[],
          maxPointsPerSeries: 0,
        });
      }
    }
  }
  // Alternating: each iteration runs every case once, so load and caches fall on all alike.
  for (let i = 0; i < o.iterations; i++) {
    for (const c of cases) {
      const began = performance.now();
      const rows = await runner.columns("dashboard", c.flux, ["result", "table"]);
      c.times.push(performance.now() - began);
      const perSeries = new Map<string, number>();
      for (const [result = "", table = ""] of rows) {
        perSeries.set(`${result}|${table}`, (perSeries.get(`${result}|${table}`) ?? 0) + 1);
      }
      c.maxPointsPerSeries = Math.max(c.maxPointsPerSeries, ...perSeries.values(), 0);
    }
  }
  return cases.map((c) => {
    const sorted = [...c.times].sort((a, b) => a - b);
    return {
      dashboard: c.dashboard,
      panel: c.panel,
      tier: c.tier,
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      maxPointsPerSeries: c.maxPointsPerSeries,
      maxDataPoints: c.maxDataPoints,
    };
  });
}
