/** The dashboard variables: which sensor, which field of its readings, and which tier to read. */
import { and, eq, lit, read, tagValues, tiering, windowing } from "../common/flux-shapes.js";
import { ROLLUP_MEASUREMENT } from "../common/rollups.js";
import { MEASUREMENTS } from "../common/topics.js";
import { FEW_POINTS, GRAFANA, quoted, readingsOf, SENSOR_SERIES, TIERS, withImports } from "./flux.js";
import { customVariable, queryVariable } from "./model.js";

/**
 * Windows the top sensors are ranked in (their size picks the source): a week ranks from the 1h
 * rollups, hours from the 1m rollups, minutes from raw readings.
 */
const TOP_WINDOWS = 30;
const BY_SENSOR_MAX = 'group(columns: ["sensor_id"])\n  |> max()';
const readings = readingsOf();

const readingsInRange = {
  bucket: GRAFANA.bucket,
  start: GRAFANA.start,
  stop: GRAFANA.stop,
  where: and(eq("_measurement", lit.str(MEASUREMENTS.readings))),
};

/** Sensors with readings in the range, from the tag index (no point is read). */
export const SENSOR_VARIABLE = queryVariable({
  name: "sensor",
  label: "Sensor",
  description: "Sensors with readings in the range.",
  query: tagValues(readingsInRange, "sensor_id"),
});

/** Readings are stored with whatever numeric fields the message had; the dashboards show one at a time. */
export const FIELD_VARIABLE = queryVariable({
  name: "field",
  label: "Field",
  description: "A numeric field of the readings (the message key, e.g. temperature).",
  query: tagValues(readingsInRange, "_field"),
  current: "temperature",
});

/** Like the API's `tier` parameter: auto reads the coarsest rollup the window allows. */
export const TIER_VARIABLE = customVariable({
  name: "tier",
  label: "Source",
  description:
    "auto: the 1h rollups when the window is whole hours, the 1m rollups when whole minutes, raw readings otherwise (the newest, not yet rolled-up windows always from raw). raw, 1m, 1h: that source only, to compare.",
  values: TIERS,
});

/** The sensor id in `column` as `_value`, escaped for a Flux regex literal: see `sensorIn`. */
const escapedForRegex = (column: string) =>
  `map(fn: (r) => ({_value: strings.replaceAll(v: regexp.quoteMeta(v: r.${column}), t: "/", u: "\\\\/")}))`;

/**
 * The sensors a per-sensor chart draws: the SENSOR_SERIES with the highest maximum of the field,
 * re-run when the range changes. Ranked from the coarsest source that fits the range in
 * TOP_WINDOWS windows (the 1h rollups for a week, the 1m for hours) and the raw readings not rolled
 * up yet, so from the range widened to a whole window of that size (as the charts' own first window).
 * Hidden; panels filter on it with `sensorIn("top")`.
 */
export const TOP_SENSORS_VARIABLE = queryVariable({
  name: "top",
  label: "Top sensors",
  description: `The ${SENSOR_SERIES} sensors with the highest maximum of the field in the range.`,
  all: true,
  query: withImports(
    ["regexp", "strings"],
    [
      windowing({ start: GRAFANA.start, stop: GRAFANA.stop, maxWindows: TOP_WINDOWS }),
      tiering({ forced: lit.str("auto"), rawBucket: GRAFANA.bucket }),
      // Per sensor in storage, then one table: sorted by maximum, each sensor's first row is its highest.
      `tiered(
  rollup: () => ${read({
    bucket: "rollupBucket",
    start: "start",
    stop: "boundary",
    where: and(
      eq("_measurement", lit.str(ROLLUP_MEASUREMENT)),
      readings.rollup,
      eq("_field", lit.str("max")),
    ),
    aggregate: BY_SENSOR_MAX,
    after: ["group()"],
  })},
  raw: () => ${read({
    bucket: "rawBucket",
    start: "boundary",
    stop: "stop",
    where: readings.raw,
    aggregate: BY_SENSOR_MAX,
    after: ["group()"],
  })},
)
  |> group()
  |> toFloat()
  |> sort(columns: ["_value"], desc: true)
  |> unique(column: "sensor_id")
  |> limit(n: ${SENSOR_SERIES})
  |> ${escapedForRegex("sensor_id")}`,
    ].join("\n"),
  ),
});

/** The sensors a per-sensor table lists: the first FEW_POINTS by id with readings in the range (tag index). */
export const LISTED_SENSORS_VARIABLE = queryVariable({
  name: "listed",
  label: "Listed sensors",
  description: `The first ${FEW_POINTS} sensors by id with readings of the field in the range.`,
  all: true,
  query: withImports(
    ["regexp", "strings"],
    `${tagValues({ ...readingsInRange, where: and(readingsInRange.where, eq("_field", quoted("field"))) }, "sensor_id")}
  |> sort()
  |> limit(n: ${FEW_POINTS})
  |> ${escapedForRegex("_value")}`,
  ),
});
