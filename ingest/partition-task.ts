/**
 * Everything the worker computes for one Kafka partition of sensor-readings-raw: parse, detect,
 * window. It owns that partition's state (detectors, open windows, stream time), records which
 * state keys a batch touched, and hands them out as changelog entries so the state can be
 * rebuilt exactly after a crash or on another worker. No I/O happens here.
 */
import { type DeadLetterReason, parseReading, type ReadingLimits } from "../common/reading.js";
import { type AlertRule, selects } from "../common/rules.js";
import { MEASUREMENTS } from "../common/topics.js";
import {
  type AlertState,
  checkDeadman,
  evaluateReading,
  newAlertState,
  type Transition,
} from "./alerting.js";
import { type Anomaly, type DetectorConfig, detect, type FieldState, newFieldState } from "./detectors.js";
import type { TaggedLine } from "./influx-writer.js";
import { pointLine } from "./line-protocol.js";
import {
  addToWindow,
  closeWindows,
  isLate,
  type SensorWindows,
  type WindowConfig,
  type WindowResult,
} from "./windows.js";

export interface TaskConfig {
  detectors: DetectorConfig;
  windows: WindowConfig;
  limits: ReadingLimits;
}

export interface InputMessage {
  value: Buffer | null;
}

/** The enabled alert rules as of this batch; `version` changes whenever any rule does. */
export interface RuleSet {
  version: number;
  rules: AlertRule[];
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
  /** Indexes of readings that arrived after their window was final. */
  late: number[];
  windows: WindowResult[];
  /** Alert transitions, in event order (already included in `lines`). */
  transitions: Transition[];
  readings: number;
  anomalies: number;
}

export interface ChangelogEntry {
  key: string;
  /** JSON, or null for a tombstone. */
  value: string | null;
}

const SEP = "\u001f";
const META_KEY = "meta";

export class PartitionTask {
  private maxEventTime = Number.NEGATIVE_INFINITY;
  /**
   * The Kafka offset after the last message this state includes. A consumer can be handed an older
   * position (a transactional offset commit not yet visible after a rebalance); messages before
   * this offset are already in the state and its outputs, and must not be applied twice.
   */
  private nextOffset = -1n;
  private readonly detectors = new Map<string, FieldState>();
  private readonly windows = new Map<string, SensorWindows>();
  /** Alert state by rule id, then sensor id. */
  private readonly alerts = new Map<string, Map<string, AlertState>>();
  private rulesVersion = -1;
  private readonly dirty = new Set<string>();

  constructor(private readonly config: TaskConfig) {}

  process(messages: InputMessage[], now: number, rules: RuleSet = NO_RULES): BatchOutput {
    const out: BatchOutput = {
      lines: [],
      deadLetters: [],
      late: [],
      windows: [],
      transitions: [],
      readings: 0,
      anomalies: 0,
    };
    if (rules.version !== this.rulesVersion) this.dropDeletedRules(rules);
    const touchedSensors = new Set<string>();
    for (let index = 0; index < messages.length; index++) {
      const parsed = parseReading((messages[index] as InputMessage).value, now, this.config.limits);
      if (!parsed.ok) {
        out.deadLetters.push({ index, reason: parsed.reason, detail: parsed.detail });
        continue;
      }
      const { sensorId, time, fields, tags } = parsed.reading;
      out.readings++;
      out.lines.push({
        line: pointLine(MEASUREMENTS.readings, { ...tags, sensor_id: sensorId }, fields, time),
        source: index,
      });

      const flagged: Record<string, Anomaly[]> = {};
      for (const field in fields) {
        const key = `d${SEP}${sensorId}${SEP}${field}`;
        let state = this.detectors.get(key);
        if (state === undefined) {
          state = newFieldState();
          this.detectors.set(key, state);
        }
        this.dirty.add(key);
        const found = detect(state, fields[field] as number, this.config.detectors);
        if (found.length > 0) flagged[field] = found;
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
        // Silence is judged on stream time, once per second of it: deterministic for any batching.
        const second = Math.floor(time / 1000);
        const advanced = second > Math.floor(this.maxEventTime / 1000);
        this.maxEventTime = time;
        this.dirty.add(META_KEY);
        if (advanced) this.checkDeadmen(rules, out, index);
      }
      for (const rule of rules.rules) {
        const value = fields[rule.field];
        if (value === undefined || !selects(rule, sensorId, tags)) continue;
        const state = this.alertState(rule, sensorId);
        const transition = evaluateReading(rule, sensorId, state, time, value, flagged[rule.field] ?? []);
        if (transition) this.emit(transition, out, index);
      }

      if (isLate(time, this.maxEventTime, this.config.windows)) {
        out.late.push(index);
        continue;
      }
      let sensorWindows = this.windows.get(sensorId);
      if (sensorWindows === undefined) {
        sensorWindows = {};
        this.windows.set(sensorId, sensorWindows);
      }
      addToWindow(sensorWindows, time, fields, this.config.windows);
      touchedSensors.add(sensorId);
    }
    // Stream time only moves forward, so windows can only close when it does; closing is checked
    // for every sensor with open windows, not just the ones in this batch.
    if (out.readings > 0) {
      for (const [sensorId, sensorWindows] of this.windows) {
        const closed = closeWindows(sensorId, sensorWindows, this.maxEventTime, this.config.windows);
        if (closed.length > 0) {
          out.windows.push(...closed);
          touchedSensors.add(sensorId);
        }
      }
    }
    for (const sensorId of touchedSensors) this.dirty.add(`w${SEP}${sensorId}`);
    return out;
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
    this.dirty.add(`a${SEP}${rule.id}${SEP}${sensorId}`);
    return state;
  }

  private emit(t: Transition, out: BatchOutput, source: number): void {
    out.transitions.push(t);
    out.lines.push({
      line: pointLine(
        MEASUREMENTS.alerts,
        { rule_id: t.rule.id, sensor_id: t.sensorId, severity: t.rule.severity, state: t.state },
        { value: t.value, threshold: t.threshold, message: t.message, rule_name: t.rule.name },
        t.time,
      ),
      source,
    });
  }

  /** Deadman rules fire on silence, which only stream time moving on can reveal. */
  private checkDeadmen(rules: RuleSet, out: BatchOutput, source: number): void {
    for (const rule of rules.rules) {
      if (rule.condition.type !== "deadman") continue;
      for (const [sensorId, state] of this.alerts.get(rule.id) ?? []) {
        const transition = checkDeadman(rule, sensorId, state, this.maxEventTime);
        if (transition) {
          this.dirty.add(`a${SEP}${rule.id}${SEP}${sensorId}`);
          this.emit(transition, out, source);
        }
      }
    }
  }

  /** State of rules that were deleted or disabled is dropped (and tombstoned in the changelog). */
  private dropDeletedRules(rules: RuleSet): void {
    const live = new Set(rules.rules.map((r) => r.id));
    for (const [ruleId, byRule] of this.alerts) {
      if (live.has(ruleId)) continue;
      for (const sensorId of byRule.keys()) this.dirty.add(`a${SEP}${ruleId}${SEP}${sensorId}`);
      this.alerts.delete(ruleId);
    }
    this.rulesVersion = rules.version;
  }

  /** Drops the messages this state already includes; `offsets` are the messages' Kafka offsets. */
  unseen<T extends { offset: string }>(messages: T[]): T[] {
    if (this.nextOffset < 0n) return messages;
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
    for (const key of this.dirty) {
      if (key === META_KEY) {
        entries.push({
          key,
          value: JSON.stringify({ maxEventTime: this.maxEventTime, nextOffset: this.nextOffset.toString() }),
        });
      } else if (key.startsWith(`d${SEP}`)) {
        entries.push({ key, value: JSON.stringify(this.detectors.get(key)) });
      } else if (key.startsWith(`a${SEP}`)) {
        const [, ruleId = "", sensorId = ""] = key.split(SEP);
        const state = this.alerts.get(ruleId)?.get(sensorId);
        entries.push({ key, value: state === undefined ? null : JSON.stringify(state) });
      } else {
        const sensorId = key.slice(2);
        const sensorWindows = this.windows.get(sensorId);
        if (sensorWindows === undefined || Object.keys(sensorWindows).length === 0) {
          this.windows.delete(sensorId);
          entries.push({ key, value: null });
        } else {
          entries.push({ key, value: JSON.stringify(sensorWindows) });
        }
      }
    }
    this.dirty.clear();
    return entries;
  }

  /** Applies one changelog record (in log order) while rebuilding the state. */
  restore(key: string, value: string | null): void {
    if (key === META_KEY) {
      if (value !== null) {
        const meta = JSON.parse(value) as { maxEventTime: number | null; nextOffset?: string };
        this.maxEventTime = meta.maxEventTime ?? Number.NEGATIVE_INFINITY;
        this.nextOffset = BigInt(meta.nextOffset ?? "-1");
      }
    } else if (key.startsWith(`d${SEP}`)) {
      if (value === null) this.detectors.delete(key);
      else this.detectors.set(key, JSON.parse(value) as FieldState);
    } else if (key.startsWith(`a${SEP}`)) {
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
    } else if (key.startsWith(`w${SEP}`)) {
      const sensorId = key.slice(2);
      if (value === null) this.windows.delete(sensorId);
      else this.windows.set(sensorId, JSON.parse(value) as SensorWindows);
    }
  }

  get stateSize(): { detectors: number; sensorsWithOpenWindows: number } {
    return { detectors: this.detectors.size, sensorsWithOpenWindows: this.windows.size };
  }
}
