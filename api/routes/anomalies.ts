/**
 * GET /v1/anomalies — anomaly flags the detectors stored, oldest (or newest) first, filtered by sensor, field,
 * detector and time, cursor-paginated.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { and, anyOf, eq, lit } from "../../common/flux-shapes.js";
import { MEASUREMENTS } from "../../common/topics.js";
import { keysetPage } from "../pagination.js";
import {
  CursorParam,
  FieldParam,
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

const DETECTORS = ["delta", "zscore", "ewma"] as const;
/** The tags that, after the time, identify a record: the page order. */
export const ANOMALY_KEYS = ["sensor_id", "field", "detector"] as const;
/** A field every record has. */
export const ANOMALY_PROBE_FIELD = "score";

const Anomaly = Type.Object({
  time: Type.String({ format: "date-time", description: "Event time of the reading that was flagged" }),
  sensor_id: Type.String(),
  field: Type.String(),
  detector: StringEnum(DETECTORS),
  value: Type.Number({ description: "The reading's value" }),
  score: Type.Number({ description: "How far out it was: |Δ| for delta, sigmas for zscore and ewma" }),
  threshold: Type.Number({ description: "The score above which the detector flags" }),
  expected: Type.Number({
    description: "What the detector expected: the previous value or the baseline mean",
  }),
});

const Query = Type.Object({
  sensor_id: Type.Optional(
    Type.Array(SensorIdParam, { maxItems: 100, description: "Repeat for several sensors; omit for all" }),
  ),
  field: Type.Optional(
    Type.String({ pattern: FieldParam.pattern, description: "Only this field; omit for all" }),
  ),
  detector: Type.Optional(
    Type.Array(StringEnum(DETECTORS), {
      maxItems: DETECTORS.length,
      description: "Repeat for several detectors; omit for all",
    }),
  ),
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
  anomalies: Type.Array(Anomaly, {
    description: "Sorted by time (as `order` says), then sensor_id, field, detector",
  }),
  next_cursor: Type.Union([Type.String(), Type.Null()], {
    description: "Pass as cursor to get the next page; null on the last page",
  }),
});

export function anomaliesRoutes(ctx: RouteContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get(
      "/v1/anomalies",
      {
        preValidation: ctx.auth("read"),
        schema: {
          tags: ["anomalies"],
          summary: "Stored anomaly flags, oldest or newest first, cursor-paginated",
          security: [{ bearer: [] }],
          querystring: Query,
          response: { 200: Response, ...problemResponses(400, 401, 422, 429, 503) },
        },
      },
      async (request) => {
        const q = request.query;
        const range = parseRange(q, ctx.settings.maxRangeMs);
        const page = await keysetPage(ctx.flux, "anomalies", {
          bucket: ctx.settings.influx.bucket,
          measurement: MEASUREMENTS.anomalies,
          keys: ANOMALY_KEYS,
          seriesTag: "sensor_id",
          probeField: ANOMALY_PROBE_FIELD,
          where: and(
            anyOf("sensor_id", q.sensor_id ?? []),
            q.field === undefined ? "" : eq("field", lit.str(q.field)),
            anyOf("detector", q.detector ?? []),
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
          anomalies: page.points.map(({ t, k: [sensor_id = "", field = "", detector], fields }) => ({
            time: iso(t),
            sensor_id,
            field,
            detector: detector as (typeof DETECTORS)[number],
            value: Number(fields.value),
            score: Number(fields.score),
            threshold: Number(fields.threshold),
            expected: Number(fields.expected),
          })),
          next_cursor: page.nextCursor,
        };
      },
    );
  };
}
