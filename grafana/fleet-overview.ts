/** Fleet overview: every sensor at a glance, with anomalies and firing alerts. */

import { MEASUREMENTS } from "../common/topics.js";
import { ALERT_TABLE, firingAlertsCount, firingAlertsTable } from "./alerts-queries.js";
import { FIELD, keep, select, sumAcross, where } from "./flux.js";
import {
  type Dashboard,
  dashboard,
  grafanaVariable,
  override,
  seriesLabel,
  stat,
  table,
  target,
  thresholds,
  timeseries,
} from "./model.js";
import { SENSOR_UID } from "./sensor-detail.js";
import { FIELD_VARIABLE } from "./variables.js";

const FLEET_UID = "sensor-fleet";

const READINGS = where({ _measurement: MEASUREMENTS.readings, _field: FIELD });
const ANOMALIES = where({ _measurement: MEASUREMENTS.anomalies, _field: "score" });

const sensorLink = {
  title: "Sensor detail",
  url: `/d/${SENSOR_UID}?var-sensor=${seriesLabel("sensor_id")}&var-field=${FIELD}&${grafanaVariable("__url_time_range")}`,
};

export function fleetOverview(): Dashboard {
  return dashboard({
    uid: FLEET_UID,
    title: "Sensor fleet overview",
    description: "Every sensor's readings as 1-minute means, anomaly flags by detector, and firing alerts.",
    variables: [FIELD_VARIABLE],
    rows: [
      [
        stat({
          title: "Sensors reporting",
          description: "Distinct sensors with at least one reading of the field in the range.",
          w: 6,
          h: 4,
          targets: [
            target(
              select(READINGS, "count()", 'group(columns: ["sensor_id"])', "sum()", "group()", "count()"),
            ),
          ],
          defaults: { unit: "short", decimals: 0, noValue: "0", thresholds: thresholds(["blue", null]) },
        }),
        stat({
          title: "Readings",
          description: "Readings of the field stored in the range.",
          w: 6,
          h: 4,
          targets: [target(select(READINGS, "count()", "group()", "sum()"))],
          defaults: { unit: "short", decimals: 0, noValue: "0", thresholds: thresholds(["blue", null]) },
        }),
        stat({
          title: "Anomalies",
          description: "Anomaly flags (every detector, every field) in the range.",
          w: 6,
          h: 4,
          targets: [target(select(ANOMALIES, "count()", "group()", "sum()"))],
          defaults: {
            unit: "short",
            decimals: 0,
            noValue: "0",
            thresholds: thresholds(["green", null], ["orange", 1], ["red", 50]),
          },
        }),
        stat({
          title: "Firing now",
          description: "Rules firing at the end of the range (latest transition per rule and sensor).",
          w: 6,
          h: 4,
          targets: [target(firingAlertsCount())],
          defaults: {
            unit: "short",
            decimals: 0,
            noValue: "0",
            thresholds: thresholds(["green", null], ["red", 1]),
          },
        }),
      ],
      [
        timeseries({
          title: `${FIELD} by sensor, 1-minute mean`,
          description:
            "Mean of each sensor's readings per window: 1 minute, wider when the range would draw too many points. Click a line for the sensor's detail.",
          w: 24,
          h: 10,
          interval: "1m",
          targets: [
            target(select(READINGS, "aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)")),
          ],
          defaults: { displayName: seriesLabel("sensor_id"), decimals: 2, links: [sensorLink] },
        }),
      ],
      [
        timeseries({
          title: "Anomalies by detector",
          description: "Anomaly flags per window across the fleet, stacked by detector.",
          w: 12,
          h: 8,
          interval: "1m",
          draw: "bars",
          stack: true,
          targets: [
            target(
              select(
                ANOMALIES,
                "aggregateWindow(every: v.windowPeriod, fn: count, createEmpty: false)",
                ...sumAcross(["detector"]),
              ),
            ),
          ],
          defaults: { min: 0, displayName: seriesLabel("detector"), unit: "short", decimals: 0 },
        }),
        table({
          title: "Anomalies by sensor",
          description: "Anomaly flags per sensor in the range, most first.",
          w: 6,
          h: 8,
          columns: [
            ["sensor_id", "Sensor"],
            ["anomalies", "Anomalies"],
          ],
          defaults: { decimals: 0 },
          targets: [
            target(
              select(
                ANOMALIES,
                "count()",
                'group(columns: ["sensor_id"])',
                "sum()",
                "group()",
                'rename(columns: {_value: "anomalies"})',
                keep(["sensor_id", "anomalies"]),
                'sort(columns: ["anomalies"], desc: true)',
              ),
            ),
          ],
          overrides: [
            override("Sensor", {
              links: [
                {
                  ...sensorLink,
                  url: sensorLink.url.replace(seriesLabel("sensor_id"), grafanaVariable("__value.raw")),
                },
              ],
            }),
          ],
        }),
        table({
          title: `Latest ${FIELD} per sensor`,
          description: "Each sensor's most recent reading of the field in the range.",
          w: 6,
          h: 8,
          columns: [
            ["sensor_id", "Sensor"],
            ["_time", "Time"],
            ["latest", "Value"],
          ],
          targets: [
            target(
              select(
                READINGS,
                "last()",
                "group()",
                'rename(columns: {_value: "latest"})',
                keep(["sensor_id", "_time", "latest"]),
                'sort(columns: ["sensor_id"])',
              ),
            ),
          ],
          defaults: { decimals: 2 },
        }),
      ],
      [
        table({
          title: "Firing alerts",
          description: "Rules firing at the end of the range, newest first.",
          w: 24,
          h: 7,
          ...ALERT_TABLE,
          targets: [target(firingAlertsTable())],
        }),
      ],
    ],
  });
}
