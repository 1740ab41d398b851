/**
 * /v1/anomalies (flags written by the real worker's delta detector) and /v1/alerts (history written as
 * line protocol, the alert engine not existing yet): filters, and every item exactly once across
 * cursor pages, including items that share a timestamp.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { get, isoAt, type SeedReading, seedReadings } from "../support/api-helpers.js";
import { countPoints, type Env, eventually, isolatedEnv, startApi } from "../support/harness.js";

const T0 = Date.UTC(2026, 0, 4, 10, 0, 0);
const N = 40;
const DELTA = 5;

/** Spikes of +10 (so the spike and the return are both flagged) at these reading indexes. */
const SPIKES: Record<string, Record<string, number[]>> = {
  s1: { temperature: [5, 12, 20, 33], humidity: [12] },
  s2: { temperature: [5, 20], humidity: [] },
};

function value(sensor: string, field: string, i: number): number {
  const base = field === "temperature" ? 20 : 50;
  return base + (SPIKES[sensor]?.[field]?.includes(i) ? 10 : 0) + (i % 3) * 0.5;
}

interface Anomaly {
  time: string;
  sensor_id: string;
  field: string;
  detector: string;
  value: number;
  score: number;
  threshold: number;
  expected: number;
}

/** The seed's delta rule, |x − previous| > 5, per sensor and field. */
function expectedAnomalies(): Anomaly[] {
  const out: Anomaly[] = [];
  for (const sensor of Object.keys(SPIKES)) {
    for (const field of ["temperature", "humidity"]) {
      for (let i = 1; i < N; i++) {
        const x = value(sensor, field, i);
        const prev = value(sensor, field, i - 1);
        if (Math.abs(x - prev) > DELTA) {
          out.push({
            time: isoAt(T0 + i * 10_000),
            sensor_id: sensor,
            field,
            detector: "delta",
            value: x,
            score: Math.abs(x - prev),
            threshold: DELTA,
            expected: prev,
          });
        }
      }
    }
  }
  const key = (a: Anomaly) => `${a.time} ${a.sensor_id} ${a.field} ${a.detector}`;
  return out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

interface Alert {
  time: string;
  rule_id: string;
  sensor_id: string;
  severity: string;
  state: string;
  value: number;
  threshold: number;
  message: string;
}

const ALERTS: Alert[] = [];
for (let i = 0; i < 6; i++) {
  for (const [rule, severity] of [
    ["rule-hot", "critical"],
    ["rule-warm", "warning"],
  ] as const) {
    for (const sensor of ["s1", "s2"]) {
      ALERTS.push({
        time: isoAt(T0 + i * 60_000),
        rule_id: rule,
        sensor_id: sensor,
        severity,
        state: i % 2 === 0 ? "firing" : "resolved",
        value: 30 + i + (sensor === "s2" ? 0.5 : 0),
        threshold: rule === "rule-hot" ? 35 : 30,
        message: `${sensor} "temperature", ${i % 2 === 0 ? "above" : "back below"} threshold`,
      });
    }
  }
}
ALERTS.push({
  time: isoAt(T0 + 90_000),
  rule_id: "rule-info",
  sensor_id: "s3",
  severity: "info",
  state: "firing",
  value: 1,
  threshold: 0,
  message: "s3 info",
});
const alertKey = (a: Alert) => `${a.time} ${a.rule_id} ${a.sensor_id} ${a.severity} ${a.state}`;
ALERTS.sort((a, b) => (alertKey(a) < alertKey(b) ? -1 : 1));

function lineProtocol(a: Alert): string {
  const message = a.message.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
  return `alerts,rule_id=${a.rule_id},sensor_id=${a.sensor_id},severity=${a.severity},state=${a.state} value=${a.value},threshold=${a.threshold},message="${message}" ${Date.parse(a.time)}`;
}

/** Follows next_cursor until the last page; returns every item and the number of pages. */
async function walk<T>(url: string, list: string): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const pageUrl: string = `${url}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const { status, body } = await get<Record<string, unknown>>(pageUrl);
    expect(status).toBe(200);
    items.push(...(body[list] as T[]));
    cursor = body.next_cursor as string | null;
    pages++;
  } while (cursor !== null && pages < 100);
  return { items, pages };
}

describe("anomalies and alerts API", () => {
  let env: Env;
  let api: Awaited<ReturnType<typeof startApi>>;
  const anomalies = expectedAnomalies();
  const range = `start=${isoAt(T0 - 60_000)}&stop=${isoAt(T0 + 3_600_000)}`;

  beforeAll(async () => {
    env = await isolatedEnv("api-events", {
      // Only the seed's delta detector, so the expected flags follow from the readings alone.
      ANOMALY_ZSCORE_THRESHOLD: "1000000000",
      ANOMALY_EWMA_THRESHOLD: "1000000000",
    });
    const readings: SeedReading[] = [];
    for (let i = 0; i < N; i++) {
      for (const sensor of Object.keys(SPIKES)) {
        readings.push({
          sensor_id: sensor,
          timestamp: T0 + i * 10_000,
          temperature: value(sensor, "temperature", i),
          humidity: value(sensor, "humidity", i),
        });
      }
    }
    await seedReadings(env, readings);
    await eventually(
      "anomalies stored",
      () => countPoints(env, "anomalies", "score"),
      (n) => n === anomalies.length,
    );
    const res = await fetch(
      `${env.INFLUX_URL}/api/v2/write?org=${encodeURIComponent(env.INFLUX_ORG as string)}&bucket=${encodeURIComponent(env.INFLUX_BUCKET as string)}&precision=ms`,
      {
        method: "POST",
        headers: { authorization: `Token ${env.INFLUX_TOKEN}` },
        body: ALERTS.map(lineProtocol).join("\n"),
      },
    );
    expect(res.status).toBe(204);
    api = await startApi(env);
  });

  afterAll(async () => {
    await api?.stop();
  });

  it("the seeded spikes give flags that share timestamps across sensors and fields", () => {
    expect(anomalies).toHaveLength(2 * 4 + 2 + 2 * 2);
    const times = anomalies.map((a) => a.time);
    expect(new Set(times).size).toBeLessThan(times.length);
  });

  it("returns every stored anomaly exactly once across pages of 3, in (time, sensor, field, detector) order", async () => {
    const { items, pages } = await walk<Anomaly>(`${api.url}/v1/anomalies?${range}&limit=3`, "anomalies");
    expect(pages).toBe(Math.ceil(anomalies.length / 3));
    expect(items).toEqual(anomalies);
  });

  it("pages newest first with order=desc: the exact reverse, each item once", async () => {
    const anomaliesDesc = await walk<Anomaly>(
      `${api.url}/v1/anomalies?${range}&limit=3&order=desc`,
      "anomalies",
    );
    expect(anomaliesDesc.items).toEqual([...anomalies].reverse());
    const alertsDesc = await walk<Alert>(`${api.url}/v1/alerts?${range}&limit=4&order=desc`, "alerts");
    expect(alertsDesc.items).toEqual([...ALERTS].reverse());
    const s1Desc = await walk<Alert>(
      `${api.url}/v1/alerts?${range}&sensor_id=s1&limit=2&order=desc`,
      "alerts",
    );
    expect(s1Desc.items).toEqual(ALERTS.filter((a) => a.sensor_id === "s1").reverse());
  });

  it("pages every item exactly once at every page size, both ways, ties cut anywhere", async () => {
    // Each alert series (rule, sensor, severity, state) holds 3 points and each time holds 4 or
    // more: a page boundary falls inside a tie and inside a series at some page size.
    for (let limit = 1; limit <= 7; limit++) {
      const alertsUp = await walk<Alert>(`${api.url}/v1/alerts?${range}&limit=${limit}`, "alerts");
      expect(alertsUp.items, `alerts, limit ${limit}`).toEqual(ALERTS);
      const alertsDown = await walk<Alert>(
        `${api.url}/v1/alerts?${range}&limit=${limit}&order=desc`,
        "alerts",
      );
      expect(alertsDown.items, `alerts newest first, limit ${limit}`).toEqual([...ALERTS].reverse());
      const flagsUp = await walk<Anomaly>(`${api.url}/v1/anomalies?${range}&limit=${limit}`, "anomalies");
      expect(flagsUp.items, `anomalies, limit ${limit}`).toEqual(anomalies);
    }
    const firing = await walk<Alert>(
      `${api.url}/v1/alerts?${range}&rule_id=rule-hot&rule_id=rule-info&state=firing&limit=2`,
      "alerts",
    );
    expect(firing.items).toEqual(
      ALERTS.filter((a) => ["rule-hot", "rule-info"].includes(a.rule_id) && a.state === "firing"),
    );
  });

  it("filters anomalies by sensor, field, detector and time", async () => {
    const s2 = await walk<Anomaly>(`${api.url}/v1/anomalies?${range}&sensor_id=s2&limit=2`, "anomalies");
    expect(s2.items).toEqual(anomalies.filter((a) => a.sensor_id === "s2"));
    const humidity = await get<{ anomalies: Anomaly[] }>(`${api.url}/v1/anomalies?${range}&field=humidity`);
    expect(humidity.body.anomalies).toEqual(anomalies.filter((a) => a.field === "humidity"));
    const zscore = await get<{ anomalies: Anomaly[]; next_cursor: null }>(
      `${api.url}/v1/anomalies?${range}&detector=zscore&detector=ewma`,
    );
    expect(zscore.body).toMatchObject({ anomalies: [], next_cursor: null });
    const start = T0 + 120_000;
    const stop = T0 + 210_000;
    const window = await get<{ anomalies: Anomaly[] }>(
      `${api.url}/v1/anomalies?start=${isoAt(start)}&stop=${isoAt(stop)}&detector=delta`,
    );
    expect(window.body.anomalies).toEqual(
      anomalies.filter((a) => Date.parse(a.time) >= start && Date.parse(a.time) < stop),
    );
  });

  it("returns the alert history exactly once across pages, with messages intact", async () => {
    const { items, pages } = await walk<Alert>(`${api.url}/v1/alerts?${range}&limit=5`, "alerts");
    expect(pages).toBe(Math.ceil(ALERTS.length / 5));
    expect(items).toEqual(ALERTS);
  });

  it("filters alerts by sensor, rule, severity, state and time", async () => {
    const firingHot = await walk<Alert>(
      `${api.url}/v1/alerts?${range}&rule_id=rule-hot&state=firing&sensor_id=s2&limit=1`,
      "alerts",
    );
    expect(firingHot.items).toEqual(
      ALERTS.filter((a) => a.rule_id === "rule-hot" && a.state === "firing" && a.sensor_id === "s2"),
    );
    expect(firingHot.items).toHaveLength(3);
    const severities = await get<{ alerts: Alert[] }>(
      `${api.url}/v1/alerts?${range}&severity=info&severity=warning`,
    );
    expect(severities.body.alerts).toEqual(ALERTS.filter((a) => a.severity !== "critical"));
    const early = await get<{ alerts: Alert[] }>(
      `${api.url}/v1/alerts?start=${isoAt(T0)}&stop=${isoAt(T0 + 60_000)}`,
    );
    expect(early.body.alerts).toEqual(ALERTS.filter((a) => Date.parse(a.time) < T0 + 60_000));
    const none = await get<{ alerts: Alert[] }>(`${api.url}/v1/alerts?${range}&rule_id=no-such-rule`);
    expect(none.body.alerts).toEqual([]);
  });

  it("rejects unknown severities and states, naming what is accepted", async () => {
    const severity = await get<{ detail: string }>(`${api.url}/v1/alerts?severity=fatal`);
    expect(severity.status).toBe(400);
    expect(severity.body.detail).toMatch(/severity/);
    const state = await get<{ detail: string }>(`${api.url}/v1/alerts?state=open`);
    expect(state.status).toBe(400);
    expect(state.body.detail).toMatch(/state/);
    const cursor = await get<{ detail: string }>(`${api.url}/v1/anomalies?cursor=eyJ0IjoxfQ`);
    expect(cursor.status).toBe(422);
    expect(cursor.body.detail).toContain("next_cursor");
  });
});
