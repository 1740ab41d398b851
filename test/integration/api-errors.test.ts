/**
 * Client mistakes are 4xx problem details that name the parameter, quote the value and say what is
 * accepted. All of these are answered before a query runs.
 */

import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp } from "../support/api-helpers.js";
import { READ_TOKEN } from "../support/harness.js";

let app: FastifyInstance;
beforeAll(async () => {
  app = await buildTestApp({ API_MAX_RANGE_DAYS: "7" });
});
afterAll(async () => {
  await app.close();
});

async function problem(url: string, token: string | null = READ_TOKEN) {
  const res = await app.inject({ url, headers: token ? { authorization: `Bearer ${token}` } : {} });
  expect(res.headers["content-type"]).toContain("application/problem+json");
  const body = res.json() as { type: string; status: number; detail: string; instance: string };
  expect(body.status).toBe(res.statusCode);
  expect(body.instance).toBe(url);
  return body;
}

describe("problem details for client errors", () => {
  it.each([
    [
      "/v1/alerts?severity=fatal",
      400,
      ["querystring.severity.0", "must be one of info, warning, critical", '"fatal"'],
    ],
    ["/v1/alerts?state=open", 400, ["querystring.state", "firing, resolved", '"open"']],
    ["/v1/anomalies?detector=mad", 400, ["delta, zscore, ewma", '"mad"']],
    [
      "/v1/aggregates?fn=mode",
      400,
      ["querystring.fn.0", "mean, min, max, count, sum, stddev, median, p90, p95, p99"],
    ],
    ["/v1/aggregates?window=5x", 400, ["querystring.window", "must match pattern", '"5x"']],
    ["/v1/aggregates?window=2m&every=5m", 422, ["every=5m is longer than window=2m", "at most 2m"]],
    ["/v1/aggregates?window=1h&every=10s", 422, ["360 times every=10s", "at least 36000ms"]],
    ["/v1/aggregates/latest?window=1h&lookback=10m", 422, ["lookback=10m", "at least 1h"]],
    ["/v1/aggregates/latest?lookback=30d", 422, ["lookback=30d is longer than", "7 days", "at most 168h"]],
    ["/v1/sensors/bad%01id/readings", 400, ["params.sensor_id", '"bad\\u0001id"']],
    ["/v1/sensors/C%3A%5Cdata%5C/readings", 400, ["params.sensor_id", "must match pattern"]],
    ["/v1/sensors/s1/readings?limit=0", 400, ["querystring.limit", "must be >= 1"]],
    ["/v1/sensors/s1/readings?limit=many", 400, ["querystring.limit", "must be integer"]],
    ["/v1/sensors/s1/readings?cursor=abc", 422, ["cursor", "next_cursor of the previous response"]],
    ["/v1/sensors/s1/readings?cursor=a%25b", 400, ["querystring.cursor", "must match pattern"]],
    ["/v1/sensors/s1/sessions?gap=0s", 400, ["querystring.gap", '"0s"']],
    [
      "/v1/sensors?start=yesterday",
      400,
      ["querystring.start", '"yesterday"', "RFC 3339", "epoch milliseconds"],
    ],
    ["/v1/anomalies?start=-1h&stop=-2h", 422, ["must be after start", "is empty"]],
    ["/v1/alerts?start=-30d", 422, ["at most 7 days", "narrow start/stop"]],
    ["/v1/sensors/s1/sessions?gap=999999999d", 422, ["gap=999999999d is longer than"]],
    ["/v1/aggregates?window=8d", 422, ["window=8d is longer than"]],
    [
      "/v1/aggregates?start=9999999999999999",
      400,
      ["querystring.start", '"9999999999999999"', "epoch milliseconds (12–13 digits"],
    ],
    [
      "/v1/sensors?stop=0001-01-01T00:00:00Z",
      422,
      ["stop=", "use a time between 1970-01-01T00:00:00.000Z and 2200"],
    ],
    ["/v1/aggregates/latest?at=-999999999d", 422, ["at=", "use a time between"]],
    ["/v1/sensors?start=-99999999999999999999d", 400, ["querystring.start", "a duration before now"]],
    ["/v1/alerts?start=2024-02-30T00:00:00Z", 400, ["querystring.start", '"2024-02-30T00:00:00Z"']],
    ["/v1/alerts?start=1700000000", 400, ["querystring.start", '"1700000000"', "12–13 digits"]],
    ["/v1/nothing", 404, ["no route GET /v1/nothing", "/docs"]],
    ["/v1/sensors/%ZZ/readings", 400, ["not a valid url component", "percent-encode"]],
    [`/v1/sensors/${"a".repeat(769)}/readings`, 414, ["768 characters"]],
    [
      `/v1/sensors/${"a".repeat(257)}/readings`,
      400,
      ["params.sensor_id", "must NOT have more than 256 characters"],
    ],
    ["/v1/nothing", 404, ["no route GET /v1/nothing", "/docs"]],
  ] as const)("%s → %i", async (url, status, fragments) => {
    const body = await problem(url);
    expect(body.status).toBe(status);
    for (const fragment of fragments) expect(body.detail).toContain(fragment);
  });

  it.each([
    ["POST", "/v1/rules/abc", "DELETE, GET, HEAD, PATCH, PUT"],
    ["TRACE", "/v1/alerts", "GET, HEAD"],
    ["DELETE", "/v1/rules", "GET, HEAD, POST"],
  ] as const)("answers %s %s with 405 and Allow: %s", async (method, url, allow) => {
    // TRACE is outside Fastify's method type, but light-my-request sends it as given.
    const res = await app.inject({
      method: method as "POST",
      url,
      headers: { authorization: `Bearer ${READ_TOKEN}` },
    });
    expect(res.statusCode).toBe(405);
    expect(res.headers.allow).toBe(allow);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    expect(res.json().detail).toContain(`${method} is not allowed on ${url}`);
  });

  it("asks for a token before looking at parameters", async () => {
    const missing = await problem("/v1/aggregates?window=5x", null);
    expect(missing.status).toBe(401);
    expect(missing.detail).toContain("Authorization: Bearer");
    const wrong = await problem("/v1/sensors", "not-a-valid-token-at-all");
    expect(wrong.status).toBe(401);
    expect(wrong.detail).toContain("not valid");
  });
});
