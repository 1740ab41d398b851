/**
 * One transactional producer per assigned partition of sensor-readings-raw, with a transactional id
 * derived from the partition: whoever owns the partition next initialises the same id, which fences
 * any previous owner and aborts its open transaction.
 *
 * A producer lives only as long as the assignment it was made for: it is dropped when its partition
 * leaves this worker, after any failed transaction (a fenced or broken producer cannot be reused),
 * and when the consumer is rebuilt. A partition that comes back therefore always gets a fresh
 * producer, never one a later owner has fenced.
 *
 * Only a fence (the first step of a restore) makes a producer. A commit never does: a producer made
 * by a commit for a partition that has meanwhile moved would fence its new owner and then commit
 * outputs of a stale state after that owner's restore had read the changelog.
 */
import { randomUUID } from "node:crypto";
import type { Kafka, Message, Producer } from "../common/kafka.js";
import { produceRequests } from "./outputs.js";

export const MARKER_KEY = "__restore_marker__";

export interface TopicMessages {
  topic: string;
  messages: Message[];
}

export interface OffsetCommit {
  groupId: string;
  topic: string;
  /** The offset after the last message the transaction includes. */
  offset: string;
}

/** A commit for a partition whose producer is gone (dropped, failed, or never fenced here). */
export class ProducerGone extends Error {
  override name = "ProducerGone";
  constructor(readonly partition: number) {
    super(`no producer for partition ${partition}: it must be fenced (restored) again first`);
  }
}

export class TransactionalProducers {
  private readonly producers = new Map<number, Promise<Producer>>();

  constructor(
    private readonly kafka: Kafka,
    private readonly transactionalIdPrefix: string,
  ) {}

  /**
   * Publishes `outputs` and commits `offsets` in one transaction. On any failure the transaction is
   * aborted, the producer dropped, and the error rethrown.
   */
  async commit(partition: number, outputs: TopicMessages[], offsets?: OffsetCommit): Promise<void> {
    const current = this.producers.get(partition);
    // Only a fence makes a producer: one made here would fence whoever owns the partition now.
    if (current === undefined) throw new ProducerGone(partition);
    await this.commitWith(partition, current, outputs, offsets);
  }

  private async commitWith(
    partition: number,
    current: Promise<Producer>,
    outputs: TopicMessages[],
    offsets?: OffsetCommit,
  ): Promise<void> {
    const producer = await current;
    let transaction: Awaited<ReturnType<Producer["transaction"]>> | undefined;
    try {
      const tx = await producer.transaction();
      transaction = tx;
      // Record batches the broker accepts, in as few produce requests as that allows.
      for (const topicMessages of produceRequests(outputs)) await tx.sendBatch({ topicMessages });
      if (offsets !== undefined) {
        await tx.sendOffsets({
          consumerGroupId: offsets.groupId,
          topics: [{ topic: offsets.topic, partitions: [{ partition, offset: offsets.offset }] }],
        });
      }
      await tx.commit();
    } catch (err) {
      await transaction?.abort().catch(() => {});
      // This producer only: a fence may have made the partition a newer one meanwhile.
      if (this.producers.get(partition) === current) await this.drop(partition);
      throw err;
    }
  }

  /**
   * Writes a marker with a fresh nonce to the changelog partition in a transaction of a freshly
   * initialised producer: any previous owner is fenced and its open transaction aborted, so the
   * changelog is final up to the marker. Returns the nonce (`nonce`, or a fresh one).
   */
  async fence(partition: number, changelogTopic: string, nonce = randomUUID()): Promise<string> {
    await this.drop(partition);
    await this.commitWith(partition, this.create(partition), [
      { topic: changelogTopic, messages: [{ key: MARKER_KEY, value: nonce, partition }] },
    ]);
    return nonce;
  }

  /** Forgets partitions that are no longer assigned, disconnecting their producers. */
  async retain(partitions: Iterable<number>): Promise<void> {
    const keep = new Set(partitions);
    await Promise.all([...this.producers.keys()].filter((p) => !keep.has(p)).map((p) => this.drop(p)));
  }

  async drop(partition: number): Promise<void> {
    const producer = this.producers.get(partition);
    if (producer === undefined) return;
    this.producers.delete(partition);
    await producer.then((p) => p.disconnect()).catch(() => {});
  }

  async dropAll(): Promise<void> {
    await Promise.all([...this.producers.keys()].map((p) => this.drop(p)));
  }

  /** A fresh producer for the partition, replacing any other (its first transaction fences). */
  private create(partition: number): Promise<Producer> {
    const created = this.kafka.producer({
      transactionalId: `${this.transactionalIdPrefix}-${partition}`,
      // kafkajs sends a transaction's messages idempotently whatever this says. `true` would only add
      // a second InitProducerId at connect (without the transactional id), and a warning on every
      // start that limited retries "may invalidate EoS guarantees", which does not apply here.
      idempotent: false,
      maxInFlightRequests: 1,
      transactionTimeout: 60_000,
      // A transaction begun right after the previous commit meets CONCURRENT_TRANSACTIONS until the
      // coordinator has written the commit markers, a few milliseconds. kafkajs retries the whole
      // send after initialRetryTime; at the default 300 ms a busy partition's commits took 0.3-1.3 s.
      // 25 ms doubling to 6.4 s keeps about the default's total budget (12.8 s against 9.3 s).
      retry: { initialRetryTime: 25, retries: 9, maxRetryTime: 10_000 },
    });
    const producer = created.connect().then(() => created);
    this.producers.set(partition, producer);
    producer.catch(() => {
      if (this.producers.get(partition) === producer) this.producers.delete(partition);
    });
    return producer;
  }
}
