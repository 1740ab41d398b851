/**
 * The first slice end to end, on the real services: readings produced to Kafka, the real worker
 * consuming and writing to InfluxDB, the real API answering window aggregates. Exact values.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kafkaConfig } from "../../common/config.js";
import { withAdmin } from "../../common/kafka.js";
import {
  consumeAll,
  type Env,
  eventually,
  getJson,
  isolatedEnv,
  kafkaFor,
  produce,
  startApi,
  startWorker,
  topic,
} from "../support/harness.js";

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const SENSORS = ["sensor_1", "sensor_2", "sensor_3"];
const SECONDS = 180;

function temperature(sensor: number, second: number): number {
  return 20 + sensor + (second % 7) * 0.5;
}

interface Aggregate {
  sensor_id: string;
  window_start: string;
  window_end: string;
  mean: number;
  min: number;
  max: number;
  count: number;
}

describe("end to end: simulator messages → worker → InfluxDB → API", () => {
  let env: Env;
  let api: Awaited<ReturnType<typeof startApi>>;
  let worker: Awaited<ReturnType<typeof startWorker>>;

  beforeAll(async () => {
    env = await isolatedEnv("e2e");
    const messages = [];
    for (let second = 0; second < SECONDS; second++) {
      for (const [s, sensor] of SENSORS.entries()) {
        // The seed's message, unchanged.
        messages.push({
          key: sensor,
          value: JSON.stringify({
            sensor_id: sensor,
            temperature: temperature(s, second),
            timestamp: T0 + second * 1000,
          }),
        });
      }
    }
    await produce(env, messages);
    worker = await startWorker(env);
    api = await startApi(env);
  });

  afterAll(async () => {
    await worker?.stop();
    await api?.stop();
  });

  it("serves exact 1-minute mean/min/max/count per sensor from the stored readings", async () => {
    const url = `${api.url}/v1/aggregates?window=1m&start=${new Date(T0).toISOString()}&stop=${new Date(T0 + SECONDS * 1000).toISOString()}`;
    const { body } = await eventually(
      "all readings stored",
      () => getJson<{ windows: Aggregate[] }>(url),
      (r) => r.status === 200 && r.body.windows.reduce((n, w) => n + w.count, 0) === SENSORS.length * SECONDS,
    );
    const expected: Aggregate[] = [];
    for (const [s, sensor] of SENSORS.entries()) {
      for (let minute = 0; minute < SECONDS / 60; minute++) {
        const values = Array.from({ length: 60 }, (_, i) => temperature(s, minute * 60 + i));
        expected.push({
          sensor_id: sensor,
          window_start: new Date(T0 + minute * 60_000).toISOString(),
          window_end: new Date(T0 + (minute + 1) * 60_000).toISOString(),
          mean: values.reduce((a, b) => a + b, 0) / values.length,
          min: Math.min(...values),
          max: Math.max(...values),
          count: 60,
        });
      }
    }
    expect(body.windows).toHaveLength(expected.length);
    for (const [i, w] of body.windows.entries()) {
      const e = expected[i] as Aggregate;
      expect(w.sensor_id).toBe(e.sensor_id);
      expect(w.window_start).toBe(e.window_start);
      expect(w.window_end).toBe(e.window_end);
      expect(w.count).toBe(e.count);
      expect(w.min).toBe(e.min);
      expect(w.max).toBe(e.max);
      expect(w.mean).toBeCloseTo(e.mean, 9);
    }
  });

  it("commits the consumed offsets only once the batch is stored, and emits closed event-time windows", async () => {
    const kafka = kafkaFor(env);
    const committed = await eventually(
      "offsets committed",
      () =>
        withAdmin(kafka, async (admin) => {
          const [ends, groups] = await Promise.all([
            admin.fetchTopicOffsets(topic(env, "raw")),
            admin.fetchOffsets({ groupId: env.INGEST_GROUP_ID as string, topics: [topic(env, "raw")] }),
          ]);
          const end = ends.reduce((n, p) => n + Number(p.high), 0);
          const done = (groups[0]?.partitions ?? []).reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
          return { end, done };
        }),
      (o) => o.end > 0 && o.done === o.end,
    );
    expect(committed.done).toBe(SENSORS.length * SECONDS);

    // Stream time reaches T0+179 s on every partition; with 10 s lateness, minutes 0 and 1 are final.
    const windows = await consumeAll(env, "aggregated", SENSORS.length * 2);
    const parsed = windows
      .map((m) => JSON.parse(m.value?.toString() ?? "{}"))
      .sort((a, b) => a.sensor_id.localeCompare(b.sensor_id) || a.window_start - b.window_start);
    expect(parsed).toHaveLength(SENSORS.length * 2);
    for (const [s, sensor] of SENSORS.entries()) {
      for (let minute = 0; minute < 2; minute++) {
        const values = Array.from({ length: 60 }, (_, i) => temperature(s, minute * 60 + i));
        const w = parsed[s * 2 + minute];
        expect(w).toMatchObject({
          sensor_id: sensor,
          window_start: T0 + minute * 60_000,
          window_end: T0 + (minute + 1) * 60_000,
          count: 60,
          min_temperature: Math.min(...values),
          max_temperature: Math.max(...values),
        });
        expect(w.avg_temperature).toBeCloseTo(values.reduce((a, b) => a + b, 0) / 60, 9);
      }
    }
    expect(kafkaConfig(env).topicPrefix).toContain("e2e");
  });
});
