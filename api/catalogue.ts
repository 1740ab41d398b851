/**
 * The sensor catalogue: every sensor's first reading, latest reading time, latest value of each
 * field and latest tags, kept in memory. It answers "who reported, and what did each send last"
 * without a scan of raw readings, and lets limits be checked before any query runs.
 *
 * A storage-side `last()` reads every point of its range, so the cost of "each sensor's last value"
 * grows with the history asked about. The catalogue pays that once per refresh, in the background,
 * on the coarsest rollups (ReadPath.lastValues); a request then only reads the raw tail written
 * since the previous request (its start moved back `TAIL_SLACK_MS` for readings stored late), and
 * merges it. A reading whose event time is more than `TAIL_SLACK_MS` older than when it is stored
 * appears with the next full refresh (every `refreshMs`).
 */
import type { ReadPath, SensorLast } from "./read-path.js";

/** How far before the previous catch-up the next one starts reading. */
export const TAIL_SLACK_MS = 10 * 60_000;
/**
 * A request arriving within this long of the start of the last finished catch-up is answered from
 * memory at once. A catch-up reads every series (InfluxDB's cost is per series, not per reading):
 * about 60 ms per 1,000 sensors, too much to pay per request. So while requests come (one in the
 * last ACTIVE_MS), catch-ups run in the background, FRESH_MS / 2 apart, and requests seldom wait.
 */
export const FRESH_MS = 2000;
const ACTIVE_MS = 60_000;
const FOREVER = Date.UTC(2200, 0, 1);
/** Readings per ms assumed for a sensor whose rate the rollups do not tell yet (one a second). */
const UNKNOWN_RATE = 1 / 1000;

type Entry = SensorLast & { first: number };

export class SensorCatalogue {
  private sensors = new Map<string, Entry>();
  /** Every reading stored before this time (and event time at most TAIL_SLACK_MS older) is in `sensors`. */
  private asOf = Number.NEGATIVE_INFINITY;
  private pending: { began: number; done: Promise<void> } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastRequest = Number.NEGATIVE_INFINITY;
  private fresher: NodeJS.Timeout | undefined;
  private freshening = false;
  private stopped = false;

  constructor(private readonly read: ReadPath) {}

  /** Fills the catalogue, then refreshes it fully every `refreshMs` (0 = never). */
  async start(refreshMs: number): Promise<void> {
    await this.refresh().catch(() => {});
    if (refreshMs > 0) {
      this.timer = setInterval(() => this.refresh().catch(() => {}), refreshMs);
      this.timer.unref();
    }
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.fresher);
  }

  /** Sensors known to have reported in [start, stop) (no query: an estimate for limits). */
  sensorsIn(start: number, stop: number): number {
    let n = 0;
    for (const s of this.sensors.values()) if (s.first < stop && s.lastSeen >= start) n++;
    return n;
  }

  /**
   * Readings per ms of `field` the sensors (or all) add up to in [start, stop), estimated from each
   * one's last closed rollup window (no query): what a read of raw readings will return.
   */
  rate(start: number, stop: number, sensors: string[] | undefined, field: string): number {
    if (sensors !== undefined) {
      return sensors.reduce((sum, id) => sum + (this.sensors.get(id)?.rates?.[field] ?? UNKNOWN_RATE), 0);
    }
    let sum = 0;
    for (const s of this.sensors.values()) {
      if (s.first < stop && s.lastSeen >= start) sum += s.rates?.[field] ?? UNKNOWN_RATE;
    }
    return sum;
  }

  /**
   * Each sensor's last value of each field (or of `field`) in [start, stop), with the tags of its
   * latest reading. From memory plus the raw tail when nobody's latest reading is at or after
   * `stop`; ReadPath's planned query over the tiers otherwise (a range in the past).
   */
  async lastValues(
    start: number,
    stop: number,
    sensors: string[] | undefined,
    field: string | undefined,
  ): Promise<SensorLast[]> {
    await this.catchUp();
    const wanted = sensors === undefined ? undefined : new Set(sensors);
    const out: SensorLast[] = [];
    for (const s of this.sensors.values()) {
      if (wanted !== undefined && !wanted.has(s.sensorId)) continue;
      if (s.lastSeen >= stop) return this.read.lastValues(start, stop, sensors, field);
      const fields: SensorLast["fields"] = {};
      for (const [name, v] of Object.entries(s.fields)) {
        if ((field === undefined || name === field) && v.time >= start) fields[name] = v;
      }
      if (Object.keys(fields).length === 0) continue;
      out.push({ sensorId: s.sensorId, lastSeen: s.lastSeen, tags: s.tags, fields });
    }
    if (field !== undefined) {
      // lastSeen is the sensor's latest reading of the field asked about.
      for (const s of out) s.lastSeen = (s.fields[field] as { time: number }).time;
    }
    return out.sort((a, b) => (a.sensorId < b.sensorId ? -1 : a.sensorId > b.sensorId ? 1 : 0));
  }

  /**
   * Merges the raw readings stored since the last catch-up (one storage-side `last()` over that
   * tail). Within FRESH_MS of the last one, a request is answered from memory; otherwise it joins
   * a catch-up that began after it arrived, or starts one, and waits for it. Either way it keeps
   * the background catch-ups going.
   */
  private catchUp(): Promise<void> {
    const arrived = Date.now();
    this.lastRequest = arrived;
    this.keepFresh();
    if (this.asOf >= arrived - FRESH_MS) return Promise.resolve();
    // A catch-up that began within FRESH_MS (running, usually) is fresh enough to wait for.
    const p = this.pending;
    if (p !== undefined && p.began >= arrived - FRESH_MS) return p.done;
    return this.startCatchUp(arrived);
  }

  /** Background catch-ups, starting FRESH_MS / 2 apart (or back to back when slower), while a request came in the last ACTIVE_MS. */
  private keepFresh(): void {
    if (this.freshening || this.stopped) return;
    this.freshening = true;
    const tick = () => {
      if (this.stopped || Date.now() - this.lastRequest > ACTIVE_MS) {
        this.freshening = false;
        return;
      }
      const began = Date.now();
      const p = this.pending;
      const running = p !== undefined && p.began > this.asOf;
      const done = running ? (p as { done: Promise<void> }).done : this.startCatchUp(began);
      void done
        .catch(() => {})
        .then(() => {
          this.fresher = setTimeout(tick, Math.max(0, FRESH_MS / 2 - (Date.now() - began)));
          this.fresher.unref();
        });
    };
    this.fresher = setTimeout(tick, FRESH_MS / 2);
    this.fresher.unref();
  }

  private startCatchUp(arrived: number): Promise<void> {
    const p = this.pending;
    const before = p?.done.catch(() => {}) ?? Promise.resolve();
    const began = arrived;
    const done = before.then(async () => {
      const from = this.asOf - TAIL_SLACK_MS;
      const tail = await this.read.rawLastValues(Number.isFinite(from) ? from : 0, FOREVER);
      this.merge(tail);
      this.asOf = Math.max(this.asOf, began);
    });
    this.pending = { began, done };
    return done;
  }

  /** The whole catalogue again from the tiers (for readings stored later than the slack allows). */
  async refresh(): Promise<void> {
    const began = Date.now();
    const [lasts, firsts] = await Promise.all([
      this.read.lastValues(0, FOREVER, undefined, undefined, began),
      this.read.firstSeen(),
    ]);
    const fresh = new Map<string, Entry>();
    for (const s of lasts) fresh.set(s.sensorId, { ...s, first: firsts.get(s.sensorId) ?? s.lastSeen });
    // What catch-ups merged meanwhile is newer than this refresh's view: keep it.
    for (const [id, s] of this.sensors) {
      if (!fresh.has(id) && s.lastSeen >= began - TAIL_SLACK_MS) fresh.set(id, s);
    }
    const previous = this.sensors;
    this.sensors = fresh;
    this.merge([...previous.values()].filter((s) => fresh.has(s.sensorId) && fresh.get(s.sensorId) !== s));
    this.asOf = Math.max(this.asOf, began);
  }

  /** Per sensor and field, the later value wins; tags follow the sensor's latest reading. */
  private merge(found: Iterable<SensorLast>): void {
    for (const s of found) {
      const known = this.sensors.get(s.sensorId);
      if (known === undefined) {
        this.sensors.set(s.sensorId, {
          ...s,
          fields: { ...s.fields },
          first: Math.min(...Object.values(s.fields).map((f) => f.time)),
        });
        continue;
      }
      for (const [name, v] of Object.entries(s.fields)) {
        const k = known.fields[name];
        if (k === undefined || v.time >= k.time) known.fields[name] = v;
      }
      if (s.lastSeen >= known.lastSeen) {
        known.lastSeen = s.lastSeen;
        known.tags = s.tags;
      }
      // Rates come from a refresh; a catch-up's raw tail has none and keeps them.
      if (s.rates !== undefined) known.rates = { ...s.rates, ...known.rates };
      known.first = Math.min(known.first, ...Object.values(s.fields).map((f) => f.time));
    }
  }
}
