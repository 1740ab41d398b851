/**
 * Every route the app registers (the route table, checked against the OpenAPI document; but liveness
 * and the docs) refuses a request without a valid token (401), every route that changes something
 * refuses a read-scoped token (403), each with problem details, and every route answers the same
 * valid request with a token of its scope (read for queries, admin for changes; admin also reads).
 * The requests are otherwise valid, so what refuses them is the authentication, not the validation.
 */
import type { RouteOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN, type Env, isolatedEnv, READ_TOKEN, startApi } from "../support/harness.js";
import { type DocumentedOperation, fetchOpenApi, fillPath, operations } from "./openapi.js";

const RULE = {
  name: "hot",
  sensors: { type: "all" },
  field: "temperature",
  severity: "warning",
  condition: { type: "threshold", op: "above", value: 24 },
};
const PATH_VALUES = { sensor_id: "sensor_1", id: "rule-1" };

interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
}

/** Authorization headers that carry no valid token. */
const UNAUTHENTICATED: Record<string, string | undefined> = {
  "no header": undefined,
  "unknown token": "Bearer not-a-valid-token-0123456789",
  "read token with a suffix": `Bearer ${READ_TOKEN}x`,
  "read token in the wrong scheme": `Basic ${READ_TOKEN}`,
  "empty bearer": "Bearer ",
  "two tokens": `Bearer ${READ_TOKEN} ${ADMIN_TOKEN}`,
};

describe("authentication and scopes on every documented route", () => {
  let env: Env;
  let api: Awaited<ReturnType<typeof startApi>>;
  let routes: DocumentedOperation[];

  async function send(op: DocumentedOperation, authorization: string | undefined) {
    const body = op.method === "POST" || op.method === "PUT" ? RULE : op.method === "PATCH" ? {} : undefined;
    const headers: Record<string, string> = {};
    if (authorization !== undefined) headers.authorization = authorization;
    if (body !== undefined) headers["content-type"] = "application/json";
    if (["PUT", "PATCH", "DELETE"].includes(op.method)) headers["if-match"] = '"1"';
    const res = await fetch(`${api.url}${fillPath(op.path, PATH_VALUES)}`, {
      method: op.method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return {
      status: res.status,
      contentType: res.headers.get("content-type") ?? "",
      authenticate: res.headers.get("www-authenticate"),
      body: (text ? JSON.parse(text) : null) as Problem | null,
    };
  }

  function expectProblem(where: string, res: Awaited<ReturnType<typeof send>>, status: number): void {
    expect(res.status, where).toBe(status);
    expect(res.contentType, where).toMatch(/^application\/problem\+json/);
    expect(res.body, where).toMatchObject({ status, type: expect.any(String), title: expect.any(String) });
    expect(res.body?.detail.length, where).toBeGreaterThan(10);
  }

  /** Every protected method and path the app registered, as `METHOD /openapi/{path}`. */
  let table: string[];

  beforeAll(async () => {
    env = await isolatedEnv("auth");
    const registered: RouteOptions[] = [];
    api = await startApi(env, (route) => registered.push(route));
    table = registered
      .filter((r) => !(r.schema as { hide?: boolean } | undefined)?.hide)
      .flatMap((r) => [r.method].flat().map((m) => `${m} ${r.url.replace(/:([A-Za-z0-9_]+)/g, "{$1}")}`))
      .filter((name) => !name.startsWith("HEAD ") && name !== "GET /health" && !name.includes(" /docs"))
      .sort();
    routes = operations(await fetchOpenApi(api.url)).filter(
      (op) => op.path !== "/health" && !op.path.startsWith("/docs"),
    );
  });

  afterAll(async () => {
    await api?.stop();
  });

  it("documents the routes to check, the rule changes among them", () => {
    const names = routes.map((op) => `${op.method} ${op.path}`);
    // The document lists exactly the app's route table: a new route is checked below without more ado.
    expect([...names].sort()).toEqual(table);
    expect(names).toEqual(
      expect.arrayContaining([
        "GET /ready",
        "GET /metrics",
        "GET /v1/aggregates",
        "GET /v1/sensors",
        "GET /v1/sensors/{sensor_id}/readings",
        "GET /v1/anomalies",
        "GET /v1/alerts",
        "GET /v1/rules",
        "POST /v1/rules",
        "PUT /v1/rules/{id}",
        "PATCH /v1/rules/{id}",
        "DELETE /v1/rules/{id}",
      ]),
    );
    expect(names).not.toContain("GET /health");
  });

  it("answers 401 with problem details to a request without a valid token", async () => {
    for (const op of routes) {
      for (const [what, authorization] of Object.entries(UNAUTHENTICATED)) {
        const where = `${op.method} ${op.path} with ${what}`;
        const res = await send(op, authorization);
        expectProblem(where, res, 401);
        expect(res.authenticate, where).toMatch(/^Bearer /);
      }
    }
  });

  it("answers 403 with problem details to a read-scoped token on every route that changes something", async () => {
    const changes = routes.filter((op) => op.method !== "GET");
    expect(changes.map((op) => op.method).sort()).toEqual(["DELETE", "PATCH", "POST", "PUT"]);
    for (const op of changes) {
      expectProblem(
        `${op.method} ${op.path} with the read token`,
        await send(op, `Bearer ${READ_TOKEN}`),
        403,
      );
    }
  });

  it("changed nothing: no rule was created by the refused requests", async () => {
    const res = await fetch(`${api.url}/v1/rules`, { headers: { authorization: `Bearer ${READ_TOKEN}` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ rules: [] });
  });

  it("answers every route's valid request with a token of its scope (so the refusals above were about the token)", async () => {
    // Queries need read (admin satisfies it); changes need admin. Creation first, deletion last,
    // so the routes on one rule find it.
    const order = ["POST", "GET", "PUT", "PATCH", "DELETE"];
    const sorted = [...routes].sort((a, b) => order.indexOf(a.method) - order.indexOf(b.method));
    expect(sorted.map((op) => op.method).filter((m) => !order.includes(m))).toEqual([]);
    const passed: string[] = [];
    let ruleId = "";
    const authorized = async (op: DocumentedOperation, token: string) => {
      const headers: Record<string, string> = { authorization: `Bearer ${token}` };
      let body: string | undefined;
      if (op.method === "POST" || op.method === "PUT") body = JSON.stringify(RULE);
      if (op.method === "PATCH") body = JSON.stringify({ severity: "critical" });
      if (body !== undefined) headers["content-type"] = "application/json";
      if (["PUT", "PATCH", "DELETE"].includes(op.method)) {
        const current = await fetch(`${api.url}/v1/rules/${ruleId}`, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        });
        headers["if-match"] = current.headers.get("etag") ?? "";
      }
      const query = new URLSearchParams();
      for (const p of op.operation.parameters ?? []) {
        if (p.in === "query" && p.required) query.append(p.name, String(p.schema.default));
      }
      const qs = query.toString();
      const res = await fetch(
        `${api.url}${fillPath(op.path, { ...PATH_VALUES, id: ruleId })}${qs ? `?${qs}` : ""}`,
        {
          method: op.method,
          headers,
          body,
        },
      );
      const text = await res.text();
      return { status: res.status, text };
    };
    for (const op of sorted) {
      const scopes = op.method === "GET" ? { read: READ_TOKEN, admin: ADMIN_TOKEN } : { admin: ADMIN_TOKEN };
      for (const [scope, token] of Object.entries(scopes)) {
        const res = await authorized(op, token);
        const where = `${op.method} ${op.path} with the ${scope} token → ${res.status} ${res.text.slice(0, 300)}`;
        expect(res.status, where).toBeGreaterThanOrEqual(200);
        expect(res.status, where).toBeLessThan(300);
        if (op.method === "POST") {
          ruleId = (JSON.parse(res.text) as { id: string }).id;
          expect(JSON.parse(res.text), where).toMatchObject({ name: RULE.name, field: RULE.field });
        }
        passed.push(`${op.method} ${op.path}`);
      }
    }
    expect([...new Set(passed)].sort()).toEqual(table);
    // The DELETE that passed removed the rule the POST created.
    const gone = await fetch(`${api.url}/v1/rules/${ruleId}`, {
      headers: { authorization: `Bearer ${READ_TOKEN}` },
    });
    expect(gone.status).toBe(404);
  });
});
