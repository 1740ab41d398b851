/** Kafka topic and InfluxDB measurement names shared by the worker, the API and the dashboards. */

export const TOPICS = {
  raw: "sensor-readings-raw",
  deadLetter: "sensor-readings-dlq",
  aggregated: "sensor-readings-aggregated",
  late: "sensor-readings-late",
  alerts: "sensor-alerts",
  alertRules: "alert-rules",
  ingestState: "ingest-state-changelog",
} as const;

export type TopicName = keyof typeof TOPICS;

export function topicName(prefix: string, name: TopicName): string {
  return `${prefix}${TOPICS[name]}`;
}

export const MEASUREMENTS = {
  readings: "readings",
  anomalies: "anomalies",
  alerts: "alerts",
  pipeline: "pipeline",
} as const;
