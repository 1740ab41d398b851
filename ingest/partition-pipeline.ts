/**
 * The ordered path from a processed batch to Kafka for one partition's task: InfluxDB writes one at
 * a time in processing order, and Kafka transactions behind them. The consumer only processes (CPU)
 * and hands the result here, so it fetches the next batch while this one is written, and a write
 * never waits for the previous batch's transaction (InfluxDB points are idempotent; the transaction
 * is what makes a batch count).
 *
 * Exactly once is kept by what a transaction may hold: a commit point (a batch or tick after which
 * the state's changelog was taken) commits the outputs of every step up to it, that changelog and
 * the offset after it, and only once all those steps are written. Commit points that become ready
 * while a transaction is in flight go together in the next one, the changelog merged key by key
 * (last value wins, as compaction would keep it). Steps after the last ready commit point wait for
 * the next one; a crash before it replays them.
 *
 * After any failure the pipeline stops: nothing more is written or committed, and its owner drops
 * the task (the state is ahead of Kafka) and resumes from the committed offsets.
 */
import type { Message } from "../common/kafka.js";
import type { Transition } from "./alerting.js";
import type { RejectedLine, TaggedLine } from "./influx-writer.js";
import type { TopicMessages } from "./transactions.js";

export interface Step {
  /** Lines stored in InfluxDB before anything of this step is committed. */
  lines: TaggedLine[];
  /** For a batch: the input offset after it (a tick has none). */
  offset?: string;
  /** Once the lines are stored: what the step publishes (dead letters can depend on `rejected`). */
  written(rejected: RejectedLine[]): { outputs: TopicMessages[]; transitions: Transition[] };
  /** A commit point: the state's changelog as of this step, and the input offset after it (if any). */
  commit?: { changelog: Message[]; offset?: string };
}

export interface PipelineIo {
  write(lines: TaggedLine[]): Promise<RejectedLine[]>;
  /** Between a batch's write and its outputs (the test-only fault point). */
  afterWrite(offset: string): Promise<void>;
  /** One transaction: the outputs, the changelog and (when given) the consumed offset. */
  commit(outputs: TopicMessages[], changelog: Message[], offset: string | undefined): Promise<void>;
  /** After a commit: the webhooks of the transitions it made durable. */
  committed(transitions: Transition[]): void;
  failed(err: unknown): void;
}

interface Pending {
  outputs: TopicMessages[];
  transitions: Transition[];
}

interface Ready extends Pending {
  changelog: Map<string, Message>;
  offset: string | undefined;
}

export class PartitionPipeline {
  /** When the first step after the last commit point was processed (performance.now()); unset if none. */
  openSince: number | undefined;
  /** The input offset after the last batch processed into this pipeline's task. */
  processedOffset: string | undefined;
  /** Whether the partition was behind after the last batch processed (see the worker's handleBatch). */
  backlogged = false;
  private unwritten = 0;
  private writes: Promise<void> = Promise.resolve();
  private open: Pending = { outputs: [], transitions: [] };
  private ready: Ready | undefined;
  private committing = false;
  private failure: { error: unknown } | undefined;
  private waiters: (() => void)[] = [];

  constructor(
    /** The task promise this pipeline belongs to: void once the partition's task is another. */
    readonly task: Promise<unknown>,
    private readonly io: PipelineIo,
    /**
     * How much sooner than the commit interval the pipeline's first commit point comes. Partitions
     * that start together and take batches from the same fetches would otherwise reach every
     * commit point together, and the changelog of all of them would be taken and encoded in one
     * stall of the event loop; each partition's own lead spreads those stalls over the interval
     * for good.
     */
    private commitLeadMs = 0,
  ) {}

  /**
   * Whether the steps processed since the last commit point (the one just processed included) are
   * due for one: once they are `intervalMs` old. Batches share a commit: fewer transactions, and a
   * state key changed by several batches goes to the changelog once (at 10,000 readings/s a commit
   * a second wrote about as many changelog records as readings came in).
   */
  commitDue(intervalMs: number): boolean {
    const now = performance.now();
    return now - (this.openSince ?? now) + this.commitLeadMs >= intervalMs;
  }

  /** Steps handed over and not yet written. */
  get backlog(): number {
    return this.unwritten;
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Queues a step behind every earlier one. Returns at once. */
  push(step: Step): void {
    if (step.commit === undefined) this.openSince ??= performance.now();
    else {
      this.openSince = undefined;
      this.commitLeadMs = 0;
    }
    this.unwritten++;
    this.writes = this.writes.then(() => this.run(step));
  }

  /** Resolves once fewer than `max` steps are unwritten, or the pipeline failed. */
  async room(max: number): Promise<void> {
    while (this.unwritten >= max && this.failure === undefined) await this.change();
  }

  /** Resolves once every step handed over is written and every commit point committed, or failed. */
  async drained(): Promise<void> {
    while (this.failure === undefined && (this.unwritten > 0 || this.committing || this.ready !== undefined))
      await this.change();
  }

  private async run(step: Step): Promise<void> {
    try {
      if (this.failure !== undefined) return;
      const rejected = await this.io.write(step.lines);
      if (step.offset !== undefined) await this.io.afterWrite(step.offset);
      if (this.failure !== undefined) return;
      const { outputs, transitions } = step.written(rejected);
      append(this.open, outputs, transitions);
      if (step.commit !== undefined) {
        this.ready ??= { outputs: [], transitions: [], changelog: new Map(), offset: undefined };
        append(this.ready, this.open.outputs, this.open.transitions);
        this.open = { outputs: [], transitions: [] };
        for (const m of step.commit.changelog) this.ready.changelog.set(m.key as string, m);
        if (step.commit.offset !== undefined) this.ready.offset = step.commit.offset;
        this.pump();
      }
    } catch (err) {
      this.fail(err);
    } finally {
      this.unwritten--;
      this.wake();
    }
  }

  /** Starts a transaction with everything ready unless one is in flight. */
  private pump(): void {
    const ready = this.ready;
    if (this.committing || ready === undefined || this.failure !== undefined) return;
    this.ready = undefined;
    this.committing = true;
    this.io.commit(ready.outputs, [...ready.changelog.values()], ready.offset).then(
      () => {
        this.committing = false;
        this.io.committed(ready.transitions);
        this.pump();
        this.wake();
      },
      (err) => {
        this.committing = false;
        this.fail(err);
      },
    );
  }

  private fail(error: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = { error };
    this.ready = undefined;
    this.open = { outputs: [], transitions: [] };
    this.wake();
    this.io.failed(error);
  }

  private change(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

function append(to: Pending, outputs: TopicMessages[], transitions: Transition[]): void {
  for (const o of outputs) {
    if (o.messages.length === 0) continue;
    const same = to.outputs.find((h) => h.topic === o.topic);
    if (same === undefined) to.outputs.push({ topic: o.topic, messages: [...o.messages] });
    else for (const m of o.messages) same.messages.push(m);
  }
  for (const t of transitions) to.transitions.push(t);
}
