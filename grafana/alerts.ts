/** Alerts: what is firing, how often rules fire, and every transition. */

import { and, eq, lit } from "../common/flux-shapes.js";
import { MEASUREMENTS } from "../common/topics.js";
import {
  ALERT_ROWS,
  ALERT_TABLE,
  alertHistoryTable,
  firingAlertsCount,
  firingAlertsTable,
} from "./alerts-queries.js";
import { FEW_POINTS, over, SERIES_POINTS, sumAcross, windowed } from "./flux.js";
import {
  type Dashboard,
  dashboard,
  override,
  SEVERITY_COLORS,
  seriesLabel,
  stat,
  table,
  target,
  thresholds,
  timeseries,
} from "./model.js";

const ALERTS_UID = "sensor-alerts";

/** One row per transition: the `value` field is written with every one. */
const TRANSITIONS = and(eq("_measurement", lit.str(MEASUREMENTS.alerts)), eq("_field", lit.str("value")));
const FIRING = and(TRANSITIONS, eq("state", lit.str("firing")));

export function alertsDashboard(): Dashboard {
  return dashboard({
    uid: ALERTS_UID,
    title: "Sensor alerts",
    description: "Firing alerts, how often each rule and severity fires, and the history of transitions.",
    time: "now-24h",
    rows: [
      [
        stat({
          title: "Firing now",
          description: "Rules firing at the end of the range, any severity.",
          w: 6,
          h: 4,
          maxDataPoints: FEW_POINTS,
          targets: [target(firingAlertsCount())],
          defaults: {
            unit: "short",
            decimals: 0,
            noValue: "0",
            thresholds: thresholds(["green", null], ["orange", 1]),
          },
        }),
        stat({
          title: "Critical firing now",
          description: "Rules of severity critical firing at the end of the range.",
          w: 6,
          h: 4,
          maxDataPoints: FEW_POINTS,
          targets: [target(firingAlertsCount({ severity: "critical" }))],
          defaults: {
            unit: "short",
            decimals: 0,
            noValue: "0",
            thresholds: thresholds(["green", null], ["red", 1]),
          },
        }),
        stat({
          title: "Times fired",
          description: "Transitions to firing in the range.",
          w: 6,
          h: 4,
          maxDataPoints: FEW_POINTS,
          targets: [target(over(FIRING, "count", ["group()", "sum()"]))],
          defaults: { unit: "short", decimals: 0, noValue: "0", thresholds: thresholds(["blue", null]) },
        }),
        stat({
          title: "Transitions",
          description: "Transitions (firing and resolved) in the range.",
          w: 6,
          h: 4,
          maxDataPoints: FEW_POINTS,
          targets: [target(over(TRANSITIONS, "count", ["group()", "sum()"]))],
          defaults: { unit: "short", decimals: 0, noValue: "0", thresholds: thresholds(["blue", null]) },
        }),
      ],
      [
        timeseries({
          title: "Fired by severity",
          description: "Transitions to firing per window, stacked by severity.",
          w: 12,
          h: 8,
          interval: "1m",
          maxDataPoints: SERIES_POINTS,
          draw: "bars",
          stack: true,
          targets: [target(windowed(SERIES_POINTS, over(FIRING, "count", sumAcross(["severity"]), "every")))],
          defaults: { min: 0, displayName: seriesLabel("severity"), unit: "short", decimals: 0 },
          overrides: Object.entries(SEVERITY_COLORS).map(([severity, color]) =>
            override(severity, { color: { mode: "fixed", fixedColor: color } }),
          ),
        }),
        timeseries({
          title: "Fired by rule",
          description: "Transitions to firing per window, stacked by rule.",
          w: 12,
          h: 8,
          interval: "1m",
          maxDataPoints: SERIES_POINTS,
          draw: "bars",
          stack: true,
          targets: [target(windowed(SERIES_POINTS, over(FIRING, "count", sumAcross(["rule_id"]), "every")))],
          defaults: { min: 0, displayName: seriesLabel("rule_id"), unit: "short", decimals: 0 },
        }),
      ],
      [
        table({
          title: "Firing alerts",
          description: `Rules firing at the end of the range, with the transition that started each (at most ${ALERT_ROWS}).`,
          w: 24,
          h: 7,
          maxDataPoints: ALERT_ROWS,
          ...ALERT_TABLE,
          targets: [target(firingAlertsTable())],
        }),
      ],
      [
        table({
          title: "History",
          description: `Transitions in the range, newest first: per rule, sensor, state and window the latest, at most ${ALERT_ROWS}.`,
          w: 24,
          h: 12,
          maxDataPoints: ALERT_ROWS,
          ...ALERT_TABLE,
          targets: [target(alertHistoryTable())],
        }),
      ],
    ],
  });
}
