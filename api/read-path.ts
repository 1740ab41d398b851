/**
 * The API's read path: window aggregates and last values answered from the rollup tiers the planner
 * picks plus raw readings for the rest, with the shapes of common/flux-shapes.ts only. Also the
 * sensor catalogue (who reported, and when last), kept in memory so that limits are checked before
 * any query runs.
 */
import type { Aggregate } from "../common/aggregate.js";
import type { InfluxConfig } from "../common/config.js";
import {
  and,
  anyOf,
  eq,
  lit,
  rawPoints,
  type Selection,
  seriesAggregate,
  windowAggregate,
} from "../common/flux-shapes.js";
import { type BucketLayout, bucketLayouts } from "../common/influx.js";
import {
  PROGRESS_MEASUREMENT,
  ROLLUP_MEASUREMENT,
  ROLLUP_TIERS,
  type TierName,
  tierByName,
} from "../common/rollups.js";
import { MEASUREMENTS } from "../common/topics.js";
import type { FluxRunner } from "./influx-query.js";
import { epochMs } from "./params.js";
import { planSegments, type Segment, type TierState } from "./planner.js";

/** The parts of an aggregate a window query may need. */
export type Need = { count: boolean; sum: boolean; sumsq: boolean; min: boolean; max: boolean };
export type Partial = Pick<Aggregate, "count" | "sum" | "sumsq" | "min" | "max">;

/** Adds the readings `p` sums up to `into` (sub-windows of one window, or parts of one plan). */
export function addPartial(into: Partial, p: Partial): void {
  into.count += p.count;
  into.sum += p.sum;
  into.sumsq += p.sumsq;
  if (p.min < into.min) into.min = p.min;
  if (p.max > into.max) into.max = p.max;
}

export interface WindowRequest {
  field: string;
  /** Named sensors, or undefined for all. */
  sensors: string[] | undefined;
  /** Sub-window size: the request's windows are unions of these. */
  stepMs: number;
  start: number;
  stop: number;
  need: Need;
  tiers: TierState[];
  /** How many series the request selects (named sensors, or the catalogue's estimate). */
  series: number;
  /** Readings per ms the selected series add up to (the catalogue's estimate): what a raw read returns. */
  rate: number;
  /** Whether the range's edges may go to raw readings where finer tiers cost more (tier=auto). */
  chooseEdges: boolean;
}

export interface SensorLast {
  sensorId: string;
  lastSeen: number;
  tags: Record<string, string>;
  fields: Record<string, { value: number; time: number }>;
  /** Readings per ms of each field, from the rollups (the last closed window's count over its size). */
  rates?: Record<string, number>;
}

/** One storage-side query of a plan and what its rows are: one part of the aggregate, raw points to add up, or the field named by `_field`. */
type Part = { name: string; query: string; as?: keyof Partial | "points" };

/**
 * What a read costs InfluxDB 2.7, in ms, measured on the read bench's fleets: every storage read
 * opens a cursor per series and shard before it reads a point; every row answered is encoded by
 * InfluxDB and parsed here; a row from a pushed-down window aggregate costs more than a raw point;
 * a point Flux itself computes on (squares for the sum of squares) costs less than one sent here.
 * Only ratios matter: they choose between plans that give the same answer.
 */
const COST = { seriesMs: 0.1, pointMs: 0.003, windowMs: 0.005, fluxPointMs: 0.001, queryMs: 1 };
const FUTURE_SKEW_MS = 5 * 60_000;
const DAY_MS = 86_400_000;

const PROGRESS_TTL_MS = 1000;

const SYSTEM = new Set(["result", "table", "_start", "_stop", "_time", "_value", "_field", "_measurement"]);

export class ReadPath {
  private progress: { at: number; closedThrough: Map<string, number> } | undefined;
  private progressRead: Promise<void> | undefined;
  private layouts = new Map<string, BucketLayout>();

  constructor(
    private readonly flux: FluxRunner,
    private readonly influx: InfluxConfig,
  ) {}

  /** Reads the buckets' layouts (how far back each tier holds data, how its shards are cut). */
  async start(): Promise<void> {
    try {
      this.layouts = await bucketLayouts(this.influx);
    } catch {
      // Without bucket information every tier is assumed to keep everything, in week-long shards.
    }
  }

  /** Each sensor's first reading time: a storage-side first() per segment of the plan, the earliest wins. */
  async firstSeen(now = Date.now()): Promise<Map<string, number>> {
    const tiers = (await this.tierStates(now)).sort((a, b) => b.ms - a.ms);
    const segments = planSegments(0, Date.UTC(2200, 0, 1), tiers);
    // Per segment, [sensor, first reading time in epoch ms]: raw readings' first _time, or the
    // earliest `first_time` field (epoch ms) of a tier's rollups.
    const found = await Promise.all(
      segments.map(async (segment): Promise<[string, number][]> => {
        const range = { start: lit.time(segment.start), stop: lit.time(segment.stop) };
        if (segment.source === "raw") {
          const rows = await this.flux.columns(
            "first_raw",
            seriesAggregate(
              {
                bucket: lit.str(this.influx.bucket),
                ...range,
                where: eq("_measurement", lit.str(MEASUREMENTS.readings)),
              },
              "first",
              ["sensor_id", "_time"],
            ),
            ["sensor_id", "_time"],
          );
          return rows.map(([sensor = "", time = ""]) => [sensor, Date.parse(time)]);
        }
        const rows = await this.flux.columns(
          "first_rollup",
          seriesAggregate(
            {
              bucket: lit.str(this.influx.rollupBuckets[segment.source]),
              ...range,
              where: and(
                eq("_measurement", lit.str(ROLLUP_MEASUREMENT)),
                eq("_field", lit.str("first_time")),
              ),
            },
            "first",
            ["sensor_id", "_value"],
          ),
          ["sensor_id", "_value"],
        );
        return rows.map(([sensor = "", ms = ""]) => [sensor, Number(ms)]);
      }),
    );
    const first = new Map<string, number>();
    for (const rows of found) {
      for (const [sensor, t] of rows) {
        if (t < (first.get(sensor) ?? Number.POSITIVE_INFINITY)) first.set(sensor, t);
      }
    }
    return first;
  }

  /** Every rollup tier with how far it is written and how far back it is kept. */
  async tierStates(now = Date.now()): Promise<TierState[]> {
    const age = this.progress === undefined ? Number.POSITIVE_INFINITY : now - this.progress.at;
    if (age > PROGRESS_TTL_MS) await this.refreshProgress(now);
    else if (age > PROGRESS_TTL_MS / 2) void this.refreshProgress(now).catch(() => {});
    const closed = (this.progress as { closedThrough: Map<string, number> }).closedThrough;
    return ROLLUP_TIERS.map((t) => {
      const keep = this.layouts.get(this.influx.rollupBuckets[t.name])?.retentionMs ?? 0;
      return {
        name: t.name,
        ms: t.ms,
        closedThrough: closed.get(t.name) ?? Number.NEGATIVE_INFINITY,
        retainedFrom: keep > 0 ? now - keep : Number.NEGATIVE_INFINITY,
      };
    });
  }

  /**
   * Reads the tiers' progress again; one read at a time. While requests keep coming it is read
   * ahead, in the background, so they seldom wait for it.
   */
  private refreshProgress(now: number): Promise<void> {
    this.progressRead ??= this.closedThrough()
      .then((closedThrough) => {
        this.progress = { at: now, closedThrough };
      })
      .finally(() => {
        this.progressRead = undefined;
      });
    return this.progressRead;
  }

  /** Per tier, the time through which every partition's windows are closed (the slowest partition's). */
  private async closedThrough(): Promise<Map<string, number>> {
    const rows = await this.flux
      .columns(
        "rollup_progress",
        seriesAggregate(
          {
            bucket: lit.str(this.influx.rollupBuckets["1m"]),
            start: lit.time(0),
            stop: lit.time(Date.UTC(2200, 0, 1)),
            where: and(
              eq("_measurement", lit.str(PROGRESS_MEASUREMENT)),
              eq("_field", lit.str("closed_through")),
            ),
          },
          "last",
          ["_value", "partition", "tier"],
        ),
        ["_value", "tier"],
      )
      .catch(() => []);
    const out = new Map<string, number>();
    for (const [value, tier = ""] of rows)
      out.set(tier, Math.min(out.get(tier) ?? Number.POSITIVE_INFINITY, Number(value)));
    return out;
  }

  /**
   * Sub-window aggregates per sensor: for each segment of the plan, one storage-side query per
   * combining function (or the raw points, where that is cheaper), all in one script, merged by
   * sensor and sub-window start.
   */
  async subWindows(
    req: WindowRequest,
  ): Promise<{ windows: Map<string, Map<number, Partial>>; sources: Set<string> }> {
    const now = Date.now();
    const segments = planSegments(
      req.start,
      req.stop,
      req.tiers,
      req.chooseEdges ? (plan) => plan.reduce((sum, s) => sum + this.cost(s, req, now), 0) : undefined,
    );
    const windows = new Map<string, Map<number, Partial>>();
    const sources = new Set(segments.map((s) => s.source));
    const parts = segments.flatMap((segment) => this.partsFor(segment, req, now));
    // Each part is added up on its own, then the parts in plan order: rows of the parts arrive
    // interleaved, and sums must not depend on how.
    // Sub-windows are keyed by their index from `base` while rows stream in (a small integer, not
    // an epoch-ms double: no number boxed per row), by their start once added up.
    const base = Math.floor(req.start / req.stepMs) * req.stepMs;
    const own = parts.map(() => new Map<string, Map<number, Partial>>());
    const merges = parts.map(
      (part, i) => new PartMerger(part, base, req.stepMs, own[i] as Map<string, Map<number, Partial>>),
    );
    await this.flux.eachRow(
      [...new Set(parts.map((p) => p.name))].join("+"),
      parts.map((p) => p.query),
      ["sensor_id", "_time", "_value", "_field"],
      (i, row) => (merges[i] as PartMerger).add(row),
    );
    const byIndex = new Map<string, Map<number, Partial>>();
    for (const part of own) {
      for (const [sensor, bySub] of part) {
        const into = byIndex.get(sensor);
        if (into === undefined) {
          byIndex.set(sensor, bySub);
          continue;
        }
        for (const [index, p] of bySub) {
          const w = into.get(index);
          if (w === undefined) {
            into.set(index, p);
            continue;
          }
          addPartial(w, p);
        }
      }
    }
    for (const [sensor, bySub] of byIndex) {
      const byStart = new Map<number, Partial>();
      for (const [index, p] of bySub) byStart.set(base + index * req.stepMs, p);
      windows.set(sensor, byStart);
    }
    return { windows, sources };
  }

  /** Expected shard groups a read of `span` ms in `bucket` touches. */
  private shards(bucket: string, span: number): number {
    return 1 + span / (this.layouts.get(bucket)?.shardGroupMs ?? 7 * DAY_MS);
  }

  /** What reading a segment costs (COST's units), the cheaper way for raw readings. */
  private cost(segment: Segment, req: WindowRequest, now: number): number {
    if (segment.source === "raw") return Math.min(...Object.values(this.rawCosts(segment, req, now)));
    const fields = (["count", "sum", "sumsq", "min", "max"] as const).filter((f) => req.need[f]).length;
    const span = segment.stop - segment.start;
    const series = req.series * fields;
    const reads = series * this.shards(this.influx.rollupBuckets[segment.source], span);
    const rows = series * Math.ceil(span / req.stepMs);
    const asPoints = req.stepMs === tierByName(segment.source).ms;
    return (
      reads * COST.seriesMs +
      rows * (asPoints ? COST.pointMs : COST.windowMs) +
      (asPoints ? 1 : Math.min(fields, 3)) * COST.queryMs
    );
  }

  /**
   * A raw segment read two ways: every point, added up here (one storage read per series, a row
   * per reading), or one pushed-down window aggregate per function (a storage read per series and
   * function, a row per window). Readings can span at most until now plus the future skew the
   * worker accepts.
   */
  private rawCosts(segment: Segment, req: WindowRequest, now: number): { points: number; pushdown: number } {
    const span = Math.max(0, Math.min(segment.stop, now + FUTURE_SKEW_MS) - segment.start);
    const reads = req.series * this.shards(this.influx.bucket, span);
    const readings = req.rate * span;
    const windows = Math.min(readings, req.series * Math.ceil(span / req.stepMs));
    const fns = (["count", "sum", "min", "max"] as const).filter((f) => req.need[f]).length;
    const one = reads * COST.seriesMs + windows * COST.windowMs + COST.queryMs;
    // Storage cannot square: the sum of squares reads every point in Flux.
    const sumsq = req.need.sumsq
      ? reads * COST.seriesMs + readings * COST.fluxPointMs + windows * COST.windowMs + COST.queryMs
      : 0;
    return {
      points: reads * COST.seriesMs + readings * COST.pointMs + COST.queryMs,
      pushdown: fns * one + sumsq,
    };
  }

  private partsFor(segment: Segment, req: WindowRequest, now: number): Part[] {
    const every = lit.duration(req.stepMs);
    const sensors = anyOf("sensor_id", req.sensors ?? []);
    const range = { start: lit.time(segment.start), stop: lit.time(segment.stop) };
    if (segment.source === "raw") {
      const s: Selection = {
        bucket: lit.str(this.influx.bucket),
        ...range,
        where: and(
          eq("_measurement", lit.str(MEASUREMENTS.readings)),
          eq("_field", lit.str(req.field)),
          sensors,
        ),
      };
      const costs = this.rawCosts(segment, req, now);
      if (costs.points <= costs.pushdown) {
        return [
          {
            name: "raw_points",
            query: `${rawPoints(s)}\n  |> keep(columns: ["_time", "_value", "sensor_id"])`,
            as: "points",
          },
        ];
      }
      const parts: Part[] = [];
      for (const fn of ["count", "sum", "min", "max"] as const) {
        if (req.need[fn]) parts.push({ name: `raw_${fn}`, query: windowAggregate(s, every, fn), as: fn });
      }
      if (req.need.sumsq) {
        parts.push({
          name: "raw_sumsq",
          query: `${rawPoints(s)}
  |> map(fn: (r) => ({r with _value: float(v: r._value) * float(v: r._value)}))
  |> aggregateWindow(every: ${every}, fn: sum, createEmpty: false, timeSrc: "_start")
  |> keep(columns: ["_time", "_value", "_field", "sensor_id"])`,
          as: "sumsq",
        });
      }
      return parts;
    }
    const s = (fields: string[]): Selection => ({
      bucket: lit.str(this.influx.rollupBuckets[segment.source as TierName]),
      ...range,
      where: and(
        eq("_measurement", lit.str(ROLLUP_MEASUREMENT)),
        eq("field", lit.str(req.field)),
        sensors,
        anyOf("_field", fields),
      ),
    });
    const sums = (["count", "sum", "sumsq"] as const).filter((f) => req.need[f]);
    const parts: Part[] = [];
    if (req.stepMs === tierByName(segment.source as TierName).ms) {
      // Sub-windows the size of the tier's windows are its points: one plain read, nothing to combine.
      const fields = [...sums, ...(["min", "max"] as const).filter((f) => req.need[f])];
      parts.push({
        name: "rollup_points",
        query: `${rawPoints(s(fields))}\n  |> keep(columns: ["_time", "_value", "_field", "sensor_id"])`,
      });
      return parts;
    }
    if (sums.length > 0) parts.push({ name: `rollup_sum`, query: windowAggregate(s(sums), every, "sum") });
    if (req.need.min) parts.push({ name: "rollup_min", query: windowAggregate(s(["min"]), every, "min") });
    if (req.need.max) parts.push({ name: "rollup_max", query: windowAggregate(s(["max"]), every, "max") });
    return parts;
  }

  /**
   * Each sensor's last value of each field (or of `field`) in [start, stop), with the tags of its
   * latest reading: a storage-side `last()` per segment, later segments overriding earlier ones.
   */
  async lastValues(
    start: number,
    stop: number,
    sensors: string[] | undefined,
    field: string | undefined,
    now = Date.now(),
  ): Promise<SensorLast[]> {
    const tiers = (await this.tierStates(now)).sort((a, b) => b.ms - a.ms);
    const segments = planSegments(start, stop, tiers);
    const results = await Promise.all(segments.map((segment) => this.lastIn(segment, sensors, field)));
    const out = new Map<string, SensorLast>();
    for (const found of results) {
      for (const [sensorId, entry] of found) {
        const known = out.get(sensorId);
        if (known === undefined) {
          out.set(sensorId, entry);
          continue;
        }
        Object.assign(known.fields, entry.fields);
        // Segments come in time order, the coarsest tier first: its window counts the most readings.
        if (entry.rates !== undefined) known.rates = { ...entry.rates, ...known.rates };
        if (entry.lastSeen >= known.lastSeen) {
          known.lastSeen = entry.lastSeen;
          known.tags = entry.tags;
        }
      }
    }
    return [...out.values()].sort((a, b) => (a.sensorId < b.sensorId ? -1 : a.sensorId > b.sensorId ? 1 : 0));
  }

  /** Each sensor's last value of every field among the raw readings of [start, stop). */
  async rawLastValues(start: number, stop: number): Promise<SensorLast[]> {
    return [...(await this.lastIn({ source: "raw", start, stop }, undefined, undefined)).values()];
  }

  private async lastIn(
    segment: Segment,
    sensors: string[] | undefined,
    field: string | undefined,
  ): Promise<Map<string, SensorLast>> {
    const found = new Map<string, SensorLast>();
    const entry = (sensorId: string) => {
      let e = found.get(sensorId);
      if (e === undefined) {
        e = { sensorId, lastSeen: Number.NEGATIVE_INFINITY, tags: {}, fields: {} };
        found.set(sensorId, e);
      }
      return e;
    };
    const range = { start: lit.time(segment.start), stop: lit.time(segment.stop) };
    const sensorCondition = anyOf("sensor_id", sensors ?? []);
    if (segment.source === "raw") {
      const query = seriesAggregate(
        {
          bucket: lit.str(this.influx.bucket),
          ...range,
          where: and(
            eq("_measurement", lit.str(MEASUREMENTS.readings)),
            field === undefined ? "" : eq("_field", lit.str(field)),
            sensorCondition,
          ),
        },
        "last",
      );
      for (const row of await this.flux.rows<Record<string, unknown>>("last_raw", query)) {
        const e = entry(String(row.sensor_id));
        const time = Date.parse(String(row._time));
        e.fields[String(row._field)] = { value: Number(row._value), time };
        if (time >= e.lastSeen) {
          e.lastSeen = time;
          e.tags = {};
          for (const [k, v] of Object.entries(row)) {
            if (!SYSTEM.has(k) && k !== "sensor_id" && typeof v === "string" && v !== "") e.tags[k] = v;
          }
        }
      }
      return found;
    }
    const query = seriesAggregate(
      {
        bucket: lit.str(this.influx.rollupBuckets[segment.source]),
        ...range,
        where: and(
          eq("_measurement", lit.str(ROLLUP_MEASUREMENT)),
          field === undefined ? "" : eq("field", lit.str(field)),
          sensorCondition,
          anyOf("_field", ["count", "last", "last_time", "tags"]),
        ),
      },
      "last",
      ["sensor_id", "field", "_field", "_value"],
    );
    const partial = new Map<string, { value?: number; time?: number; tags?: string; count?: number }>();
    for (const [sensorId = "", fieldName = "", kind = "", value = ""] of await this.flux.columns(
      "last_rollup",
      query,
      ["sensor_id", "field", "_field", "_value"],
    )) {
      const key = `${sensorId}\u001f${fieldName}`;
      const p = partial.get(key) ?? {};
      if (kind === "last") p.value = Number(value);
      else if (kind === "last_time") p.time = Number(value);
      else if (kind === "count") p.count = Number(value);
      else p.tags = value;
      partial.set(key, p);
    }
    for (const [key, p] of partial) {
      if (p.value === undefined || p.time === undefined) continue;
      const [sensorId = "", fieldName = ""] = key.split("\u001f");
      const e = entry(sensorId);
      e.fields[fieldName] = { value: p.value, time: p.time };
      if (p.count !== undefined)
        e.rates = { ...e.rates, [fieldName]: p.count / tierByName(segment.source).ms };
      if (p.time >= e.lastSeen) {
        e.lastSeen = p.time;
        e.tags = p.tags === undefined ? {} : (JSON.parse(p.tags) as Record<string, string>);
      }
    }
    return found;
  }
}

/**
 * Adds the rows of one part's answer (sensor_id, _time, _value, _field) into its sensors'
 * sub-windows. Rows come series by series, so a sensor is looked up once per run of its rows. A
 * class with indexed reads, not a closure destructuring each row: this runs for every row.
 */
class PartMerger {
  private sensor = "";
  private bySensor: Map<number, Partial> | undefined;
  private readonly points: boolean;
  /** The sub-window field every row adds to, or undefined when `_field` names it. */
  private readonly key: keyof Partial | undefined;

  constructor(
    part: Part,
    /** The start of sub-window 0. */
    private readonly base: number,
    private readonly stepMs: number,
    /** Per sensor, sub-windows by index from `base`. */
    private readonly windows: Map<string, Map<number, Partial>>,
  ) {
    this.points = part.as === "points";
    this.key = part.as === "points" ? undefined : part.as;
  }

  add(row: (string | undefined)[]): void {
    const sensor = row[0] ?? "";
    let bySensor = this.bySensor;
    if (bySensor === undefined || sensor !== this.sensor) {
      this.sensor = sensor;
      bySensor = this.windows.get(sensor);
      if (bySensor === undefined) {
        bySensor = new Map();
        this.windows.set(sensor, bySensor);
      }
      this.bySensor = bySensor;
    }
    const index = Math.floor((epochMs(row[1] ?? "") - this.base) / this.stepMs);
    let w = bySensor.get(index);
    if (w === undefined) {
      w = { count: 0, sum: 0, sumsq: 0, min: Number.POSITIVE_INFINITY, max: Number.NEGATIVE_INFINITY };
      bySensor.set(index, w);
    }
    const x = Number(row[2]);
    if (this.points) {
      w.count += 1;
      w.sum += x;
      w.sumsq += x * x;
      if (x < w.min) w.min = x;
      if (x > w.max) w.max = x;
      return;
    }
    const key = this.key ?? (row[3] as keyof Partial);
    if (key === "min") {
      if (x < w.min) w.min = x;
    } else if (key === "max") {
      if (x > w.max) w.max = x;
    } else w[key] += x;
  }
}
