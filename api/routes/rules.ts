/**
 * Alert-rule management: POST/GET/PUT/PATCH/DELETE /v1/rules. Reading needs the `read` scope,
 * changing needs `admin`. Every response carries the rule's ETag; PUT, PATCH and DELETE need a
 * matching If-Match, so two operators cannot silently overwrite each other.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { AlertRule, AlertRuleInput } from "../../common/rules.js";
import { problemResponses } from "../problem.js";
import { etag } from "../rule-store.js";
import type { RouteContext } from "../server.js";

const Params = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9-]+$" }) });
const IfMatch = Type.Object({
  "if-match": Type.Optional(
    Type.String({ description: 'The ETag from GET, e.g. "3"; required to change or delete' }),
  ),
});
const RuleList = Type.Object({ rules: Type.Array(AlertRule) });
const PatchBody = Type.Partial(
  Type.Object({
    name: Type.Unknown(),
    sensors: Type.Unknown(),
    field: Type.Unknown(),
    condition: Type.Unknown(),
    severity: Type.Unknown(),
    for: Type.Unknown(),
    hysteresis: Type.Unknown(),
    resolve_after: Type.Unknown(),
    enabled: Type.Unknown(),
    webhook: Type.Unknown(),
  }),
  {
    additionalProperties: false,
    description:
      "JSON Merge Patch (RFC 7396) of the rule's fields; null removes an optional one. The result is validated as a whole.",
  },
);

export function rulesRoutes(ctx: RouteContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.addContentTypeParser("application/merge-patch+json", { parseAs: "string" }, (_req, body, done) => {
      try {
        done(null, JSON.parse(body as string));
      } catch (err) {
        (err as { statusCode?: number }).statusCode = 400;
        done(err as Error, undefined);
      }
    });

    app.post(
      "/v1/rules",
      {
        preValidation: ctx.auth("admin"),
        schema: {
          tags: ["rules"],
          summary: "Create an alert rule",
          security: [{ bearer: [] }],
          body: AlertRuleInput,
          response: { 201: AlertRule, ...problemResponses(400, 401, 403, 429) },
        },
      },
      async (request, reply) => {
        const rule = await ctx.rules.create(request.body);
        reply.status(201).header("etag", etag(rule)).header("location", `/v1/rules/${rule.id}`);
        return rule;
      },
    );

    app.get(
      "/v1/rules",
      {
        preValidation: ctx.auth("read"),
        schema: {
          tags: ["rules"],
          summary: "List alert rules",
          security: [{ bearer: [] }],
          response: { 200: RuleList, ...problemResponses(401, 429) },
        },
      },
      async () => ({ rules: ctx.rules.list() }),
    );

    app.get(
      "/v1/rules/:id",
      {
        preValidation: ctx.auth("read"),
        schema: {
          tags: ["rules"],
          summary: "One alert rule",
          security: [{ bearer: [] }],
          params: Params,
          response: { 200: AlertRule, ...problemResponses(400, 401, 404, 429) },
        },
      },
      async (request, reply) => {
        const rule = ctx.rules.get(request.params.id);
        reply.header("etag", etag(rule));
        return rule;
      },
    );

    app.put(
      "/v1/rules/:id",
      {
        preValidation: ctx.auth("admin"),
        schema: {
          tags: ["rules"],
          summary: "Replace an alert rule",
          security: [{ bearer: [] }],
          params: Params,
          headers: IfMatch,
          body: AlertRuleInput,
          response: { 200: AlertRule, ...problemResponses(400, 401, 403, 404, 412, 428, 429) },
        },
      },
      async (request, reply) => {
        const rule = await ctx.rules.replace(request.params.id, request.body, request.headers["if-match"]);
        reply.header("etag", etag(rule));
        return rule;
      },
    );

    app.patch(
      "/v1/rules/:id",
      {
        preValidation: ctx.auth("admin"),
        schema: {
          tags: ["rules"],
          summary: "Change some fields of an alert rule (JSON Merge Patch)",
          security: [{ bearer: [] }],
          params: Params,
          headers: IfMatch,
          body: PatchBody,
          response: { 200: AlertRule, ...problemResponses(400, 401, 403, 404, 412, 428, 429) },
        },
      },
      async (request, reply) => {
        const rule = await ctx.rules.patch(
          request.params.id,
          request.body as Record<string, unknown>,
          request.headers["if-match"],
        );
        reply.header("etag", etag(rule));
        return rule;
      },
    );

    app.delete(
      "/v1/rules/:id",
      {
        preValidation: ctx.auth("admin"),
        schema: {
          tags: ["rules"],
          summary: "Delete an alert rule",
          security: [{ bearer: [] }],
          params: Params,
          headers: IfMatch,
          response: { 204: Type.Null(), ...problemResponses(400, 401, 403, 404, 412, 428, 429) },
        },
      },
      async (request, reply) => {
        await ctx.rules.delete(request.params.id, request.headers["if-match"]);
        reply.status(204);
        return null;
      },
    );
  };
}
