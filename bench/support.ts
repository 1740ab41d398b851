/** What every measurement shares: the bench environment, progress lines, Kafka and InfluxDB helpers. */
import { randomBytes } from "node:crypto";
import { pino } from "pino";
import { influxConfig, kafkaConfig } from "../common/config.js";
import { createInflux, ensureBuckets } from "../common/influx.js";
import { type Admin, createKafka, ensureTopics, type Kafka, withAdmin } from "../common/kafka.js";
import { routeInfluxClientLogs } from "../common/log.js";
import { MEASUREMENTS, topicName } from "../common/topics.js";

export type Env = Record<string, string>;

export const READ_TOKEN = "bench-read-token-0123456789";
export const logger = pino({ level: "error" });
routeInfluxClientLogs(logger);

/** A fresh bucket, topic prefix and consumer group on the given services. */
export async function isolatedEnv(services: Env, name: string): Promise<Env> {
  const id = `${name}-${randomBytes(4).toString("hex")}`;
  const env: Env = {
    ...services,
    INFLUX_BUCKET: `bench-${id}`,
    KAFKA_TOPIC_PREFIX: `bench-${id}.`,
    KAFKA_PARTITIONS: "6",
    INGEST_GROUP_ID: `ingest-${id}`,
    // The worker's tuning knob under test: `INGEST_PARTITION_CONCURRENCY=3 npm run bench`.
    ...(process.env.INGEST_PARTITION_CONCURRENCY
      ? { INGEST_PARTITION_CONCURRENCY: process.env.INGEST_PARTITION_CONCURRENCY }
      : {}),
    INGEST_METRICS_ENABLED: "false",
    INGEST_PIPELINE_INTERVAL_MS: "600000",
    API_READ_TOKENS: READ_TOKEN,
    API_RATE_LIMIT_PER_MINUTE: "1000000",
    LOG_LEVEL: "error",
  };
  await createBucket(env);
  return env;
}

/** The environment's raw bucket and its rollup buckets, made as provisioning makes them. */
export async function createBucket(env: Env): Promise<void> {
  await ensureBuckets(influxConfig(env));
}

export function kafkaFor(env: Env): Kafka {
  return createKafka(kafkaConfig(env));
}

export function rawTopic(env: Env): string {
  return topicName(env.KAFKA_TOPIC_PREFIX ?? "", "raw");
}

export interface Outgoing {
  key: string;
  value: string;
}

/** Sends `messages` to the raw topic (acks=all), one request at a time. */
export async function produce(
  env: Env,
  messages: Outgoing[],
  onProgress: (sent: number) => void = () => {},
): Promise<void> {
  const kafka = kafkaFor(env);
  await withAdmin(kafka, (admin) => ensureTopics(admin, kafkaConfig(env)));
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    // One send at a time: kafkajs's idempotent producer can lose or repeat messages when sends
    // overlap (it numbers a send's batches when the send is made and takes the numbers back when
    // its request fails); one bench run found 1,634 of 200,000 readings replaced by repeats of
    // others in the raw topic.
    const chunk = 8000;
    for (let i = 0; i < messages.length; i += chunk) {
      await producer.send({ topic: rawTopic(env), acks: -1, messages: messages.slice(i, i + chunk) });
      onProgress(Math.min(messages.length, i + chunk));
    }
  } finally {
    await producer.disconnect();
  }
}

/** Total committed offset of `groupId` on the raw topic. */
export async function committedOffsets(admin: Admin, env: Env, groupId: string): Promise<number> {
  const groups = await admin.fetchOffsets({ groupId, topics: [rawTopic(env)] });
  return (groups[0]?.partitions ?? []).reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
}

/** Points of the `readings` measurement (one field, temperature) in the bucket. */
export async function countReadings(env: Env): Promise<number> {
  const config = influxConfig(env);
  const rows = await createInflux(config)
    .getQueryApi(config.org)
    .collectRows<{ _value: number }>(
      `from(bucket: "${config.bucket}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "${MEASUREMENTS.readings}" and r._field == "temperature") |> group() |> count()`,
    );
  return rows[0]?._value ?? 0;
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))] as number;
}

/**
 * One line on stderr, rewritten in place on a terminal (else a line every few seconds), so a long
 * measurement shows it is alive without flooding a log.
 */
export function progress(label: string): { update(text: string): void; done(text: string): void } {
  const tty = process.stderr.isTTY;
  let last = 0;
  const write = (text: string, final: boolean) => {
    const now = Date.now();
    if (!final && now - last < (tty ? 250 : 5000)) return;
    last = now;
    if (tty) process.stderr.write(`\r\u001b[2K[bench] ${label}: ${text}${final ? "\n" : ""}`);
    else process.stderr.write(`[bench] ${label}: ${text}\n`);
  };
  return { update: (text) => write(text, false), done: (text) => write(text, true) };
}
