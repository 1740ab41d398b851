/** /health (process alive, public), /ready (Kafka and InfluxDB reachable), /metrics (Prometheus). */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { influxHealthy } from "../../common/influx.js";
import { withAdmin } from "../../common/kafka.js";
import { problemResponses } from "../problem.js";
import type { RouteContext } from "../server.js";

const Status = Type.Object({ status: Type.Union([Type.Literal("ok"), Type.Literal("unavailable")]) });
const Readiness = Type.Object({
  status: Type.Union([Type.Literal("ok"), Type.Literal("unavailable")]),
  kafka: Type.Boolean(),
  influxdb: Type.Boolean(),
});

async function kafkaReachable(ctx: RouteContext): Promise<boolean> {
  try {
    await Promise.race([
      withAdmin(ctx.kafka, (admin) => admin.describeCluster()),
      new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), 3000)),
    ]);
    return true;
  } catch {
    return false;
  }
}

export function healthRoutes(ctx: RouteContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get(
      "/health",
      { schema: { tags: ["operations"], summary: "The process is alive", response: { 200: Status } } },
      async () => ({
        status: "ok" as const,
      }),
    );

    app.get(
      "/ready",
      {
        preValidation: ctx.auth("read"),
        schema: {
          tags: ["operations"],
          summary: "Kafka and InfluxDB are reachable",
          security: [{ bearer: [] }],
          response: { 200: Readiness, 503: Readiness, ...problemResponses(401, 429) },
        },
      },
      async (_request, reply) => {
        const [kafka, influxdb] = await Promise.all([
          kafkaReachable(ctx),
          influxHealthy(ctx.settings.influx),
        ]);
        const ok = kafka && influxdb;
        reply.status(ok ? 200 : 503);
        return { status: ok ? ("ok" as const) : ("unavailable" as const), kafka, influxdb };
      },
    );

    app.get(
      "/metrics",
      {
        preValidation: ctx.auth("read"),
        schema: {
          tags: ["operations"],
          summary: "Prometheus metrics",
          security: [{ bearer: [] }],
          produces: ["text/plain"],
          response: { 200: Type.String(), ...problemResponses(401, 429) },
        },
      },
      async (_request, reply) => {
        reply.type(ctx.registry.contentType);
        return ctx.registry.metrics();
      },
    );
  };
}
