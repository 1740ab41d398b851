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
import { type Static, Type } from "@sinclair/typebox";
import { meanOf, stddevOf } from "../../common/aggregate.js";
import { and, anyOf, eq, lit, rawPoints } from "../../common/flux-shapes.js";
import { ROLLUP_TIERS } from "../../common/rollups.js";
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
import { gcd, ROLLUP_FUNCTIONS, usableTiers } from "../planner.js";
import { problemResponses, tooLarge, unprocessable } from "../problem.js";
import { addPartial, type Need, type Partial } from "../read-path.js";
import type { RouteContext } from "../server.js";

/** Every function; the quantiles are computed exactly from raw readings, the rest from sums. */
const QUANTILES = { median: 0.5, p90: 0.9, p95: 0.95, p99: 0.99 } as const;
const FUNCTION_NAMES = [
  "mean",
  "min",
  "max",
  "count",
  "sum",
  "stddev",
  "median",
  "p90",
  "p95",
  "p99",
] as const;
type AggregateFunction = (typeof FUNCTION_NAMES)[number];
type Quantile = keyof typeof QUANTILES;
const DEFAULT_FUNCTIONS: AggregateFunction[] = ["mean", "min", "max", "count"];
/** /latest reads the windows between the sensors' latest ones in one request when at most this many. */
const LATEST_SPAN_WINDOWS = 20;
/** Most sliding windows one reading may fall into (window / every). */
const MAX_OVERLAP = 100;

const TIER_NAMES = ["auto", "raw", ...ROLLUP_TIERS.map((t) => t.name)] as const;
type TierChoice = (typeof TIER_NAMES)[number];

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
  window: Type.Optional(WindowParam),
  every: Type.Optional(
    Type.String({
      pattern: DURATION_PATTERN,
      description:
        "How often a window starts (the hop): at most `window`, at least window/100; default = window (tumbling windows). Smaller than window gives sliding windows, e.g. window=5m&every=1m.",
    }),
  ),
  start: Type.Optional({
    ...TimeParam,
    description: `${TimeParam.description}; default: an hour before stop`,
  }),
  stop: Type.Optional({ ...TimeParam, description: "End of the range (exclusive); default now" }),
  tier: Type.Optional(TierParam()),
});

function TierParam() {
  return {
    ...StringEnum(TIER_NAMES, {
      description:
        "Which data answers: auto (default) picks the coarsest rollup tier whose window divides the request's and that holds the range, and raw readings for the rest (the X-Data-Tier header says which); raw, 1m or 1h force one (with raw readings for what the tier does not hold yet).",
    }),
    default: "auto",
  };
}

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
  window: Type.Optional(WindowParam),
  at: Type.Optional({
    ...TimeParam,
    description: `${TimeParam.description}: windows must have ended by then; default now`,
  }),
  lookback: Type.Optional(
    Type.String({
      pattern: DURATION_PATTERN,
      default: "1h",
      description:
        "How far before `at` to look for a sensor's latest window; sensors silent that long are left out",
    }),
  ),
  tier: Type.Optional(TierParam()),
});

const LatestResponse = Type.Object({
  field: Type.String(),
  window: Type.String(),
  fn: Type.Array(Type.String()),
  at: Type.String({ format: "date-time" }),
  windows: Type.Array(WindowAggregate, { description: "One per sensor, its latest complete window" }),
});

/** Functions in the documented order, each once. */
function chosen(fns: AggregateFunction[] | undefined): AggregateFunction[] {
  const set = new Set(fns ?? DEFAULT_FUNCTIONS);
  return FUNCTION_NAMES.filter((name) => set.has(name));
}

/** The parts of an aggregate the functions need from storage. */
function needOf(fns: AggregateFunction[]): Need {
  const has = (...names: AggregateFunction[]) => names.some((n) => fns.includes(n));
  return {
    count: true,
    sum: has("mean", "sum", "stddev"),
    sumsq: has("stddev"),
    min: has("min"),
    max: has("max"),
  };
}

const quantilesOf = (fns: AggregateFunction[]) => fns.filter((f): f is Quantile => f in QUANTILES);

interface WindowPlan {
  field: string;
  sensors: string[] | undefined;
  fns: AggregateFunction[];
  periodMs: number;
  everyMs: number;
  /** First and last window start (inclusive), multiples of every. */
  firstStart: number;
  lastStart: number;
  tier: TierChoice;
}

export function aggregatesRoutes(ctx: RouteContext): FastifyPluginAsyncTypebox {
  const bucket = ctx.settings.influx.bucket;
  const maxPoints = ctx.settings.maxPoints;
  const read = ctx.read;

  /** Refuses, before any query, what would exceed the limits: windows answered and sub-windows read. */
  function checkSize(plan: WindowPlan, subMs: number, windowsPerSensor: number): void {
    const series =
      plan.sensors?.length ?? ctx.catalogue.sensorsIn(plan.firstStart, plan.lastStart + plan.periodMs);
    const windows = series * windowsPerSensor;
    if (windows > maxPoints) {
      throw tooLarge(
        `${series} sensors × ${windowsPerSensor} windows = ${windows} windows, more than the limit of ${maxPoints}: name fewer sensors (sensor_id), use a larger window or every, or a shorter range`,
      );
    }
    const sub = series * ((plan.lastStart + plan.periodMs - plan.firstStart) / subMs);
    if (sub > maxPoints * 4) {
      throw tooLarge(
        `sliding windows of ${plan.periodMs} ms every ${plan.everyMs} ms are built from ${sub} sub-windows, more than ${maxPoints * 4}: use an every that divides the window into fewer parts, name fewer sensors, or a shorter range`,
      );
    }
  }

  /** The windows of a plan: sums from the tiers the planner picks, quantiles exactly from raw readings. */
  async function windowsFor(plan: WindowPlan): Promise<{ windows: WindowAggregate[]; sources: string[] }> {
    const subMs = gcd(plan.periodMs, plan.everyMs);
    const now = Date.now();
    const choice = usableTiers(await read.tierStates(now), subMs, plan.fns, plan.tier);
    if (choice.refusal !== undefined) throw unprocessable(choice.refusal);
    const start = plan.firstStart;
    const stop = plan.lastStart + plan.periodMs;
    const quantiles = quantilesOf(plan.fns);
    const sums = plan.fns.filter((f) => ROLLUP_FUNCTIONS.has(f));
    const rawSumsq = sums.includes("stddev") && choice.tiers.length === 0;
    // Squares of raw readings are summed in Flux, reading every point: counted first.
    if (rawSumsq) refuseRawCost(plan, await countReadings(plan, start, stop));
    const sub = await read.subWindows({
      field: plan.field,
      sensors: plan.sensors,
      stepMs: subMs,
      start,
      stop,
      need: needOf(plan.fns),
      tiers: choice.tiers,
      series: plan.sensors?.length ?? ctx.catalogue.sensorsIn(start, stop),
      rate: ctx.catalogue.rate(start, stop, plan.sensors, plan.field),
      chooseEdges: plan.tier === "auto",
    });
    let exact = new Map<string, Record<string, number>>();
    if (quantiles.length > 0) {
      // The sub-windows tile the range, so their counts are the readings the quantiles would read:
      // checked before InfluxDB is asked for them.
      if (!rawSumsq) refuseRawCost(plan, countOf(sub.windows));
      exact = await quantileWindows(plan, quantiles);
    }
    const sources = [...sub.sources];
    if (quantiles.length > 0 && !sources.includes("raw")) sources.push("raw");
    return { windows: combine(plan, subMs, sub.windows, exact), sources };
  }

  /** The readings of the plan's field in [start, stop), counted from the tiers and raw readings. */
  async function countReadings(plan: WindowPlan, start: number, stop: number): Promise<number> {
    const states = await read.tierStates();
    const counted = await read.subWindows({
      field: plan.field,
      sensors: plan.sensors,
      stepMs: stop - start,
      start,
      stop,
      need: { count: true, sum: false, sumsq: false, min: false, max: false },
      tiers: states.filter((t) => (stop - start) % t.ms === 0).sort((a, b) => b.ms - a.ms),
      series: plan.sensors?.length ?? ctx.catalogue.sensorsIn(start, stop),
      rate: ctx.catalogue.rate(start, stop, plan.sensors, plan.field),
      chooseEdges: true,
    });
    return countOf(counted.windows);
  }

  function countOf(windows: Map<string, Map<number, Partial>>): number {
    let points = 0;
    for (const bySensor of windows.values()) for (const w of bySensor.values()) points += w.count;
    return points;
  }

  /** Quantiles and raw stddev read every raw point of the range: refused up front when there are too many. */
  function refuseRawCost(plan: WindowPlan, points: number): void {
    const depth = plan.periodMs / plan.everyMs;
    if (points * depth > ctx.settings.maxRawPoints) {
      throw tooLarge(
        `median, percentiles and stddev on raw readings would read ${points} readings${depth > 1 ? ` ${depth} times over` : ""}, more than API_MAX_RAW_POINTS (${ctx.settings.maxRawPoints}): name fewer sensors, use a shorter range, or ask for mean/min/max/count/sum/stddev from rollups (window and every multiples of 1m)`,
      );
    }
  }

  /** Exact quantiles per window, computed by InfluxDB on the raw readings (the cost was checked). */
  async function quantileWindows(
    plan: WindowPlan,
    quantiles: Quantile[],
  ): Promise<Map<string, Record<string, number>>> {
    const sliding = plan.everyMs !== plan.periodMs;
    const s = {
      bucket: lit.str(bucket),
      start: lit.time(plan.firstStart),
      stop: lit.time(plan.lastStart + plan.periodMs),
      where: and(
        eq("_measurement", lit.str(MEASUREMENTS.readings)),
        eq("_field", lit.str(plan.field)),
        anyOf("sensor_id", plan.sensors ?? []),
      ),
    };
    const every = lit.duration(plan.everyMs);
    const period = lit.duration(plan.periodMs);
    const out = new Map<string, Record<string, number>>();
    await Promise.all(
      quantiles.map(async (name) => {
        const q = QUANTILES[name];
        const windowed = sliding
          ? `window(every: ${every}, period: ${period}, createEmpty: false)
  |> filter(fn: (r) => int(v: r._stop) - int(v: r._start) == ${plan.periodMs * 1_000_000})
  |> quantile(q: ${q}, method: "exact_mean")
  |> map(fn: (r) => ({r with _time: r._start}))`
          : `aggregateWindow(every: ${every}, fn: (column, tables=<-) => tables |> quantile(column: column, q: ${q}, method: "exact_mean"), createEmpty: false, timeSrc: "_start")`;
        const query = `${rawPoints(s)}
  |> group(columns: ["sensor_id"])
  |> ${windowed}
  |> keep(columns: ["_time", "_value", "sensor_id"])`;
        for (const [sensor = "", time = "", value = ""] of await ctx.flux.columns(
          `aggregates_${name}`,
          query,
          ["sensor_id", "_time", "_value"],
        )) {
          const key = `${sensor}\u001f${Date.parse(time)}`;
          const entry = out.get(key) ?? {};
          entry[name] = Number(value);
          out.set(key, entry);
        }
      }),
    );
    return out;
  }

  /** Windows from sub-windows (a tumbling window is one sub-window; a sliding one several). */
  function combine(
    plan: WindowPlan,
    subMs: number,
    sub: Map<string, Map<number, Partial>>,
    exact: Map<string, Record<string, number>>,
  ): WindowAggregate[] {
    const out: WindowAggregate[] = [];
    const parts = plan.periodMs / subMs;
    // Every sensor has the same few window times: each is formatted once.
    const times = new Map<number, string>();
    const isoOf = (t: number) => {
      let text = times.get(t);
      if (text === undefined) {
        text = iso(t);
        times.set(t, text);
      }
      return text;
    };
    for (const sensor of [...sub.keys()].sort()) {
      const bySub = sub.get(sensor) as Map<number, Partial>;
      const starts = new Set<number>();
      for (const t of bySub.keys()) {
        const last = Math.floor(t / plan.everyMs) * plan.everyMs;
        for (let w = last; w > t - plan.periodMs; w -= plan.everyMs) {
          if (w >= plan.firstStart && w <= plan.lastStart) starts.add(w);
        }
      }
      for (const w of [...starts].sort((a, b) => a - b)) {
        const agg = {
          count: 0,
          sum: 0,
          sumsq: 0,
          min: Number.POSITIVE_INFINITY,
          max: Number.NEGATIVE_INFINITY,
        };
        for (let i = 0; i < parts; i++) {
          const p = bySub.get(w + i * subMs);
          if (p !== undefined) addPartial(agg, p);
        }
        if (agg.count === 0) continue;
        const row: WindowAggregate = {
          sensor_id: sensor,
          window_start: isoOf(w),
          window_end: isoOf(w + plan.periodMs),
        };
        for (const fn of plan.fns) {
          if (fn === "mean") row.mean = meanOf(agg);
          else if (fn === "min") row.min = agg.min;
          else if (fn === "max") row.max = agg.max;
          else if (fn === "count") row.count = Math.round(agg.count);
          else if (fn === "sum") row.sum = agg.sum;
          else if (fn === "stddev") row.stddev = stddevOf(agg);
          else {
            const value = exact.get(`${sensor}\u001f${w}`)?.[fn];
            if (value !== undefined) row[fn] = value;
          }
        }
        out.push(row);
      }
    }
    return out;
  }

  return async (app) => {
    app.get(
      "/v1/aggregates",
      {
        preValidation: ctx.auth("read"),
        schema: {
          tags: ["aggregates"],
          summary: "Tumbling or sliding window aggregates per sensor",
          description:
            "Windows are aligned to the epoch: one starts at every multiple of `every` and lasts `window`. Every window overlapping [start, stop) is reported with all its readings (an edge inside a window widens to the window); windows without readings are omitted. Sorted by sensor_id, then window_start. Answered from rollups where they fit (see `tier`); the X-Data-Tier header names the data used.",
          security: [{ bearer: [] }],
          querystring: Query,
          response: { 200: Response, ...problemResponses(400, 401, 422, 429, 503) },
        },
      },
      async (request, reply) => {
        const q = { ...request.query, window: request.query.window ?? "1m" };
        const field = q.field ?? "temperature";
        const fns = chosen(q.fn);
        const periodMs = durationParam(q.window, "window", ctx.settings.maxRangeMs);
        const everyMs =
          q.every === undefined ? periodMs : durationParam(q.every, "every", ctx.settings.maxRangeMs);
        if (everyMs > periodMs) {
          throw unprocessable(
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
        const plan: WindowPlan = {
          field,
          sensors: q.sensor_id && q.sensor_id.length > 0 ? [...new Set(q.sensor_id)] : undefined,
          fns,
          periodMs,
          everyMs,
          firstStart,
          lastStart,
          tier: q.tier ?? "auto",
        };
        checkSize(plan, gcd(periodMs, everyMs), perSensor);
        const { windows, sources } = await windowsFor(plan);
        if (windows.length > maxPoints) {
          throw tooLarge(
            `the answer has more than ${maxPoints} windows: name fewer sensors, use a larger window or a shorter range`,
          );
        }
        reply.header("x-data-tier", sources.join(", "));
        return {
          field,
          window: q.window,
          every: q.every ?? q.window,
          fn: fns,
          start: iso(range.start),
          stop: iso(range.stop),
          windows,
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
      async (request, reply) => {
        const q = {
          ...request.query,
          window: request.query.window ?? "1m",
          lookback: request.query.lookback ?? "1h",
        };
        const field = q.field ?? "temperature";
        const fns = chosen(q.fn);
        const periodMs = durationParam(q.window, "window", ctx.settings.maxRangeMs);
        const lookbackMs = durationParam(q.lookback, "lookback", ctx.settings.maxRangeMs);
        const at = q.at === undefined ? Date.now() : parseTime(q.at, "at", Date.now());
        if (lookbackMs < periodMs) {
          throw unprocessable(
            `lookback=${q.lookback} is shorter than window=${q.window}: use a lookback of at least ${q.window}`,
          );
        }
        const end = Math.floor(at / periodMs) * periodMs;
        const from = end - Math.ceil(lookbackMs / periodMs) * periodMs;
        const sensors = q.sensor_id && q.sensor_id.length > 0 ? [...new Set(q.sensor_id)] : undefined;
        const series = sensors?.length ?? ctx.catalogue.sensorsIn(from, end);
        if (series > maxPoints) {
          throw tooLarge(
            `${series} sensors reported in the lookback, more than ${maxPoints}: name sensors with sensor_id`,
          );
        }
        // Each sensor's latest reading before `end` says which window is its latest; sensors that
        // share it are answered by one query over that one window.
        const last = await ctx.catalogue.lastValues(from, end, sensors, field);
        const groups = new Map<number, string[]>();
        for (const s of last) {
          const time = s.fields[field]?.time;
          if (time === undefined) continue;
          const start = Math.floor(time / periodMs) * periodMs;
          const group = groups.get(start) ?? [];
          group.push(s.sensorId);
          groups.set(start, group);
        }
        // Latest windows a few apart (a live fleet): one request over them all, each sensor's own
        // kept. Otherwise one request per distinct latest window, for the sensors that share it.
        const starts = [...groups.keys()];
        if (starts.length === 0) {
          reply.header("x-data-tier", "raw");
          return { field, window: q.window, fn: fns, at: iso(at), windows: [] };
        }
        const span = starts.length === 0 ? 0 : (Math.max(...starts) - Math.min(...starts)) / periodMs + 1;
        const ask = (first: number, lastStart: number, ids: string[] | undefined) =>
          windowsFor({
            field,
            sensors: ids,
            fns,
            periodMs,
            everyMs: periodMs,
            firstStart: first,
            lastStart,
            tier: q.tier ?? "auto",
          });
        const latestOf = new Map(last.map((s) => [s.sensorId, s.fields[field]?.time]));
        const results =
          span <= LATEST_SPAN_WINDOWS
            ? [
                await ask(Math.min(...starts), Math.max(...starts), sensors).then((r) => ({
                  ...r,
                  windows: r.windows.filter((w) => {
                    const time = latestOf.get(w.sensor_id);
                    return (
                      time !== undefined &&
                      Date.parse(w.window_start) === Math.floor(time / periodMs) * periodMs
                    );
                  }),
                })),
              ]
            : await Promise.all([...groups.entries()].map(([start, ids]) => ask(start, start, ids)));
        const windows = results
          .flatMap((r) => r.windows)
          .sort((a, b) => (a.sensor_id < b.sensor_id ? -1 : a.sensor_id > b.sensor_id ? 1 : 0));
        reply.header("x-data-tier", [...new Set(results.flatMap((r) => r.sources))].join(", ") || "raw");
        return { field, window: q.window, fn: fns, at: iso(at), windows };
      },
    );
  };
}
