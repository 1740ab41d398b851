/**
 * Alert lifecycle on rule changes, on the real pipeline: a firing alert whose rule is deleted is
 * resolved, with the reason, in InfluxDB and on sensor-alerts; the resolution is timed by the
 * deletion itself, so a worker killed before committing it and its successor write one point.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CompactedTable } from "../../common/compacted-table.js";
import { topicName } from "../../common/topics.js";
import {
  alertHistory,
  consumeAll,
  drained,
  type Env,
  eventually,
  exitOf,
  FAULT_POINT,
  fluxRows,
  isolatedEnv,
  kafkaFor,
  liveSensor,
  postThresholdRule,
  produce,
  sendJson,
  spawnWorker,
  startApi,
  startWorker,
  waitForLine,
} from "../support/harness.js";

describe("alert lifecycle: deleting a rule resolves its open alerts", () => {
  const start = Date.now() - 60_000;
  const live = liveSensor("alert-life", "life_1", start);

  it("fires, and after the rule is deleted stores and publishes one resolved record saying why", async () => {
    const created = await postThresholdRule(live.api.url, "life", "life_1", "critical");
    expect(created.status).toBe(201);
    const names = new Map([[created.body.id, "life"]]);
    await eventually(
      "the alert fires",
      async () => {
        await live.send(50);
        return alertHistory(live.env, names);
      },
      (h) => h.length === 1,
      20_000,
    );

    const removed = await sendJson("DELETE", `${live.api.url}/v1/rules/${created.body.id}`, undefined, {
      headers: { "if-match": created.etag ?? "" },
    });
    expect(removed.status).toBe(204);
    // Still breaching: only the rule's deletion can resolve the alert.
    const history = await eventually(
      "the deletion resolves the alert",
      async () => {
        await live.send(50);
        return alertHistory(live.env, names);
      },
      (h) => h.length === 2,
      20_000,
    );
    expect(history.map((h) => h.split("|").slice(0, 3).join("|"))).toEqual([
      "life|life_1|firing",
      "life|life_1|resolved",
    ]);

    const stored = await fluxRows<{ _field: string; _value: string; severity: string }>(
      live.env,
      `from(bucket: "${live.env.INFLUX_BUCKET}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "alerts" and r.state == "resolved" and (r._field == "message" or r._field == "reason"))`,
    );
    const fields = Object.fromEntries(stored.map((r) => [r._field, r._value]));
    expect(fields.reason).toBe("rule_deleted");
    expect(fields.message).toContain("rule deleted");
    expect(stored[0]?.severity).toBe("critical");

    const published = (await consumeAll(live.env, "alerts", 2)).map((m) =>
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

describe("alert lifecycle: a rule change applied twice from the same state writes one point", () => {
  let env: Env;
  let api: Awaited<ReturnType<typeof startApi>>;
  let sent = 0;
  const start = Date.now() - 60_000;
  const reading = (value: number) => ({
    key: "twice_1",
    value: JSON.stringify({ sensor_id: "twice_1", temperature: value, timestamp: start + sent++ * 1000 }),
  });
  /** Every stored field of the resolved records, with its time. */
  const resolvedPoints = async () =>
    (
      await fluxRows<{ _time: string; _field: string; _value: unknown }>(
        env,
        `from(bucket: "${env.INFLUX_BUCKET}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "alerts" and r.state == "resolved")`,
      )
    )
      .map((r) => `${new Date(r._time).toISOString()} ${r._field}=${String(r._value)}`)
      .sort();

  beforeAll(async () => {
    // A killed worker never says goodbye: let the group notice within seconds.
    env = await isolatedEnv("alert-twice", { INGEST_SESSION_TIMEOUT_MS: "6000" });
    api = await startApi(env);
  });

  afterAll(async () => {
    await api?.stop();
  });

  it("a deletion resolved by a worker killed before its commit is resolved again by the next one at the same time, as one point", async () => {
    const created = await postThresholdRule(api.url, "twice", "twice_1", "critical");
    expect(created.status).toBe(201);
    const first = await startWorker(env);
    try {
      await produce(env, [reading(50)]);
      await drained(env, sent);
      await eventually(
        "the alert fires",
        () => alertHistory(env),
        (h) => h.length === 1,
        20_000,
      );
    } finally {
      await first.stop();
    }

    const removed = await sendJson("DELETE", `${api.url}/v1/rules/${created.body.id}`, undefined, {
      headers: { "if-match": created.etag ?? "" },
    });
    expect(removed.status).toBe(204);
    // When the deletion was made: the tombstone's Kafka timestamp, as any reader of the topic sees it.
    const rules = new CompactedTable(
      kafkaFor(env),
      topicName(env.KAFKA_TOPIC_PREFIX ?? "", "alertRules"),
      () => ({}),
    );
    await rules.start();
    const deletedAt = rules.changeTimes().get(created.body.id);
    await rules.stop();
    expect(deletedAt).toBeGreaterThan(start);

    // The next batch applies the deletion; its worker is killed after the InfluxDB write, before the commit.
    await produce(env, [reading(50)]);
    const killed = spawnWorker({ ...env, INGEST_FAULT_AFTER_WRITE: "1" });
    try {
      await waitForLine(killed, FAULT_POINT, 60_000);
    } finally {
      killed.kill("SIGKILL");
      await exitOf(killed);
    }
    const once = await resolvedPoints();
    expect(once.length).toBeGreaterThan(0);

    // Its successor restores the state from before the deletion and applies it again, later.
    const next = spawnWorker(env);
    try {
      await drained(env, sent);
    } finally {
      next.kill("SIGTERM");
      await exitOf(next);
    }
    expect(await resolvedPoints()).toEqual(once);
    expect(once.map((p) => p.split(" ")[0])).toEqual(
      once.map(() => new Date(deletedAt as number).toISOString()),
    );
    expect((await alertHistory(env)).map((h) => h.split("|").slice(1).join("|"))).toEqual([
      `twice_1|firing|${new Date(start).toISOString()}`,
      `twice_1|resolved|${new Date(deletedAt as number).toISOString()}`,
    ]);
  });
});
