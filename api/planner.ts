/**
 * The read planner, pure: which data answers which part of a time range. The coarsest rollup tier
 * that fits answers the middle, finer tiers the edges it cannot, and raw readings whatever no
 * rollup holds yet (the open tail) or any more (retention). Together the segments cover the range
 * exactly once, so sub-window aggregates merged from them equal the raw answer.
 */
import type { TierName } from "../common/rollups.js";

export interface TierState {
  name: TierName;
  ms: number;
  /** Every window of this tier that ends at or before this time has been written. */
  closedThrough: number;
  /** The oldest time the tier's bucket still holds (retention), or -Infinity. */
  retainedFrom: number;
}

export interface Segment {
  source: TierName | "raw";
  start: number;
  stop: number;
}

const floorTo = (t: number, step: number) => Math.floor(t / step) * step;
const ceilTo = (t: number, step: number) => Math.ceil(t / step) * step;

/**
 * Splits [start, stop) among `tiers` (coarsest first, each one usable for the request) and raw
 * readings. A tier answers only whole windows of its own size that are closed and retained. The
 * coarsest tier answers every such window of the range; with `cost`, each edge it leaves (the open
 * tail, a range start inside one of its windows) goes to finer tiers or to raw readings, whichever
 * `cost` says is cheaper, since a finer tier costs a read of every series again.
 */
export function planSegments(
  start: number,
  stop: number,
  tiers: readonly TierState[],
  cost?: (segments: readonly Segment[]) => number,
): Segment[] {
  if (stop <= start) return [];
  const [tier, ...finer] = tiers;
  if (tier === undefined) return [{ source: "raw", start, stop }];
  const from = ceilTo(Math.max(start, tier.retainedFrom), tier.ms);
  const to = floorTo(Math.min(stop, tier.closedThrough), tier.ms);
  if (to <= from) return planSegments(start, stop, finer, cost);
  return [
    ...edge(start, from, finer, cost),
    { source: tier.name, start: from, stop: to },
    ...edge(to, stop, finer, cost),
  ];
}

function edge(
  start: number,
  stop: number,
  tiers: readonly TierState[],
  cost: ((segments: readonly Segment[]) => number) | undefined,
): Segment[] {
  const tiered = planSegments(start, stop, tiers, cost);
  if (cost === undefined || tiered.every((s) => s.source === "raw")) return tiered;
  const raw: Segment[] = [{ source: "raw", start, stop }];
  return cost(raw) <= cost(tiered) ? raw : tiered;
}

/** Functions a rollup can answer (from count, sum, sum of squares, min and max). */
export const ROLLUP_FUNCTIONS = new Set(["count", "sum", "mean", "min", "max", "stddev"]);

/**
 * The tiers a request may use: each tier's window must divide the sub-window (the gcd of window
 * and hop), and every function asked for must be derivable from rollups. `forced` names one tier
 * (or raw) for callers who want to compare; it is refused, with a reason, when it cannot answer.
 */
export function usableTiers(
  tiers: readonly TierState[],
  subWindowMs: number,
  fns: readonly string[],
  forced: TierName | "raw" | "auto",
): { tiers: TierState[]; refusal?: string } {
  if (forced === "raw") return { tiers: [] };
  const exact = fns.filter((f) => !ROLLUP_FUNCTIONS.has(f));
  const fits = (t: TierState) => subWindowMs % t.ms === 0;
  if (forced === "auto") {
    if (exact.length > 0) return { tiers: [] };
    return { tiers: tiers.filter(fits).sort((a, b) => b.ms - a.ms) };
  }
  const tier = tiers.find((t) => t.name === forced);
  if (tier === undefined) return { tiers: [], refusal: `tier=${forced} is not available` };
  if (exact.length > 0) {
    return {
      tiers: [],
      refusal: `tier=${forced} cannot answer ${exact.join(", ")}: those are computed from raw readings; use tier=raw or auto`,
    };
  }
  if (!fits(tier)) {
    return {
      tiers: [],
      refusal: `tier=${forced} cannot answer windows of ${subWindowMs} ms: window and every must be multiples of ${tier.name}`,
    };
  }
  return { tiers: [tier] };
}

export function gcd(a: number, b: number): number {
  let x = Math.abs(a);
  let y = Math.abs(b);
  while (y !== 0) [x, y] = [y, x % y];
  return x;
}
