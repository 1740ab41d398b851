/**
 * Flux injection: every string parameter the OpenAPI document lists, on every route, gets strings that
 * would change a Flux query if spliced into it. Each answer must be a 400 problem or a correct empty
 * result, never a 5xx, and the stored data must be unchanged afterwards.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeCursor } from "../../api/pagination.js";
import { get, isoAt, type SeedReading, seedReadings } from "../support/api-helpers.js";
import { type Env, fluxRows, isolatedEnv, startApi } from "../support/harness.js";

const T0 = Date.UTC(2026, 0, 5, 6, 0, 0);
const PAYLOADS = [
  '"',
  ")",
  "|>",
  "\n",
  "//",
  'sensor_1" or r._measurement != "',
  'x") |> drop(columns: ["_value"]) //',
  'sensor_1)\n|> to(bucket: "other")',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${…} is one of the payloads
  "${1+1}",
  "a\\",
];

interface Parameter {
  in: "query" | "path";
  name: string;
  schema: { type?: string; items?: { type?: string }; anyOf?: { type?: string }[] };
}
interface Spec {
  paths: Record<string, Record<string, { parameters?: Parameter[] }>>;
}

/** The stored data, summarised: points per measurement and the sum of the readings. */
async function fingerprint(env: Env): Promise<string> {
  const rows = await fluxRows<{ _measurement: string; _value: number }>(
    env,
    `from(bucket: "${env.INFLUX_BUCKET}") |> range(start: 0) |> group(columns: ["_measurement"]) |> count()`,
  );
  const sum = await fluxRows<{ _value: number }>(
    env,
    `from(bucket: "${env.INFLUX_BUCKET}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "readings") |> group() |> sum()`,
  );
  return JSON.stringify([rows.map((r) => [r._measurement, r._value]).sort(), sum[0]?._value]);
}

describe("Flux injection through every string parameter", () => {
  let env: Env;
  let api: Awaited<ReturnType<typeof startApi>>;
  let before: string;

  beforeAll(async () => {
    env = await isolatedEnv("api-injection", { API_RATE_LIMIT_PER_MINUTE: "100000" });
    const readings: SeedReading[] = [];
    for (let i = 0; i < 20; i++) {
      readings.push({
        sensor_id: "sensor_1",
        timestamp: T0 + i * 5000,
        temperature: 20 + (i % 4),
        site: "a",
      });
    }
    await seedReadings(env, readings);
    const res = await fetch(
      `${env.INFLUX_URL}/api/v2/write?org=${encodeURIComponent(env.INFLUX_ORG as string)}&bucket=${encodeURIComponent(env.INFLUX_BUCKET as string)}&precision=ms`,
      {
        method: "POST",
        headers: { authorization: `Token ${env.INFLUX_TOKEN}` },
        body: `alerts,rule_id=r1,sensor_id=sensor_1,severity=warning,state=firing value=23,threshold=22,message="hot" ${T0 + 15_000}`,
      },
    );
    expect(res.status).toBe(204);
    api = await startApi(env);
    before = await fingerprint(env);
  });

  afterAll(async () => {
    await api?.stop();
  });

  it("answers 400 or an empty result, never 5xx, for every string parameter, and changes no data", async () => {
    const spec = (await get<Spec>(`${api.url}/docs/json`, null)).body;
    const range = `start=${isoAt(T0 - 60_000)}&stop=${isoAt(T0 + 3_600_000)}`;
    let tried = 0;
    const names = new Set<string>();
    for (const [path, methods] of Object.entries(spec.paths)) {
      const params = methods.get?.parameters ?? [];
      const strings = params.filter(
        (p) =>
          p.schema.type === "string" ||
          p.schema.items?.type === "string" ||
          (p.schema.anyOf ?? []).some((alternative) => alternative.type === "string"),
      );
      for (const param of strings) {
        for (const payload of PAYLOADS) {
          const concrete = path.replace(/\{(\w+)\}/g, (_m, name: string) =>
            name === param.name && param.in === "path" ? encodeURIComponent(payload) : "sensor_1",
          );
          const query =
            param.in === "query"
              ? `${param.name === "start" || param.name === "stop" ? "" : `${range}&`}${param.name}=${encodeURIComponent(payload)}`
              : range;
          const url = `${api.url}${concrete}?${query}`;
          const res = await get<{ status?: number; detail?: string }>(url);
          expect(res.status, `${url} → ${JSON.stringify(res.body)}`).toBeLessThan(500);
          if (res.status === 200) {
            // `fn` echoes the functions asked for; every other list in an answer holds data. (Sensor
            // ids are any printable text, so most payloads are valid ids that match nothing.)
            const lists = Object.entries(res.body)
              .filter(([key, value]) => key !== "fn" && Array.isArray(value))
              .map(([, value]) => value);
            expect(lists.flat(), `${url} answered 200 with data`).toEqual([]);
          } else {
            // 400 for a value of the wrong form, 422 for a well-formed one outside what can be answered.
            expect([400, 422], url).toContain(res.status);
            expect(res.contentType).toContain("application/problem+json");
            expect(typeof res.body.detail).toBe("string");
          }
          names.add(`${path} ${param.name}`);
          tried++;
        }
      }
    }
    // The document must have offered the parameters this test is meant to cover.
    for (const expected of [
      "/v1/aggregates sensor_id",
      "/v1/aggregates field",
      "/v1/aggregates fn",
      "/v1/aggregates every",
      "/v1/aggregates/latest at",
      "/v1/sensors/{sensor_id}/readings sensor_id",
      "/v1/sensors/{sensor_id}/readings cursor",
      "/v1/sensors/{sensor_id}/sessions gap",
      "/v1/anomalies detector",
      "/v1/anomalies field",
      "/v1/alerts rule_id",
      "/v1/alerts state",
    ]) {
      expect(names).toContain(expected);
    }
    expect(tried).toBeGreaterThan(300);
    expect(await fingerprint(env)).toBe(before);
  });

  it("treats a well-formed cursor carrying Flux syntax as values: a correct page, no error", async () => {
    const range = `start=${isoAt(T0 - 60_000)}&stop=${isoAt(T0 + 3_600_000)}`;
    for (const payload of PAYLOADS) {
      // At the only alert's time, it is on the page exactly when its rule_id sorts after the payload.
      const alerts = await get<{ alerts: { rule_id: string }[] }>(
        `${api.url}/v1/alerts?${range}&cursor=${encodeCursor({ t: T0 + 15_000, k: [payload, payload, payload, payload] })}`,
      );
      expect(alerts.status).toBe(200);
      expect(alerts.body.alerts.map((a) => a.rule_id)).toEqual("r1" > payload ? ["r1"] : []);
      const anomalies = await get<{ anomalies: unknown[] }>(
        `${api.url}/v1/anomalies?${range}&cursor=${encodeCursor({ t: T0 + 3_000_000, k: [payload, payload, payload] })}`,
      );
      expect(anomalies.status).toBe(200);
      expect(anomalies.body.anomalies).toEqual([]);
      const readings = await get<{ readings: unknown[] }>(
        `${api.url}/v1/sensors/sensor_1/readings?${range}&cursor=${encodeCursor({ t: T0 + 50_000, k: [] })}`,
      );
      expect(readings.status).toBe(200);
      expect(readings.body.readings).toHaveLength(9);
    }
    expect(await fingerprint(env)).toBe(before);
  });

  it("answers every combination of plausible and odd parameter values without a 5xx", async () => {
    // Mostly values a client could reasonably send, so that most requests reach InfluxDB; odd ones too.
    const units = fc.constantFrom("ms", "s", "m", "h", "d", "w", "");
    const duration = fc.oneof(
      {
        arbitrary: fc
          .tuple(fc.integer({ min: 1, max: 90 }), fc.constantFrom("s", "m", "h"))
          .map(([n, u]) => `${n}${u}`),
        weight: 8,
      },
      {
        arbitrary: fc.tuple(fc.integer({ min: 0, max: 2_000_000_000 }), units).map(([n, u]) => `${n}${u}`),
        weight: 1,
      },
      { arbitrary: fc.string({ maxLength: 6 }), weight: 1 },
    );
    const time = fc.oneof(
      { arbitrary: fc.integer({ min: T0 - 7_200_000, max: T0 + 7_200_000 }).map(isoAt), weight: 8 },
      { arbitrary: fc.integer({ min: -1, max: 10_000_000_000_000 }).map(String), weight: 1 },
      {
        arbitrary: fc
          .date({ min: new Date(-1e13), max: new Date(9e12), noInvalidDate: true })
          .map((d) => d.toISOString()),
        weight: 1,
      },
      {
        arbitrary: fc.tuple(fc.integer({ min: 0, max: 99_999_999 }), units).map(([n, u]) => `-${n}${u}`),
        weight: 1,
      },
      { arbitrary: fc.constantFrom("-1h", "-30d", "-32d", "0"), weight: 1 },
      { arbitrary: fc.string({ maxLength: 8 }), weight: 1 },
    );
    const text = fc.oneof(
      { arbitrary: fc.constantFrom("sensor_1", "temperature", "r1", "other"), weight: 8 },
      { arbitrary: fc.string({ maxLength: 10 }), weight: 1 },
    );
    /** name=value in `present` of 4 requests, absent otherwise. */
    const param = (name: string, values: fc.Arbitrary<string>, present = 2) =>
      fc.oneof(
        { arbitrary: fc.constant(undefined), weight: 4 - present },
        { arbitrary: values.map((v) => `${name}=${encodeURIComponent(v)}`), weight: present },
      );
    const fnList = fc
      .subarray(["mean", "min", "max", "count", "sum", "stddev", "median", "p90", "p95", "p99"])
      .map((fns) => fns.map((f) => `fn=${f}`).join("&"));
    const request = fc.record({
      path: fc.constantFrom(
        "/v1/aggregates",
        "/v1/aggregates/latest",
        "/v1/sensors",
        "/v1/sensors/sensor_1/readings",
        "/v1/sensors/sensor_1/sessions",
        "/v1/anomalies",
        "/v1/alerts",
      ),
      params: fc.tuple(
        param("start", time, 3),
        param("stop", time, 3),
        param("at", time),
        param("window", duration),
        param("every", duration),
        param("gap", duration),
        param("lookback", duration),
        param("sensor_id", text),
        param("field", text),
        param("rule_id", text),
        param(
          "limit",
          fc.oneof(
            { arbitrary: fc.integer({ min: 1, max: 1000 }).map(String), weight: 8 },
            { arbitrary: text, weight: 1 },
          ),
        ),
        param("cursor", fc.oneof(text, fc.constant(encodeCursor({ t: T0, k: [] }))), 1),
        fc.option(fnList, { nil: undefined }),
      ),
    });
    const statuses: Record<number, number> = {};
    await fc.assert(
      fc.asyncProperty(request, async ({ path, params }) => {
        const url = `${api.url}${path}?${params.filter((p) => p !== undefined && p !== "").join("&")}`;
        const res = await get<{ detail?: string }>(url);
        expect(res.status, `${url} → ${JSON.stringify(res.body)}`).toBeLessThan(500);
        if (res.status >= 400) expect(res.contentType).toContain("application/problem+json");
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
      }),
      { numRuns: 500 },
    );
    // The mix must reach storage often, or the property says little about the queries.
    expect(statuses[200] ?? 0).toBeGreaterThan(40);
    expect(await fingerprint(env)).toBe(before);
  });
});
