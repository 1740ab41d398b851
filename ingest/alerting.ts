/**
 * Alert-rule evaluation, pure and incremental. One small state machine per (rule, sensor):
 * ok → pending (condition holds, waiting out `for`) → firing → ok. Only the edges are reported:
 * one `firing` when an alert starts, one `resolved` when it ends, never one per reading.
 * All times are event times, so a replay evaluates exactly as the first run did.
 *
 * Event-time order: a (rule, sensor) state evaluates only readings later than the latest one it
 * evaluated (`lastTime`); an older or equal one (out of order, or a duplicate) is stored by the
 * worker but moves no alert, so a late value cannot resolve and re-fire an alert or count a rate
 * twice. Window conditions are the exception that order does not matter to: a reading counts if it
 * falls in the window being accumulated, whatever its order within it; earlier windows are judged.
 */
import { type Aggregate, addReading, aggregateOf, meanOf } from "../common/aggregate.js";
import { type AlertRule, type Condition, durationToMs, selects } from "../common/rules.js";
import type { Anomaly } from "./detectors.js";

export interface AlertState {
  status: "ok" | "pending" | "firing";
  /** Event time the condition started holding (pending) or the alert fired (firing). */
  since: number;
  /** Condition type the sub-state below belongs to; reset when a rule edit changes it. */
  kind: string;
  /** Event time of the latest reading evaluated (not used by window conditions). */
  lastTime?: number;
  prevValue?: number;
  prevTime?: number;
  /** The window being accumulated (window conditions): its start and the one aggregate type. */
  window?: WindowState;
  lastSeen?: number;
  /**
   * Deadman: wall-clock arrival of the latest live reading (event time within `after` of its
   * arrival); undefined while no live reading arms the wall-clock timer (backfill, or fired).
   */
  seenAt?: number;
  lastAnomaly?: number;
  /**
   * While firing: what the alert fired under (the sensor's tags then, for re-checking a tag
   * selector), so a rule change can end or update it, also after a restore.
   */
  fired?: FiredUnder;
}

export type WindowState = Aggregate & { start: number };

export interface FiredUnder {
  severity: AlertRule["severity"];
  field: string;
  name: string;
  tags: Record<string, string>;
  value: number;
  threshold: number;
  /** A deadman alert that the wall-clock timer fired (rather than a gap in event times). */
  byClock?: boolean;
}

/** Why a transition happened when it was not the condition itself. */
export type TransitionReason = "rule_deleted" | "rule_disabled" | "rule_retargeted" | "severity_changed";

/** What a transition needs of its rule; a deleted rule is known only by what its alert recorded. */
export type RuleRef = Pick<AlertRule, "id" | "name" | "severity" | "webhook">;

export interface Transition {
  rule: RuleRef;
  sensorId: string;
  /** `severity_changed`: the rule's severity changed while the alert fired; it fires on. */
  state: "firing" | "resolved" | "severity_changed";
  time: number;
  value: number;
  threshold: number;
  message: string;
  reason?: TransitionReason;
}

/** What one evaluation saw: whether the condition holds, whether it is clear (hysteresis), the value. */
interface Observation {
  breach: boolean;
  clear: boolean;
  value: number;
  threshold: number;
  time: number;
}

const DEFAULT_RESOLVE_AFTER = "5m";

export function newAlertState(rule: AlertRule): AlertState {
  return { status: "ok", since: 0, kind: conditionKind(rule.condition) };
}

/** Each condition's kind, computed once per condition object (it is asked for every reading). */
const KINDS = new WeakMap<Condition, string>();
function conditionKind(c: Condition): string {
  let kind = KINDS.get(c);
  if (kind === undefined) {
    kind = c.type === "window" ? `window:${c.window}` : c.type;
    KINDS.set(c, kind);
  }
  return kind;
}

/**
 * The one observation being stepped: filled per reading and read by `step` before the next, never
 * kept (a transition copies what it needs), so evaluating a reading allocates nothing.
 */
const OBSERVED: Observation = { breach: false, clear: false, value: 0, threshold: 0, time: 0 };

function observe(
  breach: boolean,
  clear: boolean,
  value: number,
  threshold: number,
  time: number,
): Observation {
  OBSERVED.breach = breach;
  OBSERVED.clear = clear;
  OBSERVED.value = value;
  OBSERVED.threshold = threshold;
  OBSERVED.time = time;
  return OBSERVED;
}

/** `x` against `limit` as `op` says: a breach, or (past the hysteresis) clear. */
function compared(
  op: "above" | "below",
  x: number,
  limit: number,
  hysteresis: number,
  time: number,
): Observation {
  return op === "above"
    ? observe(x > limit, x <= limit - hysteresis, x, limit, time)
    : observe(x < limit, x >= limit + hysteresis, x, limit, time);
}

function describe(rule: AlertRule, o: Observation, state: "firing" | "resolved", sensorId: string): string {
  const c = rule.condition;
  const what =
    c.type === "threshold"
      ? `${rule.field} ${o.value} ${c.op} ${c.value}`
      : c.type === "rate_of_change"
        ? `${rule.field} changing ${o.value.toPrecision(4)} per ${c.per} (${c.op} ${c.value})`
        : c.type === "window"
          ? `${c.window} ${c.fn} of ${rule.field} ${o.value.toPrecision(6)} (${c.op} ${c.value})`
          : c.type === "anomaly"
            ? `${rule.field} flagged as anomalous (${o.value})`
            : `no reading for ${c.after}`;
  return `${rule.name}: ${sensorId} ${state === "firing" ? "" : "back to normal after "}${what}`;
}

/** Advances the state machine with one observation; returns the transition it causes, if any. */
function step(rule: AlertRule, sensorId: string, s: AlertState, o: Observation): Transition | undefined {
  const forMs = rule.for ? durationToMs(rule.for) : 0;
  if (s.status === "firing") {
    if (!o.clear) return undefined;
    s.status = "ok";
    s.since = o.time;
    s.fired = undefined;
    return transition(rule, sensorId, "resolved", o);
  }
  if (!o.breach) {
    s.status = "ok";
    return undefined;
  }
  if (s.status === "ok") {
    s.status = "pending";
    s.since = o.time;
  }
  if (o.time - s.since < forMs) return undefined;
  return fire(rule, sensorId, s, o);
}

function fire(rule: AlertRule, sensorId: string, s: AlertState, o: Observation): Transition {
  s.status = "firing";
  s.since = o.time;
  s.fired = {
    severity: rule.severity,
    field: rule.field,
    name: rule.name,
    tags: s.fired?.tags ?? {},
    value: o.value,
    threshold: o.threshold,
  };
  return transition(rule, sensorId, "firing", o);
}

/**
 * What a rule change does to an alert of `ruleId` for `sensorId` (state `s`), made at `changedAt`
 * (the rule record's time; the records written are timed by it): `rule` is the rule now (undefined when deleted), `disabled` whether it is disabled. A
 * firing alert whose rule was deleted or disabled, or no longer watches the sensor or the field it
 * fired on, is resolved, the message saying why; one whose severity changed gets one
 * severity_changed record and fires on. Returns `drop` when the state no longer belongs to the rule.
 */
export function applyRuleChange(
  ruleId: string,
  rule: AlertRule | undefined,
  disabled: boolean,
  sensorId: string,
  s: AlertState,
  changedAt: number,
): { transition?: Transition; drop: boolean } {
  const fired = s.fired;
  const gone = rule === undefined || disabled;
  const retargeted =
    !gone && fired !== undefined && (rule.field !== fired.field || !selects(rule, sensorId, fired.tags));
  if (s.status !== "firing" || fired === undefined) return { drop: gone };
  const ref: RuleRef = rule ?? { id: ruleId, name: fired.name, severity: fired.severity };
  // Never before the episode began (a rule record can predate a firing it had not reached yet).
  const time = Math.max(changedAt, s.since);
  const base = { sensorId, time, value: fired.value, threshold: fired.threshold };
  if (gone || retargeted) {
    const reason: TransitionReason = gone ? (disabled ? "rule_disabled" : "rule_deleted") : "rule_retargeted";
    const why =
      reason === "rule_retargeted"
        ? `rule retargeted: it no longer watches ${fired.field} of this sensor`
        : reason === "rule_deleted"
          ? "rule deleted"
          : "rule disabled";
    s.status = "ok";
    s.since = time;
    s.fired = undefined;
    return {
      transition: {
        ...base,
        rule: ref,
        state: "resolved",
        reason,
        message: `${fired.name}: ${sensorId} resolved, ${why}`,
      },
      drop: true,
    };
  }
  if (rule.severity !== fired.severity) {
    const message = `${rule.name}: ${sensorId} still firing; severity ${fired.severity} → ${rule.severity}`;
    fired.severity = rule.severity;
    fired.name = rule.name;
    return {
      transition: { ...base, rule, state: "severity_changed", reason: "severity_changed", message },
      drop: false,
    };
  }
  fired.name = rule.name;
  return { drop: false };
}

function transition(
  rule: AlertRule,
  sensorId: string,
  state: "firing" | "resolved",
  o: Observation,
): Transition {
  return {
    rule,
    sensorId,
    state,
    time: o.time,
    value: o.value,
    threshold: o.threshold,
    message: describe(rule, o, state, sensorId),
  };
}

/**
 * Evaluates one reading's value of `rule.field` (plus the anomalies flagged on it) against a rule.
 * Deadman rules only note the reading here (`arrival`: the worker's clock when it arrived, which
 * arms the wall-clock timer); `checkDeadman` and `checkDeadmanByClock` decide silence.
 */
export function evaluateReading(
  rule: AlertRule,
  sensorId: string,
  s: AlertState,
  time: number,
  x: number,
  anomalies: Anomaly[],
  arrival?: number,
): Transition | undefined {
  const kind = conditionKind(rule.condition);
  if (s.kind !== kind) {
    // The rule was edited to another kind of condition: its memory no longer applies.
    Object.assign(s, {
      kind,
      lastTime: undefined,
      prevValue: undefined,
      prevTime: undefined,
      window: undefined,
      lastSeen: undefined,
      seenAt: undefined,
      lastAnomaly: undefined,
    });
  }
  const c = rule.condition;
  if (c.type !== "window") {
    if (s.lastTime !== undefined && time <= s.lastTime) return undefined;
    s.lastTime = time;
  }
  const h = rule.hysteresis ?? 0;
  switch (c.type) {
    case "threshold":
      return step(rule, sensorId, s, compared(c.op, x, c.value, h, time));
    case "rate_of_change": {
      const prevValue = s.prevValue;
      const prevTime = s.prevTime;
      s.prevValue = x;
      s.prevTime = time;
      if (prevValue === undefined || prevTime === undefined) return undefined;
      const rate = ((x - prevValue) / (time - prevTime)) * durationToMs(c.per);
      return step(rule, sensorId, s, compared(c.op, rate, c.value, h, time));
    }
    case "anomaly": {
      const hit = anomalies.find((a) => c.detectors === undefined || c.detectors.includes(a.detector));
      if (hit) s.lastAnomaly = Math.max(s.lastAnomaly ?? time, time);
      const quiet =
        s.lastAnomaly === undefined ||
        time - s.lastAnomaly >= durationToMs(rule.resolve_after ?? DEFAULT_RESOLVE_AFTER);
      return step(rule, sensorId, s, observe(hit !== undefined, quiet, x, hit?.threshold ?? 0, time));
    }
    case "deadman": {
      s.lastSeen = Math.max(s.lastSeen ?? time, time);
      const after = durationToMs(c.after);
      const live = arrival === undefined || time >= arrival - after;
      // Backfill (stamped more than `after` before it arrived) says nothing about the sensor now:
      // it neither arms the wall-clock timer nor ends a silence that timer found.
      if (!live && s.status === "firing" && s.fired?.byClock === true) return undefined;
      if (live && arrival !== undefined) s.seenAt = arrival;
      // Data arrived: a silent sensor is alive again.
      return step(rule, sensorId, s, observe(false, true, x, after / 1000, time));
    }
    case "window": {
      const size = durationToMs(c.window);
      const start = Math.floor(time / size) * size;
      const w = s.window;
      let transition: Transition | undefined;
      if (w !== undefined && start < w.start) return undefined; // belongs to a window already evaluated
      if (w !== undefined && start > w.start) {
        const value = c.fn === "mean" ? meanOf(w) : c.fn === "min" ? w.min : c.fn === "max" ? w.max : w.count;
        transition = step(rule, sensorId, s, compared(c.op, value, c.value, h, w.start + size));
      }
      if (w === undefined || start > w.start) s.window = { start, ...aggregateOf(x, time) };
      else addReading(w, x, time);
      return transition;
    }
  }
}

/**
 * The wall-clock deadman timer: fires when `now` is `after` or more past the arrival of the
 * sensor's latest live reading. The firing is timed at that deadline (seenAt + after), not at
 * `now`, and disarms the timer until the next live reading: one firing per silence.
 */
export function checkDeadmanByClock(
  rule: AlertRule,
  sensorId: string,
  s: AlertState,
  now: number,
): Transition | undefined {
  const c = rule.condition;
  if (c.type !== "deadman" || s.seenAt === undefined || s.status === "firing") return undefined;
  const after = durationToMs(c.after);
  const due = s.seenAt + after;
  if (now < due) return undefined;
  s.seenAt = undefined;
  const t = fire(rule, sensorId, s, {
    breach: true,
    clear: false,
    value: after / 1000,
    threshold: after / 1000,
    time: due,
  });
  if (s.fired !== undefined) s.fired.byClock = true;
  return t;
}

/** The wall-clock time `checkDeadmanByClock` fires, if armed. */
export function deadmanDeadline(rule: AlertRule, s: AlertState): number | undefined {
  const c = rule.condition;
  if (c.type !== "deadman" || s.seenAt === undefined || s.status === "firing") return undefined;
  return s.seenAt + durationToMs(c.after);
}

/**
 * A gap in the sensor's own event times: fires, back-dated to lastSeen + after, when a reading at
 * `streamTime` (that sensor's) comes `after` or more after the one before it.
 */
export function checkDeadman(
  rule: AlertRule,
  sensorId: string,
  s: AlertState,
  streamTime: number,
): Transition | undefined {
  const c = rule.condition;
  if (c.type !== "deadman" || s.lastSeen === undefined || s.status === "firing") return undefined;
  const after = durationToMs(c.after);
  if (streamTime - s.lastSeen < after) return undefined;
  return fire(rule, sensorId, s, {
    breach: true,
    clear: false,
    value: (streamTime - s.lastSeen) / 1000,
    threshold: after / 1000,
    time: s.lastSeen + after,
  });
}
