/**
 * The worker's InfluxDB write path on the real InfluxDB: small writes made in the same turn of the
 * event loop (the partitions of one fetch) share one request, and each caller still gets its own
 * outcome: its lines stored, the lines refused among its own lines, or a retry of its own.
 */
import { HttpError, type InfluxDB } from "@influxdata/influxdb-client";
import { beforeAll, describe, expect, it } from "vitest";
import { influxConfig } from "../../common/config.js";
import { createInflux } from "../../common/influx.js";
import {
  InfluxWriter,
  SHARED_REQUEST_LINES,
  type TaggedLine,
  type WriteHooks,
} from "../../ingest/influx-writer.js";
import { countPoints, type Env, isolatedEnv } from "../support/harness.js";

const T0 = Date.UTC(2026, 0, 3, 0, 0, 0);

const lines = (measurement: string, sensor: string, count: number, field = "temperature"): TaggedLine[] =>
  Array.from({ length: count }, (_, i) => ({
    line: `${measurement},sensor_id=${sensor} ${field}=${20 + i / 100} ${T0 + i * 1000}`,
    source: i,
  }));

interface Recorded {
  requests: number[];
  retries: number;
}

/** A writer on the real InfluxDB whose requests are counted (lines per request); `fail` may fail one first. */
function writerFor(env: Env, fail?: () => Error | undefined): { writer: InfluxWriter; seen: Recorded } {
  const config = influxConfig(env);
  const influx: InfluxDB = createInflux(config);
  const seen: Recorded = { requests: [], retries: 0 };
  const request = influx.transport.request.bind(influx.transport);
  influx.transport.request = (path: string, body: unknown, options: never) => {
    seen.requests.push(String(body).split("\n").length);
    const error = fail?.();
    return error === undefined ? request(path, body, options) : Promise.reject(error);
  };
  const writer = new InfluxWriter(influx, {
    org: config.org,
    bucket: config.bucket,
    rollupBuckets: config.rollupBuckets,
    initialBackoffMs: 10,
  });
  return { writer, seen };
}

const hooks = (seen: Recorded): WriteHooks => ({
  heartbeat: async () => {},
  shouldContinue: () => true,
  onRetry: () => {
    seen.retries++;
  },
});

describe("InfluxWriter on the real InfluxDB", () => {
  let env: Env;
  beforeAll(async () => {
    env = await isolatedEnv("influx-writer");
  });

  it("small writes made together go out as one request, and every caller's lines are stored", async () => {
    const { writer, seen } = writerFor(env);
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, p) => writer.write(lines("shared", `p${p}`, 150), hooks(seen))),
    );
    expect(results).toEqual([[], [], [], [], [], []]);
    expect(seen.requests).toEqual([900]);
    expect(await countPoints(env, "shared", "temperature")).toBe(900);
  });

  it("a write of SHARED_REQUEST_LINES lines or more goes out on its own", async () => {
    const { writer, seen } = writerFor(env);
    await Promise.all([
      writer.write(lines("alone", "big", SHARED_REQUEST_LINES), hooks(seen)),
      writer.write(lines("alone", "small-a", 10), hooks(seen)),
      writer.write(lines("alone", "small-b", 10), hooks(seen)),
    ]);
    expect([...seen.requests].sort((a, b) => a - b)).toEqual([20, SHARED_REQUEST_LINES]);
    expect(await countPoints(env, "alone", "temperature")).toBe(SHARED_REQUEST_LINES + 20);
  });

  it("a line InfluxDB refuses comes back to its own caller only; every other line is stored", async () => {
    const { writer, seen } = writerFor(env);
    // `temperature` is a float in this measurement first; a string value for it is a type conflict.
    expect(await writer.write(lines("conflict", "first", 1), hooks(seen))).toEqual([]);
    const bad: TaggedLine = { line: `conflict,sensor_id=b temperature="hot" ${T0 + 500}`, source: 7 };
    const withBad = [...lines("conflict", "b", 20), bad];
    const [a, b, c] = await Promise.all([
      writer.write(lines("conflict", "a", 20), hooks(seen)),
      writer.write(withBad, hooks(seen)),
      writer.write(lines("conflict", "c", 20), hooks(seen)),
    ]);
    expect(a).toEqual([]);
    expect(c).toEqual([]);
    expect(b?.map((r) => ({ line: r.line, source: r.source, status: r.status }))).toEqual([
      { line: bad.line, source: 7, status: 422 },
    ]);
    expect(b?.[0]?.message).toMatch(/conflict/);
    // The three went out together first (20 + 21 + 20 lines), then each on its own.
    expect(seen.requests.slice(1, 5)).toEqual([61, 20, 21, 20]);
    expect(await countPoints(env, "conflict", "temperature")).toBe(61);
  });

  it("a shared request that fails for another reason is retried by every caller in it", async () => {
    let failures = 1;
    const { writer, seen } = writerFor(env, () =>
      failures-- > 0 ? new HttpError(503, "Service Unavailable", "not ready") : undefined,
    );
    const results = await Promise.all([
      writer.write(lines("retried", "a", 30), hooks(seen)),
      writer.write(lines("retried", "b", 30), hooks(seen)),
    ]);
    expect(results).toEqual([[], []]);
    expect(seen.retries).toBe(2);
    expect(seen.requests[0]).toBe(60);
    expect(await countPoints(env, "retried", "temperature")).toBe(60);
  });
});
