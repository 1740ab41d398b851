/** The dashboard variables: which sensor and which field of its readings a dashboard shows. */
import { MEASUREMENTS } from "../common/topics.js";
import { queryVariable } from "./model.js";

/** Sensors with readings in the range, from the tag index (no point is read). */
export const SENSOR_VARIABLE = queryVariable({
  name: "sensor",
  label: "Sensor",
  description: "Sensors with readings in the range.",
  query: [
    'import "influxdata/influxdb/schema"',
    "",
    `schema.tagValues(bucket: v.defaultBucket, tag: "sensor_id", predicate: (r) => r._measurement == "${MEASUREMENTS.readings}", start: v.timeRangeStart, stop: v.timeRangeStop)`,
  ].join("\n"),
});

/** Readings are stored with whatever numeric fields the message had; the dashboards show one at a time. */
export const FIELD_VARIABLE = queryVariable({
  name: "field",
  label: "Field",
  description: "A numeric field of the readings (the message key, e.g. temperature).",
  query: [
    'import "influxdata/influxdb/schema"',
    "",
    `schema.measurementFieldKeys(bucket: v.defaultBucket, measurement: "${MEASUREMENTS.readings}", start: v.timeRangeStart, stop: v.timeRangeStop)`,
  ].join("\n"),
  current: "temperature",
});
