/**
 * GET /v1/alerts — alert history (firing, resolved and severity_changed records), oldest (or newest)
 * first, filtered by sensor, rule, severity, state and time, cursor-paginated.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { flux, type ParameterizedQuery } from "@influxdata/influxdb-client";
import { Type } from "@sinclair/typebox";
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
const KEYS = ["rule_id", "sensor_id", "severity", "state"] as const;

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

const numberOrNull = (v: unknown) => (typeof v === "number" && !Number.isNaN(v) ? v : null);
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
        const filters: ParameterizedQuery[] = [];
        if (q.sensor_id?.length)
          filters.push(flux`|> filter(fn: (r) => contains(value: r.sensor_id, set: ${q.sensor_id}))`);
        if (q.rule_id?.length)
          filters.push(flux`|> filter(fn: (r) => contains(value: r.rule_id, set: ${q.rule_id}))`);
        if (q.severity?.length)
          filters.push(flux`|> filter(fn: (r) => contains(value: r.severity, set: ${q.severity}))`);
        if (q.state !== undefined) filters.push(flux`|> filter(fn: (r) => r.state == ${q.state})`);
        const page = await keysetPage(ctx.flux, "alerts", {
          bucket: ctx.settings.influx.bucket,
          measurement: MEASUREMENTS.alerts,
          keys: KEYS,
          filters,
          start: range.start,
          stop: range.stop,
          cursor: q.cursor,
          limit: Math.min(q.limit ?? 100, ctx.settings.maxPoints),
          order: q.order ?? "asc",
        });
        return {
          start: iso(range.start),
          stop: iso(range.stop),
          alerts: page.points.map((p) => ({
            time: iso(Date.parse(p._time)),
            rule_id: String(p.rule_id),
            sensor_id: String(p.sensor_id),
            severity: p.severity as (typeof SEVERITIES)[number],
            state: p.state as (typeof STATES)[number],
            value: numberOrNull(p.value),
            threshold: numberOrNull(p.threshold),
            message: typeof p.message === "string" ? p.message : "",
            ...(isReason(p.reason) ? { reason: p.reason } : {}),
          })),
          next_cursor: page.nextCursor,
        };
      },
    );
  };
}
