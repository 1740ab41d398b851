/**
 * GET /v1/alerts — alert history (firing, resolved and severity_changed records), oldest (or newest)
 * first, filtered by sensor, rule, severity, state and time, cursor-paginated.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { and, anyOf, eq, lit } from "../../common/flux-shapes.js";
import { MEASUREMENTS } from "../../common/topics.js";
import { keysetPage } from "../pagination.js";
import {
  CursorParam,
  IdParam,
  iso,
  LimitParam,
  OrderParam,
  parseRange,
  SensorIdParam,
  StringEnum,
  TimeParam,
} from "../params.js";
import { problemResponses } from "../problem.js";
import type { RouteContext } from "../server.js";

const SEVERITIES = ["info", "warning", "critical"] as const;
const STATES = ["firing", "resolved", "severity_changed"] as const;
/** Why a record was written when it was not the rule's condition itself (see ingest/alerting.ts). */
const REASONS = ["rule_deleted", "rule_disabled", "rule_retargeted", "severity_changed"] as const;
/** The tags that, after the time, identify a record: the page order. */
export const ALERT_KEYS = ["rule_id", "sensor_id", "severity", "state"] as const;
/** A field every record has. */
export const ALERT_PROBE_FIELD = "message";

const Severity = StringEnum(SEVERITIES);
const State = StringEnum(STATES, {
  description:
    "firing: the alert started; resolved: it ended; severity_changed: its rule's severity changed while it fired (it fires on, under the new severity)",
});
const Reason = StringEnum(REASONS, {
  description:
    "Present when a rule change, not the condition, wrote the record: the rule was deleted, disabled or retargeted away from this sensor or field (resolved), or its severity changed (severity_changed)",
});

const Alert = Type.Object({
  time: Type.String({ format: "date-time", description: "When the alert changed to this state" }),
  rule_id: Type.String(),
  sensor_id: Type.String(),
  severity: Severity,
  state: State,
  value: Type.Union([Type.Number(), Type.Null()], { description: "The value that triggered the change" }),
  threshold: Type.Union([Type.Number(), Type.Null()]),
  message: Type.String(),
  reason: Type.Optional(Reason),
});

const Query = Type.Object({
  sensor_id: Type.Optional(
    Type.Array(SensorIdParam, { maxItems: 100, description: "Repeat for several sensors; omit for all" }),
  ),
  rule_id: Type.Optional(
    Type.Array(IdParam("An alert rule id"), {
      maxItems: 100,
      description: "Repeat for several rules; omit for all",
    }),
  ),
  severity: Type.Optional(
    Type.Array(Severity, { maxItems: SEVERITIES.length, description: "Repeat for several; omit for all" }),
  ),
  state: Type.Optional({ ...State, description: "Only records of this state; omit for all" }),
  start: Type.Optional({
    ...TimeParam,
    description: `${TimeParam.description}. Start of the range (inclusive); default: an hour before stop`,
  }),
  stop: Type.Optional({ ...TimeParam, description: "End of the range (exclusive); default now" }),
  order: Type.Optional(OrderParam),
  limit: Type.Optional(LimitParam),
  cursor: Type.Optional(CursorParam),
});

const Response = Type.Object({
  start: Type.String({ format: "date-time" }),
  stop: Type.String({ format: "date-time" }),
  alerts: Type.Array(Alert, {
    description: "Sorted by time (as `order` says), then rule_id, sensor_id, severity, state",
  }),
  next_cursor: Type.Union([Type.String(), Type.Null()], {
    description: "Pass as cursor to get the next page; null on the last page",
  }),
});

/** A numeric field's text as a number; null when absent or not a finite number. */
const numberOrNull = (text: string | undefined) => {
  const n = text === undefined || text === "" ? Number.NaN : Number(text);
  return Number.isFinite(n) ? n : null;
};
const isReason = (v: unknown): v is (typeof REASONS)[number] =>
  typeof v === "string" && (REASONS as readonly string[]).includes(v);

export function alertsRoutes(ctx: RouteContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get(
      "/v1/alerts",
      {
        preValidation: ctx.auth("read"),
        schema: {
          tags: ["alerts"],
          summary: "Alert history, oldest or newest first, cursor-paginated",
          security: [{ bearer: [] }],
          querystring: Query,
          response: { 200: Response, ...problemResponses(400, 401, 422, 429, 503) },
        },
      },
      async (request) => {
        const q = request.query;
        const range = parseRange(q, ctx.settings.maxRangeMs);
        const page = await keysetPage(ctx.flux, "alerts", {
          bucket: ctx.settings.influx.bucket,
          measurement: MEASUREMENTS.alerts,
          keys: ALERT_KEYS,
          seriesTag: "sensor_id",
          probeField: ALERT_PROBE_FIELD,
          where: and(
            anyOf("sensor_id", q.sensor_id ?? []),
            anyOf("rule_id", q.rule_id ?? []),
            anyOf("severity", q.severity ?? []),
            q.state === undefined ? "" : eq("state", lit.str(q.state)),
          ),
          start: range.start,
          stop: range.stop,
          cursor: q.cursor,
          limit: Math.min(q.limit ?? 100, ctx.settings.maxPoints),
          order: q.order ?? "asc",
        });
        return {
          start: iso(range.start),
          stop: iso(range.stop),
          alerts: page.points.map(({ t, k: [rule_id = "", sensor_id = "", severity, state], fields }) => ({
            time: iso(t),
            rule_id,
            sensor_id,
            severity: severity as (typeof SEVERITIES)[number],
            state: state as (typeof STATES)[number],
            value: numberOrNull(fields.value),
            threshold: numberOrNull(fields.threshold),
            message: fields.message ?? "",
            ...(isReason(fields.reason) ? { reason: fields.reason } : {}),
          })),
          next_cursor: page.nextCursor,
        };
      },
    );
  };
}
