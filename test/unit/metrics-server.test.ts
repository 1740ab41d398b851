import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IngestMetrics, startMetricsServer } from "../../ingest/metrics.js";

describe("the worker's metrics server", () => {
  const metrics = new IngestMetrics();
  let consuming = false;
  let url: string;
  let close: () => void;

  beforeAll(async () => {
    const server = await startMetricsServer(metrics.registry, 0, "127.0.0.1", () => consuming);
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = () => server.close();
  });
  afterAll(() => close());

  it("/ready is 503 while the worker is not consuming and 200 while it is; /health stays 200", async () => {
    consuming = false;
    metrics.setConsuming(false);
    const notReady = await fetch(`${url}/ready`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toEqual({ status: "not consuming" });
    expect((await fetch(`${url}/health`)).status).toBe(200);
    expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/^ingest_consuming 0$/m);

    consuming = true;
    metrics.setConsuming(true);
    const ready = await fetch(`${url}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: "ready" });
    const text = await (await fetch(`${url}/metrics`)).text();
    expect(text).toMatch(/^ingest_consuming 1$/m);
    expect(text).toMatch(/^ingest_not_consuming_seconds_total \d/m);
  });

  it("time not consuming only grows while not consuming", async () => {
    metrics.setConsuming(true);
    const value = async () => (await metrics.notConsuming.get()).values[0]?.value ?? 0;
    const before = await value();
    expect(await value()).toBe(before);
    metrics.setConsuming(false);
    const until = Date.now() + 20;
    while (Date.now() < until) {
      // let the clock move on
    }
    expect(await value()).toBeGreaterThan(before);
  });
});
