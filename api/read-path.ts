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
import { bucketRetentions } from "../common/influx.js";
import {
  PROGRESS_MEASUREMENT,
  ROLLUP_MEASUREMENT,
  ROLLUP_TIERS,
  type TierName,
  tierByName,
} from "../common/rollups.js";
import { MEASUREMENTS } from "../common/topics.js";
import type { FluxRunner } from "./influx-query.js";
import { planSegments, type Segment, type TierState } from "./planner.js";

/** The parts of an aggregate a window query may need. */
export type Need = { count: boolean; sum: boolean; sumsq: boolean; min: boolean; max: boolean };
export type Partial = Pick<Aggregate, "count" | "sum" | "sumsq" | "min" | "max">;

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
}

export interface SensorLast {
  sensorId: string;
  lastSeen: number;
  tags: Record<string, string>;
  fields: Record<string, { value: number; time: number }>;
}

/** One storage-side query of a plan and what its rows are: one part of the aggregate, all of them ("partial"), or the field named by `_field`. */
type Part = { name: string; query: string; as?: keyof Partial | "partial" };

/**
 * A raw segment where readings can only span this long (it is clipped at now plus the future skew
 * the worker accepts) is added up in one pass in Flux: one storage read per series instead of one
 * per function. The open tail after the last closed minute is one of these. Longer segments hold
 * more readings than Flux adds up faster than storage does.
 */
const RAW_ONE_PASS_MS = 10 * 60_000;
const FUTURE_SKEW_MS = 5 * 60_000;

const PROGRESS_TTL_MS = 1000;

const SYSTEM = new Set(["result", "table", "_start", "_stop", "_time", "_value", "_field", "_measurement"]);

export class ReadPath {
  private progress: { at: number; closedThrough: Map<string, number> } | undefined;
  private progressRead: Promise<void> | undefined;
  private retention = new Map<string, number>();

  constructor(
    private readonly flux: FluxRunner,
    private readonly influx: InfluxConfig,
  ) {}

  /** Reads bucket retentions (how far back each tier holds data). */
  async start(): Promise<void> {
    try {
      this.retention = await bucketRetentions(this.influx);
    } catch {
      // Without bucket information every tier is assumed to keep everything.
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
      const keep = this.retention.get(this.influx.rollupBuckets[t.name]) ?? 0;
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
   * combining function, all in one script, merged by sensor and sub-window start.
   */
  async subWindows(
    req: WindowRequest,
  ): Promise<{ windows: Map<string, Map<number, Partial>>; sources: Set<string> }> {
    const segments = planSegments(req.start, req.stop, req.tiers);
    const windows = new Map<string, Map<number, Partial>>();
    const sources = new Set(segments.map((s) => s.source));
    const parts = segments.flatMap((segment) => this.partsFor(segment, req));
    const answers = await this.flux.columnsOfEach(
      [...new Set(parts.map((p) => p.name))].join("+"),
      parts.map((p) => p.query),
      ["sensor_id", "_time", "_value", "_field", "_start", "count", "sum", "sumsq", "min", "max"],
    );
    for (const [i, part] of parts.entries()) this.merge(part, answers[i] ?? [], req.stepMs, windows);
    return { windows, sources };
  }

  private partsFor(segment: Segment, req: WindowRequest): Part[] {
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
      const span = Math.max(0, Math.min(segment.stop, Date.now() + FUTURE_SKEW_MS) - segment.start);
      if (span <= RAW_ONE_PASS_MS) {
        const v = "float(v: r._value)";
        return [
          {
            name: "raw_one_pass",
            query: `${rawPoints(s)}
  |> window(every: ${every})
  |> reduce(
    identity: {count: 0.0, sum: 0.0, sumsq: 0.0, min: float(v: "+Inf"), max: float(v: "-Inf")},
    fn: (r, accumulator) => ({
      count: accumulator.count + 1.0,
      sum: accumulator.sum + ${v},
      sumsq: accumulator.sumsq + ${v} * ${v},
      min: if ${v} < accumulator.min then ${v} else accumulator.min,
      max: if ${v} > accumulator.max then ${v} else accumulator.max,
    }),
  )
  |> keep(columns: ["_start", "sensor_id", "count", "sum", "sumsq", "min", "max"])`,
            as: "partial",
          },
        ];
      }
      const parts: Part[] = [];
      for (const fn of ["count", "sum", "min", "max"] as const) {
        if (req.need[fn]) parts.push({ name: `raw_${fn}`, query: windowAggregate(s, every, fn), as: fn });
      }
      if (req.need.sumsq) {
        // Storage cannot square: this one reads the points (bounded by the caller).
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

  private merge(
    part: Part,
    rows: (string | undefined)[][],
    stepMs: number,
    windows: Map<string, Map<number, Partial>>,
  ): void {
    for (const [sensor = "", time = "", value = "", fieldName = "", windowStart = "", ...parts] of rows) {
      const start = Math.floor(Date.parse(part.as === "partial" ? windowStart : time) / stepMs) * stepMs;
      let bySensor = windows.get(sensor);
      if (bySensor === undefined) {
        bySensor = new Map();
        windows.set(sensor, bySensor);
      }
      let w = bySensor.get(start);
      if (w === undefined) {
        w = { count: 0, sum: 0, sumsq: 0, min: Number.POSITIVE_INFINITY, max: Number.NEGATIVE_INFINITY };
        bySensor.set(start, w);
      }
      if (part.as === "partial") {
        const [count, sum, sumsq, min, max] = parts.map(Number) as [number, number, number, number, number];
        w.count += count;
        w.sum += sum;
        w.sumsq += sumsq;
        w.min = Math.min(w.min, min);
        w.max = Math.max(w.max, max);
        continue;
      }
      const key = part.as ?? (fieldName as keyof Partial);
      const x = Number(value);
      if (key === "min") w.min = Math.min(w.min, x);
      else if (key === "max") w.max = Math.max(w.max, x);
      else w[key] += x;
    }
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
          anyOf("_field", ["last", "last_time", "tags"]),
        ),
      },
      "last",
      ["sensor_id", "field", "_field", "_value"],
    );
    const partial = new Map<string, { value?: number; time?: number; tags?: string }>();
    for (const [sensorId = "", fieldName = "", kind = "", value = ""] of await this.flux.columns(
      "last_rollup",
      query,
      ["sensor_id", "field", "_field", "_value"],
    )) {
      const key = `${sensorId}\u001f${fieldName}`;
      const p = partial.get(key) ?? {};
      if (kind === "last") p.value = Number(value);
      else if (kind === "last_time") p.time = Number(value);
      else p.tags = value;
      partial.set(key, p);
    }
    for (const [key, p] of partial) {
      if (p.value === undefined || p.time === undefined) continue;
      const [sensorId = "", fieldName = ""] = key.split("\u001f");
      const e = entry(sensorId);
      e.fields[fieldName] = { value: p.value, time: p.time };
      if (p.time >= e.lastSeen) {
        e.lastSeen = p.time;
        e.tags = p.tags === undefined ? {} : (JSON.parse(p.tags) as Record<string, string>);
      }
    }
    return found;
  }
}
