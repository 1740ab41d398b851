/**
 * Rollup tiers as data. The worker keeps an event-time window of every tier per sensor and field and
 * writes it to the tier's bucket when the window closes (and again, with the same identity, when a
 * late reading revises it). The API's planner answers from the coarsest tier that fits a request.
 *
 * A rollup point: measurement `rollup`, tags `sensor_id` and `field`, time = the window's start,
 * fields `count`, `sum`, `sumsq`, `min`, `max`, `first`, `last`, `first_time`, `last_time` (epoch
 * ms) and `tags` (the JSON of the window's latest reading's own tags). Each partition also writes
 * how far its windows are closed (`rollup_progress`), so a reader knows from which time on it
 * must read raw data instead.
 */

export const ROLLUP_TIERS = [
  { name: "1m", ms: 60_000 },
  { name: "1h", ms: 3_600_000 },
] as const;

export type TierName = (typeof ROLLUP_TIERS)[number]["name"];
export type Tier = (typeof ROLLUP_TIERS)[number];

export const ROLLUP_MEASUREMENT = "rollup";
export const PROGRESS_MEASUREMENT = "rollup_progress";
/** Fields of a rollup point and the Flux function that combines each across windows and series. */
export const ROLLUP_COMBINE = {
  count: "sum",
  sum: "sum",
  sumsq: "sum",
  min: "min",
  max: "max",
} as const;
export type RollupField = keyof typeof ROLLUP_COMBINE;

export function tierByName(name: TierName): Tier {
  return ROLLUP_TIERS.find((t) => t.name === name) as Tier;
}

export function tierByMs(ms: number): Tier | undefined {
  return ROLLUP_TIERS.find((t) => t.ms === ms);
}
