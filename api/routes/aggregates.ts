/**
 * GET /v1/aggregates — tumbling windows of any size over a range, per sensor: mean, min, max and
 * count of one field (the seed's 1-minute averages, on stored event time). Windows are aligned to
 * the epoch ([k·window, (k+1)·window)); windows without readings are omitted.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { flux, fluxDateTime, fluxDuration } from "@influxdata/influxdb-client";
import { Type } from "@sinclair/typebox";
import { MEASUREMENTS } from "../../common/topics.js";
import { DURATION_PATTERN, durationMs, FieldParam, parseRange, SensorIdParam, TimeParam } from "../params.js";
import { problemResponses, tooLarge } from "../problem.js";
import type { RouteContext } from "../server.js";

const WindowAggregate = Type.Object({
  sensor_id: Type.String(),
  window_start: Type.String({ format: "date-time" }),
  window_end: Type.String({ format: "date-time" }),
  mean: Type.Number(),
  min: Type.Number(),
  max: Type.Number(),
  count: Type.Integer(),
});

const Query = Type.Object({
  sensor_id: Type.Optional(
    Type.Array(SensorIdParam, { maxItems: 100, description: "Repeat for several sensors; omit for all" }),
  ),
  field: Type.Optional(FieldParam),
  window: Type.String({
    pattern: DURATION_PATTERN,
    default: "1m",
    description: "Window size, e.g. 10s, 1m, 1h",
  }),
  start: Type.Optional({ ...TimeParam, default: "-1h" }),
  stop: Type.Optional({ ...TimeParam, description: "End of the range (exclusive); default now" }),
});

const Response = Type.Object({
  field: Type.String(),
  window: Type.String(),
  start: Type.String({ format: "date-time" }),
  stop: Type.String({ format: "date-time" }),
  windows: Type.Array(WindowAggregate),
});

interface Row {
  sensor_id: string;
  _time: string;
  mean: number;
  min: number;
  max: number;
  count: number;
}

export function aggregatesRoutes(ctx: RouteContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get(
      "/v1/aggregates",
      {
        preHandler: ctx.auth("read"),
        schema: {
          tags: ["aggregates"],
          summary: "Tumbling-window aggregates per sensor",
          security: [{ bearer: [] }],
          querystring: Query,
          response: { 200: Response, ...problemResponses(400, 401, 422, 429, 503) },
        },
      },
      async (request) => {
        const q = request.query;
        const field = q.field ?? "temperature";
        const windowMs = durationMs(q.window);
        const range = parseRange(q, ctx.settings.maxRangeMs);
        const perSensor = Math.ceil((range.stop - range.start) / windowMs);
        if (perSensor > ctx.settings.maxPoints) {
          throw tooLarge(
            `${perSensor} windows of ${q.window} per sensor exceed the limit of ${ctx.settings.maxPoints}: use a larger window or a shorter range`,
          );
        }
        const sensorFilter =
          q.sensor_id && q.sensor_id.length > 0
            ? flux`|> filter(fn: (r) => contains(value: r.sensor_id, set: ${q.sensor_id}))`
            : flux``;
        const every = fluxDuration(`${windowMs}ms`);
        const query = flux`
data = from(bucket: ${ctx.settings.influx.bucket})
  |> range(start: ${fluxDateTime(new Date(range.start).toISOString())}, stop: ${fluxDateTime(new Date(range.stop).toISOString())})
  |> filter(fn: (r) => r._measurement == ${MEASUREMENTS.readings} and r._field == ${field})
  ${sensorFilter}
  |> group(columns: ["sensor_id"])
  |> keep(columns: ["_time", "_value", "sensor_id"])
agg = (fn, name) => data
  |> aggregateWindow(every: ${every}, fn: fn, createEmpty: false, timeSrc: "_start")
  |> toFloat()
  |> set(key: "_field", value: name)
union(tables: [agg(fn: mean, name: "mean"), agg(fn: min, name: "min"), agg(fn: max, name: "max"), agg(fn: count, name: "count")])
  |> pivot(rowKey: ["_time", "sensor_id"], columnKey: ["_field"], valueColumn: "_value")
  |> group()
  |> sort(columns: ["sensor_id", "_time"])
  |> limit(n: ${ctx.settings.maxPoints + 1})`;
        const rows = await ctx.flux.rows<Row>("aggregates", query);
        if (rows.length > ctx.settings.maxPoints) {
          throw tooLarge(
            `the answer has more than ${ctx.settings.maxPoints} windows: name fewer sensors, use a larger window or a shorter range`,
          );
        }
        return {
          field,
          window: q.window,
          start: new Date(range.start).toISOString(),
          stop: new Date(range.stop).toISOString(),
          windows: rows.map((r) => {
            const start = Date.parse(r._time);
            return {
              sensor_id: r.sensor_id,
              window_start: new Date(start).toISOString(),
              window_end: new Date(start + windowMs).toISOString(),
              mean: r.mean,
              min: r.min,
              max: r.max,
              count: Math.round(r.count),
            };
          }),
        };
      },
    );
  };
}
