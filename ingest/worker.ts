/**
 * The ingest worker: a kafkajs consumer group over sensor-readings-raw.
 *
 * Per partition batch: decode/validate → detect → window (PartitionTask) → write readings and
 * anomalies to InfluxDB (retrying until stored) → one Kafka transaction that publishes dead letters,
 * late readings, closed windows and the state changelog and commits the consumed offsets.
 *
 * Why a transaction per batch: the offsets, the emitted windows and the detector/window state then
 * move together, so after a crash the worker resumes from a state that matches its offsets exactly
 * and a replay produces the same points (InfluxDB point identity is deterministic) and the same
 * flags. Each partition has its own transactional id, so whoever owns the partition next fences
 * any zombie and aborts its open transaction before restoring the state.
 *
 * kafkajs traps avoided: no pause()/resume() (re-delivery and stuck resume, kafkajs#1376/#1641) —
 * an outage simply holds the batch while heartbeating (#375); nothing is committed for a stale
 * batch after a rebalance (#1046); a partition is never in two batches at once, and its state's own
 * offset drops anything already applied, so a batch is never handled twice (#1764).
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { Registry } from "prom-client";
import { CompactedTable } from "../common/compacted-table.js";
import type { InfluxConfig, KafkaConfig } from "../common/config.js";
import { createInflux } from "../common/influx.js";
import {
  type Consumer,
  createKafka,
  type EachBatchPayload,
  ensureChangelogTopic,
  ensureTopics,
  type Kafka,
  type KafkaMessage,
  type Message,
  type Producer,
  withAdmin,
} from "../common/kafka.js";
import { type AlertRule, parseStoredRule } from "../common/rules.js";
import { changelogTopic, topicName } from "../common/topics.js";
import { InfluxWriter, WriteAbandoned } from "./influx-writer.js";
import type { IngestMetrics } from "./metrics.js";
import { payloadOf, WebhookNotifier } from "./notifier.js";
import { type BatchOutput, PartitionTask, type RuleSet, type TaskConfig } from "./partition-task.js";

export interface WorkerOptions {
  kafka: KafkaConfig;
  influx: InfluxConfig;
  groupId: string;
  task: TaskConfig;
  logger: Logger;
  metrics?: IngestMetrics;
  /** How long the group waits for a silent worker (e.g. killed) before moving its partitions. */
  sessionTimeoutMs?: number;
  /** Partitions processed at the same time by this worker (each strictly in order). */
  partitionConcurrency?: number;
  /** Largest amount of data fetched per partition per batch. */
  maxBytesPerPartition?: number;
}

const MARKER_KEY = "__restore_marker__";
/** Bytes of keys, values and headers per transactional send; well below the 1 MiB default limit. */
const SEND_BYTES = 256 * 1024;

function sizeOf(m: Message): number {
  let n = 64 + (m.key?.length ?? 0) + (m.value?.length ?? 0);
  for (const [k, v] of Object.entries(m.headers ?? {})) n += k.length + String(v).length + 8;
  return n;
}

/** Splits messages into consecutive runs of at most `limit` bytes (a larger message goes alone). */
function bySize(messages: Message[], limit: number): Message[][] {
  const chunks: Message[][] = [];
  let current: Message[] = [];
  let bytes = 0;
  for (const m of messages) {
    const size = sizeOf(m);
    if (current.length > 0 && bytes + size > limit) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(m);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

export class IngestWorker {
  private readonly kafka: Kafka;
  private readonly writer: InfluxWriter;
  private readonly topics: {
    raw: string;
    dlq: string;
    late: string;
    aggregated: string;
    alerts: string;
    state: string;
  };
  private readonly rules: CompactedTable<AlertRule>;
  private ruleSet: RuleSet = { version: -1, rules: [] };
  readonly notifier: WebhookNotifier;
  private consumer: Consumer | undefined;
  private readonly producers = new Map<number, Producer>();
  private readonly tasks = new Map<number, Promise<PartitionTask>>();
  private assigned: number[] = [];
  private running = false;
  private joined = false;

  constructor(private readonly options: WorkerOptions) {
    this.kafka = createKafka(options.kafka, options.logger.child({ component: "kafka" }));
    this.writer = new InfluxWriter(createInflux(options.influx), {
      org: options.influx.org,
      bucket: options.influx.bucket,
    });
    const prefix = options.kafka.topicPrefix;
    this.topics = {
      raw: topicName(prefix, "raw"),
      dlq: topicName(prefix, "deadLetter"),
      late: topicName(prefix, "late"),
      aggregated: topicName(prefix, "aggregated"),
      alerts: topicName(prefix, "alerts"),
      state: changelogTopic(prefix, options.groupId),
    };
    this.rules = new CompactedTable(
      this.kafka,
      topicName(prefix, "alertRules"),
      parseStoredRule,
      options.logger,
    );
    this.notifier = new WebhookNotifier(options.logger, options.metrics?.registry ?? new Registry());
  }

  async start(): Promise<void> {
    await withAdmin(this.kafka, async (admin) => {
      await ensureTopics(admin, this.options.kafka);
      await ensureChangelogTopic(admin, this.options.kafka, this.options.groupId);
    });
    // Rules first: no batch may be evaluated against a partial rule set.
    await this.rules.start();
    const consumer = this.kafka.consumer({
      groupId: this.options.groupId,
      sessionTimeout: this.options.sessionTimeoutMs ?? 30_000,
      heartbeatInterval: Math.floor((this.options.sessionTimeoutMs ?? 30_000) / 10),
      maxBytesPerPartition: this.options.maxBytesPerPartition ?? 1024 * 1024,
      // A stop waits for the fetch in flight, which on an idle topic waits this long for data.
      maxWaitTimeInMs: 1000,
      readUncommitted: false,
      retry: {
        initialRetryTime: 300,
        retries: 10,
        maxRetryTime: 10_000,
        // kafkajs gives up on errors it deems non-retriable and leaves the group, while the process
        // lives on doing nothing. Restarting (from the committed offsets, with state restored)
        // keeps the worker working, or visibly failing in its logs and metrics, never silently idle.
        restartOnFailure: async (error: Error) => {
          this.options.logger.error({ error: error.message }, "consumer failed; restarting it");
          return this.running;
        },
      },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      // Any rebalance may have moved partitions: forget all state and restore it from the changelog.
      this.assigned = event.payload.memberAssignment[this.topics.raw] ?? [];
      this.tasks.clear();
      this.joined = true;
      this.options.logger.info({ partitions: this.assigned }, "joined consumer group");
    });
    consumer.on(consumer.events.CRASH, (event) => {
      this.tasks.clear();
      this.joined = false;
      this.options.logger.warn(
        { error: event.payload.error.message, restart: event.payload.restart },
        "consumer crashed",
      );
    });
    await consumer.connect();
    await consumer.subscribe({ topic: this.topics.raw, fromBeginning: true });
    this.running = true;
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      // Each partition has its own task, state and transactional producer, so partitions can be
      // processed side by side: one's CPU work overlaps another's InfluxDB write.
      partitionsConsumedConcurrently: this.options.partitionConcurrency ?? 1,
      eachBatch: (payload) => this.handleBatch(payload),
    });
  }

  /** In its group and fetching: false before the first join, after a crash and once stopping. */
  get consuming(): boolean {
    return this.running && this.joined;
  }

  async stop(): Promise<void> {
    this.running = false;
    this.joined = false;
    // disconnect() waits for the batch in flight to finish (and commit) before leaving the group.
    // The rule table keeps its rows when its consumer stops, so both consumers stop at once.
    await Promise.all([this.consumer?.disconnect(), this.rules.stop()]);
    await Promise.all([...this.producers.values()].map((p) => p.disconnect()));
    this.producers.clear();
    await this.notifier.drained();
  }

  /** The enabled rules, rebuilt only when the alert-rules table changed. Sorted for a stable order. */
  private currentRules(): RuleSet {
    if (this.ruleSet.version !== this.rules.version) {
      const rules = this.rules
        .values()
        .filter((r) => r.enabled !== false)
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      this.ruleSet = { version: this.rules.version, rules };
    }
    return this.ruleSet;
  }

  private async handleBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, heartbeat, isRunning, isStale, resolveOffset } = payload;
    const partition = batch.partition;
    if (batch.isEmpty()) return;
    const started = performance.now();
    try {
      const task = await this.taskFor(partition);
      const nextOffset = (BigInt(batch.lastOffset()) + 1n).toString();
      const messages = task.unseen(batch.messages);
      if (messages.length === 0) {
        resolveOffset(batch.lastOffset());
        return;
      }
      const out = task.process(messages, Date.now(), this.currentRules());
      task.advanceTo(BigInt(nextOffset));
      const rejected = await this.writer.write(out.lines, {
        heartbeat,
        shouldContinue: () => this.running && isRunning() && !isStale(),
        onRetry: (attempt, delayMs, error) => {
          this.options.metrics?.writeRetries.inc();
          this.options.logger.warn(
            { attempt, delayMs, error: (error as Error).message, partition },
            "InfluxDB write failed; retrying",
          );
        },
      });
      for (const line of rejected) {
        out.deadLetters.push({
          index: line.source,
          reason: "influx_rejected",
          detail: `${line.status}: ${line.message}`.slice(0, 500),
        });
      }
      const writeMs = performance.now() - started;
      if (isStale()) {
        // The partition was taken away while we wrote: the new owner replays it; the points we wrote
        // are identical to the ones it will write.
        this.tasks.delete(partition);
        return;
      }
      await this.commit(partition, messages, out, task, nextOffset);
      resolveOffset(batch.lastOffset());
      this.notifier.notify(out.transitions);
      this.options.metrics?.recordBatch({
        partition,
        messages: messages.length,
        readings: out.readings,
        anomalies: out.anomalies,
        deadLetters: out.deadLetters.length,
        late: out.late.length,
        windows: out.windows.length,
        writeMs,
        lag: Number(BigInt(batch.highWatermark) - BigInt(nextOffset)),
      });
    } catch (err) {
      // The in-memory state may be ahead of the committed offsets now; rebuild it before going on.
      this.tasks.delete(partition);
      if (err instanceof WriteAbandoned) {
        this.options.logger.warn({ partition }, "stopping with an unwritten batch; it will be reprocessed");
        return;
      }
      throw err;
    }
  }

  private async commit(
    partition: number,
    messages: KafkaMessage[],
    out: BatchOutput,
    task: PartitionTask,
    nextOffset: string,
  ) {
    const producer = await this.producerFor(partition);
    const transaction = await producer.transaction();
    try {
      const outputs: { topic: string; messages: Message[] }[] = [
        {
          topic: this.topics.dlq,
          messages: out.deadLetters.map((d) => {
            const m = messages[d.index] as KafkaMessage;
            return {
              key: m.key,
              value: m.value ?? null,
              headers: {
                "dlq-reason": d.reason,
                "dlq-detail": d.detail,
                "dlq-source-topic": this.topics.raw,
                "dlq-source-partition": String(partition),
                "dlq-source-offset": m.offset,
              },
            };
          }),
        },
        {
          topic: this.topics.late,
          messages: out.late.map((i) => {
            const m = messages[i] as KafkaMessage;
            return {
              key: m.key,
              value: m.value ?? null,
              headers: { "late-source-partition": String(partition), "late-source-offset": m.offset },
            };
          }),
        },
        {
          topic: this.topics.alerts,
          messages: out.transitions.map((t) => ({ key: t.sensorId, value: JSON.stringify(payloadOf(t)) })),
        },
        {
          topic: this.topics.aggregated,
          messages: out.windows.map((w) => ({ key: w.sensor_id, value: JSON.stringify(w) })),
        },
        {
          topic: this.topics.state,
          messages: task.takeChangelog().map((e) => ({ key: e.key, value: e.value, partition })),
        },
      ];
      // kafkajs puts everything one send() holds for a partition into one record batch, which the
      // broker refuses above the topic's max.message.bytes (1 MiB by default): a batch of 10,000
      // dead letters with their headers would be. Sends of at most SEND_BYTES keep each one small.
      const sends: Promise<unknown>[] = [];
      for (const { topic, messages: all } of outputs) {
        for (const chunk of bySize(all, SEND_BYTES)) sends.push(transaction.send({ topic, messages: chunk }));
      }
      await Promise.all(sends);
      await transaction.sendOffsets({
        consumerGroupId: this.options.groupId,
        topics: [{ topic: this.topics.raw, partitions: [{ partition, offset: nextOffset }] }],
      });
      await transaction.commit();
    } catch (err) {
      await transaction.abort().catch(() => {});
      // A fenced or broken transactional producer cannot be reused.
      this.producers.delete(partition);
      await producer.disconnect().catch(() => {});
      throw err;
    }
  }

  private async producerFor(partition: number): Promise<Producer> {
    let producer = this.producers.get(partition);
    if (producer === undefined) {
      producer = this.kafka.producer({
        transactionalId: `${this.options.groupId}-${this.topics.raw}-${partition}`,
        idempotent: true,
        maxInFlightRequests: 1,
        transactionTimeout: 60_000,
      });
      await producer.connect();
      this.producers.set(partition, producer);
    }
    return producer;
  }

  private taskFor(partition: number): Promise<PartitionTask> {
    let task = this.tasks.get(partition);
    if (task === undefined) {
      task = this.restore(partition);
      this.tasks.set(partition, task);
      task.catch(() => this.tasks.delete(partition));
    }
    return task;
  }

  /**
   * Rebuilds a partition's state from its changelog partition. Writing a marker in a transaction
   * first fences any previous owner (same transactional id) and aborts its open transaction; the
   * state is complete once the marker has been read back.
   */
  private async restore(partition: number): Promise<PartitionTask> {
    const started = Date.now();
    const producer = await this.producerFor(partition);
    const nonce = randomUUID();
    const transaction = await producer.transaction();
    try {
      await transaction.send({
        topic: this.topics.state,
        messages: [{ key: MARKER_KEY, value: nonce, partition }],
      });
      await transaction.commit();
    } catch (err) {
      await transaction.abort().catch(() => {});
      this.producers.delete(partition);
      await producer.disconnect().catch(() => {});
      throw err;
    }

    const task = new PartitionTask(this.options.task);
    const reader = this.kafka.consumer({
      groupId: `${this.options.groupId}-restore-${randomUUID()}`,
      readUncommitted: false,
    });
    let records = 0;
    await reader.connect();
    try {
      await new Promise<void>((resolve, reject) => {
        reader
          .subscribe({ topic: this.topics.state, fromBeginning: true })
          .then(() =>
            reader.run({
              autoCommit: false,
              eachBatch: async ({ batch }) => {
                if (batch.partition !== partition) return;
                for (const m of batch.messages) {
                  const key = m.key?.toString() ?? "";
                  if (key === MARKER_KEY) {
                    if (m.value?.toString() === nonce) resolve();
                    continue;
                  }
                  task.restore(key, m.value === null ? null : m.value.toString());
                  records++;
                }
              },
            }),
          )
          .catch(reject);
      });
    } finally {
      await reader.disconnect().catch(() => {});
    }
    this.options.logger.info(
      { partition, records, ms: Date.now() - started, ...task.stateSize },
      "restored partition state",
    );
    return task;
  }
}
