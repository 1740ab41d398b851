/**
 * The one module that knows the Kafka client library. Everything else imports from here, so the
 * client (kafkajs today) can be swapped for a KafkaJS-compatible one without touching the pipeline.
 */
import {
  type Admin,
  type ConfigResourceTypes,
  Kafka,
  type KafkaConfig as KafkaJsConfig,
  logLevel,
} from "kafkajs";
import type { Logger } from "pino";
import type { KafkaConfig } from "./config.js";
import { changelogTopic, TOPICS, type TopicName, topicName } from "./topics.js";

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
      // kafkajs logs retriable protocol errors (coordinator loading, concurrent transactions) at
      // ERROR and then recovers; what really fails surfaces as a thrown error, logged by the caller.
      if (entry.level <= logLevel.WARN) logger.warn(context, message);
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

/**
 * Dead letters and late readings carry a raw message (up to the raw topic's 1 MiB) plus headers
 * naming its source: their topics take more than the raw one.
 */
export const FORWARD_MAX_MESSAGE_BYTES = 8 * 1024 * 1024;
const FORWARDING = [{ name: "max.message.bytes", value: String(FORWARD_MAX_MESSAGE_BYTES) }];

const TOPIC_SPECS: Record<TopicName, TopicSpec> = {
  raw: { partitions: (c) => c.partitions },
  deadLetter: { partitions: (c) => c.partitions, configEntries: FORWARDING },
  aggregated: { partitions: (c) => c.partitions },
  late: { partitions: (c) => c.partitions, configEntries: FORWARDING },
  alerts: { partitions: (c) => c.partitions },
  alertRules: { partitions: () => 1, configEntries: COMPACTED },
};

interface NewTopic {
  topic: string;
  numPartitions: number;
  configEntries: { name: string; value: string }[];
}

async function createMissing(admin: Admin, topics: NewTopic[]): Promise<void> {
  const existing = new Set(await admin.listTopics());
  const missing = topics.filter((t) => !existing.has(t.topic));
  if (missing.length === 0) return;
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: missing.map((t) => ({ ...t, replicationFactor: -1 })),
    });
  } catch (err) {
    // Another process may have created them between listTopics and createTopics.
    const now = new Set(await admin.listTopics());
    if (missing.some((t) => !now.has(t.topic))) throw err;
  }
}

/** Creates any of the product's topics that do not exist yet. Safe to call from every process. */
export async function ensureTopics(
  admin: Admin,
  config: KafkaConfig,
  names = Object.keys(TOPICS) as TopicName[],
) {
  await createMissing(
    admin,
    names.map((name) => ({
      topic: topicName(config.topicPrefix, name),
      numPartitions: TOPIC_SPECS[name].partitions(config),
      configEntries: TOPIC_SPECS[name].configEntries ?? [],
    })),
  );
}

/**
 * The worker's compacted state changelog: one partition per raw partition (state for raw
 * partition p lives in changelog partition p), sized from the raw topic as it really is.
 */
export async function ensureChangelogTopic(
  admin: Admin,
  config: KafkaConfig,
  groupId: string,
): Promise<string> {
  const topic = changelogTopic(config.topicPrefix, groupId);
  const raw = topicName(config.topicPrefix, "raw");
  const metadata = await admin.fetchTopicMetadata({ topics: [raw] });
  const partitions = metadata.topics[0]?.partitions.length ?? config.partitions;
  await createMissing(admin, [
    {
      topic,
      numPartitions: partitions,
      configEntries: [...COMPACTED, { name: "max.message.bytes", value: String(8 * 1024 * 1024) }],
    },
  ]);
  return topic;
}

/** ConfigResourceTypes.TOPIC: kafkajs's CommonJS build does not offer that enum to ES modules. */
const TOPIC_RESOURCE = 2 as ConfigResourceTypes;

/** The smallest `max.message.bytes` of `topics`: the largest message all of them take. */
export async function maxMessageBytes(admin: Admin, topics: string[]): Promise<number> {
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: topics.map((name) => ({
      type: TOPIC_RESOURCE,
      name,
      configNames: ["max.message.bytes"],
    })),
  });
  let limit = Number.POSITIVE_INFINITY;
  for (const resource of described.resources) {
    for (const entry of resource.configEntries) {
      const value = Number(entry.configValue);
      if (entry.configName === "max.message.bytes" && Number.isFinite(value)) limit = Math.min(limit, value);
    }
  }
  // The broker's default when a topic does not say.
  return Number.isFinite(limit) ? limit : 1024 * 1024;
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
