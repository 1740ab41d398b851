/**
 * Event-time tumbling windows of every rollup tier, per sensor and field, for one Kafka partition.
 *
 * One way a window closes and is revised. Each sensor has its own stream time: the largest event
 * time it has sent. A window [start, end) of a sensor closes, and is emitted, the moment that
 * sensor's stream time reaches end + allowedLateness, or when the sensor has sent nothing for
 * idleMs of wall-clock time. It then stays for revisionMs more of the sensor's stream time: a
 * reading that arrives in that time still counts, and the window is emitted again at once as a
 * revision (same identity, corrected values). After that the window is dropped; a reading for it
 * is too late: stored raw, counted and routed aside, in no window. A fast or slow clock, or a
 * backlog, of one sensor moves only that sensor's windows. Closing is decided reading by reading
 * (and by the idle sweep, run only by the worker's timer tick, whose effect is in the changelog),
 * never by where a batch ends.
 */
import { type Aggregate, addReading, aggregateOf, meanOf } from "../common/aggregate.js";
import { ROLLUP_TIERS } from "../common/rollups.js";
import { TimerQueue } from "./timers.js";

export interface WindowConfig {
  /** Window sizes kept, finest first: the rollup tiers. The finest is published to Kafka. */
  tiersMs: readonly number[];
  /** A window is emitted once its sensor's stream time is this far past its end. */
  allowedLatenessMs: number;
  /** How long (in the sensor's stream time) after closing a late reading still revises a window. */
  revisionMs: number;
  /** Wall-clock silence after which a sensor's open windows are closed anyway. */
  idleMs: number;
}

export const DEFAULT_WINDOWS: WindowConfig = {
  tiersMs: ROLLUP_TIERS.map((t) => t.ms),
  allowedLatenessMs: 10_000,
  revisionMs: 300_000,
  idleMs: 300_000,
};

export interface Window {
  sensorId: string;
  sizeMs: number;
  start: number;
  fields: Record<string, Aggregate>;
  /** Tags of the window's latest reading (by event time), and that reading's time. */
  tags: Record<string, string>;
  tagsTime: number;
  /** How often the window has been emitted: 0 while open, 1 once closed, more once revised. */
  emitted: number;
  /** Its key among the sensor's windows, and its changelog key (after the prefix): made once. */
  key?: string;
  stateKey?: string;
  /** Set once the window is dropped from its sensor's windows (the per-sensor cache checks it). */
  gone?: boolean;
  /** The changelog round in which it was last marked changed (each is marked once per round). */
  round?: number;
}

/** The seed's window message on sensor-readings-aggregated. */
export interface WindowResult {
  sensor_id: string;
  window_start: number;
  window_end: number;
  /** Readings in the window (the most of any field's count). */
  count: number;
  /** Present on a re-emission after a late reading: 1 for the first correction, and so on. */
  revision?: number;
  /** Per field: avg_<field>, min_<field>, max_<field>, count_<field> (the seed's avg_temperature …). */
  [key: string]: string | number | undefined;
}

export function windowStart(time: number, sizeMs: number): number {
  return Math.floor(time / sizeMs) * sizeMs;
}

export function windowResult(w: Window): WindowResult {
  const result: WindowResult = {
    sensor_id: w.sensorId,
    window_start: w.start,
    window_end: w.start + w.sizeMs,
    count: 0,
  };
  if (w.emitted > 1) result.revision = w.emitted - 1;
  for (const field of Object.keys(w.fields).sort()) {
    const agg = w.fields[field] as Aggregate;
    result[`avg_${field}`] = meanOf(agg);
    result[`min_${field}`] = agg.min;
    result[`max_${field}`] = agg.max;
    result[`count_${field}`] = agg.count;
    result.count = Math.max(result.count, agg.count);
  }
  return result;
}

/** The separator of the parts of a state entry key (a character no sensor id or field holds). */
export const SEP = "\u001f";
export const WINDOW_KEY = `w${SEP}`;
export const SENSOR_KEY = `t${SEP}`;

/** A sensor's progress: its stream time, when it last sent (wall clock), what is dropped. */
interface SensorClock {
  /** Largest event time the sensor has sent. */
  time: number;
  /** Wall-clock time of its latest reading. */
  seen: number;
  /** Windows of the finest tier ending at or before this are gone: readings for them are too late. */
  dropped: number;
}

interface StoredWindow {
  f: Record<string, Aggregate>;
  t: Record<string, string>;
  tt: number;
  e: number;
}

/** Every open or revisable window of one partition, per sensor, with its changelog. */
export class WindowStore {
  /** Windows by sensor, then by `<size><SEP><start>`. */
  private readonly windows = new Map<string, Map<string, Window>>();
  /**
   * Per sensor, what spares a reading work (not state; rebuilt on demand): the window of each tier
   * its latest reading went to (a cache of `windows`), and a lower bound on the stream time at
   * which one of its windows next closes or is dropped, so a reading that moves the sensor's clock
   * short of it skips the scan of the sensor's windows.
   */
  private readonly hot = new Map<string, { latest: Window[]; nextChange: number }>();
  private readonly clocks = new Map<string, SensorClock>();
  private readonly dirtyWindows = new Set<string>();
  /** Counts takeChangelog calls: a window marked in the current round is not marked again. */
  private round = 0;
  private readonly dirtySensors = new Set<string>();
  private count = 0;

  constructor(private readonly config: WindowConfig) {}

  /** Open and revisable windows held. */
  get size(): number {
    return this.count;
  }

  private get finest(): number {
    return this.config.tiersMs[0] as number;
  }

  /** True when a reading of `sensorId` at `time` is past its finest window's revision time. */
  isTooLate(sensorId: string, time: number): boolean {
    const clock = this.clocks.get(sensorId);
    if (clock === undefined) return false;
    const end = windowStart(time, this.finest) + this.finest;
    return end <= clock.dropped || end + this.config.allowedLatenessMs + this.config.revisionMs <= clock.time;
  }

  /**
   * Adds a reading: moves its sensor's stream time (closing and dropping that sensor's windows it
   * passes), then counts it in its window of every tier; a window already emitted is emitted again
   * as a revision. The caller checks `isTooLate` first.
   */
  add(
    sensorId: string,
    time: number,
    fields: Record<string, number>,
    tags: Record<string, string>,
    now: number,
    emit: (w: Window) => void,
  ): void {
    let clock = this.clocks.get(sensorId);
    if (clock === undefined) {
      clock = { time, seen: now, dropped: Number.NEGATIVE_INFINITY };
      this.clocks.set(sensorId, clock);
      this.idle.set(sensorId, now + this.config.idleMs);
    } else if (clock.seen !== now) {
      // A batch's readings share `now`: the idle deadline moves once per sensor and batch. (Every
      // other deadline set for the sensor is checked against clock.seen when it comes due.)
      clock.seen = now;
      this.idle.set(sensorId, now + this.config.idleMs);
    }
    this.dirtySensors.add(sensorId);
    let mine = this.windows.get(sensorId);
    if (mine === undefined) {
      mine = new Map();
      this.windows.set(sensorId, mine);
    }
    let hot = this.hot.get(sensorId);
    if (hot === undefined) {
      hot = { latest: [], nextChange: Number.NEGATIVE_INFINITY };
      this.hot.set(sensorId, hot);
    }
    if (time > clock.time) {
      clock.time = time;
      if (hot.nextChange <= time) hot.nextChange = this.advance(sensorId, mine, clock, emit);
    }
    // The window of each tier the sensor's last reading went to: most readings go to the same ones,
    // found without making their keys again.
    const latest = hot.latest;
    const tiers = this.config.tiersMs;
    for (let tier = 0; tier < tiers.length; tier++) {
      const sizeMs = tiers[tier] as number;
      const start = windowStart(time, sizeMs);
      let w = latest[tier];
      if (w === undefined || w.start !== start || w.key === undefined || w.gone === true) {
        const key = `${sizeMs}${SEP}${start}`;
        w = mine.get(key);
        if (w === undefined) {
          w = { sensorId, sizeMs, start, fields: {}, tags, tagsTime: time, emitted: 0 };
          mine.set(key, w);
          this.count++;
          hot.nextChange = Math.min(hot.nextChange, start + sizeMs + this.config.allowedLatenessMs);
        }
        w.key = key;
        latest[tier] = w;
      }
      for (const field in fields) {
        const value = fields[field] as number;
        const agg = w.fields[field];
        if (agg === undefined) w.fields[field] = aggregateOf(value, time);
        else addReading(agg, value, time);
      }
      if (time >= w.tagsTime) {
        w.tags = tags;
        w.tagsTime = time;
      }
      if (w.round !== this.round) {
        w.round = this.round;
        w.stateKey ??= sensorId + SEP + w.key;
        this.dirtyWindows.add(w.stateKey);
      }
      if (w.emitted > 0) {
        w.emitted++;
        emit(w);
      } else if (start + sizeMs + this.config.allowedLatenessMs <= clock.time) {
        // A new window for a time the sensor's clock has already passed (it arrived out of order).
        w.emitted = 1;
        emit(w);
      }
    }
  }

  /**
   * Closes the windows the sensor's stream time has passed and drops those past their revision
   * time. Returns the stream time at which the next of its windows closes or is dropped.
   */
  private advance(
    sensorId: string,
    mine: Map<string, Window>,
    clock: SensorClock,
    emit: (w: Window) => void,
  ): number {
    const { allowedLatenessMs, revisionMs } = this.config;
    let next = Number.POSITIVE_INFINITY;
    for (const [key, w] of mine) {
      const end = w.start + w.sizeMs;
      if (w.emitted === 0 && end + allowedLatenessMs <= clock.time) {
        w.emitted = 1;
        this.dirtyWindows.add(sensorId + SEP + key);
        emit(w);
      }
      if (w.emitted > 0 && end + allowedLatenessMs + revisionMs <= clock.time)
        this.drop(sensorId, mine, key, w, clock);
      else next = Math.min(next, end + allowedLatenessMs + (w.emitted > 0 ? revisionMs : 0));
    }
    return next;
  }

  private drop(
    sensorId: string,
    mine: Map<string, Window>,
    key: string,
    w: Window,
    clock: SensorClock,
  ): void {
    mine.delete(key);
    w.gone = true;
    this.count--;
    this.dirtyWindows.add(sensorId + SEP + key);
    if (w.sizeMs === this.finest && w.start + w.sizeMs > clock.dropped) {
      clock.dropped = w.start + w.sizeMs;
      this.dirtySensors.add(sensorId);
    }
  }

  /**
   * Sensors silent on the wall clock for idleMs have their open windows closed (and, after
   * idleMs + revisionMs, dropped), so a sensor that stops, or a partition that goes quiet, still
   * gets its last windows out. Driven by a timer queue of the sensors' deadlines: only the sensors
   * due are visited, never every sensor. The caller (the worker's tick) records the effect in the
   * changelog, so a replay after a restore starts from the windows as this closed them.
   */
  sweepIdle(now: number, emit: (w: Window) => void): void {
    this.rebuildIdleTimers();
    const { idleMs, revisionMs } = this.config;
    for (const sensorId of this.idle.due(now)) {
      const mine = this.windows.get(sensorId);
      const clock = this.clocks.get(sensorId);
      if (mine === undefined || clock === undefined) continue;
      const silent = now - clock.seen;
      if (silent < idleMs) {
        this.idle.set(sensorId, clock.seen + idleMs);
        continue;
      }
      for (const [key, w] of mine) {
        if (w.emitted === 0) {
          w.emitted = 1;
          this.dirtyWindows.add(sensorId + SEP + key);
          emit(w);
        }
        if (silent >= idleMs + revisionMs) this.drop(sensorId, mine, key, w, clock);
      }
      if (mine.size === 0) {
        this.windows.delete(sensorId);
        this.hot.delete(sensorId);
      } else this.idle.set(sensorId, clock.seen + idleMs + revisionMs);
    }
  }

  /** Every sensor with a clock here, and the wall-clock time of its latest reading. */
  *sensorsSeen(): Iterable<[string, number]> {
    for (const [sensorId, clock] of this.clocks) yield [sensorId, clock.seen];
  }

  /** The wall-clock time of the sensor's latest reading, if it has a clock here. */
  seenOf(sensorId: string): number | undefined {
    return this.clocks.get(sensorId)?.seen;
  }

  /**
   * Forgets a sensor (the state TTL): its windows still open are emitted first, then all its
   * windows and its clock are dropped and tombstoned.
   */
  forget(sensorId: string, emit: (w: Window) => void): void {
    const mine = this.windows.get(sensorId);
    const clock = this.clocks.get(sensorId);
    if (mine !== undefined && clock !== undefined) {
      for (const [key, w] of mine) {
        if (w.emitted === 0) {
          w.emitted = 1;
          emit(w);
        }
        this.drop(sensorId, mine, key, w, clock);
      }
    }
    this.windows.delete(sensorId);
    this.hot.delete(sensorId);
    this.clocks.delete(sensorId);
    this.idle.delete(sensorId);
    this.dirtySensors.add(sensorId);
  }

  /** The earliest wall-clock time at which `sweepIdle` has something to do, if any. */
  nextIdleDeadline(): number | undefined {
    this.rebuildIdleTimers();
    return this.idle.next();
  }

  private readonly idle = new TimerQueue();
  /** Set by a restore: the deadlines are rebuilt from the sensor clocks before the next use. */
  private idleStale = false;

  private rebuildIdleTimers(): void {
    if (!this.idleStale) return;
    this.idleStale = false;
    for (const sensorId of this.windows.keys()) {
      const clock = this.clocks.get(sensorId);
      if (clock !== undefined) this.idle.set(sensorId, clock.seen + this.config.idleMs);
    }
  }

  /**
   * Per tier, the time before which every window is closed: the earliest open window's start, or
   * the latest stream time when none is open. Windows that close later (new sensors, backfill)
   * can move it back.
   */
  closedThrough(): Map<number, number> {
    const out = new Map<number, number>();
    let latest = Number.NEGATIVE_INFINITY;
    for (const clock of this.clocks.values()) if (clock.time > latest) latest = clock.time;
    for (const size of this.config.tiersMs) out.set(size, latest - this.config.allowedLatenessMs);
    for (const mine of this.windows.values()) {
      for (const w of mine.values()) {
        if (w.emitted === 0 && w.start < (out.get(w.sizeMs) as number)) out.set(w.sizeMs, w.start);
      }
    }
    return out;
  }

  /** Changed windows and sensor clocks since the last call, as changelog records (null = gone). */
  takeChangelog(): { key: string; value: string | null }[] {
    const entries: { key: string; value: string | null }[] = [];
    for (const full of this.dirtyWindows)
      entries.push({ key: WINDOW_KEY + full, value: this.windowValue(full) });
    for (const sensorId of this.dirtySensors)
      entries.push({ key: SENSOR_KEY + sensorId, value: this.clockValue(sensorId) });
    this.dirtyWindows.clear();
    this.dirtySensors.clear();
    this.round++;
    return entries;
  }

  /** The current value of a window or clock entry by its changelog key (null: none). */
  entryValue(key: string): string | null {
    if (key.startsWith(WINDOW_KEY)) return this.windowValue(key.slice(WINDOW_KEY.length));
    if (key.startsWith(SENSOR_KEY)) return this.clockValue(key.slice(SENSOR_KEY.length));
    return null;
  }

  /** `full`: `<sensor><SEP><size><SEP><start>`. */
  private windowValue(full: string): string | null {
    const [sensorId = "", size = "", start = ""] = full.split(SEP);
    const w = this.windows.get(sensorId)?.get(`${size}${SEP}${start}`);
    if (w === undefined) return null;
    const stored: StoredWindow = { f: w.fields, t: w.tags, tt: w.tagsTime, e: w.emitted };
    return JSON.stringify(stored);
  }

  private clockValue(sensorId: string): string | null {
    const clock = this.clocks.get(sensorId);
    return clock === undefined ? null : JSON.stringify(clock);
  }

  /** Applies one changelog record (its full key) while rebuilding the state. */
  restore(key: string, value: string | null): void {
    this.idleStale = true;
    if (key.startsWith(SENSOR_KEY)) {
      const sensorId = key.slice(SENSOR_KEY.length);
      if (value === null) this.clocks.delete(sensorId);
      else this.clocks.set(sensorId, JSON.parse(value) as SensorClock);
      return;
    }
    const [sensorId = "", size = "", start = ""] = key.slice(WINDOW_KEY.length).split(SEP);
    if (start === "") return; // a record of an older state format: its windows are not restored
    const inner = `${size}${SEP}${start}`;
    this.hot.delete(sensorId);
    let mine = this.windows.get(sensorId);
    const had = mine?.has(inner) ?? false;
    if (value === null) {
      if (had) {
        mine?.delete(inner);
        this.count--;
      }
      return;
    }
    if (mine === undefined) {
      mine = new Map();
      this.windows.set(sensorId, mine);
    }
    const stored = JSON.parse(value) as StoredWindow;
    mine.set(inner, {
      sensorId,
      sizeMs: Number(size),
      start: Number(start),
      fields: stored.f,
      tags: stored.t,
      tagsTime: stored.tt,
      emitted: stored.e,
    });
    if (!had) this.count++;
  }
}
