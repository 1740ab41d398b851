/** Rate limiting per bearer token, answered as problem details, before any query runs. */
import { describe, expect, it } from "vitest";
import { buildTestApp } from "../support/api-helpers.js";
import { ADMIN_TOKEN, READ_TOKEN } from "../support/harness.js";

// An invalid parameter is rejected before storage is touched, so these requests run no query.
const URL = "/v1/aggregates?window=bogus";

describe("rate limiting", () => {
  it("allows API_RATE_LIMIT_PER_MINUTE requests per token, then answers 429 problem details", async () => {
    const app = await buildTestApp({ API_RATE_LIMIT_PER_MINUTE: "3" });
    const call = (token: string) => app.inject({ url: URL, headers: { authorization: `Bearer ${token}` } });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await call(READ_TOKEN)).statusCode);
    expect(statuses).toEqual([400, 400, 400]);
    const limited = await call(READ_TOKEN);
    expect(limited.statusCode).toBe(429);
    expect(limited.headers["content-type"]).toContain("application/problem+json");
    expect(Number(limited.headers["retry-after"])).toBeGreaterThan(0);
    expect(limited.json()).toMatchObject({
      type: "/problems/rate-limited",
      status: 429,
      title: "Too many requests",
    });
    expect(limited.json().detail).toContain("3 requests per minute");
    // Another token has its own budget.
    expect((await call(ADMIN_TOKEN)).statusCode).toBe(400);
    await app.close();
  });

  it("never limits liveness: more /health requests than the limit allows, with and without a token, all 200", async () => {
    const app = await buildTestApp({ API_RATE_LIMIT_PER_MINUTE: "3" });
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      statuses.push((await app.inject({ url: "/health" })).statusCode);
      statuses.push(
        (await app.inject({ url: "/health", headers: { authorization: `Bearer ${READ_TOKEN}` } })).statusCode,
      );
    }
    expect(statuses).toEqual(Array(20).fill(200));
    // The same budget on a limited route is spent after 3: the 10 requests above were not exempt by luck.
    const limited: number[] = [];
    for (let i = 0; i < 4; i++) limited.push((await app.inject({ url: URL })).statusCode);
    expect(limited).toEqual([401, 401, 401, 429]);
    await app.close();
  });

  it("keys requests without a token by client address", async () => {
    const app = await buildTestApp({ API_RATE_LIMIT_PER_MINUTE: "2" });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await app.inject({ url: URL })).statusCode);
    expect(statuses).toEqual([401, 401, 429]);
    await app.close();
  });

  it("rejects a rate limit that is not a positive integer at start", async () => {
    await expect(buildTestApp({ API_RATE_LIMIT_PER_MINUTE: "0" })).rejects.toThrow(
      /API_RATE_LIMIT_PER_MINUTE/,
    );
  });
});
