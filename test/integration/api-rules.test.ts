/**
 * The alert-rule management contract on the real services: status codes, problem details, ETag and
 * Location headers, scopes, optimistic concurrency, JSON Merge Patch, and rules shared between API
 * instances through the compacted alert-rules topic.
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

const thresholdRule = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  name: "boiler too hot",
  sensors: { type: "ids", ids: ["boiler_1", "boiler_2"] },
  field: "temperature",
  condition: { type: "threshold", op: "above", value: 80 },
  severity: "warning",
  for: "30s",
  ...overrides,
});

/** A request whose response headers the test needs too (Location, Content-Type). */
async function call<T>(
  method: string,
  url: string,
  {
    body,
    token = ADMIN_TOKEN,
    headers = {},
  }: { body?: string; token?: string | null; headers?: Record<string, string> },
): Promise<{ status: number; headers: Headers; body: T }> {
  const res = await fetch(url, {
    method,
    headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...headers },
    body,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : null) as T };
}

async function create(api: Api, rule: Record<string, unknown> = thresholdRule()) {
  const created = await sendJson<AlertRule>("POST", `${api.url}/v1/rules`, rule);
  expect(created.status).toBe(201);
  return created;
}

async function listIds(api: Api, token = READ_TOKEN): Promise<string[]> {
  const listed = await getJson<{ rules: AlertRule[] }>(`${api.url}/v1/rules`, token);
  expect(listed.status).toBe(200);
  return listed.body.rules.map((r) => r.id);
}

describe("alert-rule management API", () => {
  let env: Env;
  let api: Api;

  beforeAll(async () => {
    env = await isolatedEnv("api-rules");
    api = await startApi(env);
  });

  afterAll(async () => {
    await api?.stop();
  });

  describe("create and read", () => {
    it("creates a rule: 201, version 1, ETag and Location; GET and list return it", async () => {
      const before = Date.now();
      const res = await call<AlertRule>("POST", `${api.url}/v1/rules`, {
        body: JSON.stringify(thresholdRule()),
        headers: { "content-type": "application/json" },
      });
      expect(res.status).toBe(201);
      expect(res.headers.get("etag")).toBe('"1"');
      expect(res.headers.get("content-type")).toMatch(/^application\/json/);
      const rule = res.body;
      expect(rule.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(res.headers.get("location")).toBe(`/v1/rules/${rule.id}`);
      expect(rule).toEqual({
        ...thresholdRule(),
        enabled: true,
        id: rule.id,
        version: 1,
        created_at: rule.created_at,
        updated_at: rule.created_at,
      });
      expect(Date.parse(rule.created_at)).toBeGreaterThanOrEqual(before - 1000);
      expect(Date.parse(rule.created_at)).toBeLessThanOrEqual(Date.now() + 1000);

      const fetched = await call<AlertRule>("GET", `${api.url}${res.headers.get("location")}`, {
        token: READ_TOKEN,
      });
      expect(fetched.status).toBe(200);
      expect(fetched.headers.get("etag")).toBe('"1"');
      expect(fetched.body).toEqual(rule);

      const listed = await getJson<{ rules: AlertRule[] }>(`${api.url}/v1/rules`);
      expect(listed.status).toBe(200);
      expect(listed.body.rules.filter((r) => r.id === rule.id)).toEqual([rule]);
    });

    it("keeps optional fields it was given and lists rules in creation order", async () => {
      const a = await create(
        api,
        thresholdRule({
          name: "anomaly on the north site",
          sensors: { type: "tags", tags: { site: "north" } },
          condition: { type: "anomaly", detectors: ["zscore", "ewma"] },
          severity: "critical",
          for: undefined,
          resolve_after: "10m",
          enabled: false,
          webhook: { url: "https://hooks.example.com/alerts", timeout_ms: 2000, max_attempts: 3 },
        }),
      );
      const b = await create(
        api,
        thresholdRule({
          name: "all sensors silent",
          sensors: { type: "all" },
          condition: { type: "deadman", after: "7d" },
        }),
      );
      expect(a.body).toMatchObject({
        sensors: { type: "tags", tags: { site: "north" } },
        condition: { type: "anomaly", detectors: ["zscore", "ewma"] },
        resolve_after: "10m",
        enabled: false,
        webhook: { url: "https://hooks.example.com/alerts", timeout_ms: 2000, max_attempts: 3 },
      });
      expect(a.body).not.toHaveProperty("for");
      expect(b.body.condition).toEqual({ type: "deadman", after: "7d" });
      const ids = await listIds(api);
      expect(ids.indexOf(b.body.id)).toBe(ids.indexOf(a.body.id) + 1);
    });

    it("answers an unknown id with 404 problem details", async () => {
      const res = await call<Problem>("GET", `${api.url}/v1/rules/00000000-0000-0000-0000-000000000000`, {
        token: READ_TOKEN,
      });
      expect(res.status).toBe(404);
      expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({ type: "/problems/not-found", status: 404 });
      expect(res.body.detail).toContain('"00000000-0000-0000-0000-000000000000"');
    });
  });

  describe("rules are shared through Kafka", () => {
    it("a second API instance lists the rule, and it survives an API restart", async () => {
      const running: Api[] = [await startApi(env), await startApi(env)];
      const [first, second] = running as [Api, Api];
      try {
        const created = await create(first, thresholdRule({ name: "shared" }));
        const id = created.body.id;
        // The second instance was already running: it learns of the rule from the topic.
        await eventually(
          "the second API instance lists the rule",
          () => listIds(second),
          (ids) => ids.includes(id),
          15_000,
        );
        const fetched = await sendJson<AlertRule>("GET", `${second.url}/v1/rules/${id}`, undefined, {
          token: READ_TOKEN,
        });
        expect(fetched.status).toBe(200);
        expect(fetched.etag).toBe('"1"');
        expect(fetched.body).toEqual(created.body);

        for (const instance of running.splice(0)) await instance.stop();
        const restarted = await startApi(env);
        running.push(restarted);
        // Started after the write: it has read the topic from the beginning before it listens.
        expect(await listIds(restarted)).toContain(id);
        const after = await sendJson<AlertRule>("GET", `${restarted.url}/v1/rules/${id}`, undefined, {
          token: READ_TOKEN,
        });
        expect(after.status).toBe(200);
        expect(after.etag).toBe('"1"');
        expect(after.body).toEqual(created.body);
      } finally {
        for (const instance of running) await instance.stop();
      }
    });
  });

  describe("validation", () => {
    const rejects = async (rule: unknown, ...mentions: string[]) => {
      const res = await call<Problem>("POST", `${api.url}/v1/rules`, {
        body: JSON.stringify(rule),
        headers: { "content-type": "application/json" },
      });
      expect(res.status).toBe(400);
      expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({
        type: "/problems/invalid-request",
        title: "Invalid request",
        status: 400,
      });
      for (const m of mentions) expect(res.body.detail).toContain(m);
      return res.body;
    };

    it("rejects an unknown top-level field", async () => {
      const problem = await rejects(thresholdRule({ colour: "red" }), "body.colour is not a known property");
      expect(problem.errors?.map((e) => e.location)).toEqual(["body.colour"]);
    });

    it("rejects an unknown condition type", async () => {
      const problem = await rejects(
        thresholdRule({ condition: { type: "sigmoid", op: "above", value: 1 } }),
        'body.condition.type must be equal to constant (got "sigmoid")',
        "body.condition must match a schema in anyOf",
      );
      expect(problem.errors?.length).toBeGreaterThan(1);
    });

    it("rejects a missing required field", async () => {
      const { severity: _s, ...rule } = thresholdRule();
      const problem = await rejects(rule, "body.severity", "must have required property 'severity'");
      expect(problem.errors).toEqual([
        { location: "body.severity", message: "must have required property 'severity'" },
      ]);
    });

    it("rejects a severity outside info, warning, critical", async () => {
      const problem = await rejects(
        thresholdRule({ severity: "urgent" }),
        'body.severity must match a schema in anyOf (got "urgent")',
      );
      expect(new Set(problem.errors?.map((e) => e.location))).toEqual(new Set(["body.severity"]));
    });

    it("rejects a sensor id that is not valid, and an empty id list", async () => {
      await rejects(
        thresholdRule({ sensors: { type: "ids", ids: ["boiler_1", "bad\u0007id"] } }),
        "body.sensors.ids.1",
        '"bad\\u0007id"',
      );
      await rejects(
        thresholdRule({ sensors: { type: "ids", ids: [] } }),
        "body.sensors.ids",
        "must NOT have fewer than 1 items",
      );
    });

    it("rejects a duration that does not parse", async () => {
      await rejects(thresholdRule({ for: "5 minutes" }), "body.for", '"5 minutes"');
      await rejects(
        thresholdRule({ condition: { type: "deadman", after: "5 minutes" } }),
        "body.condition.after",
        '"5 minutes"',
      );
    });

    it("rejects durations that parse but cannot work: the schema's patterns say so", async () => {
      await rejects(
        thresholdRule({ condition: { type: "deadman", after: "0s" } }),
        "body.condition.after",
        '"0s"',
      );
      await rejects(
        thresholdRule({ condition: { type: "window", fn: "mean", window: "500ms", op: "above", value: 1 } }),
        "body.condition.window",
        '"500ms"',
      );
      await rejects(thresholdRule({ for: "8d" }), "body.for", '"8d"');
    });

    it("rejects control characters in the name", async () => {
      await rejects(thresholdRule({ name: "hot\u001b[31m" }), "body.name", "must match pattern");
      await rejects(thresholdRule({ name: "a\r\nb" }), "body.name");
    });

    it("accepts options a condition does not use, and keeps them", async () => {
      const anomaly = await create(
        api,
        thresholdRule({ name: "ignored", condition: { type: "anomaly" }, hysteresis: 2 }),
      );
      expect(anomaly.body.hysteresis).toBe(2);
      const threshold = await create(api, thresholdRule({ name: "ignored", resolve_after: "5m" }));
      expect(threshold.body.resolve_after).toBe("5m");
    });

    it("rejects webhook urls that are not http(s) and timeouts below the minimum", async () => {
      await rejects(thresholdRule({ webhook: { url: "ftp://x" } }), "body.webhook.url", '"ftp://x"');
      await rejects(thresholdRule({ webhook: { url: "not a url" } }), "body.webhook.url", '"not a url"');
      await rejects(
        thresholdRule({ webhook: { url: "https://hooks.example.com/a", timeout_ms: -5 } }),
        "body.webhook.timeout_ms",
        "must be >= 100",
        "-5",
      );
    });

    it("stores nothing for a rejected rule", async () => {
      const names = (await getJson<{ rules: AlertRule[] }>(`${api.url}/v1/rules`)).body.rules.map(
        (r) => r.name,
      );
      expect(names.filter((n) => n === "boiler too hot")).toHaveLength(1);
    });
  });

  describe("scopes", () => {
    let rule: AlertRule;
    beforeAll(async () => {
      rule = (await create(api, thresholdRule({ name: "scoped" }))).body;
    });

    it("lets a read token GET and list", async () => {
      const one = await getJson<AlertRule>(`${api.url}/v1/rules/${rule.id}`, READ_TOKEN);
      expect(one).toEqual({ status: 200, body: rule });
      expect(await listIds(api, READ_TOKEN)).toContain(rule.id);
    });

    it("answers a read token with 403 on every change, and changes nothing", async () => {
      const url = `${api.url}/v1/rules/${rule.id}`;
      const opts = { token: READ_TOKEN, headers: { "if-match": '"1"' } };
      for (const [method, target, body] of [
        ["POST", `${api.url}/v1/rules`, thresholdRule({ name: "by a reader" })],
        ["PUT", url, thresholdRule({ name: "by a reader" })],
        ["PATCH", url, { name: "by a reader" }],
        ["DELETE", url, undefined],
      ] as const) {
        const res = await sendJson<Problem>(method, target, body, opts);
        expect({ method, status: res.status, type: res.body.type }).toEqual({
          method,
          status: 403,
          type: "/problems/forbidden",
        });
        expect(res.body.detail).toContain("admin scope");
      }
      expect((await getJson<AlertRule>(url)).body).toEqual(rule);
      const names = (await getJson<{ rules: AlertRule[] }>(`${api.url}/v1/rules`)).body.rules.map(
        (r) => r.name,
      );
      expect(names).not.toContain("by a reader");
    });

    it("answers no token and a wrong token with 401", async () => {
      for (const url of [`${api.url}/v1/rules`, `${api.url}/v1/rules/${rule.id}`]) {
        const none = await call<Problem>("GET", url, { token: null });
        expect(none.status).toBe(401);
        expect(none.headers.get("www-authenticate")).toBe('Bearer realm="sensor-analytics"');
        expect(none.body).toMatchObject({ type: "/problems/unauthorized", status: 401 });
        expect(none.body.detail).toContain("Authorization: Bearer");
        const wrong = await call<Problem>("GET", url, { token: "not-a-token-0123456789" });
        expect(wrong.status).toBe(401);
        expect(wrong.body).toMatchObject({
          type: "/problems/unauthorized",
          status: 401,
          detail: "the bearer token is not valid",
        });
      }
      const post = await sendJson<Problem>("POST", `${api.url}/v1/rules`, thresholdRule(), {
        token: "not-a-token-0123456789",
      });
      expect(post.status).toBe(401);
      const del = await sendJson<Problem>("DELETE", `${api.url}/v1/rules/${rule.id}`, undefined, {
        token: "not-a-token-0123456789",
        headers: { "if-match": "*" },
      });
      expect(del.status).toBe(401);
      expect((await getJson<AlertRule>(`${api.url}/v1/rules/${rule.id}`)).status).toBe(200);
    });
  });

  describe("optimistic concurrency", () => {
    it("needs If-Match on PUT, PATCH and DELETE: 428 naming the current ETag", async () => {
      const { body: rule } = await create(api, thresholdRule({ name: "needs if-match" }));
      const url = `${api.url}/v1/rules/${rule.id}`;
      for (const [method, body] of [
        ["PUT", thresholdRule({ name: "changed" })],
        ["PATCH", { name: "changed" }],
        ["DELETE", undefined],
      ] as const) {
        const res = await sendJson<Problem>(method, url, body);
        expect({ method, status: res.status, type: res.body.type }).toEqual({
          method,
          status: 428,
          type: "/problems/precondition-required",
        });
        expect(res.body.detail).toContain('If-Match: "1"');
      }
      expect((await getJson<AlertRule>(url)).body).toEqual(rule);
    });

    it("refuses a stale If-Match with 412 and accepts the current one", async () => {
      const { body: v1 } = await create(api, thresholdRule({ name: "versioned" }));
      const url = `${api.url}/v1/rules/${v1.id}`;
      const put = await sendJson<AlertRule>(
        "PUT",
        url,
        thresholdRule({ name: "versioned", severity: "critical" }),
        {
          headers: { "if-match": '"1"' },
        },
      );
      expect(put.status).toBe(200);
      expect(put.etag).toBe('"2"');
      expect(put.body).toMatchObject({
        id: v1.id,
        version: 2,
        severity: "critical",
        created_at: v1.created_at,
      });
      expect(Date.parse(put.body.updated_at)).toBeGreaterThanOrEqual(Date.parse(v1.updated_at));

      for (const [method, body] of [
        ["PUT", thresholdRule({ name: "stale" })],
        ["PATCH", { name: "stale" }],
        ["DELETE", undefined],
      ] as const) {
        const res = await sendJson<Problem>(method, url, body, { headers: { "if-match": '"1"' } });
        expect({ method, status: res.status, type: res.body.type }).toEqual({
          method,
          status: 412,
          type: "/problems/precondition-failed",
        });
        expect(res.body.detail).toContain('its ETag is now "2", yours was "1"');
      }
      const current = await sendJson<AlertRule>("GET", url, undefined, { token: READ_TOKEN });
      expect(current.etag).toBe('"2"');
      expect(current.body).toEqual(put.body);

      const patched = await sendJson<AlertRule>(
        "PATCH",
        url,
        { severity: "info" },
        { headers: { "if-match": '"2"' } },
      );
      expect(patched.status).toBe(200);
      expect(patched.etag).toBe('"3"');
      expect(patched.body).toMatchObject({ version: 3, severity: "info", name: "versioned" });

      const weak = await sendJson<AlertRule>(
        "PATCH",
        url,
        { severity: "warning" },
        { headers: { "if-match": 'W/"3"' } },
      );
      // If-Match compares strongly: a weak ETag never matches a change.
      expect(weak.status).toBe(412);
      expect((weak.body as unknown as Problem).detail).toContain("weak ETags never match");

      const removed = await sendJson("DELETE", url, undefined, { headers: { "if-match": '"3"' } });
      expect(removed.status).toBe(204);
      expect(removed.body).toBeNull();
    });

    it("accepts If-Match: * on PUT, PATCH and DELETE", async () => {
      const { body: v1 } = await create(api, thresholdRule({ name: "star" }));
      const url = `${api.url}/v1/rules/${v1.id}`;
      const put = await sendJson<AlertRule>("PUT", url, thresholdRule({ name: "star", for: "1m" }), {
        headers: { "if-match": "*" },
      });
      expect({ status: put.status, etag: put.etag, version: put.body.version, for: put.body.for }).toEqual({
        status: 200,
        etag: '"2"',
        version: 2,
        for: "1m",
      });
      const patch = await sendJson<AlertRule>(
        "PATCH",
        url,
        { name: "star 2" },
        { headers: { "if-match": "*" } },
      );
      expect({ status: patch.status, etag: patch.etag, name: patch.body.name }).toEqual({
        status: 200,
        etag: '"3"',
        name: "star 2",
      });
      const del = await sendJson("DELETE", url, undefined, { headers: { "if-match": "*" } });
      expect(del.status).toBe(204);
      expect((await getJson(url)).status).toBe(404);
    });
  });

  describe("PATCH is a JSON Merge Patch", () => {
    it("merges into condition, removes an optional field with null, takes merge-patch+json", async () => {
      const { body: v1 } = await create(
        api,
        thresholdRule({
          name: "merge",
          hysteresis: 2,
          webhook: { url: "https://hooks.example.com/m", timeout_ms: 1500 },
        }),
      );
      const url = `${api.url}/v1/rules/${v1.id}`;
      const res = await call<AlertRule>("PATCH", url, {
        body: JSON.stringify({ condition: { value: 95 }, for: null, webhook: { max_attempts: 2 } }),
        headers: { "content-type": "application/merge-patch+json", "if-match": '"1"' },
      });
      expect(res.status).toBe(200);
      expect(res.headers.get("etag")).toBe('"2"');
      const { for: _for, ...rest } = v1;
      expect(res.body).toEqual({
        ...rest,
        condition: { type: "threshold", op: "above", value: 95 },
        webhook: {
          url: "https://hooks.example.com/m",
          secret: v1.webhook?.secret,
          timeout_ms: 1500,
          max_attempts: 2,
        },
        version: 2,
        updated_at: res.body.updated_at,
      });
      expect(res.body).not.toHaveProperty("for");
      expect((await getJson<AlertRule>(url, ADMIN_TOKEN)).body).toEqual(res.body);
    });

    it("rejects a patch that makes the rule invalid and leaves it unchanged", async () => {
      const { body: v1 } = await create(api, thresholdRule({ name: "stays valid" }));
      const url = `${api.url}/v1/rules/${v1.id}`;
      const cases: [unknown, string, number][] = [
        [{ condition: { value: "high" } }, "body.condition", 400],
        [{ severity: null }, "body.severity", 400],
        [{ for: "8d" }, "body.for", 400],
        [{ colour: "red" }, "body.colour", 400],
        // Each part valid alone, the patched rule not: a deadman condition with a threshold's options.
        [{ condition: { type: "deadman" } }, "the patched rule is not valid: /condition", 422],
      ];
      for (const [patch, mention, status] of cases) {
        const res = await call<Problem>("PATCH", url, {
          body: JSON.stringify(patch),
          headers: { "content-type": "application/merge-patch+json", "if-match": '"1"' },
        });
        expect({ patch, status: res.status, type: res.body.type }).toEqual({
          patch,
          status,
          type: status === 400 ? "/problems/invalid-request" : "/problems/unprocessable-request",
        });
        expect(res.body.detail).toContain(mention);
      }
      const after = await sendJson<AlertRule>("GET", url, undefined, { token: READ_TOKEN });
      expect(after.etag).toBe('"1"');
      expect(after.body).toEqual(v1);
    });
  });

  describe("DELETE", () => {
    it("deletes: 204, then GET 404, gone from the list, a second DELETE 404", async () => {
      const { body: rule } = await create(api, thresholdRule({ name: "doomed" }));
      const url = `${api.url}/v1/rules/${rule.id}`;
      const removed = await call<null>("DELETE", url, { headers: { "if-match": '"1"' } });
      expect(removed.status).toBe(204);
      expect(removed.body).toBeNull();

      const gone = await getJson<Problem>(url);
      expect(gone.status).toBe(404);
      expect(gone.body).toMatchObject({ type: "/problems/not-found", status: 404, title: "Not found" });
      expect(gone.body.detail).toContain(rule.id);
      expect(await listIds(api)).not.toContain(rule.id);

      const again = await sendJson<Problem>("DELETE", url, undefined, { headers: { "if-match": "*" } });
      expect(again.status).toBe(404);
      expect(again.body).toMatchObject({ type: "/problems/not-found", status: 404 });
      expect(again.body.detail).toContain(rule.id);

      const restarted = await startApi(env);
      try {
        expect(await listIds(restarted)).not.toContain(rule.id);
        expect((await getJson(`${restarted.url}/v1/rules/${rule.id}`)).status).toBe(404);
      } finally {
        await restarted.stop();
      }
    });
  });
  describe("edge cases", () => {
    it("two concurrent changes with the same If-Match: one wins, the other gets 412", async () => {
      const created = await create(api);
      const id = created.body.id;
      const [a, b] = await Promise.all([
        sendJson(
          "PATCH",
          `${api.url}/v1/rules/${id}`,
          { name: "race A" },
          { headers: { "if-match": '"1"' } },
        ),
        sendJson(
          "PATCH",
          `${api.url}/v1/rules/${id}`,
          { severity: "critical" },
          { headers: { "if-match": '"1"' } },
        ),
      ]);
      expect([a.status, b.status].sort()).toEqual([200, 412]);
      const stored = await getJson<AlertRule>(`${api.url}/v1/rules/${id}`);
      expect(stored.body.version).toBe(2);
    });

    it("checks the token before the body: 401 and 403, not 400, for an invalid body", async () => {
      const wrong = await call("POST", `${api.url}/v1/rules`, {
        body: JSON.stringify({ nonsense: 1 }),
        token: "not-a-valid-token-at-all",
        headers: { "content-type": "application/json" },
      });
      expect(wrong.status).toBe(401);
      const read = await call("POST", `${api.url}/v1/rules`, {
        body: JSON.stringify({ nonsense: 1 }),
        token: READ_TOKEN,
        headers: { "content-type": "application/json" },
      });
      expect(read.status).toBe(403);
    });

    it("merges a patch object into a field the rule does not have yet, dropping its nulls (RFC 7396)", async () => {
      const created = await create(api);
      const res = await sendJson<AlertRule>(
        "PATCH",
        `${api.url}/v1/rules/${created.body.id}`,
        { webhook: { url: "https://hooks.example.com/n", timeout_ms: null } },
        { headers: { "if-match": '"1"' } },
      );
      expect(res.status).toBe(200);
      // The response shows the schema's defaults for what the patch removed.
      expect(res.body.webhook).toEqual({
        url: "https://hooks.example.com/n",
        secret: expect.stringMatching(/^[!-~]{32,128}$/),
        timeout_ms: 5000,
        max_attempts: 5,
      });
    });

    it("rejects a body value of the wrong type instead of converting it", async () => {
      const res = await sendJson<{ detail: string }>(
        "POST",
        `${api.url}/v1/rules`,
        thresholdRule({ name: 123 }),
      );
      expect(res.status).toBe(400);
      expect(res.body.detail).toContain("body.name");
      const asText = await sendJson<{ detail: string }>(
        "POST",
        `${api.url}/v1/rules`,
        thresholdRule({ condition: { type: "threshold", op: "above", value: "80" } }),
      );
      expect(asText.status).toBe(400);
    });
  });
});
