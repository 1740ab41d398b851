/**
 * What the machine allows without the worker: Kafka consume-only over the same raw topic, InfluxDB
 * write-only of the same lines in batches of the size the worker saw, and the worker's own CPU work
 * (PartitionTask.process: parse, detect, window, line protocol) with no I/O at all.
 */
import { randomBytes } from "node:crypto";
import { influxConfig } from "../common/config.js";
import { createInflux } from "../common/influx.js";
import { parseReading } from "../common/reading.js";
import type { AlertRule } from "../common/rules.js";
import { ingestSettings } from "../ingest/config.js";
import { PartitionTask, type RuleSet } from "../ingest/partition-task.js";
import { BENCH_RULES } from "./ingest.js";
import { createBucket, type Env, kafkaFor, type Outgoing, progress, rawTopic } from "./support.js";

export interface Limits {
  kafkaReadingsPerSecond: number;
  influxReadingsPerSecond: number;
  influxBatchLines: number;
  influxBatches: number;
  cpuReadingsPerSecond: number;
  /** parseReading alone (bytes → validated reading), the first stage of the CPU work. */
  parseReadingsPerSecond: number;
}

/** A consumer group configured like the worker's, whose eachBatch only counts. */
async function kafkaConsumeOnly(env: Env, expected: number): Promise<number> {
  const line = progress("2/5 limits: Kafka consume-only");
  const consumer = kafkaFor(env).consumer({
    groupId: `bench-consume-${randomBytes(4).toString("hex")}`,
    maxBytesPerPartition: 1024 * 1024,
    readUncommitted: false,
  });
  let consumed = 0;
  let finished = 0;
  const started = performance.now();
  await consumer.connect();
  try {
    await consumer.subscribe({ topic: rawTopic(env), fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`consumed only ${consumed}/${expected} in 120 s`)),
        120_000,
      );
      consumer
        .run({
          partitionsConsumedConcurrently: 1,
          eachBatch: async ({ batch }) => {
            consumed += batch.messages.length;
            line.update(`${consumed}/${expected}`);
            if (consumed >= expected && finished === 0) {
              finished = performance.now();
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  const seconds = (finished - started) / 1000;
  line.done(`${consumed} messages in ${seconds.toFixed(1)} s`);
  return expected / seconds;
}

/** The end-to-end run's rules as the worker holds them. */
const BENCH_RULE_SET: RuleSet = {
  version: 1,
  rules: BENCH_RULES.map(
    (r, i) =>
      ({
        ...r,
        id: `bench-rule-${i}`,
        version: 1,
        created_at: "2026-01-01T00:00:00.000Z",
        updated_at: "2026-01-01T00:00:00.000Z",
      }) as AlertRule,
  ),
};

/** The lines the worker writes for these messages (readings, anomaly flags, alerts), built up front. */
function linesFor(
  env: Env,
  messages: Outgoing[],
  batchSize: number,
): { lines: string[]; cpuSeconds: number } {
  const settings = ingestSettings(env);
  const task = new PartitionTask(settings.task);
  const input = messages.map((m) => ({ value: Buffer.from(m.value) }));
  const lines: string[] = [];
  const now = Date.now();
  const started = performance.now();
  // The changelog is taken as the worker takes it under a backlog: once per commit interval.
  let committed = started;
  for (let i = 0; i < input.length; i += batchSize) {
    const out = task.process(input.slice(i, i + batchSize), now, BENCH_RULE_SET);
    for (const l of out.lines) lines.push(l.line);
    if (performance.now() - committed >= (settings.commitIntervalMs ?? 0)) {
      task.takeRecords();
      committed = performance.now();
    }
  }
  task.takeRecords();
  return { lines, cpuSeconds: (performance.now() - started) / 1000 };
}

function parseOnly(env: Env, messages: Outgoing[]): number {
  const limits = ingestSettings(env).task.limits;
  const input = messages.map((m) => Buffer.from(m.value));
  const now = Date.now();
  let valid = 0;
  const started = performance.now();
  for (const bytes of input) if (parseReading(bytes, now, limits).ok) valid++;
  const seconds = (performance.now() - started) / 1000;
  if (valid !== messages.length) throw new Error(`only ${valid} of ${messages.length} messages parsed`);
  return seconds;
}

/** One batch after another, each through a WriteApi configured as InfluxWriter configures it. */
async function influxWriteOnly(env: Env, lines: string[], batchSize: number): Promise<number> {
  const line = progress("2/5 limits: InfluxDB write-only");
  const target: Env = { ...env, INFLUX_BUCKET: `${env.INFLUX_BUCKET}-write-only` };
  await createBucket(target);
  const config = influxConfig(target);
  const influx = createInflux(config);
  const started = performance.now();
  for (let i = 0; i < lines.length; i += batchSize) {
    const batch = lines.slice(i, i + batchSize);
    const api = influx.getWriteApi(config.org, config.bucket, "ms", {
      batchSize: batch.length + 1,
      flushInterval: 0,
      maxRetries: 0,
      gzipThreshold: 1 << 30,
    });
    api.writeRecords(batch);
    await api.close();
    line.update(`${i + batch.length}/${lines.length} lines`);
  }
  const seconds = (performance.now() - started) / 1000;
  line.done(`${lines.length} lines in ${seconds.toFixed(1)} s`);
  return seconds;
}

export async function runLimits(env: Env, messages: Outgoing[], meanBatchMessages: number): Promise<Limits> {
  const kafkaReadingsPerSecond = await kafkaConsumeOnly(env, messages.length);
  const batchSize = Math.max(1, Math.round(meanBatchMessages));
  const cpu = progress("2/5 limits: worker CPU only");
  cpu.update(`PartitionTask.process over ${messages.length} messages`);
  const { lines, cpuSeconds } = linesFor(env, messages, batchSize);
  const parseSeconds = parseOnly(env, messages);
  cpu.done(
    `${messages.length} messages in ${cpuSeconds.toFixed(1)} s, parsing alone ${parseSeconds.toFixed(1)} s`,
  );
  // Lines per batch as the worker saw them: a batch of messages yields its readings plus anomaly flags.
  const batchLines = Math.max(1, Math.round((batchSize * lines.length) / messages.length));
  const writeSeconds = await influxWriteOnly(env, lines, batchLines);
  return {
    kafkaReadingsPerSecond,
    influxReadingsPerSecond: messages.length / writeSeconds,
    influxBatchLines: batchLines,
    influxBatches: Math.ceil(lines.length / batchLines),
    cpuReadingsPerSecond: messages.length / cpuSeconds,
    parseReadingsPerSecond: messages.length / parseSeconds,
  };
}
