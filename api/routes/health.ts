/**
 * /health (process alive, public), /ready (Kafka and InfluxDB reachable, the rule copy current),
 * /metrics (Prometheus).
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { influxHealthy } from "../../common/influx.js";
import { withAdmin } from "../../common/kafka.js";
import { PROBLEM_HEADERS, problemResponses } from "../problem.js";
import type { RouteContext } from "../server.js";

const Status = Type.Object({ status: Type.Union([Type.Literal("ok"), Type.Literal("unavailable")]) });
const Readiness = Type.Object({
  status: Type.Union([Type.Literal("ok"), Type.Literal("unavailable")]),
  kafka: Type.Boolean(),
  influxdb: Type.Boolean(),
  rules: Type.Object(
    {
      current: Type.Boolean({
        description: "The rule copy caught up with the alert-rules topic within API_RULES_MAX_LAG_MS",
      }),
      lag_records: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], {
        description: "Records of the topic not yet applied when asked (null: Kafka could not say)",
      }),
      lag_ms: Type.Integer({
        minimum: 0,
        description: "How long catching up took (the whole wait when it did not)",
      }),
    },
    { description: "This instance's copy of the alert rules" },
  ),
});

/** How far behind the alert-rules topic this instance's copy is, waiting at most `maxLagMs` for it. */
async function ruleCopy(ctx: RouteContext) {
  const started = Date.now();
  const maxLagMs = ctx.settings.rulesMaxLagMs;
  let lag: number | null = null;
  try {
    lag = await Promise.race([
      ctx.rules.lag(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("timeout")), maxLagMs)),
    ]);
    if (lag > 0) await ctx.rules.catchUp(Math.max(1, maxLagMs - (Date.now() - started)));
    return { current: true, lag_records: lag, lag_ms: Date.now() - started };
  } catch {
    return { current: false, lag_records: lag, lag_ms: Date.now() - started };
  }
}

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
          summary: "Kafka and InfluxDB are reachable and the rule copy is current",
          security: [{ bearer: [] }],
          response: {
            200: Readiness,
            503: {
              description: "Not ready: see which part",
              headers: PROBLEM_HEADERS[503],
              content: { "application/json": { schema: Readiness } },
            },
            ...problemResponses(401, 429),
          },
        },
      },
      async (_request, reply) => {
        const [kafka, influxdb, rules] = await Promise.all([
          kafkaReachable(ctx),
          influxHealthy(ctx.settings.influx),
          ruleCopy(ctx),
        ]);
        const ok = kafka && influxdb && rules.current;
        reply.status(ok ? 200 : 503);
        if (!ok) reply.header("retry-after", "5");
        return { status: ok ? ("ok" as const) : ("unavailable" as const), kafka, influxdb, rules };
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
