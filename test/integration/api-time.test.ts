/** The API refuses a date that does not exist and epoch seconds, naming the accepted forms (needs a broker to build the app). */
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Problem } from "../../api/problem.js";
import { buildTestApp } from "../support/api-helpers.js";
import { READ_TOKEN } from "../support/harness.js";

describe("time parameters on the API", () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await buildTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  const get = (url: string) => app.inject({ url, headers: { authorization: `Bearer ${READ_TOKEN}` } });

  it("answers start=2024-02-30T00:00:00Z with 400 naming the value and the accepted forms", async () => {
    const res = await get("/v1/alerts?start=2024-02-30T00:00:00Z&stop=2024-03-02T00:00:00Z");
    expect(res.statusCode).toBe(400);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    const body = res.json() as Problem;
    expect(body.detail).toContain("querystring.start");
    expect(body.detail).toContain('"2024-02-30T00:00:00Z"');
    expect(body.detail).toContain("RFC 3339");
    expect(body.detail).toContain("epoch milliseconds");
  });

  it("answers epoch seconds with 400 instead of reading them as milliseconds", async () => {
    const res = await get("/v1/anomalies?start=1700000000");
    expect(res.statusCode).toBe(400);
    expect((res.json() as Problem).detail).toContain('"1700000000"');
  });
});
