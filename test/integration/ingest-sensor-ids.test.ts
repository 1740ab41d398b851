/**
 * Sensor ids and tag values as real fleets name things (spaces, slashes, backslashes, non-ASCII,
 * line-protocol separators), written through the real worker and read back byte for byte from
 * InfluxDB and through the API, with the id URL-encoded in the path.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withAdmin } from "../../common/kafka.js";
import {
  drained,
  type Env,
  fluxRows,
  getJson,
  isolatedEnv,
  kafkaFor,
  produce,
  startApi,
  startWorker,
  topic,
} from "../support/harness.js";

const IDS = [
  "Hall 3 / north wall",
  "C:\\data\\probe",
  "温度计-1",
  "a,b=c d",
  "back\\,slash\\=comma\\ space",
  "Zürich\u00a0Bahnhofstraße",
  "é".repeat(128),
  "p(q)|r.*[s]{2}^$+?",
  "x/y\\/z",
];
const SITES = ["C:\\data", "x\\y", "a,b=c d\\e"];

describe("sensor ids and tag values round-trip byte for byte", () => {
  let env: Env;
  let api: { url: string; stop(): Promise<void> };
  const now = Date.now() - 60_000;

  beforeAll(async () => {
    env = await isolatedEnv("ids");
    const messages = IDS.flatMap((id, i) =>
      [0, 1].map((k) => ({
        key: id,
        value: JSON.stringify({
          sensor_id: id,
          site: SITES[i % SITES.length],
          temperature: 20 + i + k / 10,
          timestamp: now + k * 1000,
        }),
      })),
    );
    await produce(env, messages);
    const worker = await startWorker(env);
    try {
      await drained(env, messages.length);
    } finally {
      await worker.stop();
    }
    api = await startApi(env);
  });

  afterAll(async () => {
    await api?.stop();
  });

  it("nothing is dead-lettered", async () => {
    const offsets = await withAdmin(kafkaFor(env), (admin) =>
      admin.fetchTopicOffsets(topic(env, "deadLetter")),
    );
    expect(offsets.reduce((n, p) => n + Number(p.high), 0)).toBe(0);
  });

  it("InfluxDB holds every id and tag value exactly as sent", async () => {
    const rows = await fluxRows<{ sensor_id: string; site: string }>(
      env,
      `from(bucket: "${env.INFLUX_BUCKET}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "readings" and r._field == "temperature") |> group() |> keep(columns: ["sensor_id", "site"])`,
    );
    const stored = new Map(rows.map((r) => [r.sensor_id, r.site]));
    expect([...stored.keys()].sort()).toEqual([...IDS].sort());
    IDS.forEach((id, i) => {
      expect(stored.get(id), id).toBe(SITES[i % SITES.length]);
    });
  });

  it("the API lists every sensor and answers each one's readings with the id URL-encoded", async () => {
    const list = await getJson<{ sensors: { sensor_id: string; tags: Record<string, string> }[] }>(
      `${api.url}/v1/sensors?start=-1h`,
    );
    expect(list.status).toBe(200);
    expect(list.body.sensors.map((s) => s.sensor_id).sort()).toEqual([...IDS].sort());
    for (const [i, id] of IDS.entries()) {
      const res = await getJson<{ sensor_id: string; readings: { tags: Record<string, string> }[] }>(
        `${api.url}/v1/sensors/${encodeURIComponent(id)}/readings?start=-1h`,
      );
      expect(res.status, id).toBe(200);
      expect(res.body.sensor_id).toBe(id);
      expect(res.body.readings).toHaveLength(2);
      expect(res.body.readings[0]?.tags.site).toBe(SITES[i % SITES.length]);
    }
  });

  it("selects sensors by id in every form a query takes: one, an or-chain of a few, a regex of many", async () => {
    const countsOf = async (ids: string[]) => {
      const query = ids.map((id) => `sensor_id=${encodeURIComponent(id)}`).join("&");
      const res = await getJson<{ windows: { sensor_id: string; count: number }[] }>(
        `${api.url}/v1/aggregates?window=1h&start=-3h&tier=raw&fn=count&${query}`,
      );
      expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(200);
      const counts = new Map<string, number>();
      for (const w of res.body.windows) counts.set(w.sensor_id, (counts.get(w.sensor_id) ?? 0) + w.count);
      return counts;
    };
    expect(IDS.length).toBeGreaterThan(8);
    for (const ids of [IDS.slice(0, 1), IDS.slice(0, 3), IDS]) {
      const counts = await countsOf(ids);
      expect([...counts.keys()].sort(), `${ids.length} ids`).toEqual([...ids].sort());
      for (const id of ids) expect(counts.get(id), id).toBe(2);
    }
    // Near misses of regex metacharacters match nothing: each id is matched as itself only.
    const misses = [
      "p(q)|r.*[s]{2}^$+",
      "x/y/z",
      "Hall 3 / north wal",
      "C:\\data",
      "a,b=c",
      "e",
      "温度计",
      "Zürich",
      ".",
    ];
    expect(misses.length).toBeGreaterThan(8);
    expect((await countsOf(misses)).size).toBe(0);
  });
});
