/** Sensor detail: one sensor's raw readings against their windowed mean, with anomalies and alerts marked. */
import { MEASUREMENTS } from "../common/topics.js";
import { ALERT_TABLE, alertHistoryTable, firingAlertsCount } from "./alerts-queries.js";
import { FIELD, FMT, keep, PIVOT_FIELDS, SENSOR, select, where, withImports } from "./flux.js";
import {
  annotation,
  type Dashboard,
  dashboard,
  refIdOverride,
  seriesLabel,
  stat,
  table,
  target,
  thresholds,
  timeseries,
} from "./model.js";
import { FIELD_VARIABLE, SENSOR_VARIABLE } from "./variables.js";

export const SENSOR_UID = "sensor-detail";

const READINGS = where({ _measurement: MEASUREMENTS.readings, sensor_id: SENSOR, _field: FIELD });
const ANOMALIES = where({ _measurement: MEASUREMENTS.anomalies, sensor_id: SENSOR, field: FIELD });

export function sensorDetail(): Dashboard {
  return dashboard({
    uid: SENSOR_UID,
    title: "Sensor detail",
    description: "One sensor: raw readings against their 1-minute mean, anomaly flags and alert transitions.",
    variables: [SENSOR_VARIABLE, FIELD_VARIABLE],
    annotations: [
      annotation({
        name: "Anomalies",
        color: "red",
        query: withImports(
          ["math"],
          [
            FMT,
            select(
              ANOMALIES,
              PIVOT_FIELDS,
              "group()",
              `map(fn: (r) => ({_time: r._time, title: "Anomaly (" + r.detector + ")", text: r.field + " = " + fmt(x: r.value) + ", expected " + fmt(x: r.expected) + ", score " + fmt(x: r.score) + " > " + fmt(x: r.threshold), tags: "anomaly," + r.detector}))`,
              keep(["_time", "title", "text", "tags"]),
              'sort(columns: ["_time"])',
            ),
          ].join("\n\n"),
        ),
      }),
      annotation({
        name: "Alert transitions",
        color: "orange",
        query: withImports(
          ["math"],
          [
            FMT,
            select(
              where({ _measurement: MEASUREMENTS.alerts, sensor_id: SENSOR }),
              PIVOT_FIELDS,
              "group()",
              `map(fn: (r) => ({_time: r._time, title: "Alert " + r.state + ": " + r.rule_id, text: r.severity + ": " + (if exists r.message then r.message else "") + " (value " + fmt(x: r.value) + ", threshold " + fmt(x: r.threshold) + ")", tags: "alert," + r.severity + "," + r.state}))`,
              keep(["_time", "title", "text", "tags"]),
              'sort(columns: ["_time"])',
            ),
          ].join("\n\n"),
        ),
      }),
    ],
    rows: [
      [
        stat({
          title: `Latest ${FIELD}`,
          description: "The sensor's most recent reading of the field in the range.",
          w: 6,
          h: 4,
          targets: [target(select(READINGS, "last()", "group()", 'sort(columns: ["_time"])', "last()"))],
          defaults: { decimals: 2, thresholds: thresholds(["blue", null]) },
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
          description: "Anomaly flags on the field in the range, every detector.",
          w: 6,
          h: 4,
          targets: [
            target(
              select(
                where({
                  _measurement: MEASUREMENTS.anomalies,
                  sensor_id: SENSOR,
                  field: FIELD,
                  _field: "score",
                }),
                "count()",
                "group()",
                "sum()",
              ),
            ),
          ],
          defaults: {
            unit: "short",
            decimals: 0,
            noValue: "0",
            thresholds: thresholds(["green", null], ["orange", 1], ["red", 10]),
          },
        }),
        stat({
          title: "Firing now",
          description: "Rules firing on this sensor at the end of the range.",
          w: 6,
          h: 4,
          targets: [target(firingAlertsCount({ sensor_id: SENSOR }))],
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
          title: `${FIELD}: raw and 1-minute mean`,
          description:
            "Every stored reading (points), and the mean of each 1-minute event-time window drawn across the window it covers. Red marks are anomaly flags, orange ones alert transitions.",
          w: 24,
          h: 10,
          targets: [
            target(select(READINGS), "raw"),
            target(
              select(READINGS, 'aggregateWindow(every: 1m, fn: mean, createEmpty: false, timeSrc: "_start")'),
              "window",
            ),
          ],
          defaults: { decimals: 2 },
          overrides: [
            refIdOverride("raw", {
              displayName: "raw",
              "custom.drawStyle": "points",
              "custom.showPoints": "always",
              "custom.pointSize": 4,
            }),
            refIdOverride("window", {
              displayName: "1-minute mean",
              "custom.lineInterpolation": "stepAfter",
              "custom.lineWidth": 2,
              "custom.fillOpacity": 0,
            }),
          ],
        }),
      ],
      [
        timeseries({
          title: "Anomaly score ÷ threshold",
          description:
            "How far past its threshold each flag was, per detector (1 is the threshold). Delta scores are in the field's unit, z-score and EWMA scores in standard deviations; the ratio makes them comparable.",
          w: 12,
          h: 8,
          draw: "points",
          targets: [
            target(
              select(
                `${ANOMALIES} and (r._field == "score" or r._field == "threshold")`,
                PIVOT_FIELDS,
                "map(fn: (r) => ({_time: r._time, detector: r.detector, _value: r.score / r.threshold}))",
              ),
            ),
          ],
          defaults: {
            displayName: seriesLabel("detector"),
            decimals: 2,
            min: 0,
            thresholds: thresholds(["green", null], ["red", 1]),
          },
          thresholdLines: true,
        }),
        table({
          title: "Anomaly flags",
          description: "Every anomaly flag on the field in the range, newest first.",
          w: 12,
          h: 8,
          columns: [
            ["_time", "Time"],
            ["detector", "Detector"],
            ["value", "Value"],
            ["expected", "Expected"],
            ["score", "Score"],
            ["threshold", "Threshold"],
          ],
          targets: [
            target(
              select(
                ANOMALIES,
                PIVOT_FIELDS,
                "group()",
                keep(["_time", "detector", "value", "expected", "score", "threshold"]),
                'sort(columns: ["_time"], desc: true)',
                "limit(n: 500)",
              ),
            ),
          ],
          defaults: { decimals: 2 },
        }),
      ],
      [
        table({
          title: "Alert transitions",
          description: "Every alert transition of this sensor in the range, newest first.",
          w: 24,
          h: 7,
          ...ALERT_TABLE,
          targets: [target(alertHistoryTable({ sensor_id: SENSOR }))],
        }),
      ],
    ],
  });
}
