/**
 * Event-time tumbling windows of every rollup tier, per sensor and field, for one Kafka partition.
 *
 * One way a window closes and is revised: stream time is the largest event time seen on the
 * partition. A window [start, end) closes, and is emitted, the moment stream time reaches
 * end + allowedLateness. It then stays for revisionMs more: a reading that arrives in that time
 * still counts, and the window is emitted again at once as a revision (same identity, corrected
 * values). After that the window is dropped; a reading for it is too late: stored raw, counted
 * and routed aside, but in no window. Closing and dropping are timers on stream time, fired in
 * reading order, so what is emitted never depends on how the stream was cut into batches.
 */
import { type Aggregate, addReading, aggregateOf, meanOf } from "../common/aggregate.js";
import { ROLLUP_TIERS } from "../common/rollups.js";

export interface WindowConfig {
  /** Window sizes kept, finest first: the rollup tiers. The finest is published to Kafka. */
  tiersMs: readonly number[];
  /** A window is emitted once stream time is this far past its end. */
  allowedLatenessMs: number;
  /** How long after it was emitted a late reading still revises a window. */
  revisionMs: number;
}

export const DEFAULT_WINDOWS: WindowConfig = {
  tiersMs: ROLLUP_TIERS.map((t) => t.ms),
  allowedLatenessMs: 10_000,
  revisionMs: 300_000,
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

const SEP = "\u001f";

interface Timer {
  due: number;
  key: string;
  kind: "close" | "drop";
}

/**
 * A binary min-heap of timers on stream time. Equal times fire in key order, so a state restored
 * from the changelog fires them in the same order as the run that wrote it.
 */
class TimerQueue {
  private readonly heap: Timer[] = [];

  get size(): number {
    return this.heap.length;
  }

  clear(): void {
    this.heap.length = 0;
  }

  push(timer: Timer): void {
    const h = this.heap;
    h.push(timer);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** Removes and returns the earliest timer due at or before `time`. */
  popDue(time: number): Timer | undefined {
    const h = this.heap;
    const top = h[0];
    if (top === undefined || top.due > time) return undefined;
    const last = h.pop() as Timer;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.before(l, m)) m = l;
        if (r < h.length && this.before(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }

  private before(a: number, b: number): boolean {
    const x = this.heap[a] as Timer;
    const y = this.heap[b] as Timer;
    return x.due < y.due || (x.due === y.due && x.key < y.key);
  }

  private swap(a: number, b: number): void {
    const h = this.heap;
    [h[a], h[b]] = [h[b] as Timer, h[a] as Timer];
  }
}

interface StoredWindow {
  f: Record<string, Aggregate>;
  t: Record<string, string>;
  tt: number;
  e: number;
}

/** Every open or revisable window of one partition, with its timers and its changelog. */
export class WindowStore {
  private readonly windows = new Map<string, Window>();
  private readonly timers = new TimerQueue();
  private timersValid = true;
  private readonly dirty = new Set<string>();

  constructor(private readonly config: WindowConfig) {}

  get size(): number {
    return this.windows.size;
  }

  /** True when a reading at `time` comes after its finest window was dropped: it counts in no window. */
  isTooLate(time: number, streamTime: number): boolean {
    const finest = this.config.tiersMs[0] as number;
    return (
      windowStart(time, finest) + finest + this.config.allowedLatenessMs + this.config.revisionMs <=
      streamTime
    );
  }

  /** Fires the timers stream time has reached: windows close (emitted) and, later, are dropped. */
  advance(streamTime: number, emit: (w: Window) => void): void {
    if (!this.timersValid) this.rebuildTimers();
    for (let timer = this.timers.popDue(streamTime); timer; timer = this.timers.popDue(streamTime)) {
      const w = this.windows.get(timer.key);
      if (w === undefined) continue;
      if (timer.kind === "close") {
        w.emitted = 1;
        this.dirty.add(timer.key);
        emit(w);
        this.timers.push({ due: this.dropDue(w), key: timer.key, kind: "drop" });
      } else {
        this.windows.delete(timer.key);
        this.dirty.add(timer.key);
      }
    }
  }

  /**
   * Adds a reading that is not too late to its window of every tier; a window that was already
   * emitted is emitted again as a revision.
   */
  add(
    sensorId: string,
    time: number,
    fields: Record<string, number>,
    tags: Record<string, string>,
    emit: (w: Window) => void,
  ): void {
    if (!this.timersValid) this.rebuildTimers();
    for (const sizeMs of this.config.tiersMs) {
      const start = windowStart(time, sizeMs);
      const key = `${sensorId}${SEP}${sizeMs}${SEP}${start}`;
      let w = this.windows.get(key);
      if (w === undefined) {
        w = { sensorId, sizeMs, start, fields: {}, tags, tagsTime: time, emitted: 0 };
        this.windows.set(key, w);
        this.timers.push({ due: start + sizeMs + this.config.allowedLatenessMs, key, kind: "close" });
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
      this.dirty.add(key);
      if (w.emitted > 0) {
        w.emitted++;
        emit(w);
      }
    }
  }

  /** Changed windows since the last call, as changelog records (`w<SEP>` + key; null = dropped). */
  takeChangelog(prefix: string): { key: string; value: string | null }[] {
    const entries: { key: string; value: string | null }[] = [];
    for (const key of this.dirty) {
      const w = this.windows.get(key);
      const stored: StoredWindow | undefined =
        w === undefined ? undefined : { f: w.fields, t: w.tags, tt: w.tagsTime, e: w.emitted };
      entries.push({ key: prefix + key, value: stored === undefined ? null : JSON.stringify(stored) });
    }
    this.dirty.clear();
    return entries;
  }

  /** Applies one changelog record (key without the prefix); timers are rebuilt before next use. */
  restore(key: string, value: string | null): void {
    this.timersValid = false;
    if (value === null) {
      this.windows.delete(key);
      return;
    }
    const [sensorId = "", size = "", start = ""] = key.split(SEP);
    if (start === "") return; // a record of an older state format: its windows are not restored
    const stored = JSON.parse(value) as StoredWindow;
    this.windows.set(key, {
      sensorId,
      sizeMs: Number(size),
      start: Number(start),
      fields: stored.f,
      tags: stored.t,
      tagsTime: stored.tt,
      emitted: stored.e,
    });
  }

  private dropDue(w: Window): number {
    return w.start + w.sizeMs + this.config.allowedLatenessMs + this.config.revisionMs;
  }

  private rebuildTimers(): void {
    this.timers.clear();
    for (const [key, w] of this.windows) {
      this.timers.push(
        w.emitted === 0
          ? { due: w.start + w.sizeMs + this.config.allowedLatenessMs, key, kind: "close" }
          : { due: this.dropDue(w), key, kind: "drop" },
      );
    }
    this.timersValid = true;
  }
}
