/**
 * Alert rules end to end on the real services: rules created through the API, evaluated by the
 * real worker on generated data with known event times, transitions stored in InfluxDB and
 * published to sensor-alerts, webhooks delivered signed and with retries, and live rule changes.
 */
import { createHmac } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  alertHistory,
  consumeAll,
  drained,
  type Env,
  eventually,
  isolatedEnv,
  liveSensor,
  type Outgoing,
  postThresholdRule,
  produce,
  READ_TOKEN,
  sendJson,
  startApi,
  startWorker,
} from "../support/harness.js";

const T0 = Date.UTC(2026, 0, 10, 0, 0, 0);
const HOOK_SECRET = "test-webhook-secret-0123456789abcdef";
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

/** Value of each sensor at second i (undefined = no reading). */
const SERIES: Record<string, { tags?: Record<string, string>; value: (i: number) => number | undefined }> = {
  s_thr: { value: (i) => (i >= 10 && i < 15 ? 30 : 20) },
  s_rate: { value: (i) => (i < 3 ? 20 : i === 3 ? 30 : 31) },
  s_anom: { value: (i) => (i === 15 ? 35 : 20) },
  s_dead: { value: (i) => (i <= 5 || i === 30 ? 20 : undefined) },
  s_win: { value: (i) => (i >= 10 && i < 20 ? 30 : 20) },
  s_tag: { tags: { site: "north" }, value: (i) => (i === 3 ? 150 : 50) },
  s_tag2: { tags: { site: "south" }, value: (i) => (i === 3 ? 150 : 50) },
};

function messages(): Outgoing[] {
  const out: Outgoing[] = [];
  for (let i = 0; i <= 30; i++) {
    for (const [sensor, s] of Object.entries(SERIES)) {
      const v = s.value(i);
      if (v === undefined) continue;
      // One partition, so all sensors share stream time (what the deadman rule is judged on).
      out.push({
        key: sensor,
        partition: 0,
        value: JSON.stringify({ sensor_id: sensor, temperature: v, timestamp: T0 + i * 1000, ...s.tags }),
      });
    }
  }
  return out;
}

interface Hook {
  server: Server;
  url: string;
  received: { state: string; sensor_id: string; rule_name: string; time: string }[];
  /** Each delivered body with its signature header. */
  signed: { body: string; signature: string }[];
  attempts: number;
}

/** A local webhook receiver that fails the first two deliveries. */
async function webhookReceiver(): Promise<Hook> {
  const hook: Hook = { server: createServer(), url: "", received: [], signed: [], attempts: 0 };
  hook.server.on("request", (req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      hook.attempts++;
      if (hook.attempts <= 2) {
        res.statusCode = 503;
        res.end();
        return;
      }
      hook.received.push(JSON.parse(body));
      hook.signed.push({ body, signature: String(req.headers["x-sensor-signature"] ?? "") });
      res.end("ok");
    });
  });
  await new Promise<void>((resolve) => hook.server.listen(0, "127.0.0.1", resolve));
  hook.url = `http://127.0.0.1:${(hook.server.address() as AddressInfo).port}/hook`;
  return hook;
}

describe("alert rules: every condition type, on generated data", () => {
  let env: Env;
  let api: Awaited<ReturnType<typeof startApi>>;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let hook: Hook;
  const names = new Map<string, string>();

  beforeAll(async () => {
    // The receiver is on loopback, which webhooks may only target when allowed; the in-process
    // worker's notifier reads the allow-list from the process environment.
    env = await isolatedEnv("rules", { WEBHOOK_ALLOWED_HOSTS: "127.0.0.1" });
    process.env.WEBHOOK_ALLOWED_HOSTS = "127.0.0.1";
    api = await startApi(env);
    hook = await webhookReceiver();
    const rules = [
      {
        name: "R1",
        sensors: { type: "ids", ids: ["s_thr"] },
        field: "temperature",
        condition: { type: "threshold", op: "above", value: 25 },
        severity: "warning",
        for: "2s",
        hysteresis: 1,
        webhook: { url: hook.url, timeout_ms: 2000, max_attempts: 5, secret: HOOK_SECRET },
      },
      {
        name: "R2",
        sensors: { type: "ids", ids: ["s_rate"] },
        field: "temperature",
        condition: { type: "rate_of_change", per: "1s", op: "above", value: 5 },
        severity: "info",
      },
      {
        name: "R3",
        sensors: { type: "ids", ids: ["s_anom"] },
        field: "temperature",
        condition: { type: "anomaly", detectors: ["delta"] },
        severity: "critical",
        resolve_after: "5s",
      },
      {
        name: "R4",
        sensors: { type: "ids", ids: ["s_dead"] },
        field: "temperature",
        condition: { type: "deadman", after: "10s" },
        severity: "critical",
      },
      {
        name: "R5",
        sensors: { type: "ids", ids: ["s_win"] },
        field: "temperature",
        condition: { type: "window", fn: "mean", window: "10s", op: "above", value: 25 },
        severity: "warning",
      },
      {
        name: "R6",
        sensors: { type: "tags", tags: { site: "north" } },
        field: "temperature",
        condition: { type: "threshold", op: "above", value: 100 },
        severity: "info",
      },
    ];
    for (const rule of rules) {
      const created = await sendJson<{ id: string }>("POST", `${api.url}/v1/rules`, rule);
      expect(created.status).toBe(201);
      names.set(created.body.id, rule.name);
    }
    const data = messages();
    await produce(env, data);
    worker = await startWorker(env);
    await drained(env, data.length);
  });

  afterAll(async () => {
    await worker?.stop();
    await api?.stop();
    hook?.server.close();
    delete process.env.WEBHOOK_ALLOWED_HOSTS;
  });

  it("records exactly one firing and one resolved per alert, at the right event times", async () => {
    const history = await eventually(
      "12 transitions stored",
      () => alertHistory(env, names),
      (h) => h.length >= 12,
    );
    expect(history.sort()).toEqual(
      [
        `R1|s_thr|firing|${at(12)}`,
        `R1|s_thr|resolved|${at(15)}`,
        `R2|s_rate|firing|${at(3)}`,
        `R2|s_rate|resolved|${at(4)}`,
        `R3|s_anom|firing|${at(15)}`,
        `R3|s_anom|resolved|${at(21)}`,
        `R4|s_dead|firing|${at(15)}`,
        `R4|s_dead|resolved|${at(30)}`,
        `R5|s_win|firing|${at(20)}`,
        `R5|s_win|resolved|${at(30)}`,
        `R6|s_tag|firing|${at(3)}`,
        `R6|s_tag|resolved|${at(4)}`,
      ].sort(),
    );
  });

  it("publishes the same transitions to sensor-alerts", async () => {
    const published = (await consumeAll(env, "alerts", 12)).map((m) =>
      JSON.parse(m.value?.toString() ?? "{}"),
    );
    expect(published).toHaveLength(12);
    expect(published.filter((p) => p.state === "firing")).toHaveLength(6);
    expect(published.find((p) => p.rule_name === "R4" && p.state === "firing")).toMatchObject({
      sensor_id: "s_dead",
      severity: "critical",
      time: at(15),
    });
  });

  it("delivers webhooks, retrying after failures", async () => {
    await eventually(
      "both R1 transitions delivered",
      async () => hook.received.length,
      (n) => n >= 2,
      20_000,
    );
    expect(hook.attempts).toBe(4);
    expect(hook.received.map((r) => `${r.rule_name}|${r.sensor_id}|${r.state}|${r.time}`).sort()).toEqual([
      `R1|s_thr|firing|${at(12)}`,
      `R1|s_thr|resolved|${at(15)}`,
    ]);
    const outcomes =
      (await worker.metrics.registry.getSingleMetric("ingest_webhook_deliveries_total")?.get())?.values ?? [];
    const count = (outcome: string) => outcomes.find((v) => v.labels.outcome === outcome)?.value ?? 0;
    expect(count("delivered")).toBe(2);
    expect(count("retried")).toBe(2);
  });

  it("signs every webhook body: HMAC-SHA256 of timestamp.body with the rule's secret", async () => {
    expect(hook.signed).toHaveLength(2);
    for (const { body, signature } of hook.signed) {
      const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(signature);
      expect(match, signature).not.toBeNull();
      const [, t, mac] = match as RegExpExecArray;
      expect(Math.abs(Number(t) - Date.now() / 1000)).toBeLessThan(120);
      expect(mac).toBe(createHmac("sha256", HOOK_SECRET).update(`${t}.${body}`).digest("hex"));
    }
  });
});

describe("alert rules change live in a running worker", () => {
  const live = liveSensor("rules-live", "live_1", Date.UTC(2026, 0, 11));

  it("fires within seconds of creation, follows a PATCH, and stops after a DELETE", async () => {
    const created = await postThresholdRule(live.api.url, "live", "live_1", "warning");
    expect(created.status).toBe(201);
    const id = created.body.id;
    const names = new Map([[id, "live"]]);
    const started = Date.now();
    await eventually(
      "the running worker fires the new rule",
      async () => {
        await live.send(50);
        return alertHistory(live.env, names);
      },
      (h) => h.length === 1,
      15_000,
    );
    expect(Date.now() - started).toBeLessThan(10_000);

    // Raise the threshold above the current value: the alert resolves on the next reading.
    const patched = await sendJson<{ version: number }>(
      "PATCH",
      `${live.api.url}/v1/rules/${id}`,
      { condition: { value: 60 } },
      { headers: { "if-match": created.etag ?? "" } },
    );
    expect({ status: patched.status, body: patched.body }).toMatchObject({ status: 200 });
    expect(patched.body.version).toBe(2);
    await eventually(
      "the patched rule resolves",
      async () => {
        await live.send(50);
        return alertHistory(live.env, names);
      },
      (h) => h.length === 2,
      15_000,
    );
    expect((await alertHistory(live.env, names)).map((h) => h.split("|")[2])).toEqual(["firing", "resolved"]);

    const removed = await sendJson("DELETE", `${live.api.url}/v1/rules/${id}`, undefined, {
      headers: { "if-match": patched.etag ?? "" },
    });
    expect(removed.status).toBe(204);
    // A probe rule written after the delete on the same one-partition rules topic: once the worker
    // fires it, it has applied the delete too. The probe's breach is also one of what was the threshold.
    const probe = await sendJson<{ id: string }>("POST", `${live.api.url}/v1/rules`, {
      name: "probe",
      sensors: { type: "ids", ids: ["live_1"] },
      field: "temperature",
      condition: { type: "threshold", op: "above", value: 90 },
      severity: "info",
    });
    expect(probe.status).toBe(201);
    names.set(probe.body.id, "probe");
    const history = await eventually(
      "the running worker fires the probe rule",
      async () => {
        await live.send(100);
        return alertHistory(live.env, names);
      },
      (h) => h.some((a) => a.startsWith("probe|live_1|firing|")),
      15_000,
    );
    await live.send(100, 100);
    const after = await alertHistory(live.env, names);
    expect(after).toEqual(history);
    expect(after.filter((a) => a.startsWith("live|")).map((a) => a.split("|")[2])).toEqual([
      "firing",
      "resolved",
    ]);
  });
});

describe("a severity change mid-episode, read back through /v1/alerts", () => {
  const start = Date.now() - 60_000;
  const live = liveSensor("rules-severity", "sev_1", start);

  interface ApiAlert {
    time: string;
    rule_id: string;
    sensor_id: string;
    severity: string;
    state: string;
    reason?: string;
    message: string;
  }
  const alerts = async (query = "") => {
    const res = await fetch(
      `${live.api.url}/v1/alerts?start=${new Date(start - 60_000).toISOString()}&stop=${new Date(Date.now() + 60_000).toISOString()}${query}`,
      { headers: { authorization: `Bearer ${READ_TOKEN}` } },
    );
    return { status: res.status, body: (await res.json()) as { alerts: ApiAlert[] } };
  };

  it("lists the severity_changed record with its reason, and filters by that state", async () => {
    const created = await postThresholdRule(live.api.url, "sev", "sev_1", "warning");
    expect(created.status).toBe(201);
    const id = created.body.id;
    await eventually(
      "the alert fires",
      async () => {
        await live.send(50);
        return alertHistory(live.env);
      },
      (h) => h.length === 1,
      20_000,
    );
    const patched = await sendJson(
      "PATCH",
      `${live.api.url}/v1/rules/${id}`,
      { severity: "critical" },
      {
        headers: { "if-match": created.etag ?? "" },
      },
    );
    expect(patched.status).toBe(200);
    await eventually(
      "the severity change is stored",
      () => alertHistory(live.env),
      (h) => h.length === 2,
      20_000,
    );

    const all = await alerts();
    expect(all.status).toBe(200);
    expect(all.body.alerts.map((a) => [a.rule_id, a.sensor_id, a.severity, a.state, a.reason])).toEqual([
      [id, "sev_1", "warning", "firing", undefined],
      [id, "sev_1", "critical", "severity_changed", "severity_changed"],
    ]);
    expect(all.body.alerts[1]?.message).toContain("severity warning → critical");

    const changed = await alerts("&state=severity_changed");
    expect(changed.status).toBe(200);
    expect(changed.body.alerts.map((a) => a.state)).toEqual(["severity_changed"]);
    const firing = await alerts("&state=firing");
    expect(firing.body.alerts.map((a) => a.state)).toEqual(["firing"]);
  });
});
