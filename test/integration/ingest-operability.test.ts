/**
 * Running the worker as an operator would: as its own process, with its Prometheus endpoint and the
 * `pipeline` measurement, stopped with SIGTERM mid-stream (finish the batch, commit, leave).
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_SIMULATION, simulate } from "../../ingest/simulation.js";
import { freePort } from "../../scripts/services/local.js";
import {
  countPoints,
  drained,
  fluxRows,
  groupProgress,
  isolatedEnv,
  produce,
  spawnWorker,
} from "../support/harness.js";

function traffic(count: number) {
  return [
    ...simulate({
      ...DEFAULT_SIMULATION,
      sensors: 20,
      count,
      startTime: Date.UTC(2026, 0, 12),
      malformedFraction: 0.01,
      seed: 5,
    }),
  ];
}

describe("the worker process: metrics, pipeline stats, graceful shutdown", () => {
  it("serves Prometheus metrics and writes pipeline stats that match what it did", async () => {
    const port = await freePort();
    const env = await isolatedEnv("ops", {
      INGEST_METRICS_ENABLED: "true",
      INGEST_METRICS_PORT: String(port),
      INGEST_PIPELINE_INTERVAL_MS: "500",
      INGEST_WORKER_ID: "ops-worker",
    });
    const messages = traffic(3000);
    const bad = messages.filter((m) => m.kind === "malformed").length;
    await produce(env, messages);
    const child = spawnWorker(env);
    try {
      await drained(env, messages.length);
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
      expect(metric("ingest_messages_consumed_total")).toBe(messages.length);
      expect(metric("ingest_dead_letters_total")).toBe(bad);
      expect(metric("ingest_readings_written_total")).toBe(messages.length - bad);
      expect(text).toMatch(/^ingest_batch_write_seconds_count \d+/m);
      expect(text).toMatch(/^ingest_consumer_lag\{partition="\d"\} 0$/m);

      await new Promise((r) => setTimeout(r, 1200));
      const rows = await fluxRows<{ _field: string; _value: number; worker: string }>(
        env,
        `from(bucket: "${env.INFLUX_BUCKET}") |> range(start: -1h) |> filter(fn: (r) => r._measurement == "pipeline" and (r._field == "dlq" or r._field == "batch_size")) |> group(columns: ["_field", "worker"]) |> sum()`,
      );
      expect(rows.find((r) => r._field === "dlq")).toMatchObject({ worker: "ops-worker", _value: bad });
      expect(rows.find((r) => r._field === "batch_size")?._value).toBeGreaterThan(0);
    } finally {
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  });

  it("on SIGTERM finishes its batch, commits and exits 0; a new worker resumes with nothing lost", async () => {
    const env = await isolatedEnv("sigterm");
    const messages = traffic(20_000);
    const readings = messages.filter((m) => m.kind !== "malformed").length;
    const child = spawnWorker(env);
    const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const producing = (async () => {
      for (let i = 0; i < messages.length; i += 1000) {
        await produce(env, messages.slice(i, i + 1000));
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    // Stop it once it is busy.
    const deadline = Date.now() + 60_000;
    while ((await groupProgress(env)).committed < 3000 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    child.kill("SIGTERM");
    expect(await exit).toBe(0);
    const atExit = await groupProgress(env);
    expect(atExit.committed).toBeGreaterThanOrEqual(3000);
    await producing;
    expect((await groupProgress(env)).committed).toBe(atExit.committed);

    const next = spawnWorker(env);
    try {
      await drained(env, messages.length);
      expect(await countPoints(env, "readings", "temperature")).toBe(readings);
    } finally {
      next.kill("SIGTERM");
      await new Promise((resolve) => next.once("exit", resolve));
    }
  });
});
