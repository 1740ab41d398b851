import { describe, expect, it } from "vitest";
import { addReading, aggregateOf } from "../../common/aggregate.js";
import type { AlertRule } from "../../common/rules.js";
import {
  type AlertState,
  checkDeadman,
  evaluateReading,
  newAlertState,
  type Transition,
} from "../../ingest/alerting.js";
import type { Anomaly } from "../../ingest/detectors.js";

function rule(overrides: Partial<AlertRule>): AlertRule {
  return {
    id: "r1",
    name: "rule",
    version: 1,
    created_at: "2026-01-01T00:00:00Z",
    updated_at: "2026-01-01T00:00:00Z",
    sensors: { type: "all" },
    field: "temperature",
    severity: "warning",
    condition: { type: "threshold", op: "above", value: 25 },
    ...overrides,
  };
}

/** Runs values at 1 s spacing and returns "state@second" for each transition. */
function run(
  r: AlertRule,
  values: (number | null)[],
  anomalies: (i: number) => Anomaly[] = () => [],
): string[] {
  const s: AlertState = newAlertState(r);
  const out: string[] = [];
  values.forEach((v, i) => {
    if (v === null) return;
    const t: Transition | undefined = evaluateReading(r, "s1", s, i * 1000, v, anomalies(i));
    if (t) out.push(`${t.state}@${t.time / 1000}`);
  });
  return out;
}

describe("alert state machine", () => {
  it("fires once per episode, not once per reading", () => {
    expect(run(rule({}), [20, 30, 30, 30, 20, 30, 20])).toEqual([
      "firing@1",
      "resolved@4",
      "firing@5",
      "resolved@6",
    ]);
  });

  it("waits out `for` and forgets a breach that ends before it", () => {
    const r = rule({ for: "2s" });
    expect(run(r, [30, 30, 20, 30, 30, 30, 20])).toEqual(["firing@5", "resolved@6"]);
  });

  it("resolves only past the hysteresis band", () => {
    const r = rule({ hysteresis: 2 });
    expect(run(r, [30, 24, 23.5, 23, 30])).toEqual(["firing@0", "resolved@3", "firing@4"]);
  });

  it("below: mirrors above", () => {
    const r = rule({ condition: { type: "threshold", op: "below", value: 0 }, hysteresis: 1 });
    expect(run(r, [5, -1, 0.5, 1, -3])).toEqual(["firing@1", "resolved@3", "firing@4"]);
  });

  it("rate of change per unit, ignoring out-of-order readings", () => {
    const r = rule({ condition: { type: "rate_of_change", per: "1m", op: "above", value: 60 } });
    // +2 per second = +120 per minute
    expect(run(r, [10, 12, 14, 14.5])).toEqual(["firing@1", "resolved@3"]);
  });

  it("window aggregates are judged when the next window starts, at the window's end", () => {
    const r = rule({ condition: { type: "window", fn: "max", window: "2s", op: "above", value: 25 } });
    expect(run(r, [20, 26, 20, 20, 20, 20])).toEqual(["firing@2", "resolved@4"]);
  });

  it("anomaly rules resolve after `resolve_after` without a flag", () => {
    const flag: Anomaly = { detector: "zscore", value: 1, score: 9, threshold: 4, expected: 0 };
    const r = rule({ condition: { type: "anomaly", detectors: ["zscore"] }, resolve_after: "3s" });
    expect(run(r, [1, 1, 1, 1, 1, 1, 1], (i) => (i === 1 || i === 2 ? [flag] : []))).toEqual([
      "firing@1",
      "resolved@5",
    ]);
    const other = rule({ condition: { type: "anomaly", detectors: ["delta"] } });
    expect(run(other, [1, 1], () => [flag])).toEqual([]);
  });

  it("deadman fires back-dated to when the silence passed `after`, and resolves on data", () => {
    const r = rule({ condition: { type: "deadman", after: "10s" } });
    const s = newAlertState(r);
    evaluateReading(r, "s1", s, 0, 1, []);
    expect(checkDeadman(r, "s1", s, 9_000)).toBeUndefined();
    expect(checkDeadman(r, "s1", s, 25_000)).toMatchObject({ state: "firing", time: 10_000 });
    expect(checkDeadman(r, "s1", s, 30_000)).toBeUndefined();
    expect(evaluateReading(r, "s1", s, 31_000, 1, [])).toMatchObject({ state: "resolved", time: 31_000 });
  });

  it("an edit to another kind of condition starts that condition's memory afresh", () => {
    const rate = rule({ condition: { type: "rate_of_change", per: "1s", op: "above", value: 5 } });
    const s = newAlertState(rate);
    evaluateReading(rate, "s1", s, 0, 0, []);
    const window = {
      ...rate,
      version: 2,
      condition: {
        type: "window" as const,
        fn: "mean" as const,
        window: "1s",
        op: "above" as const,
        value: 5,
      },
    };
    evaluateReading(window, "s1", s, 1000, 10, []);
    expect(s.prevValue).toBeUndefined();
    expect(s.window).toMatchObject({ start: 1000, count: 1 });
  });
});

describe("event-time order per rule and sensor", () => {
  /** Runs [second, value] readings in arrival order; returns "state@second" per transition. */
  function arrivals(r: AlertRule, readings: [number, number][]): string[] {
    const s = newAlertState(r);
    return readings.flatMap(([second, v]) => {
      const t = evaluateReading(r, "s1", s, second * 1000, v, []);
      return t ? [`${t.state}@${t.time / 1000}`] : [];
    });
  }

  it("a reading older than the latest one evaluated does not move a threshold alert", () => {
    expect(
      arrivals(rule({}), [
        [1, 20],
        [3, 30],
        [2, 20],
        [4, 30],
        [5, 20],
      ]),
    ).toEqual(["firing@3", "resolved@5"]);
  });

  it("a reading at the same event time as the latest one evaluated is not evaluated again", () => {
    expect(
      arrivals(rule({}), [
        [1, 30],
        [1, 20],
        [2, 30],
      ]),
    ).toEqual(["firing@1"]);
  });

  it("an out-of-order reading does not make a rate-of-change alert fire twice", () => {
    const r = rule({ condition: { type: "rate_of_change", per: "1s", op: "above", value: 5 } });
    expect(
      arrivals(r, [
        [1, 0],
        [2, 10],
        [3, 11],
        [0, -40],
        [4, 12],
        [5, 30],
      ]),
    ).toEqual(["firing@2", "resolved@3", "firing@5"]);
  });

  it("a window rule counts a reading of the window it is accumulating, in any order", () => {
    const r = rule({ condition: { type: "window", fn: "count", window: "10s", op: "above", value: 2 } });
    expect(
      arrivals(r, [
        [1, 0],
        [5, 0],
        [3, 0],
        [11, 0],
        [4, 0],
        [21, 0],
      ]),
    ).toEqual(["firing@10", "resolved@20"]);
  });
});

describe("window conditions on the one aggregate type", () => {
  it("accumulate the open window as an Aggregate, as windows and rollups do", () => {
    const r = rule({ condition: { type: "window", fn: "mean", window: "10s", op: "above", value: 25 } });
    const s = newAlertState(r);
    evaluateReading(r, "s1", s, 11_000, 30, []);
    evaluateReading(r, "s1", s, 13_000, 20, []);
    const expected = aggregateOf(30, 11_000);
    addReading(expected, 20, 13_000);
    expect(s.window).toEqual({ start: 10_000, ...expected });
  });

  it("a window state checkpointed in the older shape (count, sum, min, max) still judges its window", () => {
    const r = rule({ condition: { type: "window", fn: "mean", window: "10s", op: "above", value: 25 } });
    const s = newAlertState(r);
    (s as { window?: unknown }).window = { start: 10_000, count: 2, sum: 60, min: 29, max: 31 };
    expect(evaluateReading(r, "s1", s, 20_000, 0, [])).toMatchObject({ state: "firing", value: 30 });
  });
});
