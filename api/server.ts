/**
 * Builds the Fastify app: OpenAPI (@fastify/swagger, UI at /docs), problem-details errors, auth,
 * request metrics, and the route plugins. Listening is left to the caller (api/main.ts, tests).
 */
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, { type FastifyError, type FastifyInstance } from "fastify";
import { collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { createInflux } from "../common/influx.js";
import type { Kafka } from "../common/kafka.js";
import { requireScope, type Scope } from "./auth.js";
import type { ApiSettings } from "./config.js";
import { FluxRunner } from "./influx-query.js";
import { Problem, ProblemError } from "./problem.js";
import { aggregatesRoutes } from "./routes/aggregates.js";
import { healthRoutes } from "./routes/health.js";

export interface RouteContext {
  settings: ApiSettings;
  flux: FluxRunner;
  kafka: Kafka;
  registry: Registry;
  auth(scope: Scope): ReturnType<typeof requireScope>;
}

export interface BuildOptions {
  settings: ApiSettings;
  kafka: Kafka;
  logger?: boolean | object;
}

export async function buildServer({
  settings,
  kafka,
  logger = false,
}: BuildOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger,
    genReqId: (req) =>
      (req.headers["x-request-id"] as string | undefined)?.slice(0, 64) || crypto.randomUUID(),
    ajv: { customOptions: { coerceTypes: "array", removeAdditional: false, allErrors: true } },
  }).withTypeProvider<TypeBoxTypeProvider>();

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
      const fe = error as FastifyError;
      const errors = (fe.validation ?? []).map((v) => ({
        location: `${fe.validationContext ?? "request"}${v.instancePath ? v.instancePath.replace(/\//g, ".") : ""}${
          v.keyword === "required" ? `.${(v.params as { missingProperty?: string }).missingProperty}` : ""
        }`,
        message: v.message ?? "is not valid",
      }));
      problem = {
        type: "/problems/invalid-request",
        title: "Invalid request",
        status: 400,
        detail: errors.map((e) => `${e.location} ${e.message}`).join("; "),
        instance: request.url,
        errors,
      };
    } else if (
      typeof (error as FastifyError).statusCode === "number" &&
      (error as FastifyError).statusCode! < 500
    ) {
      const status = (error as FastifyError).statusCode as number;
      problem = {
        type: "/problems/http-error",
        title: "Request rejected",
        status,
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

  const ctx: RouteContext = {
    settings,
    kafka,
    registry,
    flux: new FluxRunner(createInflux(settings.influx), settings.influx.org, registry),
    auth: (scope) => requireScope(scope, settings.tokens),
  };
  await app.register(healthRoutes(ctx));
  await app.register(aggregatesRoutes(ctx));
  return app;
}
