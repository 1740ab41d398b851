/** Sensor detail: one sensor's readings per window (mean, min, max), with anomalies and alerts marked. */

import { and, eq, lit, tiered, tieredMean } from "../common/flux-shapes.js";
import { MEASUREMENTS } from "../common/topics.js";
import {
  ALERT_ROWS,
  ALERT_TABLE,
  alertHistoryTable,
  alertsWhere,
  firingAlertsCount,
} from "./alerts-queries.js";
import {
  FEW_POINTS,
  FIELD,
  FMT,
  keep,
  latestEvents,
  over,
  PIVOT_FIELDS,
  quoted,
  readingsOf,
  SERIES_POINTS,
  tieredScript,
  withImports,
} from "./flux.js";
import {
  annotation,
  type Dashboard,
  dashboard,
  override,
  seriesLabel,
  stat,
  table,
  target,
  thresholds,
  timeseries,
} from "./model.js";
import { FIELD_VARIABLE, SENSOR_VARIABLE, TIER_VARIABLE } from "./variables.js";

export const SENSOR_UID = "sensor-detail";

/** Annotations of one kind Grafana draws at most per series (rule, detector …) over the range. */
const MAX_ANNOTATIONS = 500;
/** Anomaly flags the table lists at most. */
const FLAG_ROWS = 500;

const ONE_SENSOR = eq("sensor_id", quoted("sensor"));
const READINGS = and(
  eq("_measurement", lit.str(MEASUREMENTS.readings)),
  eq("_field", quoted("field")),
  ONE_SENSOR,
);
const ANOMALIES = and(
  eq("_measurement", lit.str(MEASUREMENTS.anomalies)),
  ONE_SENSOR,
  eq("field", quoted("field")),
);
const anomalyFields = (fields: string[]) =>
  and(ANOMALIES, `(${fields.map((f) => eq("_field", lit.str(f))).join(" or ")})`);

export function sensorDetail(): Dashboard {
  const readings = readingsOf(quoted("sensor"));
  return dashboard({
    uid: SENSOR_UID,
    title: "Sensor detail",
    description: "One sensor: its readings per window (mean, min, max), anomaly flags and alert transitions.",
    variables: [SENSOR_VARIABLE, FIELD_VARIABLE, TIER_VARIABLE],
    annotations: [
      annotation({
        name: "Anomalies",
        color: "red",
        query: withImports(
          ["math"],
          [
            FMT,
            latestEvents({
              maxPoints: MAX_ANNOTATIONS,
              where: ANOMALIES,
              after: [
                PIVOT_FIELDS,
                "group()",
                `map(fn: (r) => ({_time: r._time, title: "Anomaly (" + r.detector + ")", text: r.field + " = " + fmt(x: r.value) + ", expected " + fmt(x: r.expected) + ", score " + fmt(x: r.score) + " > " + fmt(x: r.threshold), tags: "anomaly," + r.detector}))`,
                keep(["_time", "title", "text", "tags"]),
                'sort(columns: ["_time"])',
              ],
            }),
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
            latestEvents({
              maxPoints: MAX_ANNOTATIONS,
              where: alertsWhere(["value", "threshold", "message"], "sensor"),
              after: [
                PIVOT_FIELDS,
                "group()",
                `map(fn: (r) => ({_time: r._time, title: "Alert " + r.state + ": " + r.rule_id, text: r.severity + ": " + (if exists r.message then r.message else "") + " (value " + fmt(x: r.value) + ", threshold " + fmt(x: r.threshold) + ")", tags: "alert," + r.severity + "," + r.state}))`,
                keep(["_time", "title", "text", "tags"]),
                'sort(columns: ["_time"])',
              ],
            }),
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
          maxDataPoints: FEW_POINTS,
          targets: [target(over(READINGS, "last", ["group()", 'sort(columns: ["_time"])', "last()"]))],
          defaults: { decimals: 2, thresholds: thresholds(["blue", null]) },
        }),
        stat({
          title: "Readings",
          description: "Readings of the field stored in the range.",
          w: 6,
          h: 4,
          maxDataPoints: FEW_POINTS,
          targets: [target(over(READINGS, "count", ["group()", "sum()"]))],
          defaults: { unit: "short", decimals: 0, noValue: "0", thresholds: thresholds(["blue", null]) },
        }),
        stat({
          title: "Anomalies",
          description: "Anomaly flags on the field in the range, every detector.",
          w: 6,
          h: 4,
          maxDataPoints: FEW_POINTS,
          targets: [
            target(over(and(ANOMALIES, eq("_field", lit.str("score"))), "count", ["group()", "sum()"])),
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
          maxDataPoints: FEW_POINTS,
          targets: [target(firingAlertsCount({ sensor: "sensor" }))],
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
          title: `${FIELD}: mean, min and max per window`,
          description: `The sensor's readings per window (v.windowPeriod, at most ${SERIES_POINTS} windows): mean, lowest and highest. Read from the 1h or 1m rollups when the window is whole hours or minutes, with the newest windows not yet rolled up from raw readings (variable Source). Red marks are anomaly flags, orange ones alert transitions.`,
          w: 24,
          h: 10,
          maxDataPoints: SERIES_POINTS,
          targets: [
            target(
              tieredScript(
                SERIES_POINTS,
                `union(tables: [${tieredMean(readings, ["sensor_id"])}, ${tiered(readings, "min", ["sensor_id"])}, ${tiered(readings, "max", ["sensor_id"])}])
  |> group(columns: ["sensor_id", "_field"])
  |> sort(columns: ["_time"])`,
              ),
            ),
          ],
          defaults: { decimals: 2 },
          overrides: [
            override("mean", { displayName: "mean", "custom.lineWidth": 2 }),
            override("min", { displayName: "min", "custom.lineStyle": { fill: "dash", dash: [4, 4] } }),
            override("max", { displayName: "max", "custom.lineStyle": { fill: "dash", dash: [4, 4] } }),
          ],
        }),
      ],
      [
        timeseries({
          title: "Anomaly score ÷ threshold",
          description: `How far past its threshold each detector's latest flag per window was (1 is the threshold; at most ${SERIES_POINTS} windows). Delta scores are in the field's unit, z-score and EWMA scores in standard deviations; the ratio makes them comparable.`,
          w: 12,
          h: 8,
          maxDataPoints: SERIES_POINTS,
          draw: "points",
          targets: [
            target(
              latestEvents({
                maxPoints: SERIES_POINTS,
                windowPeriod: true,
                where: anomalyFields(["score", "threshold"]),
                after: [
                  PIVOT_FIELDS,
                  "map(fn: (r) => ({_time: r._time, detector: r.detector, _value: r.score / r.threshold}))",
                  'group(columns: ["detector"])',
                  'sort(columns: ["_time"])',
                ],
              }),
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
          description: `Anomaly flags on the field in the range, newest first: each detector's latest per window (v.windowPeriod), at most ${FLAG_ROWS}.`,
          w: 12,
          h: 8,
          maxDataPoints: FLAG_ROWS,
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
              latestEvents({
                maxPoints: FLAG_ROWS,
                windowPeriod: true,
                where: anomalyFields(["value", "expected", "score", "threshold"]),
                after: [
                  PIVOT_FIELDS,
                  "group()",
                  keep(["_time", "detector", "value", "expected", "score", "threshold"]),
                  'sort(columns: ["_time"], desc: true)',
                  `limit(n: ${FLAG_ROWS})`,
                ],
              }),
            ),
          ],
          defaults: { decimals: 2 },
        }),
      ],
      [
        table({
          title: "Alert transitions",
          description: `This sensor's alert transitions in the range, newest first: per rule, state and window the latest, at most ${ALERT_ROWS}.`,
          w: 24,
          h: 7,
          maxDataPoints: ALERT_ROWS,
          ...ALERT_TABLE,
          targets: [target(alertHistoryTable({ sensor: "sensor" }))],
        }),
      ],
    ],
  });
}
