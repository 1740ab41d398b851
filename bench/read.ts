/**
 * `npm run bench -- read [--days 7] [--sensors 1000] [--interval-s 120]`: the read path at fleet scale.
 *
 * Loads a fleet's history through the real pipeline (producer → Kafka → the ingest worker →
 * InfluxDB raw readings and rollups), ending now, plus a second fleet of 10,000 sensors for the
 * sensor list. Then, for every aggregate and sensor route, it times the API next to the best Flux
 * written by hand on the raw readings for the same answer (pushdown shapes, one query per function,
 * merged in the client), in the same process and minute, alternating, and checks both answers hold
 * the same numbers. Raw-tier API answers are timed too (the done-when ratio); the rest use rollups.
 */
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { Registry } from "prom-client";
import { apiSettings } from "../api/config.js";
import { FluxRunner } from "../api/influx-query.js";
import { buildServer } from "../api/server.js";
import { influxConfig, kafkaConfig } from "../common/config.js";
import { createInflux } from "../common/influx.js";
import { createKafka, ensureTopics, withAdmin } from "../common/kafka.js";
import { ingestSettings } from "../ingest/config.js";
import { IngestWorker } from "../ingest/worker.js";
import { benchDashboards, type DashboardBenchResult } from "./dashboards.js";
import { type Env, isolatedEnv, kafkaFor, logger, READ_TOKEN, rawTopic } from "./support.js";

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

export interface ReadOptions {
  days: number;
  sensors: number;
  intervalS: number;
  iterations: number;
  /** Only the cases whose name contains this text. */
  only?: string;
}

export function readOptions(argv: string[]): ReadOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      days: { type: "string", default: "7" },
      sensors: { type: "string", default: "1000" },
      "interval-s": { type: "string", default: "120" },
      iterations: { type: "string", default: "20" },
      only: { type: "string" },
    },
  });
  const int = (name: string, text: string, min: number, max: number) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new Error(
        `--${name} ${JSON.stringify(text)} is not valid: expected an integer in [${min}, ${max}]`,
      );
    }
    return n;
  };
  return {
    days: int("days", values.days as string, 1, 31),
    sensors: int("sensors", values.sensors as string, 10, 100_000),
    intervalS: int("interval-s", values["interval-s"] as string, 1, 3600),
    iterations: int("iterations", values.iterations as string, 3, 1000),
    ...(values.only === undefined ? {} : { only: values.only as string }),
  };
}

/** Produces a fleet's readings in event-time order (as a fleet sends them) and ingests them with the real worker. */
export async function load(
  env: Env,
  sensors: number,
  start: number,
  stop: number,
  intervalMs: number,
): Promise<{ readings: number; seconds: number }> {
  const kafka = kafkaFor(env);
  await withAdmin(kafka, (admin) => ensureTopics(admin, kafkaConfig(env)));
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  let readings = 0;
  let batch: { key: string; value: string }[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    await producer.send({ topic: rawTopic(env), acks: -1, messages: batch });
    batch = [];
  };
  const began = Date.now();
  for (let t = start; t < stop; t += intervalMs) {
    for (let s = 0; s < sensors; s++) {
      const time = t + ((s * 7919) % intervalMs);
      if (time >= stop) continue;
      const id = `sensor_${s}`;
      const temperature =
        Math.round((20 + (s % 17) + 4 * Math.sin(time / 3_600_000 + s) + ((time / 1000) % 7) * 0.05) * 100) /
        100;
      batch.push({
        key: id,
        value: `{"sensor_id":"${id}","temperature":${temperature},"timestamp":${time}}`,
      });
      readings++;
      if (batch.length >= 20_000) await flush();
    }
  }
  await flush();
  await producer.disconnect();
  const worker = new IngestWorker({ ...ingestSettings(env), logger });
  await worker.start();
  try {
    await waitCommitted(env, readings);
  } finally {
    await worker.stop();
  }
  return { readings, seconds: (Date.now() - began) / 1000 };
}

/**
 * Waits until InfluxDB has settled what it was sent: its write cache written out to TSM files and no
 * compaction running or queued, three polls in a row (its /metrics). A store still compacting a load
 * answers queries seconds slower now and then. Says how long it took, or that it did not settle.
 */
export async function settled(env: Env, timeoutMs = 15 * MIN): Promise<string> {
  const began = Date.now();
  let quiet = 0;
  while (Date.now() - began < timeoutMs) {
    const text = await (await fetch(`${influxConfig(env).url}/metrics`)).text();
    let busy = 0;
    for (const line of text.split("\n")) {
      if (/^storage_(cache_inuse_bytes|compactions_active|compactions_queued)[{ ]/.test(line)) {
        busy += Number(line.slice(line.lastIndexOf(" ") + 1)) || 0;
      }
    }
    quiet = busy === 0 ? quiet + 1 : 0;
    if (quiet === 3)
      return `InfluxDB settled (cache written out, no compaction) ${((Date.now() - began) / 1000).toFixed(0)} s after the load`;
    process.stderr.write(
      `\r[bench read] waiting for InfluxDB to settle the load (${((Date.now() - began) / 1000).toFixed(0)} s)   `,
    );
    await new Promise((r) => setTimeout(r, 1000));
  }
  return `InfluxDB had not settled ${timeoutMs / 1000} s after the load (cache or compactions still busy); measured anyway`;
}

async function waitCommitted(env: Env, expected: number): Promise<void> {
  const kafka = kafkaFor(env);
  for (;;) {
    const committed = await withAdmin(kafka, async (admin) => {
      const offsets = await admin.fetchOffsets({
        groupId: env.INGEST_GROUP_ID as string,
        topics: [rawTopic(env)],
      });
      return (offsets[0]?.partitions ?? []).reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
    });
    if (committed >= expected) return;
    process.stderr.write(
      `\r[bench read] ingested ${committed.toLocaleString("en-US")} of ${expected.toLocaleString("en-US")}   `,
    );
    await new Promise((r) => setTimeout(r, 2000));
  }
}

/** The range widened to whole epoch-aligned windows of `ms`, as the API reports edge windows whole. */
function whole(range: [number, number], ms: number): [number, number] {
  return [Math.floor(range[0] / ms) * ms, Math.ceil(range[1] / ms) * ms];
}

const iso = (ms: number) => new Date(ms).toISOString();

type Numbers = Map<string, Record<string, number | null>>;

interface Case {
  name: string;
  /** The API request (path and query). */
  path: string;
  /** The API that answers, when not the fleet's. */
  on?: string;
  /** The API's answer as numbers by key. */
  fromApi(body: unknown): Numbers;
  /** The best hand-written Flux on raw readings, run and merged as a client would. */
  direct(): Promise<Numbers>;
}

function windowsOf(body: unknown): Numbers {
  const out: Numbers = new Map();
  for (const w of (body as { windows: Record<string, unknown>[] }).windows) {
    const { sensor_id, window_start, window_end: _end, ...values } = w;
    out.set(`${sensor_id}|${Date.parse(String(window_start))}`, values as Record<string, number | null>);
  }
  return out;
}

function sensorsOf(body: unknown): Numbers {
  const out: Numbers = new Map();
  for (const s of (
    body as { sensors: { sensor_id: string; last_seen: string; fields: Record<string, { value: number }> }[] }
  ).sensors) {
    out.set(s.sensor_id, {
      last_seen: Date.parse(s.last_seen),
      temperature: s.fields.temperature?.value ?? null,
    });
  }
  return out;
}

/** Hand-written pushdown Flux: one aggregateWindow per function, merged by sensor and window. */
async function directWindows(
  env: Env,
  range: [number, number],
  everyMs: number,
  fns: string[],
  sensors?: string[],
  tail?: string,
): Promise<Numbers> {
  const config = influxConfig(env);
  const filter = sensors ? ` and (${sensors.map((s) => `r.sensor_id == "${s}"`).join(" or ")})` : "";
  const out: Numbers = new Map();
  await Promise.all(
    fns.map(async (fn) => {
      const query = `from(bucket: "${config.bucket}")
  |> range(start: ${new Date(range[0]).toISOString()}, stop: ${new Date(range[1]).toISOString()})
  |> filter(fn: (r) => r._measurement == "readings" and r._field == "temperature"${filter})
  |> aggregateWindow(every: ${everyMs}ms, fn: ${fn}, createEmpty: false, timeSrc: "_start")${tail ?? ""}`;
      for (const [sensor, time = "", value] of await fastReader(env).columns(`direct_${fn}`, query, [
        "sensor_id",
        "_time",
        "_value",
      ])) {
        const key = `${sensor}|${Math.floor(Date.parse(time) / everyMs) * everyMs}`;
        const entry = out.get(key) ?? {};
        entry[fn] = Number(value);
        out.set(key, entry);
      }
    }),
  );
  return out;
}

async function directLast(env: Env, range: [number, number]): Promise<Numbers> {
  const config = influxConfig(env);
  const out: Numbers = new Map();
  const query = `from(bucket: "${config.bucket}")
  |> range(start: ${new Date(range[0]).toISOString()}, stop: ${new Date(range[1]).toISOString()})
  |> filter(fn: (r) => r._measurement == "readings")
  |> last()`;
  for (const [sensor = "", time = "", value] of await fastReader(env).columns("direct_last", query, [
    "sensor_id",
    "_time",
    "_value",
  ])) {
    out.set(sensor, { last_seen: Date.parse(time), temperature: Number(value) });
  }
  return out;
}

/**
 * The hand-written queries' answers are read with the API's own CSV reader (one synchronous pass
 * per chunk), not the client library's row iterator (a promise per row): what is compared is the
 * query, not two parsers.
 */
const readers = new Map<string, FluxRunner>();
function fastReader(env: Env): FluxRunner {
  const config = influxConfig(env);
  const key = `${config.url}|${config.org}|${config.token}`;
  let runner = readers.get(key);
  if (runner === undefined) {
    runner = new FluxRunner(createInflux(config, 120_000), config.org, new Registry(), 110_000);
    readers.set(key, runner);
  }
  return runner;
}

/** Keys and numbers equal (counts exactly, the rest to 1e-9 relative). */
function sameAnswer(a: Numbers, b: Numbers): string | undefined {
  if (a.size !== b.size) return `${a.size} vs ${b.size} items`;
  for (const [key, x] of a) {
    const y = b.get(key);
    if (y === undefined) return `${key} missing from the hand-written answer`;
    for (const [name, v] of Object.entries(x)) {
      const w = y[name];
      if (w === undefined) continue;
      if (v === null || w === null) {
        if (v !== w) return `${key} ${name}: ${v} vs ${w}`;
        continue;
      }
      if (Math.abs(v - w) > 1e-9 * Math.max(1, Math.abs(v), Math.abs(w)))
        return `${key} ${name}: ${v} vs ${w}`;
    }
  }
  return undefined;
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;

export interface ReadFigure {
  name: string;
  items: number;
  tier: string;
  api: { p50: number; p99: number };
  direct: { p50: number; p99: number };
  same: string;
}

async function timeCase(url: string, c: Case, iterations: number): Promise<ReadFigure> {
  const apiTimes: number[] = [];
  const directTimes: number[] = [];
  let apiAnswer: Numbers = new Map();
  let directAnswer: Numbers = new Map();
  let tier = "";
  for (let i = 0; i < iterations + 2; i++) {
    const a0 = performance.now();
    const res = await fetch(`${url}${c.path}`, { headers: { authorization: `Bearer ${READ_TOKEN}` } });
    const body = await res.json();
    const a1 = performance.now();
    if (res.status !== 200) throw new Error(`${c.name}: ${res.status} ${JSON.stringify(body).slice(0, 300)}`);
    tier = res.headers.get("x-data-tier") ?? "";
    apiAnswer = c.fromApi(body);
    const d0 = performance.now();
    directAnswer = await c.direct();
    const d1 = performance.now();
    if (i >= 2) {
      apiTimes.push(a1 - a0);
      directTimes.push(d1 - d0);
    }
  }
  apiTimes.sort((x, y) => x - y);
  directTimes.sort((x, y) => x - y);
  return {
    name: c.name,
    items: apiAnswer.size,
    tier,
    api: { p50: percentile(apiTimes, 50), p99: percentile(apiTimes, 99) },
    direct: { p50: percentile(directTimes, 50), p99: percentile(directTimes, 99) },
    same: sameAnswer(apiAnswer, directAnswer) ?? "same numbers",
  };
}

async function startApi(env: Env): Promise<{ url: string; close(): Promise<void> }> {
  const settings = apiSettings({ ...env, API_PORT: "0", API_MAX_POINTS: "1000000" });
  const app = await buildServer({ settings, kafka: createKafka(settings.kafka) });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => app.close() };
}

export async function runRead(
  services: Env,
  options: ReadOptions,
): Promise<{ figures: ReadFigure[]; panels: DashboardBenchResult[]; loaded: string[] }> {
  const now = Math.floor(Date.now() / MIN) * MIN;
  const start = now - options.days * DAY;
  const fleet = await isolatedEnv(services, "read");
  const many = await isolatedEnv(services, "read-many");
  process.stderr.write(
    `[bench read] loading ${options.sensors} sensors × ${options.days} days, one reading per ${options.intervalS} s\n`,
  );
  const loadedFleet = await load(fleet, options.sensors, start, now, options.intervalS * 1000);
  process.stderr.write(`\n[bench read] loading 10,000 sensors × 1 hour, one reading per 10 min\n`);
  const loadedMany = await load(many, 10_000, now - HOUR, now, 10 * MIN);
  process.stderr.write("\n");
  const settledIn = await settled(fleet);
  return {
    ...(await measureRead(fleet, many, now, options)),
    loaded: [
      `${loadedFleet.readings.toLocaleString("en-US")} readings (${options.sensors} sensors × ${options.days} days) in ${loadedFleet.seconds.toFixed(0)} s`,
      `${loadedMany.readings.toLocaleString("en-US")} readings (10,000 sensors × 1 hour) in ${loadedMany.seconds.toFixed(0)} s`,
      settledIn,
    ],
  };
}

/**
 * Times every case on loaded data: `fleet` holds `options.sensors` sensors × `options.days` days
 * ending at `now`, `many` 10,000 sensors over the hour before `now`.
 */
export async function measureRead(
  fleet: Env,
  many: Env,
  now: number,
  options: ReadOptions,
): Promise<{ figures: ReadFigure[]; panels: DashboardBenchResult[] }> {
  const start = now - options.days * DAY;
  const figures: ReadFigure[] = [];
  let panels: DashboardBenchResult[] = [];
  // The dashboards go last: right after a load InfluxDB is still compacting what it was sent.
  const dashboards = async () => {
    if (options.only !== undefined && !"dashboards".includes(options.only)) return;
    process.stderr.write("[bench read] every dashboard query\n");
    const config = influxConfig(fleet);
    panels = await benchDashboards({
      influx: { url: config.url, token: config.token, org: config.org, bucket: config.bucket },
      rangeStart: start,
      rangeStop: now,
      sensor: "sensor_1",
      field: "temperature",
      iterations: options.iterations,
    });
  };
  const api = await startApi(fleet);
  const manyApi = await startApi(many);
  try {
    const hourStart = now - HOUR;
    const ten = Array.from({ length: 10 }, (_, i) => `sensor_${i}`);
    const three = ten.slice(0, 3);
    const days = options.days;
    const four = ["mean", "min", "max", "count"];
    const q = (params: Record<string, string | number | string[]>) =>
      Object.entries(params)
        .flatMap(([k, v]) =>
          Array.isArray(v)
            ? v.map((x) => `${k}=${encodeURIComponent(x)}`)
            : [`${k}=${encodeURIComponent(String(v))}`],
        )
        .join("&");
    const cases: Case[] = [
      {
        name: `aggregates 1m, all ${options.sensors} sensors, last hour, raw`,
        path: `/v1/aggregates?${q({ window: "1m", start: hourStart, stop: now, tier: "raw" })}`,
        fromApi: windowsOf,
        direct: () => directWindows(fleet, [hourStart, now], MIN, four),
      },
      {
        name: `aggregates 1m, 3 sensors, last hour, raw`,
        path: `/v1/aggregates?${q({ window: "1m", start: hourStart, stop: now, tier: "raw", sensor_id: three })}`,
        fromApi: windowsOf,
        direct: () => directWindows(fleet, [hourStart, now], MIN, four, three),
      },
      {
        name: "aggregates 10m, all sensors, last 24h, raw",
        path: `/v1/aggregates?${q({ window: "10m", start: now - DAY, stop: now, tier: "raw" })}`,
        fromApi: windowsOf,
        direct: () => directWindows(fleet, whole([now - DAY, now], 10 * MIN), 10 * MIN, four),
      },
      {
        name: `aggregates 1d, all sensors, ${days} days`,
        path: `/v1/aggregates?${q({ window: "1d", start: Math.floor(start / DAY) * DAY, stop: now })}`,
        fromApi: windowsOf,
        direct: () =>
          directWindows(fleet, [Math.floor(start / DAY) * DAY, Math.ceil(now / DAY) * DAY], DAY, four),
      },
      {
        name: `aggregates 1h, 10 sensors, ${days} days`,
        path: `/v1/aggregates?${q({ window: "1h", start: Math.floor(start / HOUR) * HOUR, stop: now, sensor_id: ten })}`,
        fromApi: windowsOf,
        direct: () =>
          directWindows(
            fleet,
            [Math.floor(start / HOUR) * HOUR, Math.ceil(now / HOUR) * HOUR],
            HOUR,
            four,
            ten,
          ),
      },
      {
        name: "aggregates 1m, 1 sensor, last hour",
        path: `/v1/aggregates?${q({ window: "1m", start: hourStart, stop: now, sensor_id: "sensor_1" })}`,
        fromApi: windowsOf,
        direct: () => directWindows(fleet, [hourStart, now], MIN, four, ["sensor_1"]),
      },
      {
        name: "aggregates 5m every 1m (sliding), 10 sensors, last 6h",
        path: `/v1/aggregates?${q({ window: "5m", every: "1m", start: now - 6 * HOUR, stop: now, sensor_id: ten, fn: ["mean", "count"] })}`,
        fromApi: windowsOf,
        direct: async () => {
          // Hand-written: window(period ≠ every) is the direct way to ask for sliding windows.
          const config = influxConfig(fleet);
          const out: Numbers = new Map();
          const filter = ten.map((s) => `r.sensor_id == "${s}"`).join(" or ");
          for (const fn of ["mean", "count"]) {
            const rows = await createInflux(config)
              .getQueryApi(config.org)
              .collectRows<{
                sensor_id: string;
                _start: string;
                _stop: string;
                _value: number;
              }>(`from(bucket: "${config.bucket}")
  |> range(start: ${new Date(now - 6 * HOUR - 4 * MIN).toISOString()}, stop: ${new Date(now + 4 * MIN).toISOString()})
  |> filter(fn: (r) => r._measurement == "readings" and r._field == "temperature" and (${filter}))
  |> window(every: 1m, period: 5m)
  |> ${fn}()`);
            for (const r of rows) {
              const s = Date.parse(r._start);
              if (Date.parse(r._stop) - s !== 5 * MIN) continue;
              const key = `${r.sensor_id}|${s}`;
              const entry = out.get(key) ?? {};
              entry[fn] = r._value;
              out.set(key, entry);
            }
          }
          return out;
        },
      },
      {
        name: "aggregates p95 + median, 10 sensors, last 6h 10m windows",
        path: `/v1/aggregates?${q({ window: "10m", start: now - 6 * HOUR, stop: now, sensor_id: ten, fn: ["median", "p95"] })}`,
        fromApi: windowsOf,
        direct: async () => {
          const config = influxConfig(fleet);
          const out: Numbers = new Map();
          const filter = ten.map((s) => `r.sensor_id == "${s}"`).join(" or ");
          await Promise.all(
            [
              ["median", 0.5],
              ["p95", 0.95],
            ].map(async ([name, qv]) => {
              const rows = await createInflux(config)
                .getQueryApi(config.org)
                .collectRows<{
                  sensor_id: string;
                  _time: string;
                  _value: number;
                }>(`from(bucket: "${config.bucket}")
  |> range(start: ${iso(whole([now - 6 * HOUR, now], 10 * MIN)[0])}, stop: ${iso(whole([now - 6 * HOUR, now], 10 * MIN)[1])})
  |> filter(fn: (r) => r._measurement == "readings" and r._field == "temperature" and (${filter}))
  |> aggregateWindow(every: 10m, fn: (column, tables=<-) => tables |> quantile(column: column, q: ${qv}, method: "exact_mean"), createEmpty: false, timeSrc: "_start")`);
              for (const r of rows) {
                const key = `${r.sensor_id}|${Date.parse(r._time)}`;
                const entry = out.get(key) ?? {};
                entry[name as string] = r._value;
                out.set(key, entry);
              }
            }),
          );
          return out;
        },
      },
      {
        name: `aggregates/latest 1m, all ${options.sensors} sensors`,
        path: `/v1/aggregates/latest?${q({ window: "1m", at: now })}`,
        fromApi: windowsOf,
        direct: async () => {
          // Hand-written: each function's 1-minute windows of the last hour, the last one per sensor.
          const all = await directWindows(fleet, [now - HOUR, now], MIN, four, undefined, "\n  |> last()");
          return all;
        },
      },
      {
        name: "readings, 1 sensor, last 24h, first page of 100",
        path: `/v1/sensors/sensor_1/readings?${q({ start: now - DAY, stop: now })}`,
        fromApi: (body) =>
          new Map(
            (body as { readings: { time: string; fields: Record<string, number> }[] }).readings.map((r) => [
              String(Date.parse(r.time)),
              r.fields,
            ]),
          ),
        direct: async () => {
          // Hand-written: each field's first 101 points, fields as columns, the first 100 times.
          const config = influxConfig(fleet);
          const out: Numbers = new Map();
          for (const [time = "", value] of await fastReader(fleet).columns(
            "direct_readings",
            `from(bucket: "${config.bucket}")
  |> range(start: ${iso(now - DAY)}, stop: ${iso(now)})
  |> filter(fn: (r) => r._measurement == "readings" and r.sensor_id == "sensor_1")
  |> limit(n: 100)
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")`,
            ["_time", "temperature"],
          )) {
            out.set(String(Date.parse(time)), { temperature: Number(value) });
          }
          return out;
        },
      },
      {
        name: `sessions, 1 sensor, ${days} days, gap 5m`,
        path: `/v1/sensors/sensor_1/sessions?${q({ start, stop: now, gap: "5m" })}`,
        fromApi: (body) =>
          new Map(
            (
              body as { sessions: { start: string; end: string; count: number; mean: number }[] }
            ).sessions.map((s) => [
              String(Date.parse(s.start)),
              { end: Date.parse(s.end), count: s.count, mean: s.mean },
            ]),
          ),
        direct: async () => {
          // Hand-written: a session starts where the time since the previous reading passes the gap.
          const config = influxConfig(fleet);
          const out: Numbers = new Map();
          for (const [first = "", last = "", count, mean] of await fastReader(fleet).columns(
            "direct_sessions",
            `from(bucket: "${config.bucket}")
  |> range(start: ${iso(start)}, stop: ${iso(now)})
  |> filter(fn: (r) => r._measurement == "readings" and r.sensor_id == "sensor_1" and r._field == "temperature")
  |> map(fn: (r) => ({r with t: int(v: r._time)}))
  |> difference(columns: ["t"], keepFirst: true)
  |> map(fn: (r) => ({r with mark: if not exists r.t or r.t > 300000000000 then 1 else 0}))
  |> cumulativeSum(columns: ["mark"])
  |> group(columns: ["mark"])
  |> reduce(
    identity: {count: 0, sum: 0.0, first: time(v: 0), last: time(v: 0)},
    fn: (r, accumulator) => ({
      count: accumulator.count + 1,
      sum: accumulator.sum + r._value,
      first: if accumulator.count == 0 then r._time else accumulator.first,
      last: r._time,
    }),
  )
  |> map(fn: (r) => ({r with mean: r.sum / float(v: r.count)}))`,
            ["first", "last", "count", "mean"],
          )) {
            out.set(String(Date.parse(first)), {
              end: Date.parse(last),
              count: Number(count),
              mean: Number(mean),
            });
          }
          return out;
        },
      },
      {
        name: `sensors, ${options.sensors} sensors, ${days} days`,
        path: `/v1/sensors?${q({ start: start, stop: now })}`,
        fromApi: sensorsOf,
        direct: () => directLast(fleet, [start, now]),
      },
      {
        name: "sensors, 10,000 sensors, last 31 days",
        on: manyApi.url,
        path: `/v1/sensors?${q({ stop: now + 1000 })}`,
        fromApi: sensorsOf,
        direct: () => directLast(many, [now + 1000 - 31 * DAY, now + 1000]),
      },
    ];
    for (const c of cases) {
      if (options.only !== undefined && !c.name.includes(options.only)) continue;
      process.stderr.write(`[bench read] ${c.name}\n`);
      // One failing request is a figure too; the others still run.
      figures.push(
        await timeCase(c.on ?? api.url, c, options.iterations).catch((err) => ({
          name: c.name,
          items: 0,
          tier: "",
          api: { p50: Number.NaN, p99: Number.NaN },
          direct: { p50: Number.NaN, p99: Number.NaN },
          same: `failed: ${(err as Error).message.slice(0, 200)}`,
        })),
      );
    }
    if (options.only !== undefined && !"refused".includes(options.only)) {
      await dashboards();
      return { figures, panels };
    }
    // A request over the limits: refused from the catalogue before any query.
    const t0 = performance.now();
    const refused = await fetch(
      `${api.url}/v1/aggregates?${q({ window: "1m", start: now - 31 * DAY + MIN, stop: now })}`,
      {
        headers: { authorization: `Bearer ${READ_TOKEN}` },
      },
    );
    await refused.json();
    figures.push({
      name: "refused: 1m windows × all sensors × 31 days",
      items: 0,
      tier: `${refused.status}`,
      api: { p50: performance.now() - t0, p99: performance.now() - t0 },
      direct: { p50: Number.NaN, p99: Number.NaN },
      same: "no query sent",
    });
  } finally {
    await api.close();
    await manyApi.close();
  }
  await dashboards();
  return { figures, panels };
}
