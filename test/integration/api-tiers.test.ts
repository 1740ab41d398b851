/**
 * Rollup tiers on the real worker and InfluxDB: answers from the 1h and 1m rollups equal the raw
 * answer for count/sum/min/max/mean/stddev, a late reading corrects its window's rollup (rewritten,
 * not duplicated) and re-emits the window as a revision, a reading past the revision time stays
 * raw-only, and a request over the limits is refused before any query reaches InfluxDB.
 */
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiSettings } from "../../api/config.js";
import { FluxRunner } from "../../api/influx-query.js";
import { ReadPath } from "../../api/read-path.js";
import { createInflux } from "../../common/influx.js";
import { type SeedReading, seedReadings } from "../support/api-helpers.js";
import { consumeAll, type Env, fluxRows, isolatedEnv, READ_TOKEN, startApi } from "../support/harness.js";

const T0 = Date.UTC(2026, 0, 5, 0, 0, 0);
const MIN = 60_000;
const HOUR = 3_600_000;
const SENSORS = ["s1", "s2", "s3", "s4"];

function value(sensor: number, i: number): number {
  return Math.round((20 + sensor * 3 + 5 * Math.sin(i / 7 + sensor) + ((i * 13) % 7) * 0.1) * 1000) / 1000;
}

const readings: SeedReading[] = [];
// Three hours of readings every 20 s, in order…
for (let i = 0; i < (3 * HOUR) / 20_000; i++) {
  SENSORS.forEach((sensor, k) => {
    readings.push({ sensor_id: sensor, temperature: value(k, i), timestamp: T0 + i * 20_000 + k * 1000 });
  });
  // …with s1 sending one reading 3 minutes late (inside the 5-minute revision time)…
  if (i === (33 * MIN) / 20_000)
    readings.push({ sensor_id: "s1", temperature: 99.5, timestamp: T0 + 30 * MIN + 5_500 });
  // …and "lagger", once at 40 minutes, then one reading 30 minutes late (past it: raw only).
  if (i === (40 * MIN) / 20_000) {
    readings.push({ sensor_id: "lagger", temperature: 3, timestamp: T0 + 40 * MIN });
    readings.push({ sensor_id: "lagger", temperature: -7, timestamp: T0 + 10 * MIN });
  }
  if (i === 0) readings.push({ sensor_id: "lagger", temperature: 1, timestamp: T0 + 9 * MIN });
}
// Every partition's stream time moves far on, so every window of the three hours is closed.
for (const sensor of [...SENSORS, "lagger"]) {
  readings.push({ sensor_id: sensor, temperature: 20, timestamp: T0 + 5 * HOUR });
}

interface Window {
  sensor_id: string;
  window_start: string;
  count: number;
  sum: number;
  min: number;
  max: number;
  mean: number;
  stddev: number | null;
}

let env: Env;
let api: { url: string; stop(): Promise<void> };

async function aggregates(query: string): Promise<{ tier: string | null; windows: Window[] }> {
  const res = await fetch(`${api.url}/v1/aggregates?${query}`, {
    headers: { authorization: `Bearer ${READ_TOKEN}` },
  });
  const body = (await res.json()) as { windows: Window[] };
  expect(res.status, JSON.stringify(body)).toBe(200);
  return { tier: res.headers.get("x-data-tier"), windows: body.windows };
}

function expectSame(actual: Window[], expected: Window[]): void {
  expect(actual.map((w) => [w.sensor_id, w.window_start, w.count])).toEqual(
    expected.map((w) => [w.sensor_id, w.window_start, w.count]),
  );
  actual.forEach((w, i) => {
    const e = expected[i] as Window;
    for (const key of ["sum", "min", "max", "mean"] as const) {
      expect(w[key]).toBeCloseTo(e[key], 9);
    }
    expect(w.stddev).toBeCloseTo(e.stddev as number, 7);
  });
}

const ALL_FNS = "fn=count&fn=sum&fn=min&fn=max&fn=mean&fn=stddev";
const SENSOR_FILTER = SENSORS.map((s) => `sensor_id=${s}`).join("&");

describe("rollup tiers", () => {
  beforeAll(async () => {
    env = await isolatedEnv("tiers");
    await seedReadings(env, readings);
    api = await startApi(env);
  });

  afterAll(async () => {
    await api?.stop();
  });

  it("answers hour windows from 1h and 1m rollups exactly as from raw readings", async () => {
    const range = `start=${T0}&stop=${T0 + 3 * HOUR}&window=1h&${ALL_FNS}&${SENSOR_FILTER}`;
    const raw = await aggregates(`${range}&tier=raw`);
    expect(raw.tier).toBe("raw");
    expect(raw.windows).toHaveLength(SENSORS.length * 3);
    const auto = await aggregates(range);
    expect(auto.tier).toBe("1h");
    expectSame(auto.windows, raw.windows);
    const minutes = await aggregates(`${range}&tier=1m`);
    expect(minutes.tier).toBe("1m");
    expectSame(minutes.windows, raw.windows);
  });

  it("builds sliding windows from 1m rollups exactly as from raw readings", async () => {
    const range = `start=${T0 + 20 * MIN}&stop=${T0 + 50 * MIN}&window=5m&every=1m&${ALL_FNS}&${SENSOR_FILTER}`;
    const raw = await aggregates(`${range}&tier=raw`);
    const auto = await aggregates(range);
    expect(auto.tier).toBe("1m");
    expect(raw.windows.length).toBeGreaterThan(100);
    expectSame(auto.windows, raw.windows);
  });

  it("reads raw readings as points added up in the API or as pushed-down aggregates, with the same answer", async () => {
    const settings = apiSettings({ ...env, API_PORT: "0" });
    const scripts: string[] = [];
    const flux = new (class extends FluxRunner {
      override eachRow(
        name: string,
        queries: readonly string[],
        columns: string[],
        row: (query: number, values: (string | undefined)[]) => void,
        named?: boolean,
      ) {
        scripts.push(...queries);
        return super.eachRow(name, queries, columns, row, named);
      }
    })(createInflux(settings.influx), settings.influx.org, new Registry());
    const read = new ReadPath(flux, settings.influx);
    await read.start();
    for (const stepMs of [MIN, HOUR]) {
      const ask = async (rate: number) => {
        scripts.length = 0;
        const { windows, sources } = await read.subWindows({
          field: "temperature",
          sensors: [...SENSORS, "lagger"],
          stepMs,
          start: T0,
          stop: T0 + 3 * HOUR,
          need: { count: true, sum: true, sumsq: true, min: true, max: true },
          tiers: [],
          series: SENSORS.length + 1,
          rate,
          chooseEdges: true,
        });
        expect([...sources]).toEqual(["raw"]);
        return { windows, pushedDown: scripts.some((q) => q.includes("aggregateWindow")) };
      };
      // Almost no readings expected: one read of the points; a flood expected: aggregates in storage.
      const points = await ask(1e-9);
      const pushed = await ask(1e9);
      expect([points.pushedDown, pushed.pushedDown]).toEqual([false, true]);
      const flat = (w: typeof points.windows) =>
        [...w].flatMap(([sensor, bySub]) => [...bySub].map(([t, p]) => ({ sensor, t, ...p })));
      const a = flat(points.windows).sort((x, y) => x.sensor.localeCompare(y.sensor) || x.t - y.t);
      const b = flat(pushed.windows).sort((x, y) => x.sensor.localeCompare(y.sensor) || x.t - y.t);
      expect(a.map((w) => [w.sensor, w.t, w.count, w.min, w.max])).toEqual(
        b.map((w) => [w.sensor, w.t, w.count, w.min, w.max]),
      );
      a.forEach((w, i) => {
        expect(w.sum).toBeCloseTo((b[i] as typeof w).sum, 9);
        expect(w.sumsq / (b[i] as typeof w).sumsq).toBeCloseTo(1, 12);
      });
      // Every reading of the three hours is in one window or the other: both read them all.
      const expected = readings.filter((r) => r.timestamp >= T0 && r.timestamp < T0 + 3 * HOUR).length;
      expect(a.reduce((n, w) => n + w.count, 0)).toBe(expected);
    }
  });

  it("merges the open tail from raw readings: a range past the closed rollups is complete", async () => {
    const range = `start=${T0 + 4 * HOUR}&stop=${T0 + 6 * HOUR}&window=1h&${ALL_FNS}&${SENSOR_FILTER}`;
    const auto = await aggregates(range);
    // The last hour window is still open in every tier: raw readings answer it.
    expect(auto.tier).toContain("raw");
    expectSame(auto.windows, (await aggregates(`${range}&tier=raw`)).windows);
    expect(auto.windows.map((w) => w.count)).toEqual(SENSORS.map(() => 1));
  });

  it("rewrites a window's rollup when a late reading arrives, and re-emits it as a revision", async () => {
    const minute = T0 + 30 * MIN;
    const rows = await fluxRows<{ _value: number }>(
      env,
      `from(bucket: "${env.INFLUX_BUCKET}_1m") |> range(start: ${new Date(minute).toISOString()}, stop: ${new Date(minute + MIN).toISOString()})
        |> filter(fn: (r) => r._measurement == "rollup" and r.sensor_id == "s1" and r._field == "count")`,
    );
    // One point (rewritten, not duplicated) counting the three on-time readings and the late one.
    expect(rows.map((r) => r._value)).toEqual([4]);
    const windows = (await consumeAll(env, "aggregated", 1)).map((m) =>
      JSON.parse(m.value?.toString() ?? "{}"),
    );
    const emissions = windows.filter((w) => w.sensor_id === "s1" && w.window_start === minute);
    expect(emissions.map((w) => [w.count, w.revision])).toEqual([
      [3, undefined],
      [4, 1],
    ]);
  });

  it("keeps a reading past the revision time out of the rollups, stored raw and routed to the late topic", async () => {
    const range = `start=${T0}&stop=${T0 + HOUR}&window=1h&fn=count&sensor_id=lagger`;
    expect((await aggregates(`${range}&tier=raw`)).windows.map((w) => w.count)).toEqual([3]);
    expect((await aggregates(`${range}&tier=1h`)).windows.map((w) => w.count)).toEqual([2]);
    const late = await consumeAll(env, "late", 1);
    expect(late.map((m) => JSON.parse(m.value?.toString() ?? "{}").timestamp)).toEqual([T0 + 10 * MIN]);
  });

  it("lists every sensor's last reading and its latest window from the rollups and the tail", async () => {
    const res = await fetch(`${api.url}/v1/sensors?start=${T0}&stop=${T0 + 6 * HOUR}`, {
      headers: { authorization: `Bearer ${READ_TOKEN}` },
    });
    const body = (await res.json()) as {
      sensors: { sensor_id: string; last_seen: string; fields: Record<string, { value: number }> }[];
    };
    expect(body.sensors.map((s) => [s.sensor_id, s.last_seen, s.fields.temperature?.value])).toEqual(
      [...SENSORS, "lagger"].sort().map((s) => [s, new Date(T0 + 5 * HOUR).toISOString(), 20]),
    );
    const older = await fetch(`${api.url}/v1/sensors?start=${T0}&stop=${T0 + 2 * HOUR}&sensor_id=s2`, {
      headers: { authorization: `Bearer ${READ_TOKEN}` },
    });
    const s2 = ((await older.json()) as typeof body).sensors[0];
    const lastBefore = readings
      .filter((r) => r.sensor_id === "s2" && r.timestamp < T0 + 2 * HOUR)
      .at(-1) as SeedReading;
    expect(s2?.last_seen).toBe(new Date(lastBefore.timestamp).toISOString());
    expect(s2?.fields.temperature?.value).toBe(lastBefore.temperature);
  });
});

describe("limits before work", () => {
  let proxy: Server;
  let queries = 0;
  /** The bodies of the queries that reached InfluxDB. */
  const sent: string[] = [];
  let limited: { url: string; stop(): Promise<void> };

  beforeAll(async () => {
    const target = new URL(env.INFLUX_URL as string);
    // Counts what reaches InfluxDB's query endpoint.
    proxy = createServer((req, res) => {
      if (req.url?.startsWith("/api/v2/query")) {
        queries++;
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => sent.push(Buffer.concat(chunks).toString()));
      }
      const forward = httpRequest(
        { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      req.pipe(forward);
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const { port } = proxy.address() as AddressInfo;
    limited = await startApi({
      ...env,
      INFLUX_URL: `http://127.0.0.1:${port}`,
      API_MAX_POINTS: "1000",
      API_MAX_RAW_POINTS: "1000",
      API_CATALOGUE_REFRESH_MS: "0",
    });
  });

  afterAll(async () => {
    await limited?.stop();
    proxy?.close();
  });

  it("refuses a request over the limit from the sensor catalogue, with no query sent", async () => {
    expect(queries).toBeGreaterThan(0); // the catalogue was loaded at start
    const before = queries;
    // 5 sensors × 360 one-minute windows of 6 hours: 1,800 windows, over the limit of 1,000.
    const res = await fetch(`${limited.url}/v1/aggregates?start=${T0}&stop=${T0 + 6 * HOUR}&window=1m`, {
      headers: { authorization: `Bearer ${READ_TOKEN}` },
    });
    const body = (await res.json()) as { detail: string };
    expect(res.status).toBe(422);
    expect(body.detail).toContain("5 sensors × 360 windows");
    expect(queries).toBe(before);
    // A request under the limit goes through the same proxy.
    const ok = await fetch(
      `${limited.url}/v1/aggregates?start=${T0}&stop=${T0 + HOUR}&window=1h&sensor_id=s1`,
      {
        headers: { authorization: `Bearer ${READ_TOKEN}` },
      },
    );
    expect(ok.status).toBe(200);
    expect(queries).toBeGreaterThan(before);
  });

  it("refuses exact quantiles over API_MAX_RAW_POINTS before InfluxDB is asked for them", async () => {
    const auth = { headers: { authorization: `Bearer ${READ_TOKEN}` } };
    sent.length = 0;
    // 4 sensors × 3 hours, one reading every 20 s: over 2,000 readings, more than 1,000.
    const res = await fetch(
      `${limited.url}/v1/aggregates?start=${T0}&stop=${T0 + 3 * HOUR}&window=1h&fn=median`,
      auth,
    );
    const body = (await res.json()) as { detail: string };
    expect(res.status).toBe(422);
    expect(body.detail).toContain("API_MAX_RAW_POINTS");
    expect(sent.length).toBeGreaterThan(0); // the readings were counted…
    expect(sent.filter((q) => q.includes("quantile"))).toEqual([]); // …and no quantile was asked for
    // One sensor's hour (181 readings) is within the limit and answered exactly.
    const ok = await fetch(
      `${limited.url}/v1/aggregates?start=${T0}&stop=${T0 + HOUR}&window=1h&fn=median&sensor_id=s1`,
      auth,
    );
    expect(ok.status).toBe(200);
    expect(sent.some((q) => q.includes("quantile"))).toBe(true);
  });
});
