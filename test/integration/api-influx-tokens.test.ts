/**
 * Least privilege on the real InfluxDB: provisioning makes a read-only token (the API's queries,
 * Grafana's datasource) and a write-only one (the worker), and each does only its job.
 */
import { describe, expect, inject, it } from "vitest";
import { apiSettings } from "../../api/config.js";
import { isolatedEnv, READ_TOKEN } from "../support/harness.js";

const services = inject("services");

async function write(token: string, bucket: string) {
  const url = `${services.INFLUX_URL}/api/v2/write?org=${services.INFLUX_ORG}&bucket=${bucket}&precision=ms`;
  return fetch(url, {
    method: "POST",
    headers: { authorization: `Token ${token}` },
    body: `readings,sensor_id=privilege temperature=1 ${Date.now()}`,
  });
}

async function query(token: string, bucket: string) {
  return fetch(`${services.INFLUX_URL}/api/v2/query?org=${services.INFLUX_ORG}`, {
    method: "POST",
    headers: { authorization: `Token ${token}`, "content-type": "application/vnd.flux" },
    body: `from(bucket: "${bucket}") |> range(start: -1h) |> count()`,
  });
}

describe("InfluxDB tokens", () => {
  it("provisions a read-only and a write-only token besides the operator's", () => {
    expect(services.INFLUX_READ_TOKEN).toBeTruthy();
    expect(services.INFLUX_WRITE_TOKEN).toBeTruthy();
    expect(
      new Set([services.INFLUX_TOKEN, services.INFLUX_READ_TOKEN, services.INFLUX_WRITE_TOKEN]).size,
    ).toBe(3);
  });

  it("Grafana's (read-only) token reads every bucket of the org and cannot write", async () => {
    const env = await isolatedEnv("tokens");
    const token = services.INFLUX_READ_TOKEN as string;
    expect((await query(token, env.INFLUX_BUCKET as string)).status).toBe(200);
    const refused = await write(token, env.INFLUX_BUCKET as string);
    expect([401, 403]).toContain(refused.status);
    // The operator token writes there, so the refusal is about the token, not the bucket.
    expect((await write(services.INFLUX_TOKEN, env.INFLUX_BUCKET as string)).status).toBe(204);
  });

  it("the worker's (write-only) token writes and cannot read", async () => {
    const env = await isolatedEnv("tokens");
    const token = services.INFLUX_WRITE_TOKEN as string;
    expect((await write(token, env.INFLUX_BUCKET as string)).status).toBe(204);
    expect([401, 403, 404]).toContain((await query(token, env.INFLUX_BUCKET as string)).status);
  });

  it("the API queries with the read token, falling back to INFLUX_TOKEN when there is none", () => {
    const env = { ...services, API_READ_TOKENS: READ_TOKEN } as Record<string, string>;
    expect(apiSettings(env).influx.token).toBe(services.INFLUX_READ_TOKEN);
    const { INFLUX_READ_TOKEN: _unused, ...withoutRead } = env;
    expect(apiSettings(withoutRead).influx.token).toBe(services.INFLUX_TOKEN);
  });
});
