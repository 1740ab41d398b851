/**
 * Alert queries shared by the fleet, sensor and alerts dashboards. An alert's state is a tag, so a
 * rule on a sensor is firing when its latest transition (looking back 30 days from the end of the
 * range) is `firing`.
 */
import { MEASUREMENTS } from "../common/topics.js";
import { keep, PIVOT_FIELDS, select, selectAsOfStop, where, withImports } from "./flux.js";
import { colorMapping, override, SEVERITY_COLORS, STATE_COLORS } from "./model.js";

const LOOKBACK = "30d";

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

/** Rules currently firing, one row per rule and sensor, with the transition that started it. */
export function firingAlertsTable(extra: Record<string, string> = {}): string {
  return withImports(
    ["date"],
    selectAsOfStop(
      LOOKBACK,
      where({ _measurement: MEASUREMENTS.alerts, ...extra }),
      PIVOT_FIELDS,
      'group(columns: ["rule_id", "sensor_id"])',
      'sort(columns: ["_time"])',
      'last(column: "_time")',
      'filter(fn: (r) => r.state == "firing")',
      "group()",
      keep(ALERT_COLUMNS.map(([c]) => c)),
      'sort(columns: ["_time"], desc: true)',
    ),
  );
}

/** How many rules are firing now. */
export function firingAlertsCount(extra: Record<string, string> = {}): string {
  return withImports(
    ["date"],
    selectAsOfStop(
      LOOKBACK,
      where({ _measurement: MEASUREMENTS.alerts, _field: "value", ...extra }),
      'group(columns: ["rule_id", "sensor_id"])',
      'sort(columns: ["_time"])',
      "last()",
      'filter(fn: (r) => r.state == "firing")',
      "group()",
      "count()",
    ),
  );
}

/** Every transition in the range, newest first. */
export function alertHistoryTable(extra: Record<string, string> = {}, limit = 500): string {
  return select(
    where({ _measurement: MEASUREMENTS.alerts, ...extra }),
    PIVOT_FIELDS,
    "group()",
    keep(ALERT_COLUMNS.map(([c]) => c)),
    'sort(columns: ["_time"], desc: true)',
    `limit(n: ${limit})`,
  );
}
