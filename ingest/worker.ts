/**
 * The ingest worker: a kafkajs consumer group over sensor-readings-raw, and its lifecycle.
 *
 * Per partition batch, in the consumer: decode/validate → detect → window (PartitionTask), then the
 * result goes to the partition's pipeline (./partition-pipeline.ts) and the consumer fetches on:
 * the pipeline writes readings and anomalies to InfluxDB (InfluxWriter: held and retried until
 * stored), in order, and behind the writes runs one Kafka transaction per commit point that
 * publishes dead letters, late readings, alerts, closed windows and the state changelog and commits
 * the consumed offsets (TransactionalProducers). So batch N+1 is processed while batch N is written,
 * and a write never waits for a transaction. Output messages are built by ./outputs.ts; state is
 * rebuilt from the changelog by ./restore.ts.
 *
 * Why transactions: the offsets, the emitted windows and the detector/window state move together,
 * so after a crash the worker resumes from a state that matches its offsets exactly and a replay
 * produces the same points (InfluxDB point identity is deterministic) and the same flags. Batches
 * share one commit point at most every commitIntervalMs, and the batch that ends a backlog is one at
 * once (nothing of them is in Kafka until that commit, and a crash before it replays them all),
 * which cuts transactions and changelog bytes.
 *
 * Never silently stopped: kafkajs restarts its consumer only after retriable errors; after any
 * other (a fenced producer, a zombie commit, a message the broker refuses) it leaves the group and
 * stays idle while the process lives on. Here every crash drops all producers and partition state,
 * and a consumer that kafkajs does not restart, or whose pipeline failed to write or commit, is
 * replaced by a new one, which resumes from the committed offsets. `ready` is false while no
 * consumer is in the group.
 *
 * kafkajs traps avoided: no pause()/resume() (re-delivery and stuck resume, kafkajs#1376/#1641) —
 * an outage holds the pipeline, whose back-pressure holds the consumer while it heartbeats (#375);
 * a batch whose partition was taken away or whose heartbeat failed is never processed, and a
 * pipeline commits only while its partition and task are still this consumer's (#1046; kafkajs's
 * own isStale() does not notice a rebalance), a later owner fencing it in any case; a partition is
 * never in two batches at once, and its state's own offset drops anything already applied, so a
 * batch is never handled twice (#1764).
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { Registry } from "prom-client";
import { CompactedTable } from "../common/compacted-table.js";
import type { InfluxConfig, KafkaConfig } from "../common/config.js";
import { createInflux, ensureBuckets } from "../common/influx.js";
import {
  type Consumer,
  createKafka,
  type EachBatchPayload,
  ensureChangelogTopic,
  ensureTopics,
  type Kafka,
  type KafkaMessage,
  type Message,
  maxMessageBytes,
  withAdmin,
} from "../common/kafka.js";
import { type AlertRule, parseStoredRule } from "../common/rules.js";
import { changelogTopic, MEASUREMENTS, topicName } from "../common/topics.js";
import { CONFIGURATION_CAUSES, InfluxWriter, WriteAbandoned } from "./influx-writer.js";
import { escapeMeasurement } from "./line-protocol.js";
import type { IngestMetrics } from "./metrics.js";
import { payloadOf, WebhookNotifier } from "./notifier.js";
import { deadLetterMessage, lateMessage, uniqueBySource } from "./outputs.js";
import { PartitionPipeline } from "./partition-pipeline.js";
import type { BatchOutput, PartitionTask, RuleSet, TaskConfig } from "./partition-task.js";
import { restorePartitions } from "./restore.js";
import { isRetriableStartupError, startupBackoffMs } from "./startup.js";
import { type TopicMessages, TransactionalProducers } from "./transactions.js";

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
  /** Longest a state restore may take before the consumer is rebuilt and tries again. */
  restoreTimeoutMs?: number;
  /**
   * A partition's batches are committed together at most this often (one Kafka transaction, one
   * changelog entry per state key changed meanwhile); the batch that ends a backlog commits at
   * once. 0: every batch commits.
   */
  commitIntervalMs?: number;
}

const READINGS_PREFIX = `${escapeMeasurement(MEASUREMENTS.readings)},`;
/** How often owned partitions are checked for due wall-clock timers and rule changes. */
const TICK_INTERVAL_MS = 250;
/**
 * Processed batches (or ticks) of a partition that may wait for their InfluxDB write: with one being
 * written and one more processed, the consumer waits before processing a third.
 */
const MAX_UNWRITTEN = 2;
/**
 * After a restore, or a batch that left the partition behind its end, silence is not silence yet:
 * the partition's timers wait this long for the next batch (longer than a fetch's 1 s wait).
 */
const SETTLE_MS = 2_500;
/** Backoff between consumer rebuilds after failures kafkajs does not recover from. */
const REBUILD_BACKOFF_MS = { initial: 500, max: 30_000 };

/**
 * Test-only fault point between the InfluxDB write and the Kafka commit, for the crash, outage and
 * shutdown tests: with INGEST_FAULT_AFTER_WRITE=<n>, the n-th successful write of this process prints
 * `FAULT_POINT after-write partition=<p> next-offset=<o>` and holds that batch uncommitted until the
 * process gets SIGUSR2 or is stopped (then it commits as usual), or is killed. Unset or 0: never.
 */
const FAULT_AFTER_WRITE = Number(process.env.INGEST_FAULT_AFTER_WRITE ?? 0);
let faultWrites = 0;
async function afterWriteFaultPoint(partition: number, nextOffset: string, running: () => boolean) {
  if (FAULT_AFTER_WRITE <= 0 || ++faultWrites !== FAULT_AFTER_WRITE) return;
  let released = false;
  process.once("SIGUSR2", () => {
    released = true;
  });
  process.stdout.write(`FAULT_POINT after-write partition=${partition} next-offset=${nextOffset}\n`);
  while (running() && !released) await new Promise((r) => setTimeout(r, 20));
}

/** Bytes of the messages' keys and values. */
function bytesOf(messages: KafkaMessage[]): number {
  let bytes = 0;
  for (const m of messages) bytes += (m.key?.length ?? 0) + (m.value?.length ?? 0);
  return bytes;
}

/** A partition's pipeline found the partition taken away before a commit. */
class PartitionLeft extends Error {
  override name = "PartitionLeft";
  constructor(partition: number) {
    super(`partition ${partition} is no longer this worker's`);
  }
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
  private readonly producers: TransactionalProducers;
  private readonly sessionTimeoutMs: number;
  private readonly heartbeatIntervalMs: number;
  private consumer: Consumer | undefined;
  /** Partition state, kept across rebalances for partitions that stay with this worker. */
  private readonly tasks = new Map<number, Promise<PartitionTask>>();
  private assigned = new Set<number>();
  private running = false;
  private consuming = false;
  private rebuildTimer: NodeJS.Timeout | undefined;
  private rebuildDelayMs = REBUILD_BACKOFF_MS.initial;
  private tickTimer: NodeJS.Timeout | undefined;
  /** Restored tasks by their promise in `tasks`, for the tick (which never waits for a restore). */
  private readonly restored = new WeakMap<Promise<PartitionTask>, PartitionTask>();
  /** Wall-clock time before which a partition's timers do not fire (see SETTLE_MS). */
  private readonly settleUntil = new Map<number, number>();
  /** Per partition, the write-then-commit path of its current task (see ./partition-pipeline.ts). */
  private readonly pipelines = new Map<number, PartitionPipeline>();
  /** Largest dead-letter or late message the broker takes (the topics' max.message.bytes). */
  private forwardLimit = 1024 * 1024;

  constructor(private readonly options: WorkerOptions) {
    this.kafka = createKafka(options.kafka, options.logger.child({ component: "kafka" }));
    this.sessionTimeoutMs = options.sessionTimeoutMs ?? 30_000;
    this.heartbeatIntervalMs = Math.floor(this.sessionTimeoutMs / 10);
    this.writer = new InfluxWriter(createInflux(options.influx), {
      org: options.influx.org,
      bucket: options.influx.bucket,
      rollupBuckets: options.influx.rollupBuckets,
      // One attempt must end well before the group gives up on a member that is not heard from.
      attemptTimeoutMs: Math.min(10_000, Math.floor(this.sessionTimeoutMs / 3)),
      heartbeatIntervalMs: this.heartbeatIntervalMs,
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
    this.producers = new TransactionalProducers(this.kafka, `${options.groupId}-${this.topics.raw}`);
    this.rules = new CompactedTable(
      this.kafka,
      topicName(prefix, "alertRules"),
      parseStoredRule,
      options.logger,
    );
    this.notifier = new WebhookNotifier(options.logger, options.metrics?.registry ?? new Registry());
  }

  /** True while a consumer is a member of the group and being handed partitions. */
  get ready(): boolean {
    return this.consuming;
  }

  async start(): Promise<void> {
    // A token that may only write cannot look buckets up: then they must exist already.
    await ensureBuckets(this.options.influx).catch((err) =>
      this.options.logger.warn(
        { error: (err as Error).message },
        "could not check or create the raw and rollup buckets; writes fail until they exist",
      ),
    );
    // Topics just created can be unknown to the broker's metadata for a moment: retried briefly.
    for (let attempt = 1; ; attempt++) {
      try {
        await withAdmin(this.kafka, async (admin) => {
          await ensureTopics(admin, this.options.kafka);
          await ensureChangelogTopic(admin, this.options.kafka, this.options.groupId);
          this.forwardLimit = await maxMessageBytes(admin, [this.topics.dlq, this.topics.late]);
        });
        break;
      } catch (err) {
        if (attempt >= 5 || !isRetriableStartupError(err)) throw err;
        await new Promise((r) => setTimeout(r, startupBackoffMs(attempt)));
      }
    }
    // Rules first: no batch may be evaluated against a partial rule set.
    await this.rules.start();
    this.running = true;
    await this.startConsumer();
    this.tickTimer = setInterval(() => this.tickAll(), TICK_INTERVAL_MS);
    this.tickTimer.unref();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.rebuildTimer);
    clearInterval(this.tickTimer);
    await this.drainBeforeLeaving();
    // disconnect() waits for the batch in flight to finish (and commit) before leaving the group.
    await this.consumer?.disconnect();
    this.setConsuming(false);
    await this.producers.dropAll();
    await this.rules.stop();
    await this.notifier.drained();
  }

  private async startConsumer(): Promise<void> {
    const consumer = this.kafka.consumer({
      groupId: this.options.groupId,
      sessionTimeout: this.sessionTimeoutMs,
      heartbeatInterval: this.heartbeatIntervalMs,
      maxBytesPerPartition: this.options.maxBytesPerPartition ?? 1024 * 1024,
      // A stop waits for the fetch in flight, which on an idle topic waits this long for data.
      maxWaitTimeInMs: 1000,
      readUncommitted: false,
      retry: {
        initialRetryTime: 300,
        retries: 10,
        maxRetryTime: 10_000,
        restartOnFailure: async () => this.running,
      },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      if (this.consumer !== consumer) return;
      const assigned = new Set(event.payload.memberAssignment[this.topics.raw] ?? []);
      // Partitions that stay keep their state; the others' state and producers go. One that comes
      // back later is restored again from the changelog with a freshly fenced producer.
      for (const partition of this.tasks.keys()) if (!assigned.has(partition)) this.tasks.delete(partition);
      for (const partition of this.pipelines.keys())
        if (!assigned.has(partition)) this.pipelines.delete(partition);
      void this.producers.retain(assigned);
      this.assigned = assigned;
      this.rebuildDelayMs = REBUILD_BACKOFF_MS.initial;
      this.setConsuming(true);
      this.options.logger.info({ partitions: [...assigned] }, "joined consumer group");
      // Restored now, not at their first batch: a partition with no new data still has timers due.
      const first = [...assigned][0];
      if (first !== undefined) this.taskFor(first).catch(() => {});
    });
    consumer.on(consumer.events.CRASH, (event) => {
      if (this.consumer !== consumer) return;
      this.dropAllPartitions();
      const { error, restart } = event.payload;
      this.options.logger.error(
        { error: error.message, name: error.name, restart, rebuild: !restart && this.running },
        "consumer crashed; resuming from the committed offsets",
      );
      this.options.metrics?.consumerRestarts.inc({ by: restart ? "kafkajs" : "worker" });
      if (!restart && this.running) this.scheduleRebuild(consumer);
    });
    consumer.on(consumer.events.STOP, () => {
      if (this.consumer === consumer) this.setConsuming(false);
    });
    await consumer.connect();
    await consumer.subscribe({ topic: this.topics.raw, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      // Each partition has its own task, state and transactional producer, so partitions can be
      // processed side by side: one's CPU work overlaps another's InfluxDB write.
      partitionsConsumedConcurrently: this.options.partitionConcurrency ?? 1,
      eachBatch: (payload) => this.handleBatch(consumer, payload),
    });
  }

  /** Replaces a consumer that kafkajs gave up on, with backoff while replacing fails too. */
  private scheduleRebuild(failed: Consumer): void {
    clearTimeout(this.rebuildTimer);
    const delay = this.rebuildDelayMs;
    this.rebuildDelayMs = Math.min(REBUILD_BACKOFF_MS.max, delay * 2);
    this.rebuildTimer = setTimeout(async () => {
      if (!this.running) return;
      await failed.disconnect().catch(() => {});
      try {
        await this.startConsumer();
      } catch (err) {
        this.options.logger.error(
          { error: (err as Error).message },
          "could not rebuild the consumer; retrying",
        );
        const current = this.consumer;
        if (current !== undefined && this.running) this.scheduleRebuild(current);
      }
    }, delay);
  }

  private dropAllPartitions(): void {
    this.setConsuming(false);
    this.tasks.clear();
    this.pipelines.clear();
    this.assigned = new Set();
    void this.producers.dropAll();
  }

  private setConsuming(consuming: boolean): void {
    this.consuming = consuming;
    this.options.metrics?.setConsuming(consuming);
  }

  /**
   * The enabled rules (and the disabled ones, whose open alerts are resolved) with the time each
   * rule last changed, rebuilt only when the alert-rules table changed. Sorted for a stable order.
   */
  private currentRules(): RuleSet {
    if (this.ruleSet.version !== this.rules.version) {
      const all = this.rules.values().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      this.ruleSet = {
        version: this.rules.version,
        rules: all.filter((r) => r.enabled !== false),
        disabled: all.filter((r) => r.enabled === false),
        changedAt: this.rules.changeTimes(),
      };
    }
    return this.ruleSet;
  }

  /**
   * The worker's timer: every owned, settled partition whose task has a wall-clock deadline due
   * (idle windows), has not yet seen the current rule set, or has processed batches waiting longer
   * than the commit interval for a commit point gets a tick: processed now, then written and
   * committed behind the partition's batches like one.
   */
  private tickAll(): void {
    const consumer = this.consumer;
    if (!this.running || !this.consuming || consumer === undefined) return;
    const now = Date.now();
    const rules = this.currentRules();
    for (const [partition, pending] of this.tasks) {
      const task = this.restored.get(pending);
      if (task === undefined || !this.assigned.has(partition)) continue;
      if ((this.settleUntil.get(partition) ?? 0) > now) continue;
      const pipeline = this.pipelineFor(consumer, partition, pending);
      if (pipeline.failed || pipeline.backlog >= MAX_UNWRITTEN) continue;
      const due = task.nextDeadline();
      // Processed batches that no later batch came to commit.
      const openDue =
        pipeline.openSince !== undefined && pipeline.commitDue(this.options.commitIntervalMs ?? 0);
      if (!task.rulesChanged(rules) && (due === undefined || due > now) && !openDue) continue;
      const out = task.tick(now, rules);
      const outputs = this.outputs(partition, [], out);
      const nothing = out.lines.length === 0 && outputs.every((o) => o.messages.length === 0);
      // Its state changes then go with the partition's next commit.
      if (nothing && pipeline.openSince === undefined) continue;
      pipeline.push({
        lines: out.lines,
        written: (rejected) => {
          for (const line of rejected) {
            this.options.logger.error(
              { partition, line: line.line, status: line.status },
              "InfluxDB refused a line of a timer tick",
            );
          }
          return { outputs, transitions: out.transitions };
        },
        commit: { changelog: this.changelog(partition, task), offset: pipeline.processedOffset },
      });
    }
  }

  private async handleBatch(consumer: Consumer, payload: EachBatchPayload): Promise<void> {
    const { batch, heartbeat, isRunning, isStale, resolveOffset } = payload;
    const partition = batch.partition;
    if (batch.isEmpty()) return;
    const started = performance.now();
    // A failed heartbeat means a rebalance is under way: the partition may be someone else's by
    // the time this batch would be processed, so it is left to whoever owns it next.
    let heartbeatFailed = false;
    const beat = async () => {
      try {
        await heartbeat();
      } catch (err) {
        heartbeatFailed = true;
        this.options.logger.info({ partition, error: (err as Error).message }, "heartbeat failed");
      }
    };
    // A batch fetched before a rebalance can arrive after it: a partition this consumer no longer
    // owns must not be restored here (the restore's fence would fence its new owner).
    if (this.consumer !== consumer || !this.assigned.has(partition)) return;
    const pending = this.taskFor(partition);
    // The task check catches a partition that left and came back while this batch was in flight:
    // another owner may have processed it meanwhile.
    const current = () =>
      this.running &&
      isRunning() &&
      this.consumer === consumer &&
      !isStale() &&
      !heartbeatFailed &&
      this.assigned.has(partition) &&
      this.tasks.get(partition) === pending;

    const task = await this.whileHeartbeating(pending, beat);
    if (!current()) return;
    const pipeline = this.pipelineFor(consumer, partition, pending);
    // I/O that finished meanwhile runs first (InfluxDB's answers, so each partition's next write
    // goes out): a backlog's batches would otherwise be processed back to back while the answers
    // wait, and InfluxDB idles. For 200,000 backlog readings, the first batch was stored 1.4 s
    // sooner on average (5 runs each way).
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (!current()) return;
    // Back-pressure: at most MAX_UNWRITTEN processed batches wait for InfluxDB.
    await this.whileHeartbeating(pipeline.room(MAX_UNWRITTEN), beat);
    if (!current() || pipeline.failed) return;
    const nextOffset = (BigInt(batch.lastOffset()) + 1n).toString();
    const messages = task.unseen(batch.messages);
    // Bytes fetched (for the backlog test below) and bytes new to the state (the input metric):
    // the same unless the batch began before the state's offset.
    const fetched = bytesOf(batch.messages);
    this.options.metrics?.inputBytes.inc(messages === batch.messages ? fetched : bytesOf(messages));
    if (messages.length === 0) {
      resolveOffset(batch.lastOffset());
      return;
    }
    const out = task.process(messages, Date.now(), this.currentRules());
    task.advanceTo(BigInt(nextOffset));
    pipeline.processedOffset = nextOffset;
    const lag = Number(BigInt(batch.highWatermark) - BigInt(nextOffset));
    // The batch that ends a backlog commits at once (the backlog's last outputs and offsets wait for
    // nothing more); a steady stream that keeps up commits on the clock (PartitionPipeline.commitDue).
    const endOfBacklog = lag <= 0 && pipeline.backlogged;
    // Behind: more waits than the batch brought, or the fetch was cut by its size limit.
    pipeline.backlogged =
      lag > 0 &&
      (lag >= messages.length || 2 * fetched >= (this.options.maxBytesPerPartition ?? 1024 * 1024));
    const commitPoint =
      !this.running || endOfBacklog || pipeline.commitDue(this.options.commitIntervalMs ?? 0);
    pipeline.push({
      lines: out.lines,
      offset: nextOffset,
      written: (rejected) => {
        for (const line of rejected) {
          out.deadLetters.push({
            index: line.source,
            reason: "influx_rejected",
            detail: `${line.status}: ${line.message}`.slice(0, 500),
          });
        }
        const rejectedReadings = new Set(
          rejected.filter((l) => l.line.startsWith(READINGS_PREFIX)).map((l) => l.source),
        ).size;
        this.options.metrics?.recordBatch({
          partition,
          messages: messages.length,
          readings: out.readings - rejectedReadings,
          anomalies: out.anomalies,
          deadLetters: uniqueBySource(out.deadLetters).length,
          late: out.late.length,
          windows: out.windows.length,
          writeMs: performance.now() - started,
          lag,
        });
        return { outputs: this.outputs(partition, messages, out), transitions: out.transitions };
      },
      commit: commitPoint ? { changelog: this.changelog(partition, task), offset: nextOffset } : undefined,
    });
    resolveOffset(batch.lastOffset());
    this.settleUntil.set(partition, lag > 0 ? Date.now() + SETTLE_MS : 0);
  }

  /**
   * The partition's pipeline for its current task. Its writes go on while the partition is this
   * consumer's and the task its current one. A failure while that still holds is the consumer's
   * (its fetch position is past what was committed): the consumer is rebuilt and resumes from the
   * committed offsets.
   */
  private pipelineFor(
    consumer: Consumer,
    partition: number,
    pending: Promise<PartitionTask>,
  ): PartitionPipeline {
    const existing = this.pipelines.get(partition);
    if (existing !== undefined && existing.task === pending) return existing;
    const owned = () =>
      this.consumer === consumer && this.assigned.has(partition) && this.tasks.get(partition) === pending;
    const pipeline: PartitionPipeline = new PartitionPipeline(
      pending,
      {
        write: (lines) =>
          this.writer.write(lines, {
            // The consumer heartbeats on its own between fetches: a write holds no batch open.
            heartbeat: async () => {},
            shouldContinue: () => this.running && owned(),
            onRetry: (attempt, delayMs, _error, failure) => {
              this.options.metrics?.writeRetries.inc();
              const cause = failure.action === "retry" ? failure.cause : "rejected";
              this.options.metrics?.writeFailures.inc({ cause });
              const context = { attempt, delayMs, cause, error: failure.message, partition };
              if (CONFIGURATION_CAUSES.has(cause as never)) {
                this.options.logger.error(
                  context,
                  "InfluxDB refuses the worker's writes (token, permissions, org or bucket): holding the offsets and retrying",
                );
              } else {
                this.options.logger.warn(context, "InfluxDB write failed; holding the offsets and retrying");
              }
            },
          }),
        afterWrite: (offset) => afterWriteFaultPoint(partition, offset, () => this.running),
        commit: async (outputs, changelog, offset) => {
          // Taken away while it was written: the new owner replays it (the points are identical).
          if (!owned()) throw new PartitionLeft(partition);
          let bytes = 0;
          for (const m of changelog) {
            bytes += Buffer.byteLength(m.key as string);
            if (typeof m.value === "string") bytes += Buffer.byteLength(m.value);
          }
          await this.producers.commit(
            partition,
            [...outputs, { topic: this.topics.state, messages: changelog }],
            offset === undefined
              ? undefined
              : { groupId: this.options.groupId, topic: this.topics.raw, offset },
          );
          this.options.metrics?.changelogBytes.inc(bytes);
        },
        committed: (transitions) => this.notifier.notify(transitions),
        failed: (err) => this.pipelineFailed(consumer, partition, pipeline, err, owned()),
      },
      // Spread over the interval by partition number (golden-ratio steps, even for any partition count).
      ((partition * 0.6180339887) % 1) * (this.options.commitIntervalMs ?? 0),
    );
    this.pipelines.set(partition, pipeline);
    return pipeline;
  }

  private pipelineFailed(
    consumer: Consumer,
    partition: number,
    pipeline: PartitionPipeline,
    err: unknown,
    owned: boolean,
  ): void {
    if (this.tasks.get(partition) === pipeline.task) this.tasks.delete(partition);
    if (this.pipelines.get(partition) === pipeline) this.pipelines.delete(partition);
    if (err instanceof PartitionLeft || err instanceof WriteAbandoned || !this.running || !owned) {
      this.options.logger.info(
        { partition, reason: (err as Error).message },
        "uncommitted batches left to be reprocessed by whoever owns the partition next",
      );
      return;
    }
    this.options.logger.error(
      { partition, error: (err as Error).message, name: (err as Error).name },
      "could not write or commit a batch; rebuilding the consumer to resume from the committed offsets",
    );
    if (this.consumer !== consumer) return;
    this.dropAllPartitions();
    this.options.metrics?.consumerRestarts.inc({ by: "worker" });
    this.scheduleRebuild(consumer);
  }

  /** What a batch (or tick) publishes besides the changelog: dead letters, late readings, alerts, windows. */
  private outputs(partition: number, messages: KafkaMessage[], out: BatchOutput): TopicMessages[] {
    const source = { topic: this.topics.raw, partition };
    return [
      {
        topic: this.topics.dlq,
        messages: uniqueBySource(out.deadLetters).map((d) =>
          deadLetterMessage(source, messages[d.index] as KafkaMessage, d, this.forwardLimit),
        ),
      },
      {
        topic: this.topics.late,
        messages: out.late.map((i) => lateMessage(source, messages[i] as KafkaMessage, this.forwardLimit)),
      },
      {
        topic: this.topics.alerts,
        messages: out.transitions.map((t) => ({ key: t.sensorId, value: JSON.stringify(payloadOf(t)) })),
      },
      {
        topic: this.topics.aggregated,
        messages: out.windows.map((w) => ({ key: w.sensor_id, value: JSON.stringify(w) })),
      },
    ];
  }

  /**
   * On stop, while the partitions are still this worker's: processed batches not yet at a commit
   * point get one, and every pipeline is written and committed (or fails and is replayed later).
   */
  private async drainBeforeLeaving(): Promise<void> {
    for (const [partition, pipeline] of this.pipelines) {
      const task = this.restored.get(pipeline.task as Promise<PartitionTask>);
      if (task === undefined || pipeline.failed || pipeline.openSince === undefined) continue;
      pipeline.push({
        lines: [],
        written: () => ({ outputs: [], transitions: [] }),
        commit: { changelog: this.changelog(partition, task), offset: pipeline.processedOffset },
      });
    }
    await Promise.all([...this.pipelines.values()].map((p) => p.drained()));
  }

  /** The state entries changed since the last commit point, as changelog records of `partition`. */
  private changelog(partition: number, task: PartitionTask): Message[] {
    return task.takeRecords().map((e) => ({ key: e.key, value: e.value, partition }));
  }

  /**
   * The partition's state. A partition without one is restored together with every other assigned
   * partition that lacks one, in one pass over the changelog.
   */
  private taskFor(partition: number): Promise<PartitionTask> {
    const existing = this.tasks.get(partition);
    if (existing !== undefined) return existing;
    const missing = [...new Set([partition, ...this.assigned])].filter((p) => !this.tasks.has(p));
    const restored = this.restore(missing);
    for (const p of missing) {
      const task = restored.then((tasks) => tasks.get(p) as PartitionTask);
      this.tasks.set(p, task);
      task.then(
        (t) => {
          this.restored.set(task, t);
          this.settleUntil.set(p, Date.now() + SETTLE_MS);
        },
        () => {},
      );
      task.catch(() => {
        if (this.tasks.get(p) === task) this.tasks.delete(p);
      });
    }
    return this.tasks.get(partition) as Promise<PartitionTask>;
  }

  /**
   * Fences the partitions' producers and reads their changelog side by side: the reader joins and
   * reads while the markers are written, and stops at each partition's marker.
   */
  private async restore(partitions: number[]): Promise<Map<number, PartitionTask>> {
    const markers = new Map(partitions.map((p) => [p, randomUUID()]));
    const abort = new AbortController();
    const restoring = restorePartitions({
      kafka: this.kafka,
      changelogTopic: this.topics.state,
      groupId: this.options.groupId,
      markers,
      task: this.options.task,
      timeoutMs: this.options.restoreTimeoutMs ?? 120_000,
      logger: this.options.logger,
      signal: abort.signal,
    });
    try {
      await Promise.all(partitions.map((p) => this.producers.fence(p, this.topics.state, markers.get(p))));
    } catch (err) {
      abort.abort(err);
      await restoring.catch(() => {});
      throw err;
    }
    return restoring;
  }

  private async whileHeartbeating<T>(work: Promise<T>, beat: () => Promise<void>): Promise<T> {
    const timer = setInterval(() => void beat(), this.heartbeatIntervalMs);
    try {
      return await work;
    } finally {
      clearInterval(timer);
    }
  }
}
