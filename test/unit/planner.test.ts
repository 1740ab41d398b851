import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { gcd, planSegments, type Segment, type TierState, usableTiers } from "../../api/planner.js";

const M = 60_000;
const H = 3_600_000;
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);

function tiers(closedThrough: number, retainedFrom = Number.NEGATIVE_INFINITY): TierState[] {
  return [
    { name: "1h", ms: H, closedThrough, retainedFrom },
    { name: "1m", ms: M, closedThrough, retainedFrom },
  ];
}

describe("planSegments", () => {
  it("answers closed whole hours from 1h, the minutes around them from 1m, the open tail from raw", () => {
    const closed = T0 + 5 * H + 30 * M + 15_000;
    expect(planSegments(T0 + 10 * M, T0 + 6 * H, tiers(closed))).toEqual([
      { source: "1m", start: T0 + 10 * M, stop: T0 + H },
      { source: "1h", start: T0 + H, stop: T0 + 5 * H },
      { source: "1m", start: T0 + 5 * H, stop: T0 + 5 * H + 30 * M },
      { source: "raw", start: T0 + 5 * H + 30 * M, stop: T0 + 6 * H },
    ]);
  });

  it("gives the edges the coarsest tier leaves to raw readings when finer tiers cost more, never its own windows", () => {
    const closed = T0 + 5 * H + 30 * M + 15_000;
    const rawIsCheap = (segments: readonly Segment[]) =>
      segments.reduce((sum, s) => sum + (s.source === "raw" ? 1 : 10), 0);
    expect(planSegments(T0 + 10 * M, T0 + 6 * H, tiers(closed), rawIsCheap)).toEqual([
      { source: "raw", start: T0 + 10 * M, stop: T0 + H },
      { source: "1h", start: T0 + H, stop: T0 + 5 * H },
      { source: "raw", start: T0 + 5 * H, stop: T0 + 6 * H },
    ]);
    const rawIsDear = (segments: readonly Segment[]) =>
      segments.reduce((sum, s) => sum + (s.source === "raw" ? 100 : 1) * (s.stop - s.start), 0);
    expect(planSegments(T0 + 10 * M, T0 + 6 * H, tiers(closed), rawIsDear)).toEqual(
      planSegments(T0 + 10 * M, T0 + 6 * H, tiers(closed)),
    );
  });

  it("reads raw data where a tier's retention no longer holds the range", () => {
    const plan = planSegments(T0, T0 + 3 * H, tiers(T0 + 10 * H, T0 + 90 * M));
    expect(plan).toEqual([
      { source: "raw", start: T0, stop: T0 + 90 * M },
      { source: "1m", start: T0 + 90 * M, stop: T0 + 2 * H },
      { source: "1h", start: T0 + 2 * H, stop: T0 + 3 * H },
    ]);
  });

  it("covers any range exactly once, each tier with whole, closed, retained windows of its own", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 40 * DAY }),
        fc.integer({ min: 1, max: 31 * DAY }),
        fc.integer({ min: -DAY, max: 80 * DAY }),
        fc.option(fc.integer({ min: 0, max: 60 * DAY }), { nil: undefined }),
        fc.option(fc.record({ raw: fc.nat(1000), "1m": fc.nat(1000), "1h": fc.nat(1000) }), {
          nil: undefined,
        }),
        (from, length, closedAt, retained, weights) => {
          const start = T0 + from;
          const stop = start + length;
          const closed = T0 + closedAt;
          const retainedFrom = retained === undefined ? Number.NEGATIVE_INFINITY : T0 + retained;
          // With a cost (a weight per source and ms read), edges may move to raw; coverage may not change.
          const cost =
            weights &&
            ((segments: readonly Segment[]) =>
              segments.reduce((sum, s) => sum + weights[s.source] * (s.stop - s.start + 1), 0));
          const plan = planSegments(start, stop, tiers(closed, retainedFrom), cost);
          expect(plan[0]?.start).toBe(start);
          expect(plan.at(-1)?.stop).toBe(stop);
          for (let i = 0; i < plan.length; i++) {
            const s = plan[i] as (typeof plan)[number];
            expect(s.stop).toBeGreaterThan(s.start);
            if (i > 0) expect(s.start).toBe(plan[i - 1]?.stop);
            if (s.source !== "raw") {
              const ms = s.source === "1h" ? H : M;
              expect(s.start % ms).toBe(0);
              expect(s.stop % ms).toBe(0);
              expect(s.stop).toBeLessThanOrEqual(closed);
              expect(s.start).toBeGreaterThanOrEqual(retainedFrom);
            }
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("usableTiers", () => {
  const all = tiers(T0);
  it("keeps the tiers whose window divides the sub-window, coarsest first", () => {
    expect(usableTiers(all, DAY, ["mean"], "auto").tiers.map((t) => t.name)).toEqual(["1h", "1m"]);
    expect(usableTiers(all, 5 * M, ["mean", "stddev"], "auto").tiers.map((t) => t.name)).toEqual(["1m"]);
    expect(usableTiers(all, 30_000, ["mean"], "auto").tiers).toEqual([]);
  });

  it("answers quantiles from raw data only, and says why a forced tier cannot answer", () => {
    expect(usableTiers(all, H, ["mean", "p95"], "auto").tiers).toEqual([]);
    expect(usableTiers(all, H, ["p95"], "1h").refusal).toContain("p95");
    expect(usableTiers(all, 30 * M, ["mean"], "1h").refusal).toContain("multiples of 1h");
    expect(usableTiers(all, H, ["mean"], "raw").tiers).toEqual([]);
  });

  it("computes the sub-window of sliding windows", () => {
    expect(gcd(5 * M, 2 * M)).toBe(M);
    expect(gcd(H, H)).toBe(H);
  });
});
