/**
 * A compacted Kafka topic materialised in memory (a KTable): every record's latest value by key,
 * tombstones delete. Each instance reads the whole topic with its own throw-away group id, so every
 * API and worker instance sees every record. `waitForOffset` gives read-your-writes.
 *
 * Conditional records: a record with a `version` header is versioned; with an `expect` header too,
 * it applies only when the key's current version equals `expect`, and is ignored otherwise. Every
 * reader applies the log in the same order, so every reader takes the same decision: the topic
 * itself is the arbiter of concurrent conditional writes, with no coordinator. A reader that has
 * no version for the key (never seen, or compacted away) applies the record.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { Consumer, Kafka } from "./kafka.js";

/** The version headers of the record a key's current state came from (a tombstone's too). */
export interface RowMeta {
  version: number;
  revision: string | undefined;
  deleted: boolean;
  headers: Record<string, string>;
}

export class CompactedTable<T> {
  private readonly rows = new Map<string, T>();
  private readonly meta = new Map<string, RowMeta>();
  /** The Kafka timestamp of each key's latest applied record, tombstones included. */
  private readonly changed = new Map<string, number>();
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

  async start(timeoutMs = 30_000): Promise<void> {
    const consumer = this.kafka.consumer({
      groupId: `table-${this.topic}-${randomUUID()}`,
      readUncommitted: false,
      // stop() waits for the fetch in flight, which on this mostly idle topic waits this long for data.
      maxWaitTimeInMs: 1000,
    });
    this.consumer = consumer;
    try {
      await consumer.connect();
      await consumer.subscribe({ topic: this.topic, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ partition, message }) => {
          const key = message.key?.toString();
          if (key !== undefined)
            this.apply(key, message.value, message.headers, message.offset, Number(message.timestamp));
          this.consumed.set(partition, BigInt(message.offset) + 1n);
          for (const wake of this.waiters) wake();
        },
      });
      await this.waitUntilCaughtUp(timeoutMs);
    } catch (err) {
      // A start that fails or times out leaves no consumer behind in the group.
      this.consumer = undefined;
      await consumer.disconnect().catch(() => {});
      throw err;
    }
  }

  private apply(
    key: string,
    value: Buffer | null,
    rawHeaders: Record<string, unknown> | undefined,
    offset: string,
    timestamp: number,
  ): void {
    const headers: Record<string, string> = {};
    for (const [name, v] of Object.entries(rawHeaders ?? {})) {
      const first = Array.isArray(v) ? v[0] : v;
      if (first !== undefined && first !== null) headers[name] = String(first);
    }
    const version = headers.version === undefined ? undefined : Number(headers.version);
    const current = this.meta.get(key);
    if (headers.expect !== undefined && current !== undefined && String(current.version) !== headers.expect) {
      this.logger?.debug(
        { topic: this.topic, key, offset, expect: headers.expect, current: current.version },
        "conditional record lost: the key changed first",
      );
      return;
    }
    if (value === null) this.rows.delete(key);
    else {
      const row = this.parse(value.toString());
      if (row === null) {
        this.logger?.warn({ topic: this.topic, key, offset }, "ignoring a record that does not parse");
        return;
      }
      this.rows.set(key, row);
    }
    if (Number.isFinite(timestamp)) this.changed.set(key, timestamp);
    if (version !== undefined && Number.isInteger(version))
      this.meta.set(key, { version, revision: headers.revision, deleted: value === null, headers });
    else this.meta.delete(key);
    this.version++;
  }

  /** The version headers behind a key's current state, or undefined when it has none. */
  metaOf(key: string): RowMeta | undefined {
    return this.meta.get(key);
  }

  /**
   * When each key last changed: the Kafka timestamp of its latest applied record (a tombstone's
   * too, so a deleted key keeps it). Every reader sees the same times for the same log.
   */
  changeTimes(): ReadonlyMap<string, number> {
    return new Map(this.changed);
  }

  /** Records in the topic not applied yet (0 when caught up), from the topic's current end offsets. */
  async lag(): Promise<number> {
    const ends = await withTopicOffsets(this.kafka, this.topic);
    let behind = 0n;
    for (const e of ends) {
      const next = this.consumed.get(e.partition) ?? 0n;
      const high = BigInt(e.high);
      if (high > next) behind += high - next;
    }
    return Number(behind);
  }

  /** Resolves once every record that was in the topic when called has been applied. */
  async waitUntilCaughtUp(timeoutMs = 30_000): Promise<void> {
    const ends = await withTopicOffsets(this.kafka, this.topic);
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

/** The topic's end offsets; right after the topic is created its leader may not be known yet ("not the leader"). */
async function withTopicOffsets(kafka: Kafka, topic: string): Promise<{ partition: number; high: string }[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        return await admin.fetchTopicOffsets(topic);
      } catch (err) {
        if (attempt >= 40) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  } finally {
    await admin.disconnect();
  }
}
