/**
 * The one module that knows the Kafka client library. Everything else imports from here, so the
 * client (kafkajs today) can be swapped for a KafkaJS-compatible one without touching the pipeline.
 */
import { type Admin, Kafka, type KafkaConfig as KafkaJsConfig, logLevel } from "kafkajs";
import type { Logger } from "pino";
import type { KafkaConfig } from "./config.js";
import { TOPICS, type TopicName, topicName } from "./topics.js";

export type {
  Admin,
  Consumer,
  EachBatchPayload,
  IHeaders,
  KafkaMessage,
  Message,
  Producer,
  Transaction,
} from "kafkajs";
export { Kafka };

export function createKafka(
  config: KafkaConfig,
  logger?: Logger,
  overrides: Partial<KafkaJsConfig> = {},
): Kafka {
  return new Kafka({
    clientId: config.clientId,
    brokers: config.brokers,
    connectionTimeout: 3000,
    requestTimeout: 30000,
    retry: { initialRetryTime: 300, retries: 10, maxRetryTime: 10_000 },
    logLevel: logLevel.WARN,
    logCreator: () => (entry) => {
      if (!logger) return;
      const { message, ...extra } = entry.log;
      const context = { namespace: entry.namespace, ...extra };
      if (entry.level <= logLevel.ERROR) logger.error(context, message);
      else if (entry.level === logLevel.WARN) logger.warn(context, message);
      else logger.debug(context, message);
    },
    ...overrides,
  });
}

interface TopicSpec {
  partitions: (config: KafkaConfig) => number;
  configEntries?: { name: string; value: string }[];
}

const COMPACTED = [
  { name: "cleanup.policy", value: "compact" },
  { name: "min.cleanable.dirty.ratio", value: "0.1" },
  { name: "segment.ms", value: "600000" },
];

const TOPIC_SPECS: Record<TopicName, TopicSpec> = {
  raw: { partitions: (c) => c.partitions },
  deadLetter: { partitions: (c) => c.partitions },
  aggregated: { partitions: (c) => c.partitions },
  late: { partitions: (c) => c.partitions },
  alerts: { partitions: (c) => c.partitions },
  alertRules: { partitions: () => 1, configEntries: COMPACTED },
  // One changelog partition per raw partition: the worker's state for raw partition p lives in p.
  ingestState: {
    partitions: (c) => c.partitions,
    configEntries: [...COMPACTED, { name: "max.message.bytes", value: String(8 * 1024 * 1024) }],
  },
};

/** Creates any of the product's topics that do not exist yet. Safe to call from every process. */
export async function ensureTopics(
  admin: Admin,
  config: KafkaConfig,
  names = Object.keys(TOPICS) as TopicName[],
) {
  const existing = new Set(await admin.listTopics());
  const missing = names.filter((name) => !existing.has(topicName(config.topicPrefix, name)));
  if (missing.length === 0) return;
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: missing.map((name) => ({
        topic: topicName(config.topicPrefix, name),
        numPartitions: TOPIC_SPECS[name].partitions(config),
        replicationFactor: -1,
        configEntries: TOPIC_SPECS[name].configEntries ?? [],
      })),
    });
  } catch (err) {
    // Another process may have created them between listTopics and createTopics.
    const stillMissing = new Set(await admin.listTopics());
    if (missing.some((name) => !stillMissing.has(topicName(config.topicPrefix, name)))) throw err;
  }
}

export async function withAdmin<T>(kafka: Kafka, fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}
