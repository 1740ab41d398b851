/**
 * /v1/sensors, /v1/sensors/:id/readings and /v1/sensors/:id/sessions on readings written by the real
 * worker: exact last values, every reading exactly once across cursor pages, exact sessions.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxConfig } from "../../common/config.js";
import { createInflux } from "../../common/influx.js";
import { get, isoAt, type SeedReading, seedReadings } from "../support/api-helpers.js";
import { type Env, eventually, isolatedEnv, startApi } from "../support/harness.js";

const T0 = Date.UTC(2026, 0, 2, 8, 0, 0);
const A_COUNT = 30;

/** sensor_a: temperature every second, humidity on even seconds only, tag site=north. */
function sensorA(i: number): SeedReading {
  const r: SeedReading = {
    sensor_id: "sensor_a",
    timestamp: T0 + i * 1000,
    temperature: 10 + i * 0.25,
    site: "north",
  };
  if (i % 2 === 0) r.humidity = 40 + i;
  return r;
}

/** sensor_c: three bursts separated by silences of 180 s and 390 s. */
const C_OFFSETS_S = [0, 10, 20, 200, 230, 250, 640];
const cTemperature = (k: number) => 5 + k * 1.5;

interface SensorsBody {
  sensors: {
    sensor_id: string;
    last_seen: string;
    tags: Record<string, string>;
    fields: Record<string, { value: number; time: string }>;
  }[];
}
interface ReadingsBody {
  readings: { time: string; fields: Record<string, number>; tags: Record<string, string> }[];
  next_cursor: string | null;
}
interface SessionsBody {
  sessions: { start: string; end: string; count: number; mean: number }[];
}

describe("sensors API", () => {
  let env: Env;
  let api: Awaited<ReturnType<typeof startApi>>;
  const range = `start=${isoAt(T0 - 60_000)}&stop=${isoAt(T0 + 3_600_000)}`;

  beforeAll(async () => {
    env = await isolatedEnv("api-sensors");
    const readings: SeedReading[] = [];
    for (let i = 0; i < A_COUNT; i++) readings.push(sensorA(i));
    for (let i = 0; i < 5; i++) {
      readings.push({ sensor_id: "sensor_b", timestamp: T0 + i * 60_000, temperature: -3 - i });
    }
    for (const [k, s] of C_OFFSETS_S.entries()) {
      readings.push({ sensor_id: "sensor_c", timestamp: T0 + s * 1000, temperature: cTemperature(k) });
    }
    await seedReadings(env, readings);
    api = await startApi(env);
  });

  afterAll(async () => {
    await api?.stop();
  });

  it("lists every sensor with its last-seen time, tags and last value per field", async () => {
    const { status, body } = await get<SensorsBody>(`${api.url}/v1/sensors?${range}`);
    expect(status).toBe(200);
    expect(body.sensors).toEqual([
      {
        sensor_id: "sensor_a",
        last_seen: isoAt(T0 + 29_000),
        tags: { site: "north" },
        fields: {
          humidity: { value: 40 + 28, time: isoAt(T0 + 28_000) },
          temperature: { value: 10 + 29 * 0.25, time: isoAt(T0 + 29_000) },
        },
      },
      {
        sensor_id: "sensor_b",
        last_seen: isoAt(T0 + 4 * 60_000),
        tags: {},
        fields: { temperature: { value: -7, time: isoAt(T0 + 4 * 60_000) } },
      },
      {
        sensor_id: "sensor_c",
        last_seen: isoAt(T0 + 640_000),
        tags: {},
        fields: { temperature: { value: cTemperature(6), time: isoAt(T0 + 640_000) } },
      },
    ]);
  });

  it("filters the list by sensor_id and by range", async () => {
    const some = await get<SensorsBody>(
      `${api.url}/v1/sensors?${range}&sensor_id=sensor_b&sensor_id=sensor_c`,
    );
    expect(some.body.sensors.map((s) => s.sensor_id)).toEqual(["sensor_b", "sensor_c"]);
    // Up to T0+15 s: sensor_b has only its first reading, sensor_c its first two.
    const early = await get<SensorsBody>(
      `${api.url}/v1/sensors?start=${isoAt(T0)}&stop=${isoAt(T0 + 15_000)}`,
    );
    expect(early.body.sensors.map((s) => [s.sensor_id, s.last_seen])).toEqual([
      ["sensor_a", isoAt(T0 + 14_000)],
      ["sensor_b", isoAt(T0)],
      ["sensor_c", isoAt(T0 + 10_000)],
    ]);
    expect(early.body.sensors[2]?.fields.temperature?.value).toBe(cTemperature(1));
    const none = await get<SensorsBody>(`${api.url}/v1/sensors?${range}&sensor_id=nobody`);
    expect(none.body.sensors).toEqual([]);
  });

  it("pages through one sensor's raw readings: each exactly once, in time order, with fields and tags", async () => {
    const seen: ReadingsBody["readings"] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `${api.url}/v1/sensors/sensor_a/readings?${range}&limit=7${cursor ? `&cursor=${cursor}` : ""}`;
      const { status, body } = await get<ReadingsBody>(url);
      expect(status).toBe(200);
      expect(body.readings.length).toBeLessThanOrEqual(7);
      seen.push(...body.readings);
      cursor = body.next_cursor;
      pages++;
    } while (cursor !== null && pages < 20);
    expect(pages).toBe(5);
    const expected = Array.from({ length: A_COUNT }, (_, i) => {
      const r = sensorA(i);
      const fields: Record<string, number> = { temperature: r.temperature as number };
      if (typeof r.humidity === "number") fields.humidity = r.humidity;
      return { time: isoAt(r.timestamp), fields, tags: { site: "north" } };
    });
    expect(seen).toEqual(expected);
  });

  it("returns a full last page with next_cursor null, and an empty page outside the data", async () => {
    const all = await get<ReadingsBody>(`${api.url}/v1/sensors/sensor_b/readings?${range}&limit=5`);
    expect(all.body.readings.map((r) => r.fields.temperature)).toEqual([-3, -4, -5, -6, -7]);
    expect(all.body.next_cursor).toBeNull();
    const empty = await get<ReadingsBody>(
      `${api.url}/v1/sensors/sensor_b/readings?start=${isoAt(T0 - 3_600_000)}&stop=${isoAt(T0)}`,
    );
    expect(empty.body).toMatchObject({ readings: [], next_cursor: null });
  });

  it("rejects a tampered cursor and a limit above the maximum with problem details", async () => {
    const bad = await get<{ status: number; detail: string }>(
      `${api.url}/v1/sensors/sensor_a/readings?${range}&cursor=not-a-cursor`,
    );
    expect(bad.status).toBe(422);
    expect(bad.contentType).toContain("application/problem+json");
    expect(bad.body.detail).toContain("next_cursor");
    const big = await get<{ status: number; detail: string }>(
      `${api.url}/v1/sensors/sensor_a/readings?${range}&limit=1001`,
    );
    expect(big.status).toBe(400);
    expect(big.body.detail).toContain("limit");
    expect(big.body.detail).toContain("1000");
  });

  it("splits one sensor's readings into gap-based sessions with exact bounds, counts and means", async () => {
    const { status, body } = await get<SessionsBody>(
      `${api.url}/v1/sensors/sensor_c/sessions?${range}&gap=1m`,
    );
    expect(status).toBe(200);
    const groups = [[0, 1, 2], [3, 4, 5], [6]];
    expect(body.sessions).toHaveLength(3);
    for (const [i, ks] of groups.entries()) {
      const session = body.sessions[i];
      const values = ks.map(cTemperature);
      expect(session?.start).toBe(isoAt(T0 + (C_OFFSETS_S[ks[0] as number] as number) * 1000));
      expect(session?.end).toBe(isoAt(T0 + (C_OFFSETS_S[ks[ks.length - 1] as number] as number) * 1000));
      expect(session?.count).toBe(ks.length);
      expect(session?.mean).toBeCloseTo(values.reduce((a, b) => a + b, 0) / values.length, 9);
    }
    // A gap equal to the first silence (180 s) keeps those bursts together: only a longer silence splits.
    const exact = await get<SessionsBody>(`${api.url}/v1/sensors/sensor_c/sessions?${range}&gap=3m`);
    expect(exact.body.sessions.map((s) => s.count)).toEqual([6, 1]);
    const shorter = await get<SessionsBody>(`${api.url}/v1/sensors/sensor_c/sessions?${range}&gap=179s`);
    expect(shorter.body.sessions.map((s) => s.count)).toEqual([3, 3, 1]);
  });
});

describe("sensor catalogue", () => {
  /** Writes raw reading points straight to the bucket, as the worker would (epoch ms). */
  async function writeRaw(env: Env, lines: string[]): Promise<void> {
    const config = influxConfig(env);
    const write = createInflux(config).getWriteApi(config.org, config.bucket, "ms");
    write.writeRecords(lines);
    await write.close();
  }

  it("lists readings stored after the API's last catalogue refresh within FRESH_MS and a catch-up, and answers a past range from storage", async () => {
    const env = await isolatedEnv("api-catalogue");
    // No periodic refresh: only the catch-up each request makes can show the new readings.
    const api = await startApi({ ...env, API_CATALOGUE_REFRESH_MS: "0" });
    try {
      const t = Date.now() - 5_000;
      const empty = await get<SensorsBody>(`${api.url}/v1/sensors`);
      expect(empty.body.sensors).toEqual([]);

      // An answer may be FRESH_MS old, plus the catch-up that request started: 5 s is ample.
      const shows = (want: number) =>
        eventually(
          `the sensor's reading of ${isoAt(want)} in /v1/sensors`,
          () => get<SensorsBody>(`${api.url}/v1/sensors`),
          (r) => r.body.sensors[0]?.last_seen === isoAt(want),
          5_000,
        );
      await writeRaw(env, [`readings,sensor_id=fresh,site=east temperature=1.5 ${t}`]);
      const one = await shows(t);
      expect(one.body.sensors).toEqual([
        {
          sensor_id: "fresh",
          last_seen: isoAt(t),
          tags: { site: "east" },
          fields: { temperature: { value: 1.5, time: isoAt(t) } },
        },
      ]);

      await writeRaw(env, [`readings,sensor_id=fresh,site=west temperature=2.5,humidity=40 ${t + 1000}`]);
      const two = await shows(t + 1000);
      expect(two.body.sensors).toEqual([
        {
          sensor_id: "fresh",
          last_seen: isoAt(t + 1000),
          tags: { site: "west" },
          fields: {
            humidity: { value: 40, time: isoAt(t + 1000) },
            temperature: { value: 2.5, time: isoAt(t + 1000) },
          },
        },
      ]);

      // A range that ends before the newest reading is not the catalogue's to answer.
      const past = await get<SensorsBody>(
        `${api.url}/v1/sensors?start=${isoAt(t - 1000)}&stop=${isoAt(t + 500)}`,
      );
      expect(past.body.sensors).toEqual([
        {
          sensor_id: "fresh",
          last_seen: isoAt(t),
          tags: { site: "east" },
          fields: { temperature: { value: 1.5, time: isoAt(t) } },
        },
      ]);
    } finally {
      await api.stop();
    }
  });
});
