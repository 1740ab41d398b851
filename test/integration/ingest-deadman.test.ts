/**
 * Deadman on wall-clock silence, on the real pipeline: a live sensor that stops is declared dead by
 * the worker's timer with no further input on its partition, once, and its next reading resolves it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  alertHistory,
  countPoints,
  type Env,
  eventually,
  isolatedEnv,
  produce,
  sendJson,
  startApi,
  startWorker,
} from "../support/harness.js";

describe("deadman on wall-clock silence", () => {
  let env: Env;
  let api: Awaited<ReturnType<typeof startApi>>;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let sent = 0;
  const send = async (): Promise<number> => {
    const timestamp = Date.now();
    await produce(env, [
      { key: "dm_1", value: JSON.stringify({ sensor_id: "dm_1", temperature: 20, timestamp }) },
    ]);
    sent++;
    // Stored, not committed: the commit may wait for the commit interval, longer than `after`.
    await eventually(
      `${sent} readings stored`,
      () => countPoints(env, "readings", "temperature"),
      (n) => n === sent,
      20_000,
    );
    return timestamp;
  };

  beforeAll(async () => {
    env = await isolatedEnv("deadman");
    api = await startApi(env);
    worker = await startWorker(env);
  });

  afterAll(async () => {
    await worker?.stop();
    await api?.stop();
  });

  it("fires once after `after` of silence and resolves on the next reading", async () => {
    const created = await sendJson<{ id: string }>("POST", `${api.url}/v1/rules`, {
      name: "dm",
      sensors: { type: "ids", ids: ["dm_1"] },
      field: "temperature",
      condition: { type: "deadman", after: "3s" },
      severity: "critical",
    });
    expect(created.status).toBe(201);
    const names = new Map([[created.body.id, "dm"]]);
    // Readings back to back (each once the last is stored) for 3 s while the rule reaches the worker
    // (within about a second); no gap comes near `after`, so none fires it.
    const until = Date.now() + 3_000;
    let lastTimestamp = 0;
    while (Date.now() < until) lastTimestamp = await send();
    const fired = await eventually(
      "the deadman fires",
      () => alertHistory(env, names),
      (h) => h.length >= 1,
      20_000,
    );
    expect(fired.map((h) => h.split("|")[2])).toEqual(["firing"]);
    // Timed at the deadline: `after` past the last reading's arrival (which is after its timestamp).
    expect(Date.parse(fired[0]?.split("|")[3] ?? "")).toBeGreaterThanOrEqual(lastTimestamp + 3_000);
    await send();
    const resolved = await eventually(
      "the next reading resolves it",
      () => alertHistory(env, names),
      (h) => h.length >= 2,
      20_000,
    );
    expect(resolved.map((h) => h.split("|")[2])).toEqual(["firing", "resolved"]);
  });
});
