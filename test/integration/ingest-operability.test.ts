/**
 * Running the worker as an operator would: as its own process, with its Prometheus endpoint and the
 * `pipeline` measurement, stopped with SIGTERM mid-stream (finish the batch, commit, leave).
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_SIMULATION, simulate } from "../../ingest/simulation.js";
import { freePort } from "../../scripts/services/local.js";
import {
  committedOffsets,
  countPoints,
  drained,
  eventually,
  exitOf,
  FAULT_POINT,
  fluxRows,
  isolatedEnv,
  produce,
  spawnWorker,
  waitForLine,
} from "../support/harness.js";

const PARTITIONS = 3;

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

      // The stats are written every 500 ms: wait for the interval that covers the last batch.
      const rows = await eventually(
        "pipeline stats covering every dead letter",
        () =>
          fluxRows<{ _field: string; _value: number; worker: string }>(
            env,
            `from(bucket: "${env.INFLUX_BUCKET}") |> range(start: -1h) |> filter(fn: (r) => r._measurement == "pipeline" and (r._field == "dlq" or r._field == "batch_size")) |> group(columns: ["_field", "worker"]) |> sum()`,
          ),
        (rs) => rs.some((r) => r._field === "dlq" && r._value >= bad),
        30_000,
      );
      expect(rows.find((r) => r._field === "dlq")).toMatchObject({ worker: "ops-worker", _value: bad });
      expect(rows.find((r) => r._field === "batch_size")?._value).toBeGreaterThan(0);
    } finally {
      child.kill("SIGTERM");
      await exitOf(child);
    }
  });

  it("on SIGTERM commits the batch in flight (stored, offsets committed) and exits 0; a new worker resumes with nothing lost", async () => {
    // Small batches, so the fault point is reached well inside the stream.
    const env = await isolatedEnv("sigterm", { INGEST_MAX_BYTES_PER_PARTITION: "4096" });
    const messages = traffic(20_000).map((m) => ({
      ...m,
      partition: Number(m.key.split("_")[1]) % PARTITIONS,
    }));
    const readings = messages.filter((m) => m.kind !== "malformed");
    await produce(env, messages.slice(0, 5000));
    // The stream goes on arriving while the worker is stopped.
    const producing = (async () => {
      for (let i = 5000; i < messages.length; i += 1000) await produce(env, messages.slice(i, i + 1000));
    })();
    // The worker holds its 5th written batch before committing it: SIGTERM arrives with it in flight.
    const child = spawnWorker({ ...env, INGEST_FAULT_AFTER_WRITE: "5" });
    let held: RegExpExecArray;
    try {
      held = await waitForLine(child, FAULT_POINT, 120_000);
    } catch (err) {
      child.kill("SIGKILL");
      throw err;
    }
    const partition = Number(held[1]);
    const nextOffset = Number(held[2]);
    const before = await committedOffsets(env);
    expect(before.get(partition) ?? -1).toBeLessThan(nextOffset);

    child.kill("SIGTERM");
    expect(await exitOf(child)).toEqual({ code: 0, signal: null });
    // The held batch was committed before the exit (a transactional offset commit becomes visible
    // to readers a moment after it returns) ...
    const atExit = await eventually(
      `partition ${partition} committed through ${nextOffset}`,
      () => committedOffsets(env),
      (o) => (o.get(partition) ?? -1) >= nextOffset,
      15_000,
    );
    // ... and every reading in what is committed is stored, the held batch's among them.
    const stored = new Set(
      (
        await fluxRows<{ sensor_id: string; _time: string }>(
          env,
          `from(bucket: "${env.INFLUX_BUCKET}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "readings" and r._field == "temperature")`,
        )
      ).map((r) => `${r.sensor_id}|${Date.parse(r._time)}`),
    );
    const committedReadings = [...Array(PARTITIONS).keys()].flatMap((p) =>
      messages
        .filter((m) => m.partition === p)
        .slice(0, Math.max(0, atExit.get(p) ?? 0))
        .filter((m) => m.kind !== "malformed"),
    );
    const heldStart = Math.max(0, before.get(partition) ?? 0);
    const heldReadings = messages
      .filter((m) => m.partition === partition)
      .slice(heldStart, nextOffset)
      .filter((m) => m.kind !== "malformed");
    expect(heldReadings.length).toBeGreaterThan(0);
    const key = (m: { value: string }) => {
      const r = JSON.parse(m.value) as { sensor_id: string; timestamp: number };
      return `${r.sensor_id}|${r.timestamp}`;
    };
    expect(heldReadings.filter((m) => !stored.has(key(m)))).toEqual([]);
    expect(committedReadings.filter((m) => !stored.has(key(m)))).toEqual([]);

    await producing;
    const next = spawnWorker(env);
    try {
      await drained(env, messages.length);
      expect(await countPoints(env, "readings", "temperature")).toBe(readings.length);
    } finally {
      next.kill("SIGTERM");
      await exitOf(next);
    }
  });
});
