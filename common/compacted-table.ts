/**
 * A compacted Kafka topic materialised in memory (a KTable): every record's latest value by key,
 * tombstones delete. Each instance reads the whole topic with its own throw-away group id, so every
 * API and worker instance sees every record. `waitForOffset` gives read-your-writes.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { Consumer, Kafka } from "./kafka.js";

export class CompactedTable<T> {
  private readonly rows = new Map<string, T>();
  private readonly consumed = new Map<number, bigint>();
  private readonly waiters = new Set<() => void>();
  private consumer: Consumer | undefined;
  /** Bumped on every change, so callers can tell cheaply whether anything changed. */
  version = 0;

  constructor(
    private readonly kafka: Kafka,
    readonly topic: string,
    private readonly parse: (text: string) => T | null,
    private readonly logger?: Logger,
  ) {}

  async start(): Promise<void> {
    const consumer = this.kafka.consumer({
      groupId: `table-${this.topic}-${randomUUID()}`,
      readUncommitted: false,
      // stop() waits for the fetch in flight, which on this mostly idle topic waits this long for data.
      maxWaitTimeInMs: 1000,
    });
    this.consumer = consumer;
    await consumer.connect();
    await consumer.subscribe({ topic: this.topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        const key = message.key?.toString();
        if (key !== undefined) {
          if (message.value === null) this.rows.delete(key);
          else {
            const row = this.parse(message.value.toString());
            if (row === null)
              this.logger?.warn(
                { topic: this.topic, key, offset: message.offset },
                "ignoring a record that does not parse",
              );
            else this.rows.set(key, row);
          }
          this.version++;
        }
        this.consumed.set(partition, BigInt(message.offset) + 1n);
        for (const wake of this.waiters) wake();
      },
    });
    await this.waitUntilCaughtUp();
  }

  /** Resolves once every record that was in the topic when called has been applied. */
  async waitUntilCaughtUp(timeoutMs = 30_000): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    let ends: { partition: number; high: string }[] = [];
    try {
      // Right after the topic is created its leader may not be known yet ("not the leader").
      for (let attempt = 1; ; attempt++) {
        try {
          ends = await admin.fetchTopicOffsets(this.topic);
          break;
        } catch (err) {
          if (attempt >= 40) throw err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    } finally {
      await admin.disconnect();
    }
    // With transactions, the last offsets can be control records that are never delivered; the
    // tables here are written without transactions, so high - 1 is a real record.
    await Promise.all(ends.map((e) => this.waitForOffset(e.partition, BigInt(e.high) - 1n, timeoutMs)));
  }

  /** Resolves once the record at `offset` of `partition` has been applied (read-your-writes). */
  waitForOffset(partition: number, offset: bigint, timeoutMs = 30_000): Promise<void> {
    const done = () => (this.consumed.get(partition) ?? 0n) > offset;
    if (offset < 0n || done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`${this.topic}[${partition}] offset ${offset} not read within ${timeoutMs} ms`));
      }, timeoutMs);
      const check = () => {
        if (!done()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      this.waiters.add(check);
    });
  }

  get(key: string): T | undefined {
    return this.rows.get(key);
  }

  values(): T[] {
    return [...this.rows.values()];
  }

  async stop(): Promise<void> {
    await this.consumer?.disconnect();
  }
}
