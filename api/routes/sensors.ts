/**
 * GET /v1/sensors — every sensor that reported in a range, with its last-seen time, its tags and
 * the last value of each field.
 * GET /v1/sensors/:sensor_id/readings — one sensor's raw readings in a range, oldest first,
 * cursor-paginated.
 * GET /v1/sensors/:sensor_id/sessions — gap-based session windows of one sensor's field.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { and, eq, lit, rawPoints } from "../../common/flux-shapes.js";
import { MEASUREMENTS } from "../../common/topics.js";
import { decodeCursor, encodeCursor } from "../pagination.js";
import {
  CursorParam,
  DURATION_PATTERN,
  durationParam,
  epochMs,
  FieldParam,
  iso,
  LimitParam,
  parseRange,
  SensorIdParam,
  TimeParam,
  widestStart,
} from "../params.js";
import { problemResponses, tooLarge } from "../problem.js";
import type { RouteContext } from "../server.js";

/** Columns of a pivoted readings row that are neither tags nor fields. */
const SYSTEM_COLUMNS = new Set(["result", "table", "_start", "_stop", "_time", "_measurement", "sensor_id"]);

const FieldValue = Type.Object({
  value: Type.Number(),
  time: Type.String({ format: "date-time", description: "When this field was last reported" }),
});

const Sensor = Type.Object({
  sensor_id: Type.String(),
  last_seen: Type.String({ format: "date-time", description: "Time of the sensor's latest reading" }),
  tags: Type.Record(Type.String(), Type.String(), { description: "String tags of the latest reading" }),
  fields: Type.Record(Type.String(), FieldValue, { description: "Last value of each numeric field" }),
});

const SensorsQuery = Type.Object({
  sensor_id: Type.Optional(
    Type.Array(SensorIdParam, { maxItems: 100, description: "Repeat for several sensors; omit for all" }),
  ),
  start: Type.Optional({
    ...TimeParam,
    description: `${TimeParam.description}; default: as far back as one query may reach (API_MAX_RANGE_DAYS)`,
  }),
  stop: Type.Optional({ ...TimeParam, description: "End of the range (exclusive); default now" }),
});

const SensorsResponse = Type.Object({
  start: Type.String({ format: "date-time" }),
  stop: Type.String({ format: "date-time" }),
  sensors: Type.Array(Sensor),
});

const SensorPath = Type.Object({ sensor_id: SensorIdParam });

const Reading = Type.Object({
  time: Type.String({ format: "date-time" }),
  fields: Type.Record(Type.String(), Type.Number()),
  tags: Type.Record(Type.String(), Type.String()),
});

const ReadingsQuery = Type.Object({
  start: Type.Optional({
    ...TimeParam,
    description: `${TimeParam.description}; default: an hour before stop`,
  }),
  stop: Type.Optional({ ...TimeParam, description: "End of the range (exclusive); default now" }),
  limit: Type.Optional(LimitParam),
  cursor: Type.Optional(CursorParam),
});

const ReadingsResponse = Type.Object({
  sensor_id: Type.String(),
  start: Type.String({ format: "date-time" }),
  stop: Type.String({ format: "date-time" }),
  readings: Type.Array(Reading),
  next_cursor: Type.Union([Type.String(), Type.Null()], {
    description: "Pass as cursor to get the next page; null on the last page",
  }),
});

const Session = Type.Object({
  start: Type.String({ format: "date-time", description: "Time of the session's first reading" }),
  end: Type.String({ format: "date-time", description: "Time of the session's last reading" }),
  count: Type.Integer(),
  mean: Type.Number(),
});

const SessionsQuery = Type.Object({
  gap: Type.Optional(
    Type.String({
      pattern: DURATION_PATTERN,
      default: "5m",
      description: "A silence longer than this ends a session, e.g. 30s, 5m",
    }),
  ),
  field: Type.Optional(FieldParam),
  start: Type.Optional({
    ...TimeParam,
    description: `${TimeParam.description}; default: an hour before stop`,
  }),
  stop: Type.Optional({ ...TimeParam, description: "End of the range (exclusive); default now" }),
});

const SessionsResponse = Type.Object({
  sensor_id: Type.String(),
  field: Type.String(),
  gap: Type.String(),
  start: Type.String({ format: "date-time" }),
  stop: Type.String({ format: "date-time" }),
  sessions: Type.Array(Session),
});

type PivotedRow = Record<string, string | number | null | undefined> & { _time: string };

/** Columns of an unpivoted point that are not tags. */
const POINT_COLUMNS = new Set(["_field", "_value"]);

export function sensorsRoutes(ctx: RouteContext): FastifyPluginAsyncTypebox {
  const bucket = ctx.settings.influx.bucket;

  return async (app) => {
    app.get(
      "/v1/sensors",
      {
        preValidation: ctx.auth("read"),
        schema: {
          tags: ["sensors"],
          summary: "Sensors with last-seen time and the last value of each field",
          security: [{ bearer: [] }],
          querystring: SensorsQuery,
          response: { 200: SensorsResponse, ...problemResponses(400, 401, 422, 429, 503) },
        },
      },
      async (request) => {
        const q = request.query;
        const now = Date.now();
        const range = parseRange(
          { start: q.start ?? widestStart(ctx.settings.maxRangeMs, now), stop: q.stop },
          ctx.settings.maxRangeMs,
          now,
        );
        // The in-memory catalogue plus the raw tail since its last catch-up (see api/catalogue.ts).
        const found = await ctx.catalogue.lastValues(
          range.start,
          range.stop,
          q.sensor_id && q.sensor_id.length > 0 ? [...new Set(q.sensor_id)] : undefined,
          undefined,
        );
        if (found.length > ctx.settings.maxPoints) {
          throw tooLarge(
            `more than ${ctx.settings.maxPoints} sensors reported in the range: name sensors with sensor_id or narrow start/stop`,
          );
        }
        return {
          start: iso(range.start),
          stop: iso(range.stop),
          sensors: found.map((s) => ({
            sensor_id: s.sensorId,
            last_seen: iso(s.lastSeen),
            tags: s.tags,
            fields: Object.fromEntries(
              Object.keys(s.fields)
                .sort()
                .map((f) => {
                  const v = s.fields[f] as { value: number; time: number };
                  return [f, { value: v.value, time: iso(v.time) }];
                }),
            ),
          })),
        };
      },
    );

    app.get(
      "/v1/sensors/:sensor_id/readings",
      {
        preValidation: ctx.auth("read"),
        schema: {
          tags: ["sensors"],
          summary: "One sensor's raw readings in a range, oldest first, cursor-paginated",
          description:
            "Each reading has its fields and tags. Pages end on a timestamp boundary, so readings that share a time (different tag sets) are never split across pages.",
          security: [{ bearer: [] }],
          params: SensorPath,
          querystring: ReadingsQuery,
          response: { 200: ReadingsResponse, ...problemResponses(400, 401, 422, 429, 503) },
        },
      },
      async (request) => {
        const q = request.query;
        const sensorId = request.params.sensor_id;
        const limit = Math.min(q.limit ?? 100, ctx.settings.maxPoints);
        const range = parseRange(q, ctx.settings.maxRangeMs);
        const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor, 0);
        const from = after === undefined ? range.start : Math.max(range.start, after.t + 1);
        const readings: { time: string; fields: Record<string, number>; tags: Record<string, string> }[] = [];
        let nextCursor: string | null = null;
        if (from < range.stop) {
          // Per series, storage returns points in time order: each field's series limited to
          // limit+1 points keeps every one of the first limit+1 readings whole. A pushed-down read;
          // fields are paired into readings here (same time and tags), not pivoted in Flux.
          const rows = await ctx.flux.rows<PivotedRow>(
            "sensor_readings",
            `${rawPoints({
              bucket: lit.str(bucket),
              start: lit.time(from),
              stop: lit.time(range.stop),
              where: and(
                eq("_measurement", lit.str(MEASUREMENTS.readings)),
                eq("sensor_id", lit.str(sensorId)),
              ),
            })}\n  |> limit(n: ${limit + 1})`,
          );
          const byKey = new Map<
            string,
            { t: number; fields: Record<string, number>; tags: Record<string, string> }
          >();
          for (const row of rows) {
            const t = epochMs(row._time);
            const tags = tagsOf(row, POINT_COLUMNS);
            const key = `${t}\u0000${JSON.stringify(tags)}`;
            let reading = byKey.get(key);
            if (reading === undefined) {
              reading = { t, fields: {}, tags };
              byKey.set(key, reading);
            }
            if (typeof row._value === "number") reading.fields[String(row._field)] = row._value;
          }
          const all = [...byKey.values()].sort((a, b) => a.t - b.t);
          let page = all;
          if (all.length > limit) {
            const cut = (all[limit] as { t: number }).t;
            page = all.slice(0, limit).filter((r) => r.t < cut);
            if (page.length === 0) {
              throw tooLarge(
                `more than ${limit} readings of ${sensorId} share the time ${iso(cut)}: raise limit (at most ${Math.min(1000, ctx.settings.maxPoints)})`,
              );
            }
            nextCursor = encodeCursor({ t: (page[page.length - 1] as { t: number }).t, k: [] });
          }
          for (const r of page) readings.push({ time: iso(r.t), fields: r.fields, tags: r.tags });
        }
        return {
          sensor_id: sensorId,
          start: iso(range.start),
          stop: iso(range.stop),
          readings,
          next_cursor: nextCursor,
        };
      },
    );

    app.get(
      "/v1/sensors/:sensor_id/sessions",
      {
        preValidation: ctx.auth("read"),
        schema: {
          tags: ["sensors"],
          summary: "Session windows of one sensor: runs of readings separated by more than `gap`",
          description:
            "A session is a maximal run of readings in [start, stop) in which consecutive readings are at most `gap` apart; a longer silence starts a new session. start and end are the times of the session's first and last reading.",
          security: [{ bearer: [] }],
          params: SensorPath,
          querystring: SessionsQuery,
          response: { 200: SessionsResponse, ...problemResponses(400, 401, 422, 429, 503) },
        },
      },
      async (request) => {
        const q = request.query;
        const sensorId = request.params.sensor_id;
        const field = q.field ?? "temperature";
        const gap = q.gap ?? "5m";
        const gapMs = durationParam(gap, "gap", ctx.settings.maxRangeMs);
        const range = parseRange(q, ctx.settings.maxRangeMs);
        // Storage reads the points (a pushed-down filter); sessions are cut here as they stream in.
        // Rows come series by series (a sensor whose tags changed has several), each in time order.
        const times: number[] = [];
        const values: number[] = [];
        let ordered = true;
        await ctx.flux.eachRow(
          "sensor_sessions",
          [
            `${rawPoints({
              bucket: lit.str(bucket),
              start: lit.time(range.start),
              stop: lit.time(range.stop),
              where: and(
                eq("_measurement", lit.str(MEASUREMENTS.readings)),
                eq("sensor_id", lit.str(sensorId)),
                eq("_field", lit.str(field)),
              ),
            })}\n  |> keep(columns: ["_time", "_value"])`,
          ],
          ["_time", "_value"],
          (_, row) => {
            const t = epochMs(row[0] ?? "");
            if (times.length > 0 && t < (times[times.length - 1] as number)) ordered = false;
            times.push(t);
            values.push(Number(row[1]));
          },
          false,
        );
        const order = times.map((_, i) => i);
        if (!ordered) order.sort((a, b) => (times[a] as number) - (times[b] as number));
        const sessions: { start: string; end: string; count: number; mean: number }[] = [];
        let first = 0;
        let last = 0;
        let count = 0;
        let sum = 0;
        const close = () => {
          if (sessions.length === ctx.settings.maxPoints) {
            throw tooLarge(
              `more than ${ctx.settings.maxPoints} sessions: use a larger gap or a shorter range`,
            );
          }
          sessions.push({ start: iso(first), end: iso(last), count, mean: sum / count });
        };
        for (const i of order) {
          const t = times[i] as number;
          if (count > 0 && t - last > gapMs) {
            close();
            count = 0;
            sum = 0;
          }
          if (count === 0) first = t;
          last = t;
          count++;
          sum += values[i] as number;
        }
        if (count > 0) close();
        return {
          sensor_id: sensorId,
          field,
          gap,
          start: iso(range.start),
          stop: iso(range.stop),
          sessions,
        };
      },
    );
  };
}

/** The string tags of a row (the columns that are not system columns, fields or `extra`). */
function tagsOf(row: PivotedRow, extra: ReadonlySet<string> = new Set()): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const [key, value] of Object.entries(row)) {
    if (typeof value === "string" && value !== "" && !SYSTEM_COLUMNS.has(key) && !extra.has(key)) {
      tags[key] = value;
    }
  }
  return tags;
}
