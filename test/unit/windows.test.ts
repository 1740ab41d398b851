import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type Aggregate,
  addReading,
  aggregateOf,
  meanOf,
  mergeAggregates,
  stddevOf,
} from "../../common/aggregate.js";
import { ROLLUP_TIERS } from "../../common/rollups.js";
import {
  DEFAULT_WINDOWS,
  type Window,
  type WindowConfig,
  WindowStore,
  windowStart,
} from "../../ingest/windows.js";

const HOUR = Date.UTC(2024, 9, 27, 3);
const config: WindowConfig = {
  tiersMs: [60_000, 3_600_000],
  allowedLatenessMs: 10_000,
  revisionMs: 60_000,
  idleMs: 300_000,
};

function aggregateAll(values: { v: number; t: number }[]): Aggregate {
  const [head, ...rest] = values as [{ v: number; t: number }, ...{ v: number; t: number }[]];
  const a = aggregateOf(head.v, head.t);
  for (const { v, t } of rest) addReading(a, v, t);
  return a;
}

/** Integer-valued readings keep sums exact, so equality needs no tolerance. */
const readingsArb = fc.array(
  fc.record({ v: fc.integer({ min: -10_000, max: 10_000 }), t: fc.integer({ min: 0, max: 7_200_000 }) }),
  { minLength: 1, maxLength: 200 },
);

describe("Aggregate", () => {
  it("merging the aggregates of any split equals the aggregate of the whole (a rollup of rollups)", () => {
    fc.assert(
      fc.property(readingsArb, fc.integer({ min: 1, max: 199 }), (values, cut) => {
        const at = Math.min(cut, values.length - 1);
        const whole = aggregateAll(values);
        if (at === 0) return;
        const merged = mergeAggregates(aggregateAll(values.slice(0, at)), aggregateAll(values.slice(at)));
        expect(merged).toEqual(whole);
      }),
    );
  });

  it("derives the mean and the sample standard deviation, null for one reading", () => {
    const a = aggregateAll([2, 4, 4, 4, 5, 5, 7, 9].map((v, t) => ({ v, t })));
    expect(meanOf(a)).toBe(5);
    expect(stddevOf(a)).toBeCloseTo(Math.sqrt(32 / 7), 12);
    expect(stddevOf(aggregateOf(3, 0))).toBeNull();
    expect(stddevOf(aggregateAll([5, 5, 5].map((v, t) => ({ v, t }))))).toBe(0);
  });

  it("keeps the first and last reading by event time, whatever the arrival order", () => {
    const a = aggregateAll([
      { v: 3, t: 20 },
      { v: 1, t: 10 },
      { v: 9, t: 30 },
      { v: 4, t: 25 },
    ]);
    expect([a.first, a.firstTime, a.last, a.lastTime]).toEqual([1, 10, 9, 30]);
  });
});

const NOW = HOUR + 400 * 3_600_000;

describe("WindowStore", () => {
  function run(
    events: { sensor: string; t: number; v: number; now?: number }[],
    cfg = config,
    store = new WindowStore(cfg),
  ) {
    const emitted: { key: string; count: number; emitted: number }[] = [];
    const latest = new Map<string, Window>();
    let tooLate = 0;
    const emit = (w: Window) => {
      const key = `${w.sensorId}/${w.sizeMs}/${w.start}`;
      emitted.push({ key, count: w.fields.x?.count ?? 0, emitted: w.emitted });
      latest.set(key, { ...w, fields: { x: { ...(w.fields.x as Aggregate) } } });
    };
    for (const e of events) {
      store.sweepIdle(e.now ?? NOW, emit);
      if (store.isTooLate(e.sensor, e.t)) tooLate++;
      else store.add(e.sensor, e.t, { x: e.v }, {}, e.now ?? NOW, emit);
    }
    return { store, emitted, latest, tooLate };
  }

  it("closes a sensor's window when its own clock reaches end + lateness, not a millisecond before", () => {
    expect(
      run([
        { sensor: "a", t: HOUR + 1_000, v: 1 },
        { sensor: "a", t: HOUR + 69_999, v: 2 },
      ]).emitted,
    ).toEqual([]);
    expect(
      run([
        { sensor: "a", t: HOUR + 1_000, v: 1 },
        { sensor: "a", t: HOUR + 70_000, v: 2 },
      ]).emitted,
    ).toEqual([{ key: `a/60000/${HOUR}`, count: 1, emitted: 1 }]);
  });

  it("lets no other sensor's clock close, revise or drop a sensor's windows", () => {
    const { emitted, tooLate } = run([
      { sensor: "slow", t: HOUR + 1_000, v: 1 },
      { sensor: "fast", t: HOUR + 5 * 3_600_000, v: 2 },
      { sensor: "slow", t: HOUR + 30_000, v: 3 },
      { sensor: "slow", t: HOUR + 59_000, v: 4 },
    ]);
    expect(emitted).toEqual([]);
    expect(tooLate).toBe(0);
  });

  it("re-emits a closed window for each late reading inside the revision time, then drops it", () => {
    const { emitted, tooLate, store } = run([
      { sensor: "a", t: HOUR + 1_000, v: 1 },
      { sensor: "a", t: HOUR + 70_000, v: 2 },
      { sensor: "a", t: HOUR + 2_000, v: 3 },
      { sensor: "a", t: HOUR + 130_000, v: 4 },
      { sensor: "a", t: HOUR + 3_000, v: 5 },
    ]);
    expect(emitted.filter((e) => e.key === `a/60000/${HOUR}`)).toEqual([
      { key: `a/60000/${HOUR}`, count: 1, emitted: 1 },
      { key: `a/60000/${HOUR}`, count: 2, emitted: 2 },
    ]);
    expect(tooLate).toBe(1);
    // Left: the hour window and the minute windows of 70 s and 130 s.
    expect(store.size).toBe(3);
  });

  it("closes a silent sensor's windows on the wall clock, and drops them a revision time later", () => {
    const store = new WindowStore(config);
    const first = run([{ sensor: "a", t: HOUR + 1_000, v: 1, now: NOW }], config, store);
    expect(first.emitted).toEqual([]);
    const idle = run([{ sensor: "b", t: HOUR, v: 0, now: NOW + config.idleMs }], config, store);
    expect(idle.emitted.map((e) => e.key)).toEqual([`a/60000/${HOUR}`, `a/3600000/${HOUR}`]);
    expect(store.isTooLate("a", HOUR + 2_000)).toBe(false);
    run([{ sensor: "b", t: HOUR, v: 0, now: NOW + config.idleMs + config.revisionMs }], config, store);
    expect(store.isTooLate("a", HOUR + 2_000)).toBe(true);
  });

  it("every hour window holds exactly the merge of its minute windows, revisions included", () => {
    const eventsArb = fc
      .array(
        fc.record({
          sensor: fc.constantFrom("a", "b"),
          step: fc.integer({ min: -90_000, max: 120_000 }),
          v: fc.integer({ min: -500, max: 500 }),
        }),
        { minLength: 1, maxLength: 300 },
      )
      .map((items) => {
        let clock = HOUR;
        return items.map(({ sensor, step, v }) => {
          if (step >= 0) clock += step;
          return { sensor, t: Math.max(HOUR, clock + Math.min(step, 0)), v };
        });
      });
    fc.assert(
      fc.property(eventsArb, (events) => {
        // Each sensor's clock moves far on, so all its windows close.
        const far = HOUR + 100 * 3_600_000;
        const { latest } = run([...events, { sensor: "a", t: far, v: 0 }, { sensor: "b", t: far, v: 0 }]);
        for (const [key, hour] of latest) {
          const [sensor, size, start] = key.split("/");
          if (size !== "3600000") continue;
          const minutes = [...latest.entries()]
            .filter(([k]) => {
              const [s, z, st] = k.split("/");
              return s === sensor && z === "60000" && windowStart(Number(st), 3_600_000) === Number(start);
            })
            .map(([, w]) => w.fields.x as Aggregate);
          const merged = minutes.reduce((acc, m) => mergeAggregates(acc, m));
          expect({ ...merged, first: 0, last: 0 }).toEqual({
            ...(hour.fields.x as Aggregate),
            first: 0,
            last: 0,
          });
          expect(merged.firstTime).toBe(hour.fields.x?.firstTime);
          expect(merged.lastTime).toBe(hour.fields.x?.lastTime);
        }
      }),
      { numRuns: 100 },
    );
  });

  it("restored from its changelog, closes and revises exactly as the original", () => {
    const events = [
      { sensor: "a", t: HOUR + 1_000, v: 1 },
      { sensor: "b", t: HOUR + 30_000, v: 2 },
      { sensor: "a", t: HOUR + 65_000, v: 3 },
    ];
    const original = run(events).store;
    const restored = new WindowStore(config);
    for (const e of original.takeChangelog()) restored.restore(e.key, e.value);
    const more = [
      { sensor: "a", t: HOUR + 75_000, v: 4 },
      { sensor: "a", t: HOUR + 10_000, v: 5 },
      { sensor: "b", t: HOUR + 200_000, v: 6 },
    ];
    const a = run(more, config, original).emitted;
    const b = run(more, config, restored).emitted;
    expect(b).toEqual(a);
    expect(a.length).toBeGreaterThan(1);
    expect(restored.closedThrough()).toEqual(original.closedThrough());
  });

  it("keeps a window of every rollup tier by default", () => {
    expect(DEFAULT_WINDOWS.tiersMs).toEqual(ROLLUP_TIERS.map((t) => t.ms));
  });
});
