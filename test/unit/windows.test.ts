import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  addToWindow,
  closeWindows,
  DEFAULT_WINDOWS,
  isLate,
  type SensorWindows,
  type WindowConfig,
  type WindowResult,
  watermark,
  windowStart,
} from "../../ingest/windows.js";

/** 2024-10-27T03:33:00Z, a minute boundary. */
const MINUTE = Date.UTC(2024, 9, 27, 3, 33);
const config: WindowConfig = { sizeMs: 60_000, allowedLatenessMs: 10_000 };

describe("window math", () => {
  it("aligns windows to the epoch, start inclusive, end exclusive", () => {
    expect(windowStart(MINUTE, 60_000)).toBe(MINUTE);
    expect(windowStart(MINUTE + 59_999, 60_000)).toBe(MINUTE);
    expect(windowStart(MINUTE + 60_000, 60_000)).toBe(MINUTE + 60_000);
    expect(windowStart(MINUTE - 1, 60_000)).toBe(MINUTE - 60_000);
    expect(windowStart(12_345, 5_000)).toBe(10_000);
  });

  it("puts the watermark allowed lateness behind stream time", () => {
    expect(watermark(MINUTE, config)).toBe(MINUTE - 10_000);
    expect(watermark(MINUTE, { sizeMs: 60_000, allowedLatenessMs: 0 })).toBe(MINUTE);
  });

  it("classifies late exactly when the watermark reaches the window end", () => {
    const time = MINUTE + 30_000;
    const end = MINUTE + 60_000;
    expect(isLate(time, end + 10_000 - 1, config)).toBe(false);
    expect(isLate(time, end + 10_000, config)).toBe(true);
    // The first and last millisecond of the window share its fate.
    expect(isLate(MINUTE, end + 10_000, config)).toBe(true);
    expect(isLate(end - 1, end + 10_000, config)).toBe(true);
    expect(isLate(end, end + 10_000, config)).toBe(false);
  });

  it("never classifies the reading that sets stream time as late", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: MINUTE, max: MINUTE + 1e9 }),
        fc.integer({ min: 1000, max: 3_600_000 }),
        fc.integer({ min: 0, max: 3_600_000 }),
        (time, sizeMs, allowedLatenessMs) => {
          expect(isLate(time, time, { sizeMs, allowedLatenessMs })).toBe(false);
        },
      ),
    );
  });
});

describe("closeWindows", () => {
  function windowsWith(times: number[]): SensorWindows {
    const windows: SensorWindows = {};
    for (const t of times) addToWindow(windows, t, { temperature: 20 }, config);
    return windows;
  }

  it("closes a window only once the watermark passes its end", () => {
    const windows = windowsWith([MINUTE + 1_000]);
    expect(closeWindows("s", windows, MINUTE + 69_999, config)).toEqual([]);
    expect(Object.keys(windows)).toEqual([String(MINUTE)]);
    const closed = closeWindows("s", windows, MINUTE + 70_000, config);
    expect(closed.map((w) => [w.window_start, w.window_end])).toEqual([[MINUTE, MINUTE + 60_000]]);
    expect(windows).toEqual({});
  });

  it("returns the closed windows oldest first and keeps the open ones", () => {
    const windows = windowsWith([MINUTE + 180_000, MINUTE + 120_000, MINUTE, MINUTE + 60_000]);
    const closed = closeWindows("s", windows, MINUTE + 190_000, config);
    expect(closed.map((w) => w.window_start)).toEqual([MINUTE, MINUTE + 60_000, MINUTE + 120_000]);
    expect(Object.keys(windows)).toEqual([String(MINUTE + 180_000)]);
  });

  it("reports avg, min, max and count per field, in the seed's names", () => {
    const windows: SensorWindows = {};
    addToWindow(windows, MINUTE + 1, { temperature: 20, humidity: 40 }, config);
    addToWindow(windows, MINUTE + 2, { temperature: 22 }, config);
    addToWindow(windows, MINUTE + 3, { temperature: 27 }, config);
    expect(closeWindows("sensor_1", windows, MINUTE + 1e6, config)).toEqual([
      {
        sensor_id: "sensor_1",
        window_start: MINUTE,
        window_end: MINUTE + 60_000,
        count: 3,
        avg_humidity: 40,
        min_humidity: 40,
        max_humidity: 40,
        count_humidity: 1,
        avg_temperature: 23,
        min_temperature: 20,
        max_temperature: 27,
        count_temperature: 3,
      },
    ]);
  });
});

interface Event {
  sensor: string;
  time: number;
  value: number;
}

/** Readings that go forward with jitter: some a little out of order, some far behind. */
const eventsArb = fc.array(
  fc.record({
    sensor: fc.constantFrom("a", "b", "c"),
    step: fc.integer({ min: -150_000, max: 40_000 }),
    value: fc.double({ min: -1e6, max: 1e6, noNaN: true }).map((v) => (v === 0 ? 0 : v)),
  }),
  { maxLength: 150, size: "max" },
);

function toEvents(steps: { sensor: string; step: number; value: number }[]): Event[] {
  let clock = MINUTE + 7_000;
  return steps.map(({ sensor, step, value }) => {
    // Negative steps are out-of-order readings that do not move the clock.
    if (step >= 0) clock += step;
    return { sensor, time: step >= 0 ? clock : clock + step, value };
  });
}

describe("windows against a naive computation", () => {
  const configArb = fc.record({
    sizeMs: fc.constantFrom(10_000, 60_000, 15_000),
    allowedLatenessMs: fc.constantFrom(0, 5_000, 10_000, 30_000),
  });

  it("aggregates every on-time reading once and classifies late exactly as the watermark says", () => {
    let lateSeen = 0;
    let onTimeSeen = 0;
    fc.assert(
      fc.property(eventsArb, configArb, fc.integer({ min: 1, max: 10 }), (steps, cfg, closeEvery) => {
        const events = toEvents(steps);
        const windows = new Map<string, SensorWindows>();
        const emitted: WindowResult[] = [];
        const late: number[] = [];
        let maxEventTime = Number.NEGATIVE_INFINITY;
        events.forEach((e, i) => {
          maxEventTime = Math.max(maxEventTime, e.time);
          if (isLate(e.time, maxEventTime, cfg)) {
            late.push(i);
          } else {
            let sensorWindows = windows.get(e.sensor);
            if (sensorWindows === undefined) {
              sensorWindows = {};
              windows.set(e.sensor, sensorWindows);
            }
            addToWindow(sensorWindows, e.time, { v: e.value }, cfg);
          }
          if (i % closeEvery === 0) {
            for (const [sensor, w] of windows) {
              const closed = closeWindows(sensor, w, maxEventTime, cfg);
              // Everything closed here is behind the watermark, and everything left open is not.
              for (const c of closed)
                expect(c.window_end).toBeLessThanOrEqual(maxEventTime - cfg.allowedLatenessMs);
              for (const start of Object.keys(w))
                expect(Number(start) + cfg.sizeMs).toBeGreaterThan(maxEventTime - cfg.allowedLatenessMs);
              emitted.push(...closed);
            }
          }
        });
        for (const [sensor, w] of windows)
          emitted.push(...closeWindows(sensor, w, Number.MAX_SAFE_INTEGER, cfg));

        // Naive: a reading is late when its window's end is at or behind the watermark of the
        // largest event time seen up to and including it.
        const expectedLate: number[] = [];
        const groups = new Map<string, Event[]>();
        let seen = Number.NEGATIVE_INFINITY;
        events.forEach((e, i) => {
          seen = Math.max(seen, e.time);
          const start = Math.floor(e.time / cfg.sizeMs) * cfg.sizeMs;
          if (start + cfg.sizeMs <= seen - cfg.allowedLatenessMs) {
            expectedLate.push(i);
            return;
          }
          const key = `${e.sensor}/${start}`;
          groups.set(key, [...(groups.get(key) ?? []), e]);
        });
        expect(late).toEqual(expectedLate);
        lateSeen += late.length;
        onTimeSeen += events.length - late.length;

        const expected = [...groups].map(([key, group]) => {
          const [sensor, start] = key.split("/") as [string, string];
          const values = group.map((e) => e.value);
          return {
            sensor_id: sensor,
            window_start: Number(start),
            window_end: Number(start) + cfg.sizeMs,
            count: values.length,
            avg_v: values.reduce((s, v) => s + v, 0) / values.length,
            min_v: Math.min(...values),
            max_v: Math.max(...values),
            count_v: values.length,
          };
        });
        const order = (a: WindowResult, b: WindowResult) =>
          a.sensor_id.localeCompare(b.sensor_id) || a.window_start - b.window_start;
        expect([...emitted].sort(order)).toEqual(expected.sort(order));
      }),
      { numRuns: 200 },
    );
    expect(lateSeen).toBeGreaterThan(500);
    expect(onTimeSeen).toBeGreaterThan(500);
  });

  it("uses the one-minute window and ten-second lateness by default", () => {
    expect(DEFAULT_WINDOWS).toEqual({ sizeMs: 60_000, allowedLatenessMs: 10_000 });
  });
});
