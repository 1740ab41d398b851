/**
 * GET /v1/aggregates — tumbling or sliding windows of any size over a range, per sensor, with the
 * chosen functions of one field (the seed's 1-minute averages, on stored event time).
 * GET /v1/aggregates/latest — each sensor's latest complete window (the seed's headline output).
 *
 * Windows are aligned to the epoch: one starts at every multiple of `every` and lasts `window`
 * (tumbling when every = window, the default). Every window that overlaps [start, stop) is reported
 * and covers all its readings, so a range edge inside a window widens to that window's bounds.
 * Windows without readings are omitted.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import {
  flux,
  fluxDateTime,
  fluxDuration,
  fluxExpression,
  fluxInteger,
  type ParameterizedQuery,
} from "@influxdata/influxdb-client";
import { type Static, Type } from "@sinclair/typebox";
import { MEASUREMENTS } from "../../common/topics.js";
import {
  DURATION_PATTERN,
  durationParam,
  FieldParam,
  iso,
  parseRange,
  parseTime,
  SensorIdParam,
  StringEnum,
  TimeParam,
} from "../params.js";
import { badRequest, problemResponses, tooLarge } from "../problem.js";
import type { RouteContext } from "../server.js";

/** Each function's Flux, applied per window. Percentiles and the median are exact (linear interpolation). */
const FUNCTIONS = {
  mean: "mean",
  min: "min",
  max: "max",
  count: "count",
  sum: "sum",
  stddev: "stddev",
  median: "p50",
  p90: "p90",
  p95: "p95",
  p99: "p99",
} as const;
type AggregateFunction = keyof typeof FUNCTIONS;
const FUNCTION_NAMES = Object.keys(FUNCTIONS) as AggregateFunction[];
const DEFAULT_FUNCTIONS: AggregateFunction[] = ["mean", "min", "max", "count"];
/** Most sliding windows one reading may fall into (window / every). */
const MAX_OVERLAP = 100;

const PERCENTILES = flux`
p50 = (column, tables=<-) => tables |> quantile(column: column, q: 0.5, method: "exact_mean")
p90 = (column, tables=<-) => tables |> quantile(column: column, q: 0.9, method: "exact_mean")
p95 = (column, tables=<-) => tables |> quantile(column: column, q: 0.95, method: "exact_mean")
p99 = (column, tables=<-) => tables |> quantile(column: column, q: 0.99, method: "exact_mean")`;

const WindowAggregate = Type.Object({
  sensor_id: Type.String(),
  window_start: Type.String({ format: "date-time" }),
  window_end: Type.String({ format: "date-time" }),
  mean: Type.Optional(Type.Number()),
  min: Type.Optional(Type.Number()),
  max: Type.Optional(Type.Number()),
  count: Type.Optional(Type.Integer()),
  sum: Type.Optional(Type.Number()),
  stddev: Type.Optional(
    Type.Union([Type.Number(), Type.Null()], {
      description: "Sample standard deviation; null for a window with one reading",
    }),
  ),
  median: Type.Optional(Type.Number()),
  p90: Type.Optional(Type.Number()),
  p95: Type.Optional(Type.Number()),
  p99: Type.Optional(Type.Number()),
});
type WindowAggregate = Static<typeof WindowAggregate>;

const FnParam = Type.Array(StringEnum(FUNCTION_NAMES), {
  minItems: 1,
  maxItems: FUNCTION_NAMES.length,
  default: DEFAULT_FUNCTIONS,
  description:
    "Repeat for several (fn=mean&fn=p95); the response has one property per function. median and pNN are exact, interpolating linearly between the two nearest readings; stddev is the sample standard deviation.",
});
const SensorsParam = Type.Array(SensorIdParam, {
  maxItems: 100,
  description: "Repeat for several sensors; omit for all",
});
const WindowParam = Type.String({
  pattern: DURATION_PATTERN,
  default: "1m",
  description: "Window size (period), e.g. 10s, 1m, 1h",
});

const Query = Type.Object({
  sensor_id: Type.Optional(SensorsParam),
  field: Type.Optional(FieldParam),
  fn: Type.Optional(FnParam),
  window: WindowParam,
  every: Type.Optional(
    Type.String({
      pattern: DURATION_PATTERN,
      description:
        "How often a window starts (the hop): at most `window`, at least window/100; default = window (tumbling windows). Smaller than window gives sliding windows, e.g. window=5m&every=1m.",
    }),
  ),
  start: Type.Optional({ ...TimeParam, default: "-1h" }),
  stop: Type.Optional({ ...TimeParam, description: "End of the range (exclusive); default now" }),
});

const Response = Type.Object({
  field: Type.String(),
  window: Type.String(),
  every: Type.String(),
  fn: Type.Array(Type.String()),
  start: Type.String({ format: "date-time" }),
  stop: Type.String({ format: "date-time" }),
  windows: Type.Array(WindowAggregate),
});

const LatestQuery = Type.Object({
  sensor_id: Type.Optional(SensorsParam),
  field: Type.Optional(FieldParam),
  fn: Type.Optional(FnParam),
  window: WindowParam,
  at: Type.Optional({
    ...TimeParam,
    description: `${TimeParam.description}: windows must have ended by then; default now`,
  }),
  lookback: Type.String({
    pattern: DURATION_PATTERN,
    default: "1h",
    description:
      "How far before `at` to look for a sensor's latest window; sensors silent that long are left out",
  }),
});

const LatestResponse = Type.Object({
  field: Type.String(),
  window: Type.String(),
  fn: Type.Array(Type.String()),
  at: Type.String({ format: "date-time" }),
  windows: Type.Array(WindowAggregate, { description: "One per sensor, its latest complete window" }),
});

interface WindowQuery {
  bucket: string;
  field: string;
  sensors: string[] | undefined;
  fns: AggregateFunction[];
  everyMs: number;
  periodMs: number;
  /** The window starts to cover: first and last multiple of every (inclusive). */
  firstStart: number;
  lastStart: number;
  /** Flux stages after the pivot (sorting, limiting, picking). */
  finish: ParameterizedQuery;
}

/**
 * One query for all functions: InfluxDB computes every window. The range is exactly the union of the
 * reported windows, so no window is clipped; in sliding mode windows hanging over the range edges
 * (which InfluxDB would clip) are dropped by their length.
 */
function windowQuery(w: WindowQuery): ParameterizedQuery {
  const sliding = w.everyMs !== w.periodMs;
  const sensorFilter =
    w.sensors && w.sensors.length > 0
      ? flux`|> filter(fn: (r) => contains(value: r.sensor_id, set: ${w.sensors}))`
      : flux``;
  const every = fluxDuration(`${w.everyMs}ms`);
  const period = fluxDuration(`${w.periodMs}ms`);
  const windowed = sliding
    ? flux`data
  |> window(every: ${every}, period: ${period}, createEmpty: false)
  |> filter(fn: (r) => int(v: r._stop) - int(v: r._start) == ${fluxInteger(w.periodMs * 1_000_000)})
  |> fn(column: "_value")
  |> map(fn: (r) => ({r with _time: r._start}))
  |> group(columns: ["sensor_id"])`
    : // Tumbling windows never hang over the aligned range, so nothing needs dropping.
      flux`data
  |> aggregateWindow(every: ${every}, fn: fn, createEmpty: false, timeSrc: "_start")`;
  const parts = w.fns.map((fn) => fluxExpression(`agg(fn: ${FUNCTIONS[fn]}, name: "${fn}")`));
  const all =
    parts.length === 1
      ? (parts[0] as ParameterizedQuery)
      : flux`union(tables: [${fluxExpression(parts.map(String).join(", "))}])`;
  return flux`${PERCENTILES}
data = from(bucket: ${w.bucket})
  |> range(start: ${fluxDateTime(iso(w.firstStart))}, stop: ${fluxDateTime(iso(w.lastStart + w.periodMs))})
  |> filter(fn: (r) => r._measurement == ${MEASUREMENTS.readings} and r._field == ${w.field})
  ${sensorFilter}
  |> group(columns: ["sensor_id"])
  |> keep(columns: ["_start", "_stop", "_time", "_value", "sensor_id"])
agg = (fn, name) => ${windowed}
  |> toFloat()
  |> set(key: "_field", value: name)
${all}
  |> pivot(rowKey: ["_time", "sensor_id"], columnKey: ["_field"], valueColumn: "_value")
  ${w.finish}`;
}

type Row = { sensor_id: string; _time: string } & Partial<Record<AggregateFunction, number | null>>;

function toWindow(row: Row, fns: AggregateFunction[], periodMs: number): WindowAggregate {
  const start = Date.parse(row._time);
  const out: WindowAggregate = {
    sensor_id: row.sensor_id,
    window_start: iso(start),
    window_end: iso(start + periodMs),
  };
  for (const fn of fns) {
    const value = row[fn];
    const number = typeof value === "number" && !Number.isNaN(value) ? value : null;
    if (fn === "stddev") out.stddev = number;
    else if (number !== null) out[fn] = fn === "count" ? Math.round(number) : number;
  }
  return out;
}

/** Functions in the documented order, each once. */
function chosen(fns: AggregateFunction[] | undefined): AggregateFunction[] {
  const set = new Set(fns ?? DEFAULT_FUNCTIONS);
  return FUNCTION_NAMES.filter((name) => set.has(name));
}

export function aggregatesRoutes(ctx: RouteContext): FastifyPluginAsyncTypebox {
  const bucket = ctx.settings.influx.bucket;
  const maxPoints = ctx.settings.maxPoints;

  return async (app) => {
    app.get(
      "/v1/aggregates",
      {
        preValidation: ctx.auth("read"),
        schema: {
          tags: ["aggregates"],
          summary: "Tumbling or sliding window aggregates per sensor",
          description:
            "Windows are aligned to the epoch: one starts at every multiple of `every` and lasts `window`. Every window overlapping [start, stop) is reported with all its readings (an edge inside a window widens to the window); windows without readings are omitted. Sorted by sensor_id, then window_start.",
          security: [{ bearer: [] }],
          querystring: Query,
          response: { 200: Response, ...problemResponses(400, 401, 422, 429, 503) },
        },
      },
      async (request) => {
        const q = request.query;
        const field = q.field ?? "temperature";
        const fns = chosen(q.fn);
        const periodMs = durationParam(q.window, "window", ctx.settings.maxRangeMs);
        const everyMs =
          q.every === undefined ? periodMs : durationParam(q.every, "every", ctx.settings.maxRangeMs);
        if (everyMs > periodMs) {
          throw badRequest(
            `every=${q.every} is longer than window=${q.window}: windows would leave gaps; use an every of at most ${q.window}`,
          );
        }
        // Each reading lands in window/every sliding windows; bound that fan-out so one query stays cheap.
        if (periodMs / everyMs > MAX_OVERLAP) {
          throw tooLarge(
            `window=${q.window} is ${Math.ceil(periodMs / everyMs)} times every=${q.every}: sliding windows may overlap at most ${MAX_OVERLAP} deep; use an every of at least ${Math.ceil(periodMs / MAX_OVERLAP)}ms`,
          );
        }
        const range = parseRange(q, ctx.settings.maxRangeMs);
        // First window overlapping start, last window starting before stop.
        const firstStart = (Math.floor((range.start - periodMs) / everyMs) + 1) * everyMs;
        const lastStart = (Math.ceil(range.stop / everyMs) - 1) * everyMs;
        const perSensor = (lastStart - firstStart) / everyMs + 1;
        if (perSensor > maxPoints) {
          throw tooLarge(
            `${perSensor} windows per sensor exceed the limit of ${maxPoints}: use a larger window or every, or a shorter range`,
          );
        }
        const query = windowQuery({
          bucket,
          field,
          sensors: q.sensor_id,
          fns,
          everyMs,
          periodMs,
          firstStart,
          lastStart,
          finish: flux`|> group()
  |> sort(columns: ["sensor_id", "_time"])
  |> limit(n: ${fluxInteger(maxPoints + 1)})`,
        });
        const rows = await ctx.flux.rows<Row>("aggregates", query);
        if (rows.length > maxPoints) {
          throw tooLarge(
            `the answer has more than ${maxPoints} windows: name fewer sensors, use a larger window or a shorter range`,
          );
        }
        return {
          field,
          window: q.window,
          every: q.every ?? q.window,
          fn: fns,
          start: iso(range.start),
          stop: iso(range.stop),
          windows: rows.map((r) => toWindow(r, fns, periodMs)),
        };
      },
    );

    app.get(
      "/v1/aggregates/latest",
      {
        preValidation: ctx.auth("read"),
        schema: {
          tags: ["aggregates"],
          summary: "Each sensor's latest complete tumbling window",
          description:
            "For every sensor with readings in the lookback, the most recent epoch-aligned window that has ended by `at` and holds readings. With the defaults: each sensor's 1-minute aggregates of the last complete minute it reported in.",
          security: [{ bearer: [] }],
          querystring: LatestQuery,
          response: { 200: LatestResponse, ...problemResponses(400, 401, 422, 429, 503) },
        },
      },
      async (request) => {
        const q = request.query;
        const field = q.field ?? "temperature";
        const fns = chosen(q.fn);
        const periodMs = durationParam(q.window, "window", ctx.settings.maxRangeMs);
        const lookbackMs = durationParam(q.lookback, "lookback", ctx.settings.maxRangeMs);
        const at = q.at === undefined ? Date.now() : parseTime(q.at, "at", Date.now());
        if (lookbackMs < periodMs) {
          throw badRequest(
            `lookback=${q.lookback} is shorter than window=${q.window}: use a lookback of at least ${q.window}`,
          );
        }
        const perSensor = Math.ceil(lookbackMs / periodMs);
        if (perSensor > maxPoints) {
          throw tooLarge(
            `lookback=${q.lookback} spans ${perSensor} windows of ${q.window}, more than ${maxPoints}: use a shorter lookback or a larger window`,
          );
        }
        const end = Math.floor(at / periodMs) * periodMs;
        const query = windowQuery({
          bucket,
          field,
          sensors: q.sensor_id,
          fns,
          everyMs: periodMs,
          periodMs,
          firstStart: end - perSensor * periodMs,
          lastStart: end - periodMs,
          finish: flux`|> group(columns: ["sensor_id"])
  |> sort(columns: ["_time"])
  |> tail(n: 1)
  |> group()
  |> sort(columns: ["sensor_id"])
  |> limit(n: ${fluxInteger(maxPoints + 1)})`,
        });
        const rows = await ctx.flux.rows<Row>("aggregates_latest", query);
        if (rows.length > maxPoints) {
          throw tooLarge(`more than ${maxPoints} sensors: name sensors with sensor_id`);
        }
        return {
          field,
          window: q.window,
          fn: fns,
          at: iso(at),
          windows: rows.map((r) => toWindow(r, fns, periodMs)),
        };
      },
    );
  };
}
