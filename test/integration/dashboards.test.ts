/**
 * Every Flux query of every dashboard, run against the real InfluxDB over data that came through the
 * real pipeline: readings (with spikes and malformed messages) produced to Kafka and stored by the
 * real worker, its `pipeline` points from the real reporter, and alert transitions written as line
 * protocol (the alert engine does not write them yet). Variables are substituted the way Grafana
 * does it, and each result is checked for its columns and, where the data fixes them, its values.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { influxConfig } from "../../common/config.js";
import { createInflux } from "../../common/influx.js";
import { MEASUREMENTS } from "../../common/topics.js";
import { dashboards } from "../../grafana/catalog.js";
import { type Panel, tableColumns } from "../../grafana/model.js";
import { pointLine } from "../../ingest/line-protocol.js";
import { startPipelineReporter } from "../../ingest/metrics.js";
import {
  countPoints,
  type Env,
  eventually,
  fluxRows,
  isolatedEnv,
  produce,
  quietLogger,
  startWorker,
} from "../support/harness.js";

type Row = Record<string, unknown>;

const SENSORS = ["sensor_1", "sensor_2", "sensor_3"];
const SECONDS = 300;
const SPIKES = [120, 240];
const MALFORMED = 2;
const WORKER_ID = "dashboards-test-worker";
/** The sensor the Sensor detail dashboard is looked at with: the one with spikes and alerts. */
const SENSOR = "sensor_1";
/** Grafana's automatic interval for an hour-wide range on a wide panel, before the min interval. */
const AUTO_INTERVAL_MS = 10_000;

// Whole minutes, so the 1-minute windows of the data are whole too.
const T0 = Math.floor((Date.now() - 10 * 60_000) / 60_000) * 60_000;

function temperature(sensor: number, second: number): number {
  const base = 20 + sensor + (second % 7) * 0.5;
  return sensor === 0 && SPIKES.includes(second) ? base + 30 : base;
}

/** rule, sensor, severity, state, second after T0. sensor_1's rule is left firing. */
const ALERTS: [string, string, string, "firing" | "resolved", number][] = [
  ["temperature-low", "sensor_3", "warning", "firing", 60],
  ["temperature-low", "sensor_3", "warning", "resolved", 90],
  ["temperature-high", "sensor_1", "critical", "firing", 120],
  ["temperature-high", "sensor_1", "critical", "resolved", 125],
  ["sensor-silent", "sensor_2", "info", "firing", 200],
  ["sensor-silent", "sensor_2", "info", "resolved", 260],
  ["temperature-high", "sensor_1", "critical", "firing", 240],
];

/** A time as Flux writes it (no fraction when there is none). */
const iso = (ms: number) => new Date(ms).toISOString().replace(".000Z", "Z");

/** Go's time.Duration.String(), which Grafana uses to write v.windowPeriod into the query. */
function goDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = `${(ms % 60_000) / 1000}s`;
  if (h > 0) return `${h}h${m}m${s}`;
  if (m > 0) return `${m}m${s}`;
  return s;
}

function durationMs(text: string): number {
  const match = /^(\d+)(ms|s|m|h)$/.exec(text);
  if (!match) throw new Error(`unexpected interval ${text}`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as "ms" | "s" | "m" | "h"];
  return Number(match[1]) * unit;
}

interface QueryContext {
  from: Date;
  to: Date;
  intervalMs: number;
  bucket: string;
  org: string;
  variables: Record<string, string>;
}

/**
 * What Grafana sends to InfluxDB: the frontend replaces dashboard variables (`${name}`, `$name`,
 * `[[name]]`), then the backend replaces `<x>.timeRangeStart` and friends (pkg/tsdb/influxdb/flux/
 * macros.go) and `$__interval_ms` / `$__interval`.
 */
function interpolate(query: string, c: QueryContext): string {
  let flux = query.replace(
    /\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]/g,
    (whole, a?: string, b?: string, d?: string) => c.variables[a ?? b ?? d ?? ""] ?? whole,
  );
  const replacements: Record<string, string> = {
    timeRangeStart: c.from.toISOString(),
    timeRangeStop: c.to.toISOString(),
    windowPeriod: goDuration(c.intervalMs),
    defaultBucket: JSON.stringify(c.bucket),
    organization: JSON.stringify(c.org),
  };
  for (const [whole, , name] of flux.matchAll(/([a-zA-Z]+)\.([a-zA-Z]+)/g)) {
    const value = replacements[name as string];
    if (value !== undefined) flux = flux.replaceAll(whole, value);
  }
  return flux
    .replaceAll("$__interval_ms", String(c.intervalMs))
    .replaceAll("$__interval", goDuration(c.intervalMs));
}

/** The columns of a row as Grafana would see them (Flux's `result` and `table` are bookkeeping). */
function columns(row: Row): string[] {
  return Object.keys(row)
    .filter((k) => k !== "result" && k !== "table" && k !== "")
    .sort();
}

const single = (rows: Row[]): number => {
  expect(rows).toHaveLength(1);
  return rows[0]?._value as number;
};
const sumOf = (rows: Row[], column = "_value") => rows.reduce((n, r) => n + (r[column] as number), 0);

describe("dashboards against the real pipeline's data", () => {
  let env: Env;
  let context: (panel?: Panel) => QueryContext;
  let anomalyCount = 0;

  beforeAll(async () => {
    env = await isolatedEnv("dashboards");
    const messages = [];
    for (let second = 0; second < SECONDS; second++) {
      for (const [s, sensor] of SENSORS.entries()) {
        messages.push({
          key: sensor,
          value: JSON.stringify({
            sensor_id: sensor,
            site: "plant-a",
            temperature: temperature(s, second),
            timestamp: T0 + second * 1000,
          }),
        });
      }
    }
    for (let i = 0; i < MALFORMED; i++) messages.push({ key: "sensor_2", value: `not json ${i}` });
    await produce(env, messages);

    const worker = await startWorker(env);
    const config = influxConfig(env);
    const influx = createInflux(config);
    const stopReporter = startPipelineReporter(worker.metrics, influx, config, WORKER_ID, 250, quietLogger);
    try {
      await eventually(
        "all readings stored",
        () => countPoints(env, MEASUREMENTS.readings, "temperature"),
        (n) => n === SENSORS.length * SECONDS,
      );
      await eventually(
        "the malformed messages dead-lettered",
        async () => (await worker.metrics.deadLetters.get()).values[0]?.value ?? 0,
        (n) => n >= MALFORMED,
      );
    } finally {
      await stopReporter();
      await worker.stop();
    }

    const write = influx.getWriteApi(config.org, config.bucket, "ms");
    write.writeRecords(
      ALERTS.map(([rule, sensor, severity, state, second]) =>
        pointLine(
          MEASUREMENTS.alerts,
          { rule_id: rule, sensor_id: sensor, severity, state },
          {
            value: temperature(SENSORS.indexOf(sensor), second),
            threshold: 40,
            message: `${rule} on ${sensor} ${state}`,
          },
          T0 + second * 1000,
        ),
      ),
    );
    await write.close();

    anomalyCount = await countPoints(env, MEASUREMENTS.anomalies, "score");
    const to = new Date(Date.now() + 1000);
    context = (panel) => ({
      from: new Date(T0 - 60_000),
      to,
      intervalMs: Math.max(AUTO_INTERVAL_MS, durationMs(panel?.interval ?? "10s")),
      bucket: config.bucket,
      org: config.org,
      variables: { sensor: SENSOR, field: "temperature" },
    });
  });

  it("has the data the dashboards are checked against", async () => {
    // Every spike is flagged at least by the delta detector (the jump up and the fall back).
    expect(anomalyCount).toBeGreaterThanOrEqual(SPIKES.length * 2);
    expect(await countPoints(env, MEASUREMENTS.pipeline, "dlq")).toBeGreaterThan(0);
    expect(await countPoints(env, MEASUREMENTS.alerts, "value")).toBe(ALERTS.length);
  });

  /** Values the data fixes, by "dashboard uid / panel title / refId". */
  const expectations: Record<string, (rows: Row[]) => void> = {
    "sensor-fleet/Sensors reporting/A": (rows) => expect(single(rows)).toBe(SENSORS.length),
    "sensor-fleet/Readings/A": (rows) => expect(single(rows)).toBe(SENSORS.length * SECONDS),
    "sensor-fleet/Anomalies/A": (rows) => expect(single(rows)).toBe(anomalyCount),
    "sensor-fleet/Firing now/A": (rows) => expect(single(rows)).toBe(1),
    "sensor-fleet/Firing alerts/A": (rows) =>
      expect(rows.map((r) => [r.rule_id, r.sensor_id, r.severity, r.state])).toEqual([
        ["temperature-high", "sensor_1", "critical", "firing"],
      ]),
    "sensor-fleet/${field} by sensor, 1-minute mean/A": (rows) => {
      expect(new Set(rows.map((r) => r.sensor_id))).toEqual(new Set(SENSORS));
      // Five whole minutes per sensor, each window's mean stamped at its end.
      expect(rows.filter((r) => r.sensor_id === "sensor_2")).toHaveLength(SECONDS / 60);
      const first = rows.find((r) => r.sensor_id === "sensor_2") as Row;
      const values = Array.from({ length: 60 }, (_, i) => temperature(1, i));
      expect(first._time).toBe(iso(T0 + 60_000));
      expect(first._value).toBeCloseTo(values.reduce((a, b) => a + b) / 60, 9);
    },
    "sensor-fleet/Anomalies by detector/A": (rows) => expect(sumOf(rows)).toBe(anomalyCount),
    "sensor-fleet/Anomalies by sensor/A": (rows) =>
      expect(rows).toEqual([expect.objectContaining({ sensor_id: "sensor_1", anomalies: anomalyCount })]),
    "sensor-fleet/Latest ${field} per sensor/A": (rows) =>
      expect(rows.map((r) => [r.sensor_id, r._time, r.latest])).toEqual(
        SENSORS.map((sensor, s) => [sensor, iso(T0 + (SECONDS - 1) * 1000), temperature(s, SECONDS - 1)]),
      ),
    "sensor-detail/Latest ${field}/A": (rows) => expect(single(rows)).toBe(temperature(0, SECONDS - 1)),
    "sensor-detail/Readings/A": (rows) => expect(single(rows)).toBe(SECONDS),
    "sensor-detail/Anomalies/A": (rows) => expect(single(rows)).toBe(anomalyCount),
    "sensor-detail/Firing now/A": (rows) => expect(single(rows)).toBe(1),
    "sensor-detail/${field}: raw and 1-minute mean/raw": (rows) => {
      expect(rows).toHaveLength(SECONDS);
      expect(rows.map((r) => r._value)).toEqual(Array.from({ length: SECONDS }, (_, i) => temperature(0, i)));
    },
    "sensor-detail/${field}: raw and 1-minute mean/window": (rows) => {
      // Stamped at the window's start, so the step line covers the minute it summarises.
      expect(rows.map((r) => r._time)).toEqual(
        Array.from({ length: SECONDS / 60 }, (_, m) => iso(T0 + m * 60_000)),
      );
      const minute2 = Array.from({ length: 60 }, (_, i) => temperature(0, 120 + i));
      expect(rows[2]?._value).toBeCloseTo(minute2.reduce((a, b) => a + b) / 60, 9);
    },
    "sensor-detail/Anomaly score ÷ threshold/A": (rows) => {
      expect(rows).toHaveLength(anomalyCount);
      for (const r of rows) expect(r._value as number).toBeGreaterThan(1);
    },
    "sensor-detail/Anomaly flags/A": (rows) => {
      expect(rows).toHaveLength(anomalyCount);
      expect(rows.filter((r) => r.detector === "delta").map((r) => r._time)).toEqual(
        SPIKES.flatMap((s) => [T0 + (s + 1) * 1000, T0 + s * 1000])
          .sort((a, b) => b - a)
          .map(iso),
      );
    },
    "sensor-detail/Alert transitions/A": (rows) =>
      expect(rows.map((r) => [r.rule_id, r.state])).toEqual([
        ["temperature-high", "firing"],
        ["temperature-high", "resolved"],
        ["temperature-high", "firing"],
      ]),
    "sensor-alerts/Firing now/A": (rows) => expect(single(rows)).toBe(1),
    "sensor-alerts/Critical firing now/A": (rows) => expect(single(rows)).toBe(1),
    "sensor-alerts/Times fired/A": (rows) =>
      expect(single(rows)).toBe(ALERTS.filter((a) => a[3] === "firing").length),
    "sensor-alerts/Transitions/A": (rows) => expect(single(rows)).toBe(ALERTS.length),
    "sensor-alerts/Fired by severity/A": (rows) => {
      const bySeverity: Record<string, number> = {};
      for (const r of rows)
        bySeverity[r.severity as string] = (bySeverity[r.severity as string] ?? 0) + (r._value as number);
      expect(bySeverity).toEqual({ critical: 2, warning: 1, info: 1 });
    },
    "sensor-alerts/Fired by rule/A": (rows) => {
      const byRule: Record<string, number> = {};
      for (const r of rows)
        byRule[r.rule_id as string] = (byRule[r.rule_id as string] ?? 0) + (r._value as number);
      expect(byRule).toEqual({ "temperature-high": 2, "temperature-low": 1, "sensor-silent": 1 });
    },
    "sensor-alerts/Firing alerts/A": (rows) =>
      expect(rows.map((r) => [r.rule_id, r.sensor_id, r.state, r._time])).toEqual([
        ["temperature-high", "sensor_1", "firing", iso(T0 + 240_000)],
      ]),
    "sensor-alerts/History/A": (rows) => {
      const newestFirst = [...ALERTS].sort((a, b) => b[4] - a[4]);
      expect(rows.map((r) => [r.rule_id, r.sensor_id, r.severity, r.state, r._time])).toEqual(
        newestFirst.map(([rule, sensor, severity, state, second]) => [
          rule,
          sensor,
          severity,
          state,
          iso(T0 + second * 1000),
        ]),
      );
      expect(rows[0]).toMatchObject({
        value: temperature(1, 260),
        threshold: 40,
        message: "sensor-silent on sensor_2 resolved",
      });
    },
    "sensor-pipeline/Live workers/A": (rows) => expect(single(rows)).toBe(1),
    "sensor-pipeline/Dead letters per window/A": (rows) => expect(sumOf(rows)).toBe(MALFORMED),
    "sensor-pipeline/Write latency/A": (rows) => {
      expect(new Set(rows.map((r) => r.worker))).toEqual(new Set([WORKER_ID]));
      for (const r of rows) expect(r._value as number).toBeGreaterThan(0);
    },
    "sensor-pipeline/Throughput/A": (rows) =>
      expect(new Set(rows.map((r) => r._field))).toEqual(new Set(["consumed_per_s", "written_per_s"])),
  };

  const all = dashboards().flatMap(({ dashboard }) =>
    dashboard.panels.flatMap((panel) => panel.targets.map((t) => ({ dashboard, panel, target: t }))),
  );

  it("covers every panel target of every dashboard with a query", () => {
    expect(all.length).toBeGreaterThan(30);
    for (const { target } of all) expect(target.query.trim()).not.toBe("");
  });

  for (const { dashboard, panel, target } of all) {
    const key = `${dashboard.uid}/${panel.title}/${target.refId}`;
    it(`${dashboard.title} › ${panel.title} › ${target.refId}`, async () => {
      const flux = interpolate(target.query, context(panel));
      expect(flux).not.toMatch(/\$\{|v\.\w+/);
      const rows = await fluxRows(env, flux);
      expect(rows.length, flux).toBeGreaterThan(0);

      if (panel.type === "table") {
        for (const row of rows) expect(columns(row)).toEqual([...tableColumns(panel)].sort());
      } else {
        for (const row of rows) expect(typeof row._value, `_value of ${JSON.stringify(row)}`).toBe("number");
        if (panel.type === "stat") expect(rows).toHaveLength(1);
        if (panel.type === "timeseries")
          for (const row of rows) expect(Date.parse(row._time as string)).not.toBeNaN();
      }
      // A display name or a data link built from a label needs that label in every series.
      const labels = JSON.stringify(panel.fieldConfig).matchAll(/__field\.labels\.(\w+)/g);
      for (const [, label] of labels) {
        for (const row of rows)
          expect(typeof row[label as string], `${label} of ${JSON.stringify(row)}`).toBe("string");
      }
      // A rename by field name must name a field the query returns.
      for (const o of panel.fieldConfig.overrides) {
        if (o.matcher.id === "byName" && o.properties.some((p) => p.id === "displayName")) {
          expect(rows.map((r) => r._field)).toContain(o.matcher.options);
        }
      }

      expectations[key]?.(rows);
    });
  }

  it("has a value expectation for the panels whose values the data fixes", () => {
    const keys = new Set(
      all.map(({ dashboard, panel, target }) => `${dashboard.uid}/${panel.title}/${target.refId}`),
    );
    for (const key of Object.keys(expectations)) expect(keys).toContain(key);
  });

  for (const { dashboard, variable } of dashboards().flatMap(({ dashboard }) =>
    dashboard.templating.list.map((variable) => ({ dashboard, variable })),
  )) {
    it(`${dashboard.title} › variable ${variable.name}`, async () => {
      const rows = await fluxRows(env, interpolate(variable.query.query, context()));
      const values = rows.map((r) => r._value);
      if (variable.name === "sensor") expect(values.sort()).toEqual(SENSORS);
      else if (variable.name === "field") expect(values).toEqual(["temperature"]);
      else throw new Error(`no expectation for variable ${variable.name}`);
      expect(variable.current).toEqual(
        variable.name === "field" ? { text: "temperature", value: "temperature" } : {},
      );
    });
  }

  for (const { dashboard, annotation } of dashboards().flatMap(({ dashboard }) =>
    dashboard.annotations.list.map((annotation) => ({ dashboard, annotation })),
  )) {
    it(`${dashboard.title} › annotation ${annotation.name}`, async () => {
      const rows = await fluxRows(env, interpolate(annotation.target.query, context()));
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) {
        // Grafana takes the first time column as the annotation's time: `_time` must be the only one.
        expect(columns(row)).toEqual(["_time", "tags", "text", "title"]);
        expect(row.title).toMatch(/^(Anomaly \((delta|zscore|ewma)\)|Alert (firing|resolved): [\w-]+)$/);
        expect(row.text).not.toMatch(/null|NaN/);
      }
      if (annotation.name === "Anomalies") {
        expect(rows).toHaveLength(anomalyCount);
        expect(rows.map((r) => r.text)).toContain(
          `temperature = ${temperature(0, SPIKES[0] as number)}, expected ${temperature(0, (SPIKES[0] as number) - 1)}, score 30.5 > 5`,
        );
      } else {
        expect(rows.map((r) => r.title)).toEqual([
          "Alert firing: temperature-high",
          "Alert resolved: temperature-high",
          "Alert firing: temperature-high",
        ]);
        expect(rows[0]?.tags).toBe("alert,critical,firing");
      }
    });
  }
});
