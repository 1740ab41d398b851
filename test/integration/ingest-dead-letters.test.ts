/**
 * Bad input and late data on the real broker and InfluxDB: every invalid message lands in the DLQ
 * with its original key, bytes and a reason; every valid one is stored; out-of-order readings
 * inside the allowed lateness count in their window; readings past the revision time (30 s here)
 * are stored, counted and routed to sensor-readings-late, and their dropped window is not re-emitted.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  consumeAll,
  countPoints,
  drained,
  type Env,
  eventually,
  isolatedEnv,
  type Outgoing,
  produce,
  startWorker,
} from "../support/harness.js";

const T0 = Date.UTC(2026, 0, 2, 8, 0, 0);
const reading = (sensor: string, ms: number, temperature: number) =>
  JSON.stringify({ sensor_id: sensor, temperature, timestamp: ms });

const BAD: { key: string; value: string | Buffer | null; reason: string }[] = [
  { key: "sensor_a", value: "", reason: "empty" },
  { key: "sensor_a", value: null, reason: "empty" },
  { key: "sensor_b", value: "not json", reason: "invalid_json" },
  { key: "sensor_b", value: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), reason: "invalid_utf8" },
  { key: "sensor_a", value: "[1,2]", reason: "not_an_object" },
  { key: "sensor_a", value: `{"temperature":1,"timestamp":${T0}}`, reason: "missing_sensor_id" },
  {
    key: "sensor_a",
    value: `{"sensor_id":"a b\\\\","temperature":1,"timestamp":${T0}}`,
    reason: "invalid_sensor_id",
  },
  { key: "sensor_a", value: `{"sensor_id":"sensor_a","temperature":1}`, reason: "missing_timestamp" },
  {
    key: "sensor_b",
    value: `{"sensor_id":"sensor_b","temperature":1,"timestamp":"yesterday"}`,
    reason: "invalid_timestamp",
  },
  {
    key: "sensor_b",
    value: `{"sensor_id":"sensor_b","temperature":1,"timestamp":946684799999}`,
    reason: "timestamp_out_of_range",
  },
  {
    key: "sensor_b",
    value: `{"sensor_id":"sensor_b","temperature":1,"timestamp":${Date.now() + 3_600_000}}`,
    reason: "future_timestamp",
  },
  { key: "sensor_a", value: `{"sensor_id":"sensor_a","timestamp":${T0}}`, reason: "no_fields" },
  {
    key: "sensor_a",
    value: `{"sensor_id":"sensor_a","temperature":1e400,"timestamp":${T0}}`,
    reason: "non_finite_field",
  },
  {
    key: "sensor_b",
    value: `{"sensor_id":"sensor_b","temperature":true,"timestamp":${T0}}`,
    reason: "invalid_value_type",
  },
  {
    key: "sensor_b",
    value: `{"sensor_id":"sensor_b","time":1,"temperature":1,"timestamp":${T0}}`,
    reason: "reserved_key",
  },
  {
    key: "sensor_a",
    value: JSON.stringify({ sensor_id: "sensor_a", temperature: 1, timestamp: T0, pad: "x".repeat(70_000) }),
    reason: "oversize",
  },
];

describe("dead letters, out-of-order and late readings", () => {
  let env: Env;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  const temperatures: Record<string, number[][]> = { sensor_a: [[], [], []], sensor_b: [[], [], []] };

  beforeAll(async () => {
    env = await isolatedEnv("dlq", { WINDOW_REVISION_MS: "30000" });
    const messages: Outgoing[] = [];
    let bad = 0;
    for (let second = 0; second < 180; second++) {
      for (const sensor of ["sensor_a", "sensor_b"]) {
        const t = 20 + (second % 5) * 0.25 + (sensor === "sensor_b" ? 1 : 0);
        messages.push({ key: sensor, value: reading(sensor, T0 + second * 1000, t) });
        temperatures[sensor]?.[Math.floor(second / 60)]?.push(t);
      }
      // Interleave the bad messages with the good ones.
      if (second % 10 === 5 && bad < BAD.length) {
        const b = BAD[bad++] as (typeof BAD)[number];
        messages.push({ key: b.key, value: b.value });
      }
      // Out of order by 4.5 s, inside the 10 s allowed lateness: counts in window 2.
      if (second === 155) {
        messages.push({ key: "sensor_b", value: reading("sensor_b", T0 + 150_500, 30) });
        temperatures.sensor_b?.[2]?.push(30);
      }
    }
    expect(bad).toBe(BAD.length);
    // Moves both sensors' stream time to T0+200 s: windows 0..2 close, and are dropped 30 s later.
    messages.push({ key: "sensor_a", value: reading("sensor_a", T0 + 200_000, 20) });
    messages.push({ key: "sensor_b", value: reading("sensor_b", T0 + 200_000, 21) });
    // Window 0 of sensor_a ended at 60 s: at 200 s it is past 60 + 10 + 30 s, dropped: a late reading.
    messages.push({ key: "sensor_a", value: reading("sensor_a", T0 + 5_500, 99) });
    await produce(env, messages);
    worker = await startWorker(env);
  });

  afterAll(async () => {
    await worker?.stop();
  });

  it("sends every invalid message to the DLQ with its key, original bytes and reason", async () => {
    const dlq = await consumeAll(env, "deadLetter", BAD.length);
    expect(dlq).toHaveLength(BAD.length);
    // Compared as base64 of the bytes; an empty value and a null one both come back as no bytes.
    const encode = (v: string | Buffer | null) => (v === null ? "" : Buffer.from(v).toString("base64"));
    const got = dlq.map((m) => `${m.headers["dlq-reason"]}|${m.key}|${encode(m.value)}`).sort();
    const want = BAD.map((b) => `${b.reason}|${b.key}|${encode(b.value)}`).sort();
    expect(got).toEqual(want);
    for (const m of dlq) {
      expect(m.headers["dlq-detail"]?.length).toBeGreaterThan(5);
      expect(m.headers["dlq-source-topic"]).toBe(`${env.KAFKA_TOPIC_PREFIX}sensor-readings-raw`);
      expect(Number(m.headers["dlq-source-offset"])).toBeGreaterThanOrEqual(0);
    }
  });

  it("stores every valid reading, including out-of-order and late ones", async () => {
    const expected = 180 * 2 + 1 + 2 + 1;
    const stored = await eventually(
      "readings stored",
      () => countPoints(env, "readings", "temperature"),
      (n) => n >= expected,
    );
    expect(stored).toBe(expected);
  });

  it("routes the late reading aside and emits each final window exactly once", async () => {
    const late = await consumeAll(env, "late", 1);
    expect(late).toHaveLength(1);
    expect(JSON.parse(late[0]?.value?.toString() ?? "{}")).toMatchObject({
      sensor_id: "sensor_a",
      temperature: 99,
    });

    const windows = (await consumeAll(env, "aggregated", 6)).map((m) =>
      JSON.parse(m.value?.toString() ?? "{}"),
    );
    expect(windows).toHaveLength(6);
    for (const sensor of ["sensor_a", "sensor_b"]) {
      for (let w = 0; w < 3; w++) {
        const values = temperatures[sensor]?.[w] as number[];
        const got = windows.filter((x) => x.sensor_id === sensor && x.window_start === T0 + w * 60_000);
        expect(got).toHaveLength(1);
        expect(got[0]).toMatchObject({
          count: values.length,
          min_temperature: Math.min(...values),
          max_temperature: Math.max(...values),
        });
        expect(got[0].avg_temperature).toBeCloseTo(values.reduce((a, b) => a + b, 0) / values.length, 9);
      }
    }
    // The out-of-order reading made it into sensor_b's third window.
    expect(windows.find((x) => x.sensor_id === "sensor_b" && x.window_start === T0 + 120_000)?.count).toBe(
      61,
    );
    expect((await worker.metrics.late.get()).values[0]?.value).toBe(1);
    expect((await worker.metrics.deadLetters.get()).values[0]?.value).toBe(BAD.length);
  });
});

describe("a flood of invalid messages", () => {
  it("dead-letters 12,000 bad messages from one partition, more than one record batch may hold", async () => {
    const env = await isolatedEnv("dlq-flood");
    const bad = Array.from({ length: 12_000 }, (_, i) => ({
      key: "flood",
      partition: 0,
      value: `not json: message ${i} ${"x".repeat(60)}`,
    }));
    await produce(env, bad);
    const worker = await startWorker(env);
    try {
      await drained(env, bad.length);
      const dlq = await consumeAll(env, "deadLetter", bad.length, 60_000);
      expect(dlq).toHaveLength(bad.length);
      expect(new Set(dlq.map((m) => m.headers["dlq-source-offset"])).size).toBe(bad.length);
      expect(dlq.every((m) => m.headers["dlq-reason"] === "invalid_json")).toBe(true);
    } finally {
      await worker.stop();
    }
  });
});
