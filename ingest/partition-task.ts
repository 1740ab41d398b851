/**
 * Everything the worker computes for one Kafka partition of sensor-readings-raw: parse, detect,
 * window. It owns that partition's state (detectors, open windows, stream time), records which
 * state keys a batch touched, and hands them out as changelog entries so the state can be
 * rebuilt exactly after a crash or on another worker. No I/O happens here.
 */
import type { Aggregate } from "../common/aggregate.js";
import { type DeadLetterReason, parseReading, type ReadingLimits } from "../common/reading.js";
import { PROGRESS_MEASUREMENT, ROLLUP_MEASUREMENT, tierByMs } from "../common/rollups.js";
import { type AlertRule, selects } from "../common/rules.js";
import { MEASUREMENTS } from "../common/topics.js";
import {
  type AlertState,
  applyRuleChange,
  checkDeadman,
  checkDeadmanByClock,
  deadmanDeadline,
  evaluateReading,
  newAlertState,
  type Transition,
} from "./alerting.js";
import {
  type Anomaly,
  type DetectorConfig,
  detectInOrder,
  type FieldState,
  newFieldState,
} from "./detectors.js";
import type { TaggedLine } from "./influx-writer.js";
import { pointLine, pointLineWith } from "./line-protocol.js";
import { ALERT_KEY, type ChangelogEntry, DETECTOR_KEY, SensorRecords } from "./sensor-records.js";
import { TimerQueue } from "./timers.js";
import {
  SENSOR_KEY,
  SEP,
  WINDOW_KEY,
  type Window,
  type WindowConfig,
  type WindowResult,
  WindowStore,
  windowResult,
} from "./windows.js";

export interface TaskConfig {
  detectors: DetectorConfig;
  windows: WindowConfig;
  limits: ReadingLimits;
  /**
   * Wall-clock silence after which a sensor's state (windows, clock, alert states not firing and
   * not awaiting a deadman), or a field's detector state, is dropped. Default DEFAULT_STATE_TTL_MS.
   */
  stateTtlMs?: number;
}

/** Seven days: a sensor silent that long starts afresh when it comes back. */
export const DEFAULT_STATE_TTL_MS = 7 * 86_400_000;

export interface InputMessage {
  value: Buffer | null;
}

/** The alert rules as of this batch; `version` changes whenever any rule does. */
export interface RuleSet {
  version: number;
  /** The enabled rules: what readings are evaluated against. */
  rules: AlertRule[];
  /** Rules that exist but are disabled (a rule in neither list was deleted). */
  disabled?: AlertRule[];
  /**
   * By rule id, the Kafka timestamp of the rule's latest record in alert-rules (a tombstone's too):
   * when the change was made. What a rule change writes is stamped with it, not with the clock of
   * the worker applying it, so a retry or a replay of the change rewrites the same points.
   */
  changedAt?: ReadonlyMap<string, number>;
}

export const NO_RULES: RuleSet = { version: 0, rules: [] };

export interface DeadLetter {
  index: number;
  reason: DeadLetterReason;
  detail: string;
}

export interface BatchOutput {
  lines: TaggedLine[];
  deadLetters: DeadLetter[];
  /** Indexes of readings that arrived too late to count in any window (stored raw only). */
  late: number[];
  /** Windows of the finest tier emitted by this batch (closed, or revised by a late reading). */
  windows: WindowResult[];
  /** Late readings that revised windows already emitted. */
  revisions: number;
  /** Alert transitions, in event order (already included in `lines`). */
  transitions: Transition[];
  readings: number;
  anomalies: number;
}

export type { ChangelogEntry } from "./sensor-records.js";

export function emptyBatchOutput(): BatchOutput {
  return {
    lines: [],
    deadLetters: [],
    late: [],
    windows: [],
    revisions: 0,
    transitions: [],
    readings: 0,
    anomalies: 0,
  };
}

const NO_ANOMALIES: Anomaly[] = [];
/** The changelog key of the alert state of a rule and sensor. */
const alertStateKey = (ruleId: string, sensorId: string) => `${ALERT_KEY}${ruleId}${SEP}${sensorId}`;

/** Non-enumerable marks on an alert state object (JSON.stringify and deep equality leave them out). */
const STATE_KEY = Symbol("changelog key");
const MARKED_ROUND = Symbol("changelog round marked in");
const TIMER_KEY = Symbol("deadman timer key");
type Marked = AlertState & { [STATE_KEY]?: string; [MARKED_ROUND]?: number; [TIMER_KEY]?: string };
const META_KEY = "meta";
/** State-TTL timer keys: a sensor (its clock's `seen`); a field's detector key stands for itself. */
const SENSOR_TTL_KEY = `s${SEP}`;

/** Longest the rollup progress goes unrevised while readings arrive and no window closes. */
const PROGRESS_EVERY_MS = 1000;

/** A sensor's TTL key and its fields' detector keys. */
interface SensorKeys {
  ttl: string;
  /** The `now` the sensor's TTL deadline was last moved to `now + ttlMs` for. */
  ttlFrom?: number;
  detectors: Record<string, string>;
  /** The sensor's alert state per rule, by the rule's place in the rule set, as of `alertsEpoch`. */
  alerts?: (AlertState | undefined)[];
  /** The changelog round each of `alerts` was last marked in (a number array is read fastest). */
  alertRounds?: number[];
  alertsEpoch?: number;
}

export class PartitionTask {
  private maxEventTime = Number.NEGATIVE_INFINITY;
  /**
   * The Kafka offset after the last message this state includes. A consumer can be handed an older
   * position (a transactional offset commit not yet visible after a rebalance); messages before
   * this offset are already in the state and its outputs, and must not be applied twice.
   */
  private nextOffset = -1n;
  private readonly detectors = new Map<string, FieldState>();
  private readonly windows: WindowStore;
  /** Alert state by rule id, then sensor id. */
  private readonly alerts = new Map<string, Map<string, AlertState>>();
  private rulesVersion = -1;
  /** The rules last applied, by id. */
  private ruleById = new Map<string, AlertRule>();
  /** Wall-clock deadman deadlines by alert key; rebuilt from the alert states on a rule change. */
  private readonly deadmen = new TimerQueue();
  /** State-TTL deadlines of sensors and of fields' detector states; rebuilt after a restore. */
  private readonly expiry = new TimerQueue();
  private expiryStale = false;
  private readonly ttlMs: number;
  private readonly dirty = new Set<string>();
  /** Alert states changed since the last changelog (each once; see alertState). */
  private dirtyAlerts: AlertState[] = [];
  /** Counts takeChangelog calls: the round in which an alert state was last marked. */
  private round = 0;
  /**
   * Moves whenever alert states are dropped or replaced other than by alertState() (a rule change,
   * an expiry, a restore): the per-sensor caches of alert states (SensorKeys.alerts) start again.
   */
  private alertsEpoch = 0;
  private readonly sensorKeys = new Map<string, SensorKeys>();
  /** The changelog's record format: a record per sensor (see sensor-records.ts). */
  private readonly records = new SensorRecords();
  /** The rollup progress this task last wrote, per tier size (written again only when it moves). */
  private readonly progressSent = new Map<number, number>();
  /** When the rollup progress was last worked out (the worker's clock). */
  private progressAt = Number.NEGATIVE_INFINITY;

  /** `partition` labels the rollup progress this task writes. */
  constructor(
    private readonly config: TaskConfig,
    private readonly partition = 0,
  ) {
    this.windows = new WindowStore(config.windows);
    this.ttlMs = config.stateTtlMs ?? DEFAULT_STATE_TTL_MS;
  }

  process(messages: InputMessage[], now: number, rules: RuleSet = NO_RULES): BatchOutput {
    const out = emptyBatchOutput();
    let source = 0;
    let emitted = 0;
    const emit = (w: Window) => {
      emitted++;
      this.emitWindow(w, out, source);
    };
    if (rules.version !== this.rulesVersion) this.applyRules(rules, now, out, 0);
    this.rebuildExpiry(now);
    for (let index = 0; index < messages.length; index++) {
      source = index;
      const parsed = parseReading((messages[index] as InputMessage).value, now, this.config.limits);
      if (!parsed.ok) {
        out.deadLetters.push({ index, reason: parsed.reason, detail: parsed.detail });
        continue;
      }
      const { sensorId, time, fields, tags } = parsed.reading;
      out.readings++;
      out.lines.push({
        line: pointLineWith(MEASUREMENTS.readings, "sensor_id", sensorId, tags, fields, time),
        source: index,
      });

      const keys = this.keysOf(sensorId);
      // A batch's readings share `now`: each TTL deadline moves once per batch. (expire() checks a
      // deadline against the sensor's or field's last arrival before acting on it.)
      if (keys.ttlFrom !== now) {
        keys.ttlFrom = now;
        this.expiry.set(keys.ttl, now + this.ttlMs);
      }
      let flagged: Record<string, Anomaly[]> | undefined;
      for (const field in fields) {
        let key = keys.detectors[field];
        if (key === undefined) {
          key = `${DETECTOR_KEY}${sensorId}${SEP}${field}`;
          keys.detectors[field] = key;
        }
        let state = this.detectors.get(key);
        if (state === undefined) {
          state = newFieldState();
          this.detectors.set(key, state);
        }
        const found = detectInOrder(state, time, fields[field] as number, this.config.detectors);
        if (found === undefined) continue; // out of order for this sensor and field: stored only
        if (state.seenAt !== now) {
          state.seenAt = now;
          this.expiry.set(key, now + this.ttlMs);
        }
        this.dirty.add(key);
        if (found.length > 0) {
          flagged ??= {};
          flagged[field] = found;
        }
        for (const anomaly of found) {
          out.anomalies++;
          out.lines.push({
            line: pointLine(
              MEASUREMENTS.anomalies,
              { sensor_id: sensorId, field, detector: anomaly.detector },
              {
                value: anomaly.value,
                score: anomaly.score,
                threshold: anomaly.threshold,
                expected: anomaly.expected,
              },
              time,
            ),
            source: index,
          });
        }
      }

      if (time > this.maxEventTime) {
        this.maxEventTime = time;
        this.dirty.add(META_KEY);
      }
      if (keys.alertsEpoch !== this.alertsEpoch) {
        keys.alertsEpoch = this.alertsEpoch;
        keys.alerts = [];
        keys.alertRounds = [];
      }
      const cached = keys.alerts as (AlertState | undefined)[];
      const rounds = keys.alertRounds as number[];
      for (let r = 0; r < rules.rules.length; r++) {
        const rule = rules.rules[r] as AlertRule;
        const value = fields[rule.field];
        if (value === undefined || !selects(rule, sensorId, tags)) continue;
        let state = cached[r];
        if (state === undefined) {
          state = this.alertState(rule, sensorId);
          cached[r] = state;
          rounds[r] = this.round;
        } else if (rounds[r] !== this.round) {
          rounds[r] = this.round;
          this.markAlert(state);
        }
        if (rule.condition.type === "deadman" && (state.lastTime === undefined || time > state.lastTime)) {
          // A gap in this sensor's own event times (backfill, or a silence the timer did not see).
          const gap = checkDeadman(rule, sensorId, state, time);
          if (gap) this.emit(gap, out, index);
        }
        const transition = evaluateReading(
          rule,
          sensorId,
          state,
          time,
          value,
          flagged?.[rule.field] ?? NO_ANOMALIES,
          now,
        );
        if (state.fired !== undefined) state.fired.tags = tags;
        if (transition) this.emit(transition, out, index);
        if (rule.condition.type === "deadman") this.scheduleDeadman(rule, sensorId, state);
      }

      if (this.windows.isTooLate(sensorId, time)) {
        out.late.push(index);
        continue;
      }
      this.windows.add(sensorId, time, fields, tags, now, emit);
    }
    // How far the windows are closed moves when windows close (emitted) and otherwise only with the
    // sensors' clocks: worked out (a scan of every open window) at most once a second without one.
    if (emitted > 0 || (out.readings > 0 && now - this.progressAt >= PROGRESS_EVERY_MS))
      this.emitProgress(out, Math.max(0, messages.length - 1), now);
    return out;
  }

  /**
   * The named wall-clock timers, run by the worker between batches of the partition: sensors
   * silent for the windows' idleMs get their open windows closed (rollups written, the finest tier
   * published), deadman rules fire for sensors silent for their `after` since their last live
   * reading, and a changed rule set is applied even when no reading arrives. These are the only
   * decisions taken on the wall clock; their effect is in the changelog entries the worker commits
   * with the outputs, so a restore resumes from the state as the tick left it and never repeats or
   * undoes a firing.
   */
  tick(now: number, rules: RuleSet = NO_RULES): BatchOutput {
    const out = emptyBatchOutput();
    let emitted = 0;
    if (rules.version !== this.rulesVersion) this.applyRules(rules, now, out, 0);
    this.windows.sweepIdle(now, (w) => {
      emitted++;
      this.emitWindow(w, out, 0);
    });
    this.fireDeadmen(now, out);
    this.expire(now, () => emitted++, out);
    if (emitted > 0) this.emitProgress(out, 0, now);
    return out;
  }

  /**
   * The state TTL, a named wall-clock timer like the idle close: a field silent for stateTtlMs
   * loses its detector state; a sensor silent that long loses its windows (any still open are
   * emitted first), its clock and its alert states, except an alert that is firing (its end still
   * has to be told) or a deadman awaiting its deadline. Dropped entries are tombstoned in the
   * changelog the tick commits, so a restore does not bring them back and a replay after it starts
   * from the state without them. Sensors that come back start afresh.
   */
  private expire(now: number, counted: () => void, out: BatchOutput): void {
    this.rebuildExpiry(now);
    for (const key of this.expiry.due(now)) {
      if (key.startsWith(DETECTOR_KEY)) {
        const state = this.detectors.get(key);
        if (state === undefined) continue;
        const due = (state.seenAt ?? now) + this.ttlMs;
        if (due > now) this.expiry.set(key, due);
        else {
          this.detectors.delete(key);
          this.dirty.add(key);
        }
        continue;
      }
      const sensorId = key.slice(SENSOR_TTL_KEY.length);
      const seen = this.windows.seenOf(sensorId);
      if (seen !== undefined && seen + this.ttlMs > now) {
        this.expiry.set(key, seen + this.ttlMs);
        continue;
      }
      this.sensorKeys.delete(sensorId);
      this.alertsEpoch++;
      this.windows.forget(sensorId, (w) => {
        counted();
        this.emitWindow(w, out, 0);
      });
      for (const [ruleId, byRule] of this.alerts) {
        const state = byRule.get(sensorId);
        if (state === undefined || state.status === "firing") continue;
        if (this.deadmen.has(`${ruleId}${SEP}${sensorId}`)) continue;
        byRule.delete(sensorId);
        this.dirty.add(alertStateKey(ruleId, sensorId));
        if (byRule.size === 0) this.alerts.delete(ruleId);
      }
    }
  }

  /** After a restore: TTL deadlines from the restored state (a field with no arrival time counts from `now`). */
  private rebuildExpiry(now: number): void {
    if (!this.expiryStale) return;
    this.expiryStale = false;
    for (const [sensorId, seen] of this.windows.sensorsSeen())
      this.expiry.set(SENSOR_TTL_KEY + sensorId, seen + this.ttlMs);
    for (const [key, state] of this.detectors) this.expiry.set(key, (state.seenAt ?? now) + this.ttlMs);
  }

  /** The earliest wall-clock time a tick has something to do (undefined: nothing scheduled). */
  nextDeadline(): number | undefined {
    if (this.expiryStale) return Number.NEGATIVE_INFINITY; // rebuilt by the next tick
    const due = [this.windows.nextIdleDeadline(), this.deadmen.next(), this.expiry.next()].filter(
      (d): d is number => d !== undefined,
    );
    return due.length === 0 ? undefined : Math.min(...due);
  }

  /** True when the rule set differs from the one the state was last brought in line with. */
  rulesChanged(rules: RuleSet): boolean {
    return rules.version !== this.rulesVersion;
  }

  /** A window's rollup points (one per field, rewritten on every revision) and, for the finest tier, its Kafka message. */
  private emitWindow(w: Window, out: BatchOutput, source: number): void {
    const tier = tierByMs(w.sizeMs);
    if (tier !== undefined) {
      const tags = JSON.stringify(w.tags);
      for (const field of Object.keys(w.fields).sort()) {
        const a = w.fields[field] as Aggregate;
        out.lines.push({
          line: pointLine(
            ROLLUP_MEASUREMENT,
            { sensor_id: w.sensorId, field },
            {
              count: a.count,
              sum: a.sum,
              sumsq: a.sumsq,
              min: a.min,
              max: a.max,
              first: a.first,
              last: a.last,
              first_time: a.firstTime,
              last_time: a.lastTime,
              tags,
            },
            w.start,
          ),
          source,
          bucket: tier.name,
        });
      }
    }
    if (w.sizeMs === this.config.windows.tiersMs[0]) {
      out.windows.push(windowResult(w));
      if (w.emitted > 1) out.revisions++;
    }
  }

  /**
   * How far each tier's windows are closed on this partition: a reader answers times before it
   * from rollups and later ones from raw data. One point per partition, tier and wall-clock minute,
   * rewritten by every batch in that minute (the latest value is what counts; it can move back
   * when a sensor sends old data).
   */
  private emitProgress(out: BatchOutput, source: number, now: number): void {
    this.progressAt = now;
    const minute = Math.floor(now / 60_000) * 60_000;
    for (const [size, closed] of this.windows.closedThrough()) {
      const tier = tierByMs(size);
      if (tier === undefined || !Number.isFinite(closed)) continue;
      // Readers take the latest point: one per change is enough (not one more write per batch).
      if (this.progressSent.get(size) === closed) continue;
      this.progressSent.set(size, closed);
      out.lines.push({
        line: pointLine(
          PROGRESS_MEASUREMENT,
          { partition: String(this.partition), tier: tier.name },
          { closed_through: closed },
          minute,
        ),
        source,
        bucket: "1m",
      });
    }
  }

  /** The sensor's state keys, made once rather than concatenated (and hashed) for every reading. */
  private keysOf(sensorId: string): SensorKeys {
    let keys = this.sensorKeys.get(sensorId);
    if (keys === undefined) {
      keys = { ttl: SENSOR_TTL_KEY + sensorId, detectors: Object.create(null) as Record<string, string> };
      this.sensorKeys.set(sensorId, keys);
    }
    return keys;
  }

  private alertState(rule: AlertRule, sensorId: string): AlertState {
    let byRule = this.alerts.get(rule.id);
    if (byRule === undefined) {
      byRule = new Map();
      this.alerts.set(rule.id, byRule);
    }
    let state = byRule.get(sensorId);
    if (state === undefined) {
      state = newAlertState(rule);
      byRule.set(sensorId, state);
    }
    // The state object itself carries its changelog key (made once) and the round it was last
    // marked in, as properties JSON leaves out: marking it costs a property read, not a lookup.
    // (process() reaches the state and its round through the sensor's cache, SensorKeys.alerts.)
    const marked = state as Marked;
    if (marked[STATE_KEY] === undefined) {
      Object.defineProperty(state, STATE_KEY, { value: alertStateKey(rule.id, sensorId) });
      Object.defineProperty(state, MARKED_ROUND, { value: undefined, writable: true });
    }
    this.markAlert(state);
    return state;
  }

  /** Marks an alert state (one alertState returned) for the changelog of this round. */
  private markAlert(state: AlertState): void {
    const marked = state as Marked;
    if (marked[MARKED_ROUND] !== this.round) {
      marked[MARKED_ROUND] = this.round;
      this.dirtyAlerts.push(state);
    }
  }

  private emit(t: Transition, out: BatchOutput, source: number): void {
    out.transitions.push(t);
    out.lines.push({
      line: pointLine(
        MEASUREMENTS.alerts,
        { rule_id: t.rule.id, sensor_id: t.sensorId, severity: t.rule.severity, state: t.state },
        {
          value: t.value,
          threshold: t.threshold,
          message: t.message,
          rule_name: t.rule.name,
          ...(t.reason === undefined ? {} : { reason: t.reason }),
        },
        t.time,
      ),
      source,
    });
  }

  private scheduleDeadman(rule: AlertRule, sensorId: string, state: AlertState): void {
    // The timer key, made once per state object (a fresh string per reading is hashed every time).
    const marked = state as Marked;
    let key = marked[TIMER_KEY];
    if (key === undefined) {
      key = `${rule.id}${SEP}${sensorId}`;
      Object.defineProperty(state, TIMER_KEY, { value: key });
    }
    const due = deadmanDeadline(rule, state);
    if (due === undefined) this.deadmen.delete(key);
    else this.deadmen.set(key, due);
  }

  /** The wall-clock deadman timer: sensors silent for a deadman rule's `after` since their last live reading. */
  private fireDeadmen(now: number, out: BatchOutput): void {
    for (const key of this.deadmen.due(now)) {
      const [ruleId = "", sensorId = ""] = key.split(SEP);
      const rule = this.ruleById.get(ruleId);
      const state = this.alerts.get(ruleId)?.get(sensorId);
      if (rule === undefined || state === undefined) continue;
      const transition = checkDeadmanByClock(rule, sensorId, state, now);
      if (transition) {
        this.dirty.add(alertStateKey(ruleId, sensorId));
        this.emit(transition, out, 0);
      } else this.scheduleDeadman(rule, sensorId, state);
    }
  }

  /**
   * Brings the alert state in line with a changed rule set: open alerts of deleted or disabled rules,
   * or of rules re-targeted away from their sensor or field, are resolved, severity changes are
   * recorded, and state that no longer belongs to a rule is dropped (tombstoned). Those records are
   * timed by the rule record that made the change (`changedAt`), so applying the same change to the
   * same state again (a tick or batch retried after a failed commit, a restore) writes the same
   * points; `now` only when that time is unknown (a tombstone already compacted away).
   */
  private applyRules(rules: RuleSet, now: number, out: BatchOutput, source: number): void {
    const enabled = new Map(rules.rules.map((r) => [r.id, r]));
    const disabled = new Map((rules.disabled ?? []).map((r) => [r.id, r]));
    for (const [ruleId, byRule] of this.alerts) {
      const rule = enabled.get(ruleId) ?? disabled.get(ruleId);
      for (const [sensorId, state] of byRule) {
        const at = rules.changedAt?.get(ruleId) ?? now;
        const change = applyRuleChange(ruleId, rule, disabled.has(ruleId), sensorId, state, at);
        if (change.transition !== undefined) {
          this.dirty.add(alertStateKey(ruleId, sensorId));
          this.emit(change.transition, out, source);
        }
        if (change.drop) {
          this.dirty.add(alertStateKey(ruleId, sensorId));
          byRule.delete(sensorId);
        }
      }
      if (byRule.size === 0) this.alerts.delete(ruleId);
    }
    this.rulesVersion = rules.version;
    this.ruleById = enabled;
    this.alertsEpoch++;
    // Deadlines depend on the rules' `after`: rebuilt from the alert states (also after a restore).
    for (const [ruleId, byRule] of this.alerts) {
      const rule = enabled.get(ruleId);
      if (rule?.condition.type !== "deadman") continue;
      for (const [sensorId, state] of byRule) this.scheduleDeadman(rule, sensorId, state);
    }
  }

  /** Drops the messages this state already includes; `offsets` are the messages' Kafka offsets. */
  unseen<T extends { offset: string }>(messages: T[]): T[] {
    if (this.nextOffset < 0n) return messages;
    // A batch's offsets ascend: usually its first is already new, and nothing is dropped.
    const first = messages[0];
    if (first === undefined || BigInt(first.offset) >= this.nextOffset) return messages;
    return messages.filter((m) => BigInt(m.offset) >= this.nextOffset);
  }

  /** Records that the state now includes everything before `offset`. */
  advanceTo(offset: bigint): void {
    this.nextOffset = offset;
    this.dirty.add(META_KEY);
  }

  /** The state entries changed since the last call, as compacted-topic records. */
  takeChangelog(): ChangelogEntry[] {
    const entries: ChangelogEntry[] = [];
    // Alert states marked by readings; one that is no longer its rule's and sensor's state (dropped
    // or replaced since) is left to the key-marked entries below, which write what holds now.
    for (const state of this.dirtyAlerts) {
      const key = (state as Marked)[STATE_KEY] as string;
      if (this.dirty.has(key)) continue;
      const [, ruleId = "", sensorId = ""] = key.split(SEP);
      if (this.alerts.get(ruleId)?.get(sensorId) === state)
        entries.push({ key, value: JSON.stringify(state) });
    }
    this.dirtyAlerts = [];
    this.round++;
    for (const key of this.dirty) {
      if (key === META_KEY) {
        entries.push({
          key,
          value: JSON.stringify({ maxEventTime: this.maxEventTime, nextOffset: this.nextOffset.toString() }),
        });
      } else if (key.startsWith(DETECTOR_KEY)) {
        const state = this.detectors.get(key);
        entries.push({ key, value: state === undefined ? null : JSON.stringify(state) });
      } else if (key.startsWith(ALERT_KEY)) {
        const [, ruleId = "", sensorId = ""] = key.split(SEP);
        const state = this.alerts.get(ruleId)?.get(sensorId);
        entries.push({ key, value: state === undefined ? null : JSON.stringify(state) });
      }
    }
    this.dirty.clear();
    entries.push(...this.windows.takeChangelog());
    return entries;
  }

  /** The changelog records of the state changed since the last call: one per changed sensor. */
  takeRecords(): ChangelogEntry[] {
    return this.records.pack(this.takeChangelog(), (key) => this.entryValue(key));
  }

  /** Applies one changelog record as written by `takeRecords` (or the older per-entry format). */
  restoreRecord(key: string, value: string | null): void {
    for (const entry of this.records.unpack(key, value)) this.restore(entry.key, entry.value);
  }

  /** The current value of a sensor's state entry, as `takeChangelog` writes it (null: none). */
  private entryValue(key: string): string | null {
    if (key.startsWith(DETECTOR_KEY)) {
      const state = this.detectors.get(key);
      return state === undefined ? null : JSON.stringify(state);
    }
    if (key.startsWith(ALERT_KEY)) {
      const [, ruleId = "", sensorId = ""] = key.split(SEP);
      const state = this.alerts.get(ruleId)?.get(sensorId);
      return state === undefined ? null : JSON.stringify(state);
    }
    return this.windows.entryValue(key);
  }

  /** Applies one state entry (in log order) while rebuilding the state. */
  restore(key: string, value: string | null): void {
    this.expiryStale = true;
    if (key === META_KEY) {
      if (value !== null) {
        const meta = JSON.parse(value) as { maxEventTime: number | null; nextOffset?: string };
        this.maxEventTime = meta.maxEventTime ?? Number.NEGATIVE_INFINITY;
        this.nextOffset = BigInt(meta.nextOffset ?? "-1");
      }
    } else if (key.startsWith(DETECTOR_KEY)) {
      if (value === null) this.detectors.delete(key);
      else this.detectors.set(key, JSON.parse(value) as FieldState);
    } else if (key.startsWith(ALERT_KEY)) {
      this.alertsEpoch++;
      const [, ruleId = "", sensorId = ""] = key.split(SEP);
      if (value === null) this.alerts.get(ruleId)?.delete(sensorId);
      else {
        let byRule = this.alerts.get(ruleId);
        if (byRule === undefined) {
          byRule = new Map();
          this.alerts.set(ruleId, byRule);
        }
        byRule.set(sensorId, JSON.parse(value) as AlertState);
      }
    } else if (key.startsWith(WINDOW_KEY) || key.startsWith(SENSOR_KEY)) {
      this.windows.restore(key, value);
    }
  }

  get stateSize(): { detectors: number; windows: number } {
    return { detectors: this.detectors.size, windows: this.windows.size };
  }

  /** Every sensor this state holds anything of (detectors, alert states, windows or clock). */
  sensors(): Set<string> {
    const out = new Set<string>();
    for (const key of this.detectors.keys()) out.add(key.split(SEP)[1] ?? "");
    for (const byRule of this.alerts.values()) for (const sensorId of byRule.keys()) out.add(sensorId);
    for (const [sensorId] of this.windows.sensorsSeen()) out.add(sensorId);
    return out;
  }
}
