/**
 * The one module that knows the Kafka client library. Everything else imports from here, so the
 * client (kafkajs today) can be swapped for a KafkaJS-compatible one without touching the pipeline.
 */
import type {
  Admin,
  ConfigResourceTypes,
  Kafka as KafkaClient,
  KafkaConfig as KafkaJsConfig,
  SASLOptions,
} from "kafkajs";
import type { Logger } from "pino";
import { ConfigError, type KafkaConfig } from "./config.js";
import { InfluxAccessError } from "./influx.js";
// kafkajs itself comes from here: loaded only after its fixes are in place (see kafkajs-fixes.ts).
import { kafkajs } from "./kafkajs-fixes.js";
import { errorChain, isTlsConfigurationCode, tlsProblem } from "./tls.js";
import { changelogTopic, TOPICS, type TopicName, topicName } from "./topics.js";

export type {
  Admin,
  Consumer,
  EachBatchPayload,
  IHeaders,
  KafkaMessage,
  Message,
  PartitionAssigner,
  Producer,
  Transaction,
} from "kafkajs";
export type Kafka = KafkaClient;
export const {
  AssignerProtocol,
  Kafka,
  Partitioners,
  KafkaJSConnectionError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
  KafkaJSSASLAuthenticationError,
} = kafkajs;
const { logLevel } = kafkajs;

/** kafkajs's `ssl` and `sasl` options for the configured security protocol. */
export function securityOptions(config: KafkaConfig): Pick<KafkaJsConfig, "ssl" | "sasl"> {
  const { tls, sasl } = config;
  return {
    // A CA given replaces the system's roots: the brokers must chain to it.
    ...(tls
      ? {
          ssl: {
            ...(tls.ca === undefined ? {} : { ca: [tls.ca] }),
            ...(tls.cert === undefined ? {} : { cert: tls.cert, key: tls.key, passphrase: tls.passphrase }),
          },
        }
      : {}),
    // kafkajs types SASL options per mechanism; ours are the same three shapes.
    ...(sasl ? { sasl: { ...sasl } as SASLOptions } : {}),
  };
}

export function createKafka(
  config: KafkaConfig,
  logger?: Logger,
  overrides: Partial<KafkaJsConfig> = {},
): Kafka {
  return new Kafka({
    clientId: config.clientId,
    brokers: config.brokers,
    ...securityOptions(config),
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

/** A topic's settings `names`, as the broker reports them (name → value). */
export async function topicConfig(
  admin: Admin,
  topic: string,
  names: string[],
): Promise<Record<string, string>> {
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: TOPIC_RESOURCE, name: topic, configNames: names }],
  });
  return Object.fromEntries(
    (described.resources[0]?.configEntries ?? []).map((e) => [e.configName, e.configValue]),
  );
}

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

/**
 * A failure no retry can fix: wrong credentials, an untrusted certificate, a missing ACL. The
 * message says which setting to change. Start-up retry loops must let it through (see
 * `isConfigurationError`).
 */
export class KafkaAccessError extends Error {
  override name = "KafkaAccessError";
  readonly retriable = false;
  constructor(
    message: string,
    readonly reason: "authentication" | "tls" | "authorization",
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Recognises the failures of connecting to Kafka that configuration, not time, must fix, and says
 * which setting to look at. Undefined for anything else (broker down, leader moving, timeouts).
 */
export function kafkaAccessProblem(err: unknown, config: KafkaConfig): KafkaAccessError | undefined {
  if (err instanceof KafkaAccessError) return err;
  for (const e of errorChain(err)) {
    if (e.name === "KafkaJSSASLAuthenticationError") {
      const mechanism = config.sasl?.mechanism ?? "none";
      const user = config.sasl?.username ?? "(none)";
      const detail = e.message ?? "";
      const hint = /not supported by the server/.test(detail)
        ? "the broker does not offer this mechanism: set KAFKA_SASL_MECHANISM to one it enables"
        : "check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM";
      return new KafkaAccessError(
        `Kafka authentication failed for user ${JSON.stringify(user)} with mechanism ${mechanism} (${detail}): ${hint}`,
        "authentication",
        { cause: err },
      );
    }
    if (typeof e.type === "string" && e.type.endsWith("_AUTHORIZATION_FAILED")) {
      const user = config.sasl ? `user ${JSON.stringify(config.sasl.username)}` : "this client";
      return new KafkaAccessError(
        `Kafka refused ${user} (${e.type}: ${e.message}): grant it the ACLs listed in the README ("Running against a Kafka cluster and InfluxDB Cloud")`,
        "authorization",
        { cause: err },
      );
    }
    if (typeof e.code === "string" && config.tls) {
      const broker = (e as { broker?: string }).broker ?? config.brokers.join(",");
      const problem = tlsProblem(
        e.code,
        `Kafka broker ${broker}`,
        "KAFKA_SSL_CA_FILE",
        config.tls.cert === undefined
          ? "the broker probably requires a client certificate: set KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE"
          : "the broker does not accept the client certificate in KAFKA_SSL_CERT_FILE (is it signed by a CA the broker trusts?)",
      );
      if (problem) return new KafkaAccessError(problem, "tls", { cause: err });
    }
  }
  return undefined;
}

/**
 * For start-up retry loops: true for what retrying cannot fix (bad configuration, credentials,
 * certificates, ACLs); ingest/startup.ts decides what of the rest passes by itself.
 */
export function isConfigurationError(err: unknown): boolean {
  if (err instanceof ConfigError || err instanceof KafkaAccessError || err instanceof InfluxAccessError) {
    return true;
  }
  // The raw kafkajs errors too, for callers that did not go through verifyKafkaAccess.
  return errorChain(err).some(
    (e) =>
      e.name === "KafkaJSSASLAuthenticationError" ||
      (typeof e.type === "string" && e.type.endsWith("_AUTHORIZATION_FAILED")) ||
      (typeof e.code === "string" && isTlsConfigurationCode(e.code)),
  );
}

/**
 * Connects once, without retries, and turns an authentication or TLS failure into a
 * KafkaAccessError naming the setting to fix. kafkajs would otherwise retry a certificate it does
 * not trust for a minute before giving up. Other failures (a broker still starting) are left to the
 * caller's own connection, which retries them.
 */
export async function verifyKafkaAccess(config: KafkaConfig): Promise<void> {
  const admin = createKafka(config, undefined, { retry: { retries: 0 } }).admin();
  try {
    await admin.connect();
  } catch (err) {
    const problem = kafkaAccessProblem(err, config);
    if (problem) throw problem;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}
