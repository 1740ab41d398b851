/** Fleet overview: every sensor at a glance, with anomalies and firing alerts. */

import { and, covered, coveredLatest, eq, lit, tagValues, tieredMean } from "../common/flux-shapes.js";
import { MEASUREMENTS } from "../common/topics.js";
import { ALERT_ROWS, ALERT_TABLE, firingAlertsCount, firingAlertsTable } from "./alerts-queries.js";
import {
  coveredScript,
  FEW_POINTS,
  FIELD,
  GRAFANA,
  keep,
  over,
  quoted,
  readingsOf,
  readingsWhere,
  SENSOR_SERIES,
  SERIES_POINTS,
  sensorIn,
  sumAcross,
  tieredScript,
  windowed,
} from "./flux.js";
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
import { FIELD_VARIABLE, LISTED_SENSORS_VARIABLE, TIER_VARIABLE, TOP_SENSORS_VARIABLE } from "./variables.js";

const FLEET_UID = "sensor-fleet";

const READINGS = and(eq("_measurement", lit.str(MEASUREMENTS.readings)), eq("_field", quoted("field")));
const ANOMALIES = and(eq("_measurement", lit.str(MEASUREMENTS.anomalies)), eq("_field", lit.str("score")));

const sensorLink = {
  title: "Sensor detail",
  url: `/d/${SENSOR_UID}?var-sensor=${seriesLabel("sensor_id")}&var-field=${FIELD}&${grafanaVariable("__url_time_range")}`,
};

export function fleetOverview(): Dashboard {
  return dashboard({
    uid: FLEET_UID,
    title: "Sensor fleet overview",
    description:
      "The sensors' readings as windowed means (at most 20 sensors drawn), anomaly flags by detector, and firing alerts.",
    variables: [FIELD_VARIABLE, TIER_VARIABLE, TOP_SENSORS_VARIABLE, LISTED_SENSORS_VARIABLE],
    rows: [
      [
        stat({
          title: "Sensors reporting",
          description:
            "Distinct sensors with at least one reading of the field in the range (from the tag index).",
          w: 6,
          h: 4,
          maxDataPoints: FEW_POINTS,
          targets: [
            target(
              `${tagValues({ bucket: GRAFANA.bucket, start: GRAFANA.start, stop: GRAFANA.stop, where: READINGS }, "sensor_id")}\n  |> count()`,
            ),
          ],
          defaults: { unit: "short", decimals: 0, noValue: "0", thresholds: thresholds(["blue", null]) },
        }),
        stat({
          title: "Readings",
          description:
            "Readings of the field stored in the range (the 1h and 1m rollups' counts and the raw readings they do not hold).",
          w: 6,
          h: 4,
          maxDataPoints: FEW_POINTS,
          targets: [
            target(coveredScript([], `${covered(readingsOf(), "count", [])}\n  |> group()\n  |> sum()`)),
          ],
          defaults: { unit: "short", decimals: 0, noValue: "0", thresholds: thresholds(["blue", null]) },
        }),
        stat({
          title: "Anomalies",
          description: "Anomaly flags (every detector, every field) in the range.",
          w: 6,
          h: 4,
          maxDataPoints: FEW_POINTS,
          targets: [target(over(ANOMALIES, "count", ["group()", "sum()"]))],
          defaults: {
            unit: "short",
            decimals: 0,
            noValue: "0",
            thresholds: thresholds(["green", null], ["orange", 1], ["red", 50]),
          },
        }),
        stat({
          title: "Firing now",
          description: "Rules firing at the end of the range (the latest transition per rule and sensor).",
          w: 6,
          h: 4,
          maxDataPoints: FEW_POINTS,
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
          title: `${FIELD} by sensor, windowed mean`,
          description: `Mean of each sensor's readings per window (v.windowPeriod, at least 1 minute; at most ${SERIES_POINTS} windows). At most ${SENSOR_SERIES} sensors: those with the highest maximum in the range (hidden variable Top sensors). Read from the 1h or 1m rollups when the window is whole hours or minutes, with the newest windows not yet rolled up from raw readings (variable Source). Click a line for the sensor's detail.`,
          w: 24,
          h: 10,
          interval: "1m",
          maxDataPoints: SERIES_POINTS,
          targets: [
            target(
              tieredScript(
                SERIES_POINTS,
                `${tieredMean(readingsWhere(sensorIn(TOP_SENSORS_VARIABLE.name)), ["sensor_id"])}
  |> sort(columns: ["_time"])`,
              ),
            ),
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
          maxDataPoints: SERIES_POINTS,
          draw: "bars",
          stack: true,
          targets: [
            target(windowed(SERIES_POINTS, over(ANOMALIES, "count", sumAcross(["detector"]), "every"))),
          ],
          defaults: { min: 0, displayName: seriesLabel("detector"), unit: "short", decimals: 0 },
        }),
        table({
          title: "Anomalies by sensor",
          description: `Anomaly flags per sensor in the range, most first (the top ${SENSOR_SERIES}).`,
          w: 6,
          h: 8,
          maxDataPoints: FEW_POINTS,
          columns: [
            ["sensor_id", "Sensor"],
            ["anomalies", "Anomalies"],
          ],
          defaults: { decimals: 0 },
          targets: [
            target(
              over(ANOMALIES, "count", [
                'group(columns: ["sensor_id"])',
                "sum()",
                "group()",
                'rename(columns: {_value: "anomalies"})',
                keep(["sensor_id", "anomalies"]),
                'sort(columns: ["anomalies", "sensor_id"], desc: true)',
                `limit(n: ${SENSOR_SERIES})`,
              ]),
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
          description: `Each sensor's most recent reading of the field in the range (the first ${FEW_POINTS} sensors by id), from the raw readings the rollups do not hold yet, else the latest 1m or 1h rollup window's last reading.`,
          w: 6,
          h: 8,
          maxDataPoints: FEW_POINTS,
          columns: [
            ["sensor_id", "Sensor"],
            ["_time", "Time"],
            ["latest", "Value"],
          ],
          targets: [
            target(
              coveredScript(
                [],
                [
                  coveredLatest(readingsWhere(sensorIn(LISTED_SENSORS_VARIABLE.name)), "sensor_id"),
                  'rename(columns: {_value: "latest"})',
                  keep(["sensor_id", "_time", "latest"]),
                  'sort(columns: ["sensor_id"])',
                  `limit(n: ${FEW_POINTS})`,
                ].join("\n  |> "),
              ),
            ),
          ],
          defaults: { decimals: 2 },
        }),
      ],
      [
        table({
          title: "Firing alerts",
          description: `Rules firing at the end of the range, newest first (at most ${ALERT_ROWS}).`,
          w: 24,
          h: 7,
          maxDataPoints: ALERT_ROWS,
          ...ALERT_TABLE,
          targets: [target(firingAlertsTable())],
        }),
      ],
    ],
  });
}
