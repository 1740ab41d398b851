/**
 * Builds the Fastify app: OpenAPI (@fastify/swagger, UI at /docs), problem-details errors, auth,
 * per-token rate limits, request metrics, and the route plugins. Listening is left to the caller (api/main.ts, tests).
 */
import { createHash } from "node:crypto";
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
  type RouteOptions,
} from "fastify";
import { collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { createInflux } from "../common/influx.js";
import type { Kafka } from "../common/kafka.js";
import { MAX_SENSOR_ID_BYTES } from "../common/reading.js";
import { requireScope, type Scope } from "./auth.js";
import type { ApiSettings } from "./config.js";
import { FluxRunner } from "./influx-query.js";
import { Problem, ProblemError, validationProblem } from "./problem.js";
import { ReadPath } from "./read-path.js";
import { aggregatesRoutes } from "./routes/aggregates.js";
import { alertsRoutes } from "./routes/alerts.js";
import { anomaliesRoutes } from "./routes/anomalies.js";
import { healthRoutes } from "./routes/health.js";
import { rulesRoutes } from "./routes/rules.js";
import { sensorsRoutes } from "./routes/sensors.js";
import { RuleStore } from "./rule-store.js";

export interface RouteContext {
  settings: ApiSettings;
  flux: FluxRunner;
  read: ReadPath;
  kafka: Kafka;
  registry: Registry;
  rules: RuleStore;
  auth(scope: Scope): ReturnType<typeof requireScope>;
}

export interface BuildOptions {
  settings: ApiSettings;
  kafka: Kafka;
  logger?: boolean | object;
  /** Called for every route registered (tests use it to list the routes). */
  onRoute?: (route: RouteOptions) => void;
}

/** The rate-limit key: a digest of the bearer token, so keys never hold a token; else the client address. */
function rateLimitKey(authorization: string | undefined, ip: string): string {
  const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "")?.[1];
  return token ? `token:${createHash("sha256").update(token).digest("base64url")}` : `ip:${ip}`;
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

  app.addSchema(Problem);
  app.setErrorHandler((error: FastifyError | ProblemError, request, reply) => {
    let problem: Problem;
    if (error instanceof ProblemError) {
      problem = error.toProblem(request.url);
    } else if ((error as FastifyError).validation) {
      problem = validationProblem(error as FastifyError, request.url);
    } else if (((error as FastifyError).statusCode ?? 500) < 500) {
      // Fastify's own 4xx (malformed URL, unsupported media type, body too large): already say what was wrong.
      problem = {
        type: "/problems/http-error",
        title: "Request rejected",
        status: (error as FastifyError).statusCode as number,
        detail: error.message,
        instance: request.url,
      };
    } else {
      request.log.error({ err: error }, "unhandled error");
      problem = {
        type: "/problems/internal",
        title: "Internal error",
        status: 500,
        detail: "an unexpected error occurred; it has been logged",
        instance: request.url,
      };
    }
    reply.status(problem.status).type("application/problem+json").send(problem);
  });
  app.setNotFoundHandler((request, reply) => {
    reply
      .status(404)
      .type("application/problem+json")
      .send({
        type: "/problems/not-found",
        title: "Not found",
        status: 404,
        detail: `no route ${request.method} ${request.url.split("?")[0]}; see /docs for the API`,
        instance: request.url,
      });
  });

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
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });
  await app.register(rateLimit, {
    max: settings.rateLimitPerMinute,
    timeWindow: 60_000,
    keyGenerator: (request) => rateLimitKey(request.headers.authorization, request.ip),
    // Liveness probes and the docs stay reachable whatever a client does.
    allowList: (request) => request.routeOptions.url === "/health" || request.url.startsWith("/docs"),
    errorResponseBuilder: (_request, context) =>
      new ProblemError(
        429,
        "Too many requests",
        `more than ${context.max} requests per minute for this token (or, without one, this address); retry after ${context.after} (the retry-after header gives seconds), or ask for a higher API_RATE_LIMIT_PER_MINUTE`,
        "rate-limited",
      ),
  });

  const flux = new FluxRunner(createInflux(settings.influx), settings.influx.org, registry);
  const ctx: RouteContext = {
    settings,
    kafka,
    registry,
    flux,
    read: new ReadPath(flux, settings.influx),
    auth: (scope) => requireScope(scope, settings.tokens),
    rules: new RuleStore(kafka, settings.kafka),
  };
  await ctx.rules.start();
  app.addHook("onClose", () => ctx.rules.stop());
  await ctx.read.start(settings.catalogueRefreshMs);
  app.addHook("onClose", async () => ctx.read.stop());
  await app.register(healthRoutes(ctx));
  await app.register(aggregatesRoutes(ctx));
  await app.register(sensorsRoutes(ctx));
  await app.register(anomaliesRoutes(ctx));
  await app.register(alertsRoutes(ctx));
  await app.register(rulesRoutes(ctx));
  return app;
}
