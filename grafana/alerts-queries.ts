/**
 * Alert queries shared by the fleet, sensor and alerts dashboards. An alert's `state` is a tag, so
 * firing and resolved are different series of one rule and sensor: the state now is the state of
 * whichever series has the newest point. Storage finds each series' newest point (a bare `last()`
 * over all time up to the end of the range); Flux then keeps the newest per rule and sensor.
 */
import { and, eq, lit } from "../common/flux-shapes.js";
import { MEASUREMENTS } from "../common/topics.js";
import { GRAFANA, keep, latestEvents, PIVOT_FIELDS, quoted } from "./flux.js";
import { colorMapping, override, SEVERITY_COLORS, STATE_COLORS } from "./model.js";

export const ALERT_COLUMNS: [string, string][] = [
  ["_time", "Time"],
  ["rule_id", "Rule"],
  ["sensor_id", "Sensor"],
  ["severity", "Severity"],
  ["state", "State"],
  ["value", "Value"],
  ["threshold", "Threshold"],
  ["message", "Message"],
];

/** The fields the alert tables show (every transition writes all of them). */
const TABLE_FIELDS = ["value", "threshold", "message"];

/** Rows an alert table shows at most; the description says so. */
export const ALERT_ROWS = 200;

/** Columns, formats and colours of every table of alerts. */
export const ALERT_TABLE = {
  columns: ALERT_COLUMNS,
  defaults: { decimals: 2 },
  overrides: [
    override("Severity", {
      mappings: [colorMapping(SEVERITY_COLORS)],
      "custom.cellOptions": { type: "color-text" },
    }),
    override("State", {
      mappings: [colorMapping(STATE_COLORS)],
      "custom.cellOptions": { type: "color-text" },
    }),
  ],
};

export interface AlertFilter {
  /** Narrows in storage: a dashboard variable naming one sensor. */
  sensor?: string;
  /** Narrows after the latest state is known (a rule's severity may have changed since). */
  severity?: string;
}

export const alertsWhere = (fields: string[], sensor?: string) =>
  and(
    eq("_measurement", lit.str(MEASUREMENTS.alerts)),
    fields.length === 1
      ? eq("_field", lit.str(fields[0] as string))
      : `(${fields.map((f) => eq("_field", lit.str(f))).join(" or ")})`,
    sensor === undefined ? "" : eq("sensor_id", quoted(sensor)),
  );

/** Each rule and sensor's newest transition up to the end of the range, then only the firing ones. */
function latestFiring(fields: string[], f: AlertFilter, pivot: boolean): string {
  const firing = and(
    'r.state == "firing"',
    f.severity === undefined ? "" : `r.severity == ${lit.str(f.severity)}`,
  );
  return [
    `from(bucket: ${GRAFANA.bucket})`,
    `range(start: 0, stop: ${GRAFANA.stop})`,
    `filter(fn: (r) => ${alertsWhere(fields, f.sensor)})`,
    "last()",
    ...(pivot ? [PIVOT_FIELDS] : []),
    'group(columns: ["rule_id", "sensor_id"])',
    'sort(columns: ["_time"])',
    'last(column: "_time")',
    `filter(fn: (r) => ${firing})`,
    "group()",
  ].join("\n  |> ");
}

/** How many rules are firing now. */
export function firingAlertsCount(f: AlertFilter = {}): string {
  return `${latestFiring(["value"], f, false)}\n  |> count()`;
}

/** Rules firing now, one row per rule and sensor, with the transition that started it. */
export function firingAlertsTable(f: AlertFilter = {}): string {
  return [
    latestFiring(TABLE_FIELDS, f, true),
    keep(ALERT_COLUMNS.map(([c]) => c)),
    'sort(columns: ["_time"], desc: true)',
    `limit(n: ${ALERT_ROWS})`,
  ].join("\n  |> ");
}

/** Transitions in the range, newest first: per rule, sensor, state and window the latest one. */
export function alertHistoryTable(f: AlertFilter = {}, maxPoints = ALERT_ROWS): string {
  return latestEvents({
    maxPoints,
    where: alertsWhere(TABLE_FIELDS, f.sensor),
    after: [
      PIVOT_FIELDS,
      "group()",
      keep(ALERT_COLUMNS.map(([c]) => c)),
      'sort(columns: ["_time"], desc: true)',
      `limit(n: ${ALERT_ROWS})`,
    ],
  });
}
