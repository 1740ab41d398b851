/**
 * Rate limiting per valid bearer token, answered as problem details, before any query runs; requests
 * without a valid token share their client address's budget.
 */
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

  it("limits a flood of made-up tokens like anonymous traffic: one budget per address", async () => {
    const app = await buildTestApp({ API_RATE_LIMIT_PER_MINUTE: "5" });
    const junk = (i: number) =>
      app.inject({ url: URL, headers: { authorization: `Bearer junk-token-${i}-${Math.random()}` } });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await junk(i)).statusCode);
    // Anonymous requests from the same address draw on the same budget as the junk tokens.
    for (let i = 0; i < 2; i++) statuses.push((await app.inject({ url: URL })).statusCode);
    for (let i = 3; i < 20; i++) statuses.push((await junk(i)).statusCode);
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(new Set(statuses.slice(5))).toEqual(new Set([429]));
    // A valid token still has its own budget.
    const valid = await app.inject({ url: URL, headers: { authorization: `Bearer ${READ_TOKEN}` } });
    expect(valid.statusCode).toBe(400);
    await app.close();
  });

  it("rejects a rate limit that is not a positive integer at start", async () => {
    await expect(buildTestApp({ API_RATE_LIMIT_PER_MINUTE: "0" })).rejects.toThrow(
      /API_RATE_LIMIT_PER_MINUTE/,
    );
  });
});
