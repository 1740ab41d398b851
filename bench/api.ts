/**
 * The API over the loaded bucket, under autocannon at a fixed concurrency, next to Flux sent
 * straight to InfluxDB at the same concurrency: for window aggregates the best hand-written Flux
 * for the same answer (one pushed-down aggregateWindow per function, in one script); for a page of
 * alerts or anomaly flags the fastest one script found for the first 100 in time order (see
 * `eventsFlux`).
 */
import type { AddressInfo } from "node:net";
import autocannon from "autocannon";
import { apiSettings } from "../api/config.js";
import { ALERT_KEYS, ALERT_PROBE_FIELD } from "../api/routes/alerts.js";
import { ANOMALY_KEYS, ANOMALY_PROBE_FIELD } from "../api/routes/anomalies.js";
import { buildServer } from "../api/server.js";
import { influxConfig } from "../common/config.js";
import { createInflux } from "../common/influx.js";
import { createKafka } from "../common/kafka.js";
import { MEASUREMENTS } from "../common/topics.js";
import { type Env, iso, percentile, progress, READ_TOKEN } from "./support.js";

/** How hard a route is hit: concurrent connections (and direct query loops) for a duration. */
export interface LoadShape {
  connections: number;
  seconds: number;
}

export interface Load {
  p50Ms: number;
  p99Ms: number;
  requestsPerSecond: number;
  failed: number;
}

export interface RouteBench {
  route: string;
  shape: LoadShape;
  /** Items in one answer (windows or alerts), the same both ways. */
  items: number;
  api: Load;
  direct: Load;
}

function hammer(url: string, shape: LoadShape, label: string): Promise<Load> {
  const line = progress(label);
  return new Promise((resolve, reject) => {
    let done = 0;
    const instance = autocannon(
      {
        url,
        connections: shape.connections,
        duration: shape.seconds,
        timeout: 60,
        headers: { authorization: `Bearer ${READ_TOKEN}` },
      },
      (error, result) => {
        if (error) return reject(error);
        const ok = result.requests.total - result.non2xx;
        line.done(`${ok} answers in ${result.duration.toFixed(1)} s`);
        resolve({
          p50Ms: result.latency.p50,
          p99Ms: result.latency.p99,
          requestsPerSecond: ok / result.duration,
          failed: result.non2xx + result.errors,
        });
      },
    );
    instance.on("response", () => line.update(`${++done} answers`));
  });
}

/** One loop per connection, each sending the query as soon as the previous answer arrived. */
async function direct(
  env: Env,
  query: string,
  shape: LoadShape,
  label: string,
): Promise<{ load: Load; rows: number }> {
  const line = progress(label);
  const config = influxConfig(env);
  const api = createInflux(config, 60_000).getQueryApi(config.org);
  const latencies: number[] = [];
  let failed = 0;
  let rows = 0;
  const started = performance.now();
  const deadline = started + shape.seconds * 1000;
  await Promise.all(
    Array.from({ length: shape.connections }, async () => {
      while (performance.now() < deadline) {
        const t = performance.now();
        try {
          rows = (await api.collectRows(query)).length;
          latencies.push(performance.now() - t);
          line.update(`${latencies.length} answers`);
        } catch {
          failed++;
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  line.done(`${latencies.length} answers in ${seconds.toFixed(1)} s`);
  return {
    load: {
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      requestsPerSecond: latencies.length / seconds,
      failed,
    },
    rows,
  };
}

/** The Flux GET /v1/aggregates?window=1m sends (api/routes/aggregates.ts, default fn mean,min,max,count). */
/**
 * By hand, the same answer as GET /v1/aggregates?window=1m (mean, min, max, count of every
 * sensor's minutes): one pushed-down aggregateWindow per function, each its own result of one
 * script. It answers a row per window and function.
 */
function aggregatesFlux(bucket: string, start: number, stop: number): string {
  const period = 60_000;
  const firstStart = (Math.floor((start - period) / period) + 1) * period;
  const lastStart = (Math.ceil(stop / period) - 1) * period;
  return ["mean", "min", "max", "count"]
    .map(
      (fn) => `from(bucket: "${bucket}")
  |> range(start: ${iso(firstStart)}, stop: ${iso(lastStart + period)})
  |> filter(fn: (r) => r._measurement == "${MEASUREMENTS.readings}" and r._field == "temperature")
  |> aggregateWindow(every: ${period}ms, fn: ${fn}, createEmpty: false, timeSrc: "_start")
  |> keep(columns: ["_time", "_value", "sensor_id"])
  |> yield(name: "${fn}")`,
    )
    .join("\n\n");
}

/**
 * The first 100 points of an event measurement in (time, keys) order, fields as columns, written by
 * hand: every point pivoted, then sorted and cut, takes 1.3–1.9 s on the bench's alerts (3,700
 * series); bounding the range first by the 101st of the series' first points (a pushed-down
 * `first()`) and pivoting only up to it is about twice as fast, the fastest one script found.
 */
function eventsFlux(
  bucket: string,
  measurement: string,
  probeField: string,
  keys: readonly string[],
  start: number,
  stop: number,
): string {
  const range = `range(start: ${iso(start)}, stop: ${iso(stop)})`;
  return `
firsts = from(bucket: "${bucket}")
  |> ${range}
  |> filter(fn: (r) => r._measurement == "${measurement}" and r._field == "${probeField}")
  |> first()
  |> group()
  |> sort(columns: ["_time"])
  |> limit(n: 101)
  |> findColumn(fn: (key) => true, column: "_time")
cut = if length(arr: firsts) == 0 then ${iso(start)} else time(v: int(v: firsts[length(arr: firsts) - 1]) + 1)
from(bucket: "${bucket}")
  |> range(start: ${iso(start)}, stop: if length(arr: firsts) == 101 then cut else ${iso(stop)})
  |> filter(fn: (r) => r._measurement == "${measurement}")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> group()
  |> sort(columns: [${["_time", ...keys].map((k) => `"${k}"`).join(", ")}])
  |> limit(n: 101)`;
}

interface RouteCase {
  route: string;
  path: string;
  flux: string;
  shape: LoadShape;
  itemsOf(body: unknown): number;
  /** Most items the route returns in one answer (the direct Flux asks for one more, as the route does). */
  pageLimit?: number;
  /** Rows of the direct Flux per item of the API's answer (one per function for aggregates). */
  rowsPerItem?: number;
}

/**
 * The API runs only while autocannon does: closing it waits for the requests still in flight, so
 * their queries do not compete with the direct run that follows.
 */
async function benchRoute(env: Env, c: RouteCase): Promise<RouteBench> {
  const settings = apiSettings({ ...env, API_PORT: "0" });
  const app = await buildServer({ settings, kafka: createKafka(settings.kafka) });
  let items: number;
  let api: Load;
  try {
    await app.listen({ host: "127.0.0.1", port: 0 });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}${c.path}`;
    const res = await fetch(url, { headers: { authorization: `Bearer ${READ_TOKEN}` } });
    if (!res.ok) throw new Error(`GET ${c.path}: ${res.status} ${await res.text()}`);
    items = c.itemsOf(await res.json());
    api = await hammer(url, c.shape, `4/5 api: ${c.route} through the API`);
  } finally {
    await app.close();
  }
  const straight = await direct(env, c.flux, c.shape, `4/5 api: ${c.route} Flux straight to InfluxDB`);
  if (Math.min(straight.rows / (c.rowsPerItem ?? 1), c.pageLimit ?? Number.POSITIVE_INFINITY) !== items) {
    throw new Error(`${c.route}: the API answered ${items} items but the direct Flux ${straight.rows} rows`);
  }
  return { route: c.route, shape: c.shape, items, api, direct: straight.load };
}

/**
 * The window query over all of run 1 takes seconds on InfluxDB alone (2 cores), so it runs at as many
 * connections as there are cores, for long enough to collect answers; alerts at 10 connections.
 */
export async function runApi(env: Env, start: number, stop: number): Promise<RouteBench[]> {
  const bucket = env.INFLUX_BUCKET as string;
  const range = `start=${encodeURIComponent(iso(start))}&stop=${encodeURIComponent(iso(stop))}`;
  return [
    await benchRoute(env, {
      route: "GET /v1/aggregates?window=1m",
      path: `/v1/aggregates?window=1m&${range}`,
      flux: aggregatesFlux(bucket, start, stop),
      rowsPerItem: 4,
      shape: { connections: 2, seconds: 30 },
      itemsOf: (body) => (body as { windows: unknown[] }).windows.length,
    }),
    await benchRoute(env, {
      route: "GET /v1/alerts",
      path: `/v1/alerts?${range}`,
      flux: eventsFlux(bucket, MEASUREMENTS.alerts, ALERT_PROBE_FIELD, ALERT_KEYS, start, stop),
      shape: { connections: 10, seconds: 10 },
      itemsOf: (body) => (body as { alerts: unknown[] }).alerts.length,
      pageLimit: 100,
    }),
    await benchRoute(env, {
      route: "GET /v1/anomalies",
      path: `/v1/anomalies?${range}`,
      flux: eventsFlux(bucket, MEASUREMENTS.anomalies, ANOMALY_PROBE_FIELD, ANOMALY_KEYS, start, stop),
      shape: { connections: 10, seconds: 10 },
      itemsOf: (body) => (body as { anomalies: unknown[] }).anomalies.length,
      pageLimit: 100,
    }),
  ];
}
