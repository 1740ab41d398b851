/**
 * Alert-rule management: POST/GET/PUT/PATCH/DELETE /v1/rules. Reading needs the `read` scope,
 * changing needs `admin`. Every response carries the rule's strong ETag; PUT, PATCH and DELETE need
 * a matching If-Match, decided once for all API replicas by the alert-rules topic (see
 * rule-store.ts). POST takes an Idempotency-Key so a retried create never makes a second rule.
 * A webhook's url and secret are shown to admin tokens only.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { type TSchema, Type } from "@sinclair/typebox";
import type { FastifyRequest } from "fastify";
import { type AlertRule, AlertRuleInput, AlertRuleView } from "../../common/rules.js";
import { checkWebhookTarget, WebhookTargetError } from "../../common/webhooks.js";
import { scopeOf } from "../auth.js";
import { ProblemError, problemResponses, unprocessable } from "../problem.js";
import { etag } from "../rule-store.js";
import type { RouteContext } from "../server.js";

const Params = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9-]+$" }) });
export const IF_MATCH_PATTERN = '^(\\*|(W/)?"[!#-~]*"(\\s*,\\s*(W/)?"[!#-~]*")*)$';
const IfMatch = Type.Object(
  {
    "if-match": Type.String({
      pattern: IF_MATCH_PATTERN,
      description:
        'The rule\'s ETag from its last answer, e.g. "3" (or * for any version). Required: without it the answer is 428',
    }),
  },
  { required: ["if-match"] },
);
const IdempotencyKey = Type.Object({
  "idempotency-key": Type.Optional(
    Type.String({
      pattern: "^[!-~]{1,200}$",
      description:
        "Any unique string (a UUID): a retried POST with the same key and body answers the rule the first attempt created instead of creating another",
    }),
  ),
});
const RuleList = Type.Object({ rules: Type.Array(AlertRuleView) });

/**
 * The schema of a JSON Merge Patch of `schema`: every property optional, an optional one may be
 * null (removes it), objects recursively; alternatives stay alternatives.
 */
function mergePatchOf(schema: TSchema): TSchema {
  const s = schema as TSchema & {
    anyOf?: TSchema[];
    properties?: Record<string, TSchema>;
    required?: string[];
  };
  if (s.anyOf) return Type.Union(s.anyOf.map(mergePatchOf));
  if (s.type !== "object" || !s.properties) return schema;
  const required = new Set(s.required ?? []);
  const properties: Record<string, TSchema> = {};
  for (const [key, value] of Object.entries(s.properties)) {
    const patch = mergePatchOf(value);
    properties[key] = Type.Optional(required.has(key) ? patch : Type.Union([patch, Type.Null()]));
  }
  return Type.Object(properties, { additionalProperties: false });
}

const PatchBody = Type.Unsafe<Record<string, unknown>>({
  ...mergePatchOf(AlertRuleInput),
  description:
    "JSON Merge Patch (RFC 7396) of the rule's fields; null removes an optional one. Each part must be valid alone; the patched rule is then validated as a whole (422 when the parts do not fit together, e.g. a condition type without its options).",
});

const etagHeader = {
  ETag: { description: 'The rule\'s strong ETag ("<version>")', schema: { type: "string" } },
};
const ruleResponse = (description: string, withLocation = false) => ({
  description,
  headers: withLocation
    ? { ...etagHeader, Location: { description: "The rule's URL", schema: { type: "string" } } }
    : etagHeader,
  content: { "application/json": { schema: AlertRuleView } },
});

/** The rule as this request may see it: without the webhook's url and secret unless admin. */
function view(rule: AlertRule, request: FastifyRequest, ctx: RouteContext): AlertRule {
  if (!rule.webhook || scopeOf(request.headers.authorization, ctx.settings.tokens) === "admin") return rule;
  const { url: _url, secret: _secret, ...options } = rule.webhook;
  return { ...rule, webhook: options as AlertRule["webhook"] };
}

async function checkTarget(ctx: RouteContext, rule: { webhook?: { url: string } | null }): Promise<void> {
  if (!rule.webhook?.url) return;
  try {
    await checkWebhookTarget(rule.webhook.url, ctx.settings.webhookAllowedHosts);
  } catch (err) {
    if (err instanceof WebhookTargetError) throw unprocessable(`webhook.url ${err.message}`);
    throw err;
  }
}

/** Links for stateful clients: a created rule's id and ETag feed the calls on /v1/rules/{id}. */
export const RULE_LINKS = {
  GetRule: { operationId: "getRule", parameters: { id: "$response.body#/id" } },
  ReplaceRule: {
    operationId: "replaceRule",
    parameters: { id: "$response.body#/id", "header.if-match": "$response.header.ETag" },
  },
  PatchRule: {
    operationId: "patchRule",
    parameters: { id: "$response.body#/id", "header.if-match": "$response.header.ETag" },
  },
  DeleteRule: {
    operationId: "deleteRule",
    parameters: { id: "$response.body#/id", "header.if-match": "$response.header.ETag" },
  },
};

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
          operationId: "createRule",
          tags: ["rules"],
          summary: "Create an alert rule",
          security: [{ bearer: [] }],
          headers: IdempotencyKey,
          body: AlertRuleInput,
          response: {
            201: ruleResponse("Created (or, for a repeated Idempotency-Key, the rule created before)", true),
            ...problemResponses(400, 401, 403, 409, 422, 429, 503),
          },
        },
      },
      async (request, reply) => {
        await checkTarget(ctx, request.body);
        const { rule } = await ctx.rules.create(request.body, request.headers["idempotency-key"]);
        reply.status(201).header("etag", etag(rule)).header("location", `/v1/rules/${rule.id}`);
        return view(rule, request, ctx);
      },
    );

    app.get(
      "/v1/rules",
      {
        preValidation: ctx.auth("read"),
        schema: {
          operationId: "listRules",
          tags: ["rules"],
          summary: "List alert rules",
          security: [{ bearer: [] }],
          response: { 200: RuleList, ...problemResponses(401, 429) },
        },
      },
      async (request) => ({ rules: ctx.rules.list().map((rule) => view(rule, request, ctx)) }),
    );

    app.get(
      "/v1/rules/:id",
      {
        preValidation: ctx.auth("read"),
        schema: {
          operationId: "getRule",
          tags: ["rules"],
          summary: "One alert rule",
          security: [{ bearer: [] }],
          params: Params,
          response: { 200: ruleResponse("The rule"), ...problemResponses(400, 401, 404, 429) },
        },
      },
      async (request, reply) => {
        const rule = ctx.rules.get(request.params.id);
        reply.header("etag", etag(rule));
        return view(rule, request, ctx);
      },
    );

    app.put(
      "/v1/rules/:id",
      {
        preValidation: ctx.auth("admin"),
        schema: {
          operationId: "replaceRule",
          tags: ["rules"],
          summary: "Replace an alert rule",
          security: [{ bearer: [] }],
          params: Params,
          headers: IfMatch,
          body: AlertRuleInput,
          response: {
            200: ruleResponse("Replaced"),
            ...problemResponses(400, 401, 403, 404, 412, 422, 428, 429, 503),
          },
        },
      },
      async (request, reply) => {
        await checkTarget(ctx, request.body);
        const rule = await ctx.rules.replace(request.params.id, request.body, request.headers["if-match"]);
        reply.header("etag", etag(rule));
        return view(rule, request, ctx);
      },
    );

    app.patch(
      "/v1/rules/:id",
      {
        preValidation: ctx.auth("admin"),
        schema: {
          operationId: "patchRule",
          tags: ["rules"],
          summary: "Change some fields of an alert rule (JSON Merge Patch)",
          security: [{ bearer: [] }],
          consumes: ["application/merge-patch+json", "application/json"],
          params: Params,
          headers: IfMatch,
          body: PatchBody,
          response: {
            200: ruleResponse("Patched"),
            ...problemResponses(400, 401, 403, 404, 412, 422, 428, 429, 503),
          },
        },
      },
      async (request, reply) => {
        await checkTarget(ctx, request.body as { webhook?: { url: string } | null });
        const rule = await ctx.rules.patch(
          request.params.id,
          request.body as Record<string, unknown>,
          request.headers["if-match"],
        );
        reply.header("etag", etag(rule));
        return view(rule, request, ctx);
      },
    );

    app.delete(
      "/v1/rules/:id",
      {
        preValidation: ctx.auth("admin"),
        schema: {
          operationId: "deleteRule",
          tags: ["rules"],
          summary: "Delete an alert rule",
          security: [{ bearer: [] }],
          params: Params,
          headers: IfMatch,
          response: {
            204: { description: "Deleted", type: "null" },
            ...problemResponses(400, 401, 403, 404, 412, 428, 429, 503),
          },
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

/** Thrown by the validation step for PUT/PATCH/DELETE without If-Match (see server.ts). */
export const preconditionRequired = (id: string, current: string | undefined) =>
  new ProblemError(
    428,
    "Precondition required",
    `send If-Match: ${current ?? "<the rule's ETag>"} (the rule's ETag) so a concurrent change to rule ${id} is not overwritten`,
    "precondition-required",
  );
