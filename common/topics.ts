/** Kafka topic and InfluxDB measurement names shared by the worker, the API and the dashboards. */

export const TOPICS = {
  raw: "sensor-readings-raw",
  deadLetter: "sensor-readings-dlq",
  aggregated: "sensor-readings-aggregated",
  late: "sensor-readings-late",
  alerts: "sensor-alerts",
  alertRules: "alert-rules",
} as const;

export type TopicName = keyof typeof TOPICS;

export function topicName(prefix: string, name: TopicName): string {
  return `${prefix}${TOPICS[name]}`;
}

/**
 * The worker's state changelog belongs to its consumer group (like a Kafka Streams application's
 * store), so two groups reading the same raw topic never share state.
 */
export function changelogTopic(prefix: string, groupId: string): string {
  return `${prefix}${groupId}-state-changelog`;
}

export const MEASUREMENTS = {
  readings: "readings",
  anomalies: "anomalies",
  alerts: "alerts",
  pipeline: "pipeline",
} as const;
