/**
 * Builds the Fastify app: OpenAPI (@fastify/swagger, UI at /docs), problem-details errors, auth,
 * per-token rate limits, request metrics, and the route plugins. Listening is left to the caller (api/main.ts, tests).
 */
import { createHash, randomUUID } from "node:crypto";
import rateLimit from "@fastify/rate-limit";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { Ajv } from "ajv";
import ajvFormats, { type FormatsPlugin } from "ajv-formats";
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type RouteOptions,
} from "fastify";
import { collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { createInflux } from "../common/influx.js";
import type { Kafka } from "../common/kafka.js";
import { MAX_SENSOR_ID_BYTES } from "../common/reading.js";
import { requireScope, type Scope, scopeOf, type TokenSet } from "./auth.js";
import { SensorCatalogue } from "./catalogue.js";
import type { ApiSettings } from "./config.js";
import { FluxRunner } from "./influx-query.js";
import { PROBLEM_MEDIA_TYPE, Problem, ProblemError, problemResponse, validationProblem } from "./problem.js";
import { ReadPath } from "./read-path.js";
import { aggregatesRoutes } from "./routes/aggregates.js";
import { alertsRoutes } from "./routes/alerts.js";
import { anomaliesRoutes } from "./routes/anomalies.js";
import { healthRoutes } from "./routes/health.js";
import { preconditionRequired, RULE_LINKS, rulesRoutes } from "./routes/rules.js";
import { sensorsRoutes } from "./routes/sensors.js";
import { etag, RuleStore } from "./rule-store.js";

export interface RouteContext {
  settings: ApiSettings;
  flux: FluxRunner;
  read: ReadPath;
  catalogue: SensorCatalogue;
  kafka: Kafka;
  registry: Registry;
  rules: RuleStore;
  auth(scope: Scope): ReturnType<typeof requireScope>;
}

interface OpenApiDocument {
  paths?: Record<string, Record<string, { responses?: Record<string, { links?: unknown }> }>>;
}

/** The created rule's links (its id and ETag feed GET/PUT/PATCH/DELETE /v1/rules/{id}). */
function withRuleLinks(doc: OpenApiDocument): OpenApiDocument {
  const created = doc.paths?.["/v1/rules"]?.post?.responses?.["201"];
  if (created) created.links = RULE_LINKS;
  return doc;
}

/** A PUT/PATCH/DELETE without If-Match: 428, not a generic 400. */
function missesIfMatch(error: FastifyError): boolean {
  return (
    error.validationContext === "headers" &&
    (error.validation ?? []).some(
      (v) =>
        v.keyword === "required" && (v.params as { missingProperty?: string }).missingProperty === "if-match",
    )
  );
}

export interface BuildOptions {
  settings: ApiSettings;
  kafka: Kafka;
  logger?: boolean | object;
  /** Called for every route registered (tests use it to list the routes). */
  onRoute?: (route: RouteOptions) => void;
}

/**
 * The rate-limit key. A valid token has its own bucket (a digest, so keys never hold a token);
 * a request without one, or with a token that is not valid, counts against its client address, so
 * sending made-up tokens buys no extra requests.
 */
function rateLimitKey(authorization: string | undefined, ip: string, tokens: TokenSet): string {
  if (scopeOf(authorization, tokens) === undefined) return `ip:${ip}`;
  const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "")?.[1] ?? "";
  return `token:${createHash("sha256").update(token).digest("base64url")}`;
}

interface DocumentedSchema {
  hide?: boolean;
  body?: unknown;
  security?: unknown[];
  response?: Record<string, unknown>;
}

/**
 * Adds the answers any route can give to its documented responses: 500 everywhere, 401 and 429
 * where a token is needed, 413 and 415 where a body is read, so the document lists every status
 * and media type the API emits.
 */
function documentCommonResponses(route: RouteOptions): void {
  const schema = route.schema as DocumentedSchema | undefined;
  if (!schema || schema.hide || route.url.startsWith("/docs")) return;
  schema.response ??= {};
  const response = schema.response;
  const codes = [500];
  if (schema.security) codes.push(401, 429);
  if (schema.body) codes.push(400, 413, 415);
  for (const code of codes) response[code] ??= problemResponse(code);
}

/** Path patterns (/v1/rules/:id) and their methods, for 405 answers on known paths. */
function routeMatcher() {
  const routes: { pattern: RegExp; methods: Set<string> }[] = [];
  return {
    add(route: RouteOptions) {
      const source = `^${route.url.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/:[A-Za-z0-9_]+/g, "[^/]+")}/?$`;
      let entry = routes.find((r) => r.pattern.source === source);
      if (!entry) {
        entry = { pattern: new RegExp(source), methods: new Set() };
        routes.push(entry);
      }
      for (const method of [route.method].flat()) entry.methods.add(method.toUpperCase());
    },
    allowed(path: string): string[] {
      return [...new Set(routes.filter((r) => r.pattern.test(path)).flatMap((r) => [...r.methods]))].sort();
    },
  };
}

const MAX_PARAM_LENGTH = 3 * MAX_SENSOR_ID_BYTES;

export async function buildServer({
  settings,
  kafka,
  logger = false,
  onRoute,
}: BuildOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger,
    genReqId: (req) =>
      (req.headers["x-request-id"] as string | undefined)?.slice(0, 64) || crypto.randomUUID(),
    // A sensor id may be 256 bytes, each percent-encoded as 3 characters in a path; the router's
    // default cap (100) would reject valid ones.
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // Errors the router raises before any route runs (bad URL encoding, over-long path parameter).
    frameworkErrors: (error, request, reply) => {
      const status = error.statusCode && error.statusCode < 500 ? error.statusCode : 400;
      (reply as FastifyReply)
        .status(status)
        .type("application/problem+json")
        .send({
          type: "/problems/invalid-request",
          title: "Invalid request",
          status,
          detail: `${error.message}: percent-encode the URL and keep each path segment under ${MAX_PARAM_LENGTH} characters`,
          instance: request.url,
        });
    },
    // verbose: validation errors carry the rejected value, so a problem can quote it.
  }).withTypeProvider<TypeBoxTypeProvider>();
  // Query strings and headers arrive as text and are coerced to their schema's types; a JSON body
  // already has types, and a wrong one is rejected, never converted ("parse, don't cast").
  const validators = {
    text: new Ajv({
      coerceTypes: "array",
      useDefaults: true,
      removeAdditional: false,
      allErrors: true,
      verbose: true,
      strict: false,
    }),
    body: new Ajv({
      coerceTypes: false,
      useDefaults: true,
      removeAdditional: false,
      allErrors: true,
      verbose: true,
      strict: false,
    }),
  };
  // ajv-formats is CommonJS: its default export is the plugin function under ESM interop.
  const addFormats = (ajvFormats as unknown as { default: FormatsPlugin }).default;
  addFormats(validators.text);
  addFormats(validators.body);
  app.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === "body" ? validators.body : validators.text).compile(schema),
  );

  const known = routeMatcher();
  app.addHook("onRoute", (route) => {
    documentCommonResponses(route);
    known.add(route);
  });
  if (onRoute) app.addHook("onRoute", onRoute);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const httpLatency = new Histogram({
    name: "api_http_request_seconds",
    help: "HTTP request latency by route and status",
    labelNames: ["method", "route", "status"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  app.addHook("onResponse", async (request, reply) => {
    httpLatency.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? "unmatched",
        status: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
  });

  const rules = new RuleStore(kafka, settings.kafka, app.log as never, {
    writeTimeoutMs: 10_000,
    startTimeoutMs: 30_000,
  });
  app.addSchema(Problem);
  app.setErrorHandler((error: FastifyError | ProblemError, request, reply) => {
    // A method with a body (QUERY, POST) on a path without it fails body parsing before the
    // not-found handler runs; the answer is still 405 or 404.
    if (request.is404) {
      noRoute(request, reply);
      return;
    }
    let problem: Problem;
    if (error instanceof ProblemError) {
      problem = error.toProblem(request.url);
      for (const [name, value] of Object.entries(error.headers)) reply.header(name, value);
      if (error.status >= 500)
        request.log.error({ problem, err: error.cause ?? error, error_id: error.errorId }, "request failed");
    } else if (missesIfMatch(error as FastifyError)) {
      const id = (request.params as { id?: string }).id ?? "";
      const current = rules.peek(id);
      problem = preconditionRequired(id, current && etag(current)).toProblem(request.url);
    } else if ((error as FastifyError).validation) {
      problem = validationProblem(error as FastifyError, request.url);
    } else if (((error as FastifyError).statusCode ?? 500) < 500) {
      // Fastify's own 4xx (malformed URL, unsupported media type, body too large): already say what was wrong.
      const status = (error as FastifyError).statusCode as number;
      problem = {
        type: "/problems/http-error",
        title: "Request rejected",
        status,
        detail:
          status === 415
            ? `${error.message}: send Content-Type application/json (PATCH: application/merge-patch+json)`
            : error.message,
        instance: request.url,
      };
    } else {
      const errorId = randomUUID();
      request.log.error({ err: error, error_id: errorId }, "unhandled error");
      problem = {
        type: "/problems/internal",
        title: "Internal error",
        status: 500,
        detail: `an unexpected error occurred; it has been logged under error id ${errorId}`,
        instance: request.url,
        error_id: errorId,
      };
    }
    reply.status(problem.status).type(PROBLEM_MEDIA_TYPE).send(problem);
  });
  /** 405 with Allow for a known path, else 404. */
  const noRoute = (request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split("?")[0] ?? "/";
    const allowed = known.allowed(path);
    if (allowed.length > 0) {
      reply
        .status(405)
        .header("allow", allowed.join(", "))
        .type(PROBLEM_MEDIA_TYPE)
        .send({
          type: "/problems/method-not-allowed",
          title: "Method not allowed",
          status: 405,
          detail: `${request.method} is not allowed on ${path}: use ${allowed.join(", ")}`,
          instance: request.url,
        });
      return;
    }
    reply
      .status(404)
      .type(PROBLEM_MEDIA_TYPE)
      .send({
        type: "/problems/not-found",
        title: "Not found",
        status: 404,
        detail: `no route ${request.method} ${path}; see /docs for the API`,
        instance: request.url,
      });
  };
  app.setNotFoundHandler(noRoute);

  await app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: {
        title: "Sensor analytics API",
        version: "0.1.0",
        description:
          "Window aggregates, readings, anomalies and alerts from sensor fleets, stored in InfluxDB.",
      },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => (json.$id as string) || `def-${i}` },
    transformObject: (document) =>
      withRuleLinks((document as unknown as { openapiObject: OpenApiDocument }).openapiObject) as never,
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });
  await app.register(rateLimit, {
    max: settings.rateLimitPerMinute,
    timeWindow: 60_000,
    keyGenerator: (request) => rateLimitKey(request.headers.authorization, request.ip, settings.tokens),
    // Liveness probes and the docs stay reachable whatever a client does.
    allowList: (request) => request.routeOptions.url === "/health" || request.url.startsWith("/docs"),
    errorResponseBuilder: (_request, context) =>
      new ProblemError(
        429,
        "Too many requests",
        `more than ${context.max} requests per minute for this token (or, without a valid one, this address); retry after ${context.after} (the retry-after header gives seconds), or ask for a higher API_RATE_LIMIT_PER_MINUTE`,
        "rate-limited",
      ),
  });

  // The client's own timeout stays above the query budget, so the budget (504) decides.
  const flux = new FluxRunner(
    createInflux(settings.influx, settings.queryTimeoutMs + 10_000),
    settings.influx.org,
    registry,
    settings.queryTimeoutMs,
  );
  const read = new ReadPath(flux, settings.influx);
  const ctx: RouteContext = {
    settings,
    kafka,
    registry,
    flux,
    read,
    catalogue: new SensorCatalogue(read),
    auth: (scope) => requireScope(scope, settings.tokens),
    rules,
  };
  await ctx.rules.start();
  app.addHook("onClose", () => ctx.rules.stop());
  await ctx.read.start();
  await ctx.catalogue.start(settings.catalogueRefreshMs);
  app.addHook("onClose", async () => ctx.catalogue.stop());
  await app.register(healthRoutes(ctx));
  await app.register(aggregatesRoutes(ctx));
  await app.register(sensorsRoutes(ctx));
  await app.register(anomaliesRoutes(ctx));
  await app.register(alertsRoutes(ctx));
  await app.register(rulesRoutes(ctx));
  return app;
}
