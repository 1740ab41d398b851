/**
 * Rule changes that cannot be lost or doubled, and webhooks that cannot be turned against the
 * network, on the real Kafka: two API replicas racing conditional updates, retried creates with an
 * Idempotency-Key, webhook targets refused, webhook URLs and secrets hidden from read tokens.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Problem } from "../../api/problem.js";
import type { AlertRule } from "../../common/rules.js";
import {
  ADMIN_TOKEN,
  type Env,
  eventually,
  getJson,
  isolatedEnv,
  READ_TOKEN,
  sendJson,
  startApi,
} from "../support/harness.js";

type Api = Awaited<ReturnType<typeof startApi>>;

const rule = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  name: "boiler too hot",
  sensors: { type: "all" },
  field: "temperature",
  condition: { type: "threshold", op: "above", value: 80 },
  severity: "warning",
  ...overrides,
});

async function listed(api: Api, token = READ_TOKEN): Promise<AlertRule[]> {
  const res = await getJson<{ rules: AlertRule[] }>(`${api.url}/v1/rules`, token);
  expect(res.status).toBe(200);
  return res.body.rules;
}

describe("rule changes across API replicas", () => {
  let env: Env;
  let a: Api;
  let b: Api;

  beforeAll(async () => {
    env = await isolatedEnv("api-rules-safety", { KAFKA_PARTITIONS: "1" });
    a = await startApi(env);
    b = await startApi(env);
  });

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it("two replicas race 50 conflicting PATCHes with the same ETag: exactly one wins each round", async () => {
    const created = await sendJson<AlertRule>("POST", `${a.url}/v1/rules`, rule());
    expect(created.status).toBe(201);
    const id = created.body.id;
    let etag = created.etag as string;
    const winners: string[] = [];
    for (let round = 1; round <= 50; round++) {
      const patch = (api: Api, value: number) =>
        sendJson<AlertRule | Problem>(
          "PATCH",
          `${api.url}/v1/rules/${id}`,
          { condition: { value } },
          {
            headers: { "if-match": etag, "content-type": "application/merge-patch+json" },
          },
        );
      const [fromA, fromB] = await Promise.all([patch(a, round * 10), patch(b, round * 10 + 1)]);
      const statuses = [fromA.status, fromB.status].sort();
      expect(statuses, `round ${round}`).toEqual([200, 412]);
      const won = fromA.status === 200 ? fromA : fromB;
      const lost = fromA.status === 200 ? fromB : fromA;
      expect((won.body as AlertRule).version).toBe(round + 1);
      // Decided by the log either way: the loser saw the winner first, or lost the race in the log.
      expect((lost.body as Problem).detail).toMatch(/another change|the rule changed/);
      winners.push(fromA.status === 200 ? "a" : "b");
      etag = won.etag as string;
      expect(etag).toBe(`"${round + 1}"`);
      // Both replicas hold the winner, never the loser.
      const value = (won.body as AlertRule).condition as { value: number };
      for (const api of [a, b]) {
        const seen = await eventually(
          `round ${round} on ${api.url}`,
          () => getJson<AlertRule>(`${api.url}/v1/rules/${id}`),
          (r) => r.body.version === round + 1,
        );
        expect((seen.body.condition as { value: number }).value).toBe(value.value);
      }
    }
    // A replica that starts now reads the whole topic, losers included, and agrees.
    const c = await startApi(env);
    try {
      const fresh = await getJson<AlertRule>(`${c.url}/v1/rules/${id}`);
      expect(fresh.body.version).toBe(51);
      expect(fresh.body.condition).toEqual(
        (await getJson<AlertRule>(`${a.url}/v1/rules/${id}`)).body.condition,
      );
    } finally {
      await c.stop();
    }
    expect(winners).toHaveLength(50);
  });

  it('refuses a weak ETag: If-Match W/"n" never matches a change', async () => {
    const created = await sendJson<AlertRule>("POST", `${a.url}/v1/rules`, rule({ name: "weak" }));
    const res = await sendJson<Problem>(
      "PATCH",
      `${b.url}/v1/rules/${created.body.id}`,
      { severity: "info" },
      {
        headers: { "if-match": `W/${created.etag}` },
      },
    );
    expect(res.status).toBe(412);
    expect(res.body.detail).toContain("weak ETags never match");
  });

  it("a retried POST with the same Idempotency-Key creates one rule, on any replica", async () => {
    const key = `create-${Date.now()}`;
    const body = rule({ name: "idempotent" });
    const first = await sendJson<AlertRule>("POST", `${a.url}/v1/rules`, body, {
      headers: { "idempotency-key": key },
    });
    // The retry goes to the other replica, and two more race each other.
    const retries = await Promise.all([
      sendJson<AlertRule>("POST", `${b.url}/v1/rules`, body, { headers: { "idempotency-key": key } }),
      sendJson<AlertRule>("POST", `${a.url}/v1/rules`, body, { headers: { "idempotency-key": key } }),
      sendJson<AlertRule>("POST", `${b.url}/v1/rules`, body, { headers: { "idempotency-key": key } }),
    ]);
    for (const res of [first, ...retries]) {
      expect(res.status).toBe(201);
      expect(res.body.id).toBe(first.body.id);
      expect(res.body.version).toBe(1);
    }
    for (const api of [a, b]) {
      expect((await listed(api)).filter((r) => r.name === "idempotent")).toHaveLength(1);
    }
    // The same key with another body is a client mistake, not a second rule.
    const reused = await sendJson<Problem>("POST", `${a.url}/v1/rules`, rule({ name: "other" }), {
      headers: { "idempotency-key": key },
    });
    expect(reused.status).toBe(409);
    expect(reused.body.detail).toContain("different body");
    expect((await listed(a)).filter((r) => r.name === "other")).toHaveLength(0);
  });
});

describe("webhooks", () => {
  let env: Env;
  let api: Api;

  beforeAll(async () => {
    env = await isolatedEnv("api-webhooks", { KAFKA_PARTITIONS: "1" });
    api = await startApi(env);
  });

  afterAll(async () => {
    await api?.stop();
  });

  it.each([
    ["http://127.0.0.1:8086/api/v2/write", "a loopback address"],
    ["http://localhost:9464/metrics", "a loopback address"],
    ["http://[::1]:8080/", "a loopback address"],
    ["http://169.254.169.254/latest/meta-data/", "a cloud metadata address"],
    ["http://10.1.2.3/hook", "a private address"],
    ["http://192.168.1.10/hook", "a private address"],
    ["http://[fe80::1]/hook", "a link-local address"],
    ["http://[::ffff:127.0.0.1]/hook", "a loopback address"],
  ])("refuses a webhook to %s (%s) and stores nothing", async (url, reason) => {
    const before = (await listed(api)).length;
    const res = await sendJson<Problem>("POST", `${api.url}/v1/rules`, rule({ webhook: { url } }));
    expect(res.status).toBe(422);
    expect(res.body.detail).toContain(reason);
    expect(res.body.detail).toContain("WEBHOOK_ALLOWED_HOSTS");
    expect((await listed(api)).length).toBe(before);
  });

  it("takes a loopback target listed in WEBHOOK_ALLOWED_HOSTS", async () => {
    const allowed = await startApi({ ...env, WEBHOOK_ALLOWED_HOSTS: "127.0.0.1" });
    try {
      const res = await sendJson<AlertRule>(
        "POST",
        `${allowed.url}/v1/rules`,
        rule({ webhook: { url: "http://127.0.0.1:9/hook" } }),
      );
      expect(res.status).toBe(201);
    } finally {
      await allowed.stop();
    }
  });

  it("shows a webhook's url and secret to admin tokens only", async () => {
    const url = "http://93.184.216.34/hooks/alerts?token=s3cr3t";
    const created = await sendJson<AlertRule>("POST", `${api.url}/v1/rules`, rule({ webhook: { url } }));
    expect(created.status).toBe(201);
    const id = created.body.id;
    expect(created.body.webhook?.url).toBe(url);
    expect(created.body.webhook?.secret).toMatch(/^[!-~]{32,128}$/);

    const asRead = await getJson<AlertRule>(`${api.url}/v1/rules/${id}`, READ_TOKEN);
    expect(asRead.status).toBe(200);
    // The delivery options stay visible (filled with their defaults); the url and secret do not.
    expect(asRead.body.webhook).toEqual({ timeout_ms: 5000, max_attempts: 5 });
    const readList = (await listed(api, READ_TOKEN)).find((r) => r.id === id);
    expect(JSON.stringify(readList)).not.toContain("s3cr3t");
    expect(JSON.stringify(readList)).not.toContain(created.body.webhook?.secret);

    const asAdmin = await getJson<AlertRule>(`${api.url}/v1/rules/${id}`, ADMIN_TOKEN);
    expect(asAdmin.body.webhook).toEqual({
      url,
      secret: created.body.webhook?.secret,
      timeout_ms: 5000,
      max_attempts: 5,
    });
  });

  it("keeps the secret when a patch changes the url, and refuses a patch to a private target", async () => {
    const created = await sendJson<AlertRule>(
      "POST",
      `${api.url}/v1/rules`,
      rule({ webhook: { url: "http://93.184.216.34/a" } }),
    );
    const patched = await sendJson<AlertRule>(
      "PATCH",
      `${api.url}/v1/rules/${created.body.id}`,
      { webhook: { url: "http://93.184.216.34/b" } },
      { headers: { "if-match": created.etag as string } },
    );
    expect(patched.status).toBe(200);
    expect(patched.body.webhook).toEqual({
      url: "http://93.184.216.34/b",
      secret: created.body.webhook?.secret,
      timeout_ms: 5000,
      max_attempts: 5,
    });
    const refused = await sendJson<Problem>(
      "PATCH",
      `${api.url}/v1/rules/${created.body.id}`,
      { webhook: { url: "http://172.16.0.5/c" } },
      { headers: { "if-match": patched.etag as string } },
    );
    expect(refused.status).toBe(422);
    expect(refused.body.detail).toContain("a private address");
  });
});

describe("tag selectors", () => {
  let api: Api;

  beforeAll(async () => {
    api = await startApi(await isolatedEnv("api-tag-keys", { KAFKA_PARTITIONS: "1" }));
  });

  afterAll(async () => {
    await api?.stop();
  });

  it("refuses a tag name that readings could never carry with 422, and keeps the valid ones intact", async () => {
    for (const key of ["", "1site", "site name", "é"]) {
      const res = await sendJson<Problem>(
        "POST",
        `${api.url}/v1/rules`,
        rule({ sensors: { type: "tags", tags: { [key]: "north" } } }),
      );
      expect({ key, status: res.status }).toEqual({ key, status: 422 });
      expect(res.body.detail).toContain(JSON.stringify(key));
    }
    const ok = await sendJson<AlertRule>(
      "POST",
      `${api.url}/v1/rules`,
      rule({ sensors: { type: "tags", tags: { site: "north", floor_2: "b" } } }),
    );
    expect(ok.status).toBe(201);
    const stored = await getJson<AlertRule>(`${api.url}/v1/rules/${ok.body.id}`);
    expect(stored.body.sensors).toEqual({ type: "tags", tags: { site: "north", floor_2: "b" } });
  });
});
