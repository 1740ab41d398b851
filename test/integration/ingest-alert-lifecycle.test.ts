/**
 * Alert lifecycle on rule changes, on the real pipeline: a firing alert whose rule is deleted is
 * resolved, with the reason, in InfluxDB and on sensor-alerts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  alertHistory,
  consumeAll,
  drained,
  type Env,
  eventually,
  fluxRows,
  isolatedEnv,
  produce,
  sendJson,
  startApi,
  startWorker,
} from "../support/harness.js";

describe("alert lifecycle: deleting a rule resolves its open alerts", () => {
  let env: Env;
  let api: Awaited<ReturnType<typeof startApi>>;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let sent = 0;
  const start = Date.now() - 60_000;
  const send = async (value: number) => {
    await produce(env, [
      {
        key: "life_1",
        value: JSON.stringify({ sensor_id: "life_1", temperature: value, timestamp: start + sent * 1000 }),
      },
    ]);
    sent++;
    await drained(env, sent);
  };

  beforeAll(async () => {
    env = await isolatedEnv("alert-life");
    api = await startApi(env);
    worker = await startWorker(env);
    await send(10);
  });

  afterAll(async () => {
    await worker?.stop();
    await api?.stop();
  });

  it("fires, and after the rule is deleted stores and publishes one resolved record saying why", async () => {
    const created = await sendJson<{ id: string }>("POST", `${api.url}/v1/rules`, {
      name: "life",
      sensors: { type: "ids", ids: ["life_1"] },
      field: "temperature",
      condition: { type: "threshold", op: "above", value: 40 },
      severity: "critical",
    });
    expect(created.status).toBe(201);
    const names = new Map([[created.body.id, "life"]]);
    await eventually(
      "the alert fires",
      async () => {
        await send(50);
        return alertHistory(env, names);
      },
      (h) => h.length === 1,
      20_000,
    );

    const removed = await sendJson("DELETE", `${api.url}/v1/rules/${created.body.id}`, undefined, {
      headers: { "if-match": created.etag ?? "" },
    });
    expect(removed.status).toBe(204);
    // Still breaching: only the rule's deletion can resolve the alert.
    const history = await eventually(
      "the deletion resolves the alert",
      async () => {
        await send(50);
        return alertHistory(env, names);
      },
      (h) => h.length === 2,
      20_000,
    );
    expect(history.map((h) => h.split("|").slice(0, 3).join("|"))).toEqual([
      "life|life_1|firing",
      "life|life_1|resolved",
    ]);

    const stored = await fluxRows<{ _field: string; _value: string; severity: string }>(
      env,
      `from(bucket: "${env.INFLUX_BUCKET}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "alerts" and r.state == "resolved" and (r._field == "message" or r._field == "reason"))`,
    );
    const fields = Object.fromEntries(stored.map((r) => [r._field, r._value]));
    expect(fields.reason).toBe("rule_deleted");
    expect(fields.message).toContain("rule deleted");
    expect(stored[0]?.severity).toBe("critical");

    const published = (await consumeAll(env, "alerts", 2)).map((m) =>
      JSON.parse(m.value?.toString() ?? "{}"),
    );
    expect(published.map((p) => [p.state, p.reason])).toEqual([
      ["firing", undefined],
      ["resolved", "rule_deleted"],
    ]);
    expect(published[1]).toMatchObject({ rule_name: "life", sensor_id: "life_1", severity: "critical" });
    expect(published[1].message).toContain("rule deleted");
  });
});
