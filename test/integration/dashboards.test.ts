/**
 * Every Flux query of every dashboard (panels, annotations, variables, enumerated from the built
 * dashboards) run against the real InfluxDB as Grafana would send it, over data that came through
 * the real pipeline: three hours of readings produced to Kafka and stored by the real worker, which
 * also wrote the 1m and 1h rollups and how far they are closed, its `pipeline` points, and alert
 * transitions written as the worker writes them. For a 15-minute, a 6-hour and a 30-day range each
 * query must succeed, read storage through pushed-down operators only (InfluxDB's own operator
 * profiler says which ran), and keep every series within the panel's maxDataPoints. Rollup answers
 * equal raw answers window for window, the readings panels equal the generated data, and "firing
 * now" equals the state the alert history implies.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { influxConfig } from "../../common/config.js";
import { lit, tiering, windowing } from "../../common/flux-shapes.js";
import { createInflux } from "../../common/influx.js";
import { ROLLUP_MEASUREMENT, ROLLUP_TIERS } from "../../common/rollups.js";
import { MEASUREMENTS } from "../../common/topics.js";
import { dashboards } from "../../grafana/catalog.js";
import { FIELD, GRAFANA, quoted } from "../../grafana/flux.js";
import {
  allValueVariables,
  type DashboardQuery,
  dashboardQueries,
  grafanaIntervalMs,
  interpolate,
  type QueryContext,
  queryWindowMs,
  tierFor,
  type VariableValue,
  variableValues,
} from "../../grafana/interpolate.js";
import { type Dashboard, tableColumns } from "../../grafana/model.js";
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

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const SENSORS = ["sensor_1", "sensor_2", "sensor_3"];
const STEP_MS = 30_000;
const MALFORMED = 2;
const WORKER_ID = "dashboards-test-worker";
/** The sensor the Sensor detail dashboard is looked at with: the one with spikes and alerts. */
const SENSOR = "sensor_1";

const NOW = Date.now();
// Whole hours back, so the 1h rollups have closed windows; the newest minutes stay raw only.
const T0 = Math.floor((NOW - 3 * HOUR) / HOUR) * HOUR;
const END = NOW - 5 * MIN;
const SPIKES = [T0 + 40 * MIN, T0 + 130 * MIN];

function temperature(s: number, t: number): number {
  const base = 20 + s + ((t / STEP_MS) % 7) * 0.5;
  return s === 0 && SPIKES.includes(t) ? base + 30 : base;
}

const READINGS: { sensor: string; s: number; t: number; value: number }[] = [];
for (let t = T0; t < END; t += STEP_MS) {
  for (const [s, sensor] of SENSORS.entries()) READINGS.push({ sensor, s, t, value: temperature(s, t) });
}

/** rule, sensor, severity, state, minutes after T0. */
const ALERTS: [string, string, string, "firing" | "resolved", number][] = [
  ["temperature-low", "sensor_3", "warning", "firing", 10],
  ["temperature-low", "sensor_3", "warning", "resolved", 20],
  ["temperature-high", "sensor_1", "critical", "firing", 40],
  ["temperature-high", "sensor_1", "critical", "resolved", 41],
  ["sensor-silent", "sensor_2", "info", "firing", 100],
  ["sensor-silent", "sensor_2", "info", "resolved", 110],
  ["temperature-high", "sensor_1", "critical", "firing", 130],
  ["humidity-high", "sensor_2", "warning", "firing", 150],
];

/** Per rule and sensor the newest transition; firing ones are what "firing now" must show. */
const FIRING_NOW = (() => {
  const latest = new Map<string, (typeof ALERTS)[number]>();
  for (const a of [...ALERTS].sort((x, y) => x[4] - y[4])) latest.set(`${a[0]}|${a[1]}`, a);
  return [...latest.values()].filter((a) => a[3] === "firing");
})();

const iso = (ms: number) => new Date(ms).toISOString();

interface Range {
  name: string;
  from: number;
  to: number;
}

const RANGES: Range[] = [
  { name: "15 min", from: NOW - 15 * MIN, to: NOW + 1000 },
  { name: "6 h", from: NOW - 6 * HOUR, to: NOW + 1000 },
  { name: "30 d", from: NOW - 30 * DAY, to: NOW + 1000 },
];

/** Rows per Flux table (`result` + `table`): one series each. */
function seriesSizes(rows: Row[]): number[] {
  const sizes = new Map<string, number>();
  for (const r of rows) sizes.set(`${r.result}|${r.table}`, (sizes.get(`${r.result}|${r.table}`) ?? 0) + 1);
  return [...sizes.values()];
}

/** The columns of a row as Grafana would see them (Flux's `result` and `table` are bookkeeping). */
function columns(row: Row): string[] {
  return Object.keys(row)
    .filter((k) => k !== "result" && k !== "table" && k !== "")
    .sort();
}

/** The script with InfluxDB's operator profiler switched on (after the script's own imports). */
function profiled(flux: string): string {
  const lines = flux.split("\n");
  const lastImport = lines.reduce((n, line, i) => (line.startsWith("import ") ? i : n), -1);
  lines.splice(lastImport + 1, 0, 'option profiler.enabledProfilers = ["operator"]');
  return `import "profiler"\n${lines.join("\n")}`;
}

describe("dashboards against the real pipeline's data", () => {
  let env: Env;
  let bucket: string;
  let org: string;
  let anomalyCount = 0;

  beforeAll(async () => {
    env = await isolatedEnv("dashboards");
    const config = influxConfig(env);
    bucket = config.bucket;
    org = config.org;
    const messages = READINGS.map((r) => ({
      key: r.sensor,
      value: JSON.stringify({ sensor_id: r.sensor, site: "plant-a", temperature: r.value, timestamp: r.t }),
    }));
    for (let i = 0; i < MALFORMED; i++) messages.push({ key: "sensor_2", value: `not json ${i}` });
    await produce(env, messages);

    // Windows whose sensor has since sent a reading past their end plus the allowed lateness.
    const last = Math.max(...READINGS.map((r) => r.t));
    const closedWindows = (sizeMs: number) =>
      new Set(
        READINGS.filter((r) => Math.floor(r.t / sizeMs) * sizeMs + sizeMs + 10_000 < last).map(
          (r) => `${r.sensor}|${Math.floor(r.t / sizeMs)}`,
        ),
      ).size;

    const worker = await startWorker(env);
    const influx = createInflux(config);
    const stopReporter = startPipelineReporter(worker.metrics, influx, config, WORKER_ID, 250, quietLogger);
    try {
      await eventually(
        "all readings stored",
        () => countPoints(env, MEASUREMENTS.readings, "temperature"),
        (n) => n === READINGS.length,
      );
      for (const tier of ROLLUP_TIERS) {
        await eventually(
          `the closed ${tier.name} windows rolled up`,
          () =>
            countPoints(
              { ...env, INFLUX_BUCKET: config.rollupBuckets[tier.name] },
              ROLLUP_MEASUREMENT,
              "count",
            ),
          (n) => n >= closedWindows(tier.ms) && closedWindows(tier.ms) > 0,
        );
      }
      await eventually(
        "the rollup progress of both tiers written",
        () =>
          fluxRows(
            env,
            `from(bucket: "${config.rollupBuckets["1m"]}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "rollup_progress") |> last() |> group(columns: ["tier"]) |> min()`,
          ),
        (rows) => rows.length === ROLLUP_TIERS.length,
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

    // As the worker's partition task writes them (ingest/partition-task.ts `emit`).
    const write = influx.getWriteApi(config.org, config.bucket, "ms");
    write.writeRecords(
      ALERTS.map(([rule, sensor, severity, state, minute]) =>
        pointLine(
          MEASUREMENTS.alerts,
          { rule_id: rule, sensor_id: sensor, severity, state },
          {
            value: temperature(SENSORS.indexOf(sensor), T0 + minute * MIN),
            threshold: 40,
            message: `${rule} on ${sensor} ${state}`,
            rule_name: rule,
          },
          T0 + minute * MIN,
        ),
      ),
    );
    await write.close();
    anomalyCount = await countPoints(env, MEASUREMENTS.anomalies, "score");
  });

  const context = (
    d: Dashboard,
    q: DashboardQuery,
    range: Range,
    variables: Record<string, VariableValue> = {},
  ) =>
    ({
      from: range.from,
      to: range.to,
      intervalMs: grafanaIntervalMs(range.to - range.from, q.maxDataPoints, q.minInterval),
      bucket,
      org,
      variables: variableValues(d, { sensor: SENSOR, ...variables }),
    }) satisfies QueryContext;

  /** As Grafana: the hidden all-values variables (top sensors, listed sensors) queried for the range. */
  async function withAllValues(d: Dashboard, range: Range, variables: Record<string, VariableValue> = {}) {
    const values: Record<string, VariableValue> = { ...variables };
    for (const q of allValueVariables(d)) {
      const rows = await fluxRows(env, interpolate(q.query, context(d, q, range, values)));
      values[q.name] = rows.map((r) => String(r._value));
    }
    return values;
  }

  it("has the data the dashboards are checked against", async () => {
    // Every spike is flagged at least by the delta detector (the jump up and the fall back).
    expect(anomalyCount).toBeGreaterThanOrEqual(SPIKES.length * 2);
    expect(await countPoints(env, MEASUREMENTS.pipeline, "dlq")).toBeGreaterThan(0);
    expect(await countPoints(env, MEASUREMENTS.alerts, "value")).toBe(ALERTS.length);
  });

  const all = dashboards().flatMap(({ dashboard }) =>
    dashboardQueries(dashboard).map((q) => ({ dashboard, q })),
  );

  it("enumerates every panel target, annotation and query variable of the built dashboards", () => {
    const built = dashboards().reduce(
      (n, { dashboard: d }) =>
        n +
        d.panels.reduce((k, p) => k + p.targets.length, 0) +
        d.annotations.list.length +
        d.templating.list.filter((v) => v.type === "query").length,
      0,
    );
    expect(all).toHaveLength(built);
    expect(all.length).toBeGreaterThan(40);
  });

  for (const range of RANGES) {
    for (const { dashboard, q } of all) {
      it(`${range.name}: ${dashboard.title} › ${q.kind} ${q.name}`, async () => {
        const flux = interpolate(
          q.query,
          context(dashboard, q, range, await withAllValues(dashboard, range)),
        );
        expect(flux).not.toMatch(/\$\{|\bv\.\w+/);
        const rows = await fluxRows(env, profiled(flux));
        const operators = rows.filter((r) => r.result === "_profiler").map((r) => String(r.Type));
        const answer = rows.filter((r) => r.result !== "_profiler");

        // Storage answered every read with an aggregate or from its index, never point by point.
        const reads = operators.filter((t) => t.startsWith("*influxdb."));
        expect(reads.length, flux).toBeGreaterThan(0);
        for (const t of reads)
          expect([
            "*influxdb.readWindowAggregateSource",
            "*influxdb.readTagValuesSource",
            "*influxdb.readGroupSource",
          ]).toContain(t);

        for (const size of seriesSizes(answer)) expect(size).toBeLessThanOrEqual(q.maxDataPoints);
        // Over the whole data every query shows something (the workers' own points are stamped later).
        if (range === RANGES[2] && dashboard.uid !== "sensor-pipeline")
          expect(answer.length, flux).toBeGreaterThan(0);
        if (q.kind === "annotation") {
          for (const row of answer) expect(columns(row)).toEqual(["_time", "tags", "text", "title"]);
          return;
        }
        if (q.kind === "variable") {
          const values = answer.map((r) => r._value).sort();
          // Top and listed sensors: every sensor, as there are fewer than either keeps.
          expect(values).toEqual(q.name === "field" ? ["temperature"] : SENSORS);
          return;
        }
        const panel = q.panel;
        if (panel === undefined) throw new Error(`panel query ${q.name} without its panel`);
        if (panel.type === "table") {
          for (const row of answer) expect(columns(row)).toEqual([...tableColumns(panel)].sort());
        } else {
          for (const row of answer)
            expect(typeof row._value, `_value of ${JSON.stringify(row)}`).toBe("number");
          if (panel.type === "stat") expect(answer.length).toBeLessThanOrEqual(1);
        }
        // A display name or a data link built from a label needs that label in every series.
        for (const [, label] of JSON.stringify(panel.fieldConfig).matchAll(/__field\.labels\.(\w+)/g)) {
          for (const row of answer)
            expect(typeof row[label as string], `${label} of ${JSON.stringify(row)}`).toBe("string");
        }
      });
    }
  }

  /** Runs one panel's query of a dashboard over a range. */
  async function panelRows(uid: string, title: string, range: Range, variables: Record<string, string> = {}) {
    const found = all.find(({ dashboard, q }) => dashboard.uid === uid && q.panel?.title === title);
    if (found === undefined) throw new Error(`no panel ${title} on ${uid}`);
    const values = await withAllValues(found.dashboard, range, variables);
    const rows = await fluxRows(
      env,
      interpolate(found.q.query, context(found.dashboard, found.q, range, values)),
    );
    return { rows, q: found.q, dashboard: found.dashboard };
  }

  const WHOLE = RANGES[2] as Range;

  it("shows the counts and latest values the data fixes", async () => {
    // The worker's pipeline points are stamped when written, after the ranges above were fixed.
    const untilNow = { ...WHOLE, to: Date.now() + 1000 };
    const single = async (uid: string, title: string) => {
      const { rows } = await panelRows(uid, title, uid === "sensor-pipeline" ? untilNow : WHOLE);
      expect(rows, `${uid} ${title}`).toHaveLength(1);
      return rows[0]?._value;
    };
    expect(await single("sensor-fleet", "Sensors reporting")).toBe(SENSORS.length);
    expect(await single("sensor-fleet", "Readings")).toBe(READINGS.length);
    expect(await single("sensor-fleet", "Anomalies")).toBe(anomalyCount);
    expect(await single("sensor-detail", "Readings")).toBe(READINGS.length / SENSORS.length);
    const last = READINGS.filter((r) => r.sensor === SENSOR).at(-1);
    expect(await single("sensor-detail", `Latest ${FIELD}`)).toBe(last?.value);
    expect(await single("sensor-alerts", "Times fired")).toBe(ALERTS.filter((a) => a[3] === "firing").length);
    expect(await single("sensor-alerts", "Transitions")).toBe(ALERTS.length);
    expect(await single("sensor-pipeline", "Live workers")).toBe(1);
    const dlq = await panelRows("sensor-pipeline", "Dead letters per window", untilNow);
    expect(dlq.rows.reduce((n, r) => n + (r._value as number), 0)).toBe(MALFORMED);
    const latest = await panelRows("sensor-fleet", `Latest ${FIELD} per sensor`, WHOLE);
    expect(latest.rows.map((r) => [r.sensor_id, r.latest])).toEqual(
      SENSORS.map((sensor) => [sensor, READINGS.filter((r) => r.sensor === sensor).at(-1)?.value]),
    );
    const bySeverity: Record<string, number> = {};
    for (const r of (await panelRows("sensor-alerts", "Fired by severity", WHOLE)).rows) {
      bySeverity[r.severity as string] = (bySeverity[r.severity as string] ?? 0) + (r._value as number);
    }
    expect(bySeverity).toEqual({ critical: 2, warning: 2, info: 1 });
  });

  it("counts readings and finds the latest per sensor exactly over ranges off every window boundary", async () => {
    // Heads and tails in raw readings and 1m rollups, whole hours in the 1h rollups, the newest raw.
    const ranges: Range[] = [
      { name: "mid", from: T0 + 37 * MIN + 10_000, to: T0 + 150 * MIN + 20_000 },
      { name: "head", from: T0 + 5 * MIN + 1, to: T0 + 65 * MIN },
      { name: "tail", from: T0 + 61 * MIN + 30_000, to: NOW + 1000 },
      { name: "inside a minute", from: T0 + 90 * MIN + 5_000, to: T0 + 90 * MIN + 45_000 },
    ];
    for (const range of ranges) {
      const inRange = READINGS.filter((r) => r.t >= range.from && r.t < range.to);
      const { rows } = await panelRows("sensor-fleet", "Readings", range);
      expect(
        rows.map((r) => r._value),
        range.name,
      ).toEqual([inRange.length]);
      const latest = await panelRows("sensor-fleet", `Latest ${FIELD} per sensor`, range);
      expect(
        latest.rows.map((r) => [r.sensor_id, Date.parse(String(r._time)), r.latest]),
        range.name,
      ).toEqual(
        SENSORS.map((sensor) => {
          const last = inRange.filter((r) => r.sensor === sensor).at(-1);
          return [sensor, last?.t, last?.value];
        }),
      );
    }
  });

  it("shows firing now as the state the alert history implies", async () => {
    const count = async (uid: string, title: string) =>
      (await panelRows(uid, title, WHOLE)).rows[0]?._value ?? 0;
    expect(await count("sensor-fleet", "Firing now")).toBe(FIRING_NOW.length);
    expect(await count("sensor-alerts", "Firing now")).toBe(FIRING_NOW.length);
    expect(await count("sensor-alerts", "Critical firing now")).toBe(
      FIRING_NOW.filter((a) => a[2] === "critical").length,
    );
    expect(await count("sensor-detail", "Firing now")).toBe(FIRING_NOW.filter((a) => a[1] === SENSOR).length);
    const expected = FIRING_NOW.sort((a, b) => b[4] - a[4]).map((a) => [
      a[0],
      a[1],
      a[2],
      a[3],
      iso(T0 + a[4] * MIN),
    ]);
    for (const uid of ["sensor-fleet", "sensor-alerts"]) {
      const { rows } = await panelRows(uid, "Firing alerts", WHOLE);
      expect(
        rows.map((r) => [r.rule_id, r.sensor_id, r.severity, r.state, iso(Date.parse(String(r._time)))]),
      ).toEqual(expected);
    }
    // Resolved before the end of a range that stops in between: as of that range's end.
    const early = { name: "early", from: T0, to: T0 + 45 * MIN };
    const { rows } = await panelRows("sensor-alerts", "Firing alerts", early);
    expect(rows.map((r) => [r.rule_id, r.sensor_id])).toEqual([]);
    const mid = { name: "mid", from: T0, to: T0 + 135 * MIN };
    expect((await panelRows("sensor-alerts", "Firing alerts", mid)).rows.map((r) => r.rule_id)).toEqual([
      "temperature-high",
    ]);
  });

  it("lists alert transitions and annotates them, newest first, each with its own time", async () => {
    // 6 hours: windows of about 2 minutes, finer than any two transitions of one rule, sensor and
    // state here (the panel keeps the latest of those per window; over 30 days a window is hours).
    const { rows } = await panelRows("sensor-alerts", "History", RANGES[1] as Range);
    const newestFirst = [...ALERTS].sort((a, b) => b[4] - a[4]);
    expect(rows.map((r) => [r.rule_id, r.sensor_id, r.state, iso(Date.parse(String(r._time)))])).toEqual(
      newestFirst.map(([rule, sensor, , state, minute]) => [rule, sensor, state, iso(T0 + minute * MIN)]),
    );
  });

  /** The readings panels whose source the window (or the Source variable) picks. */
  const tieredPanels = all.filter(({ q }) => q.kind === "panel" && q.query.includes(quoted("tier")));

  it("has readings panels that read the rollup tiers", () => {
    expect(tieredPanels.map(({ dashboard, q }) => `${dashboard.uid} ${q.name}`)).toEqual([
      `sensor-fleet ${FIELD} by sensor, windowed mean / A`,
      `sensor-detail ${FIELD}: mean, min and max per window / A`,
    ]);
  });

  it("reads each tier in one of the ranges: raw readings, the 1m and the 1h rollups", () => {
    const tiers = new Set<string>();
    for (const range of RANGES) {
      for (const { dashboard, q } of tieredPanels) {
        const interval = context(dashboard, q, range).intervalMs;
        tiers.add(tierFor(queryWindowMs(range.to - range.from, interval, q.maxDataPoints)));
      }
    }
    expect([...tiers].sort()).toEqual(["1h", "1m", "raw"]);
  });

  /** The tier and boundary a tiered query picks for this range (the same statements, evaluated). */
  async function plan(d: Dashboard, q: DashboardQuery, range: Range, tier = "auto") {
    const script = [
      windowing({
        start: GRAFANA.start,
        stop: GRAFANA.stop,
        windowPeriod: GRAFANA.windowPeriod,
        maxWindows: q.maxDataPoints,
      }),
      tiering({ forced: lit.str(tier), rawBucket: GRAFANA.bucket }),
    ].join("\n");
    const flux = `import "array"\n${interpolate(script, context(d, q, range))}\narray.from(rows: [{tier: tier, start: start, boundary: boundary, stop: stop}])`;
    const [row] = await fluxRows(env, flux);
    return {
      tier: String(row?.tier),
      start: Date.parse(String(row?.start)),
      boundary: Date.parse(String(row?.boundary)),
      stop: Date.parse(String(row?.stop)),
    };
  }

  const byWindow = (rows: Row[]) =>
    new Map(
      rows.map((r) => [`${r.sensor_id}|${r._field}|${Date.parse(String(r._time))}`, r._value as number]),
    );

  for (const range of RANGES) {
    it(`${range.name}: the readings panels equal the data, and rollups plus the raw tail equal raw readings`, async () => {
      for (const { dashboard, q } of tieredPanels) {
        const context0 = context(dashboard, q, range);
        const every = queryWindowMs(range.to - range.from, context0.intervalMs, q.maxDataPoints);
        const auto = await plan(dashboard, q, range);
        expect(auto.tier, `${q.name} every ${every} ms`).toBe(tierFor(every));
        expect(auto.start).toBe(Math.floor(range.from / every) * every);
        if (auto.tier !== "raw") {
          // Rollups answer the closed windows, raw readings the newest: both are read.
          expect(auto.boundary).toBeGreaterThan(T0);
          expect(auto.boundary).toBeLessThan(END);
        }

        const variables = { sensor: SENSOR };
        const { rows } = await panelRows(dashboard.uid, q.panel?.title ?? "", range, variables);
        const answers = [byWindow(rows)];
        for (const tier of ["raw", ...ROLLUP_TIERS.map((t) => t.name)]) {
          answers.push(
            byWindow(
              (await panelRows(dashboard.uid, q.panel?.title ?? "", range, { ...variables, tier })).rows,
            ),
          );
        }
        // The data itself, windowed the same way.
        const expected = new Map<string, number>();
        const shown = dashboard.uid === "sensor-detail" ? [SENSOR] : SENSORS;
        const fns = dashboard.uid === "sensor-detail" ? ["mean", "min", "max"] : ["mean"];
        const groups = new Map<string, number[]>();
        for (const r of READINGS) {
          if (!shown.includes(r.sensor) || r.t < auto.start || r.t >= range.to) continue;
          const key = `${r.sensor}|${Math.floor(r.t / every) * every}`;
          groups.set(key, [...(groups.get(key) ?? []), r.value]);
        }
        for (const [key, values] of groups) {
          const [sensor, start] = key.split("|");
          for (const fn of fns) {
            const v =
              fn === "mean"
                ? values.reduce((a, b) => a + b, 0) / values.length
                : fn === "min"
                  ? Math.min(...values)
                  : Math.max(...values);
            expected.set(`${sensor}|${fn}|${start}`, v);
          }
        }
        expect(expected.size).toBeGreaterThan(0);
        for (const [i, answer] of answers.entries()) {
          // A forced rollup tier is exact for windows its own size divides; it cannot be for others.
          if (i >= 2 && every % (ROLLUP_TIERS[i - 2]?.ms ?? 1) !== 0) continue;
          expect([...answer.keys()].sort(), `${q.name} answer ${i}`).toEqual([...expected.keys()].sort());
          for (const [key, value] of answer) {
            expect(expected.has(key), `${q.name} answer ${i}: ${key}`).toBe(true);
            expect(value, `${q.name} answer ${i}: ${key}`).toBeCloseTo(expected.get(key) as number, 9);
          }
        }
      }
    });
  }
});
