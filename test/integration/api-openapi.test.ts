/** Every route the app registers is in the generated OpenAPI document with its parameters and responses. */
import type { RouteOptions } from "fastify";
import { describe, expect, it } from "vitest";
import { buildTestApp } from "../support/api-helpers.js";

interface Operation {
  parameters?: { in: string; name: string; required?: boolean }[];
  responses?: Record<string, unknown>;
  security?: unknown[];
}

interface RouteSchema {
  hide?: boolean;
  querystring?: { properties?: Record<string, unknown>; required?: string[] };
  params?: { properties?: Record<string, unknown> };
  headers?: { properties?: Record<string, unknown> };
  response?: Record<string, unknown>;
}

describe("OpenAPI document", () => {
  it("lists every registered route with its path and query parameters and its responses", async () => {
    const routes: RouteOptions[] = [];
    const app = await buildTestApp({}, (route) => routes.push(route));
    const spec = app.swagger() as { paths: Record<string, Record<string, Operation>> };
    const documented = routes.filter(
      (r) => !(r.schema as RouteSchema | undefined)?.hide && !r.url.startsWith("/docs"),
    );
    const checked: string[] = [];
    for (const route of documented) {
      for (const method of [route.method].flat().map((m) => m.toLowerCase())) {
        if (method === "head") continue;
        const path = route.url.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
        const op = spec.paths[path]?.[method];
        expect(op, `${method.toUpperCase()} ${route.url} missing from the document`).toBeDefined();
        const schema = (route.schema ?? {}) as RouteSchema;
        const params = (op?.parameters ?? []).map((p) => `${p.in}:${p.name}`).sort();
        const expected = [
          ...Object.keys(schema.querystring?.properties ?? {}).map((n) => `query:${n}`),
          ...Object.keys(schema.params?.properties ?? {}).map((n) => `path:${n}`),
          ...Object.keys(schema.headers?.properties ?? {}).map((n) => `header:${n}`),
        ].sort();
        expect(params, `${route.url} parameters`).toEqual(expected);
        expect(Object.keys(op?.responses ?? {}).sort(), `${route.url} responses`).toEqual(
          Object.keys(schema.response ?? {}).sort(),
        );
        expect(
          Object.keys(schema.response ?? {}).some((code) => code.startsWith("2")),
          `${route.url} declares its success response`,
        ).toBe(true);
        if (route.url !== "/health") {
          // Everything but liveness needs a token and is rate limited: both answers are documented.
          expect(op?.security, `${route.url} security`).toEqual([{ bearer: [] }]);
          expect(Object.keys(op?.responses ?? {}), `${route.url} responses`).toEqual(
            expect.arrayContaining(["401", "429"]),
          );
        }
        checked.push(`${method.toUpperCase()} ${route.url}`);
      }
    }
    // The hook saw the routes (so the loop above checked something), these among them.
    expect(checked).toEqual(
      expect.arrayContaining([
        "GET /health",
        "GET /ready",
        "GET /metrics",
        "GET /v1/aggregates",
        "GET /v1/aggregates/latest",
        "GET /v1/sensors",
        "GET /v1/sensors/:sensor_id/readings",
        "GET /v1/sensors/:sensor_id/sessions",
        "GET /v1/anomalies",
        "GET /v1/alerts",
      ]),
    );
    await app.close();
  });
});
