/** The dashboard variables: which sensor, which field of its readings, and which tier to read. */
import { and, eq, lit, tagValues } from "../common/flux-shapes.js";
import { MEASUREMENTS } from "../common/topics.js";
import { GRAFANA, TIERS } from "./flux.js";
import { customVariable, queryVariable } from "./model.js";

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
