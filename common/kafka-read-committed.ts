/**
 * A correct read_committed filter for kafkajs, installed before kafkajs loads (common/kafka.ts
 * imports this module first, and is the only module that loads kafkajs).
 *
 * kafkajs 2.2.4 drops the records of aborted transactions itself (consumer/filterAbortedMessages.js),
 * from the fetch response's list of aborted transactions. It takes that list as sorted by first
 * offset, which the broker does not promise, and takes at most one entry of it per record. When a
 * fetch starts inside two aborted transactions of different producers, a record of one of them can
 * be returned as if committed. It happens wherever several transactional producers write to one
 * partition and a fetch starts among their aborted transactions: the output topics after a
 * rebalance fenced a worker mid-transaction (a read_committed kafkajs reader saw 20 aborted window
 * messages next to the 480 committed ones the Java consumer returns for the same topic).
 *
 * This filter is the Java consumer's: every aborted transaction that begins at or before the last
 * offset of a record's batch marks its producer aborted; the producer's abort marker ends that; a
 * transactional record of a producer marked aborted is dropped.
 */
import { createRequire, Module } from "node:module";

const require = createRequire(import.meta.url);

export interface FetchedRecord {
  offset: string;
  key: Buffer | null;
  isControlRecord?: boolean;
  batchContext: { firstOffset: string; lastOffsetDelta: number; producerId: string; inTransaction: boolean };
}

export interface AbortedTransaction {
  producerId: string;
  firstOffset: string;
}

/** A control record's key: version (int16) then type (int16), 0 for abort, 1 for commit. */
const isAbortMarker = (record: FetchedRecord): boolean =>
  record.isControlRecord === true &&
  record.key !== null &&
  record.key.length >= 4 &&
  record.key.readInt16BE(2) === 0;

export function filterAborted<T extends FetchedRecord>({
  messages,
  abortedTransactions,
}: {
  messages: T[];
  abortedTransactions?: AbortedTransaction[];
}): T[] {
  if (abortedTransactions === undefined || abortedTransactions.length === 0) return messages;
  const pending = abortedTransactions
    .map((t) => ({ producerId: t.producerId, firstOffset: BigInt(t.firstOffset) }))
    .sort((a, b) => (a.firstOffset < b.firstOffset ? -1 : a.firstOffset > b.firstOffset ? 1 : 0));
  const aborted = new Set<string>();
  let next = 0;
  return messages.filter((record) => {
    const batch = record.batchContext;
    const batchEnd = BigInt(batch.firstOffset) + BigInt(batch.lastOffsetDelta);
    while (next < pending.length && (pending[next] as { firstOffset: bigint }).firstOffset <= batchEnd) {
      aborted.add((pending[next] as { producerId: string }).producerId);
      next++;
    }
    if (record.isControlRecord === true) {
      if (isAbortMarker(record)) aborted.delete(batch.producerId);
      return true; // kafkajs drops control records itself, after this filter
    }
    return !(batch.inTransaction && aborted.has(batch.producerId));
  });
}

/** Installs `filterAborted` as kafkajs's module; throws if kafkajs was loaded already without it. */
function install(): void {
  const path = require.resolve("kafkajs/src/consumer/filterAbortedMessages.js");
  if (require.cache[path]?.exports === filterAborted) return;
  if (require.cache[require.resolve("kafkajs/src/consumer/batch.js")] !== undefined) {
    throw new Error(
      "kafkajs was loaded before common/kafka-read-committed.ts: import kafkajs only through common/kafka.ts",
    );
  }
  const module = new Module(path);
  module.filename = path;
  module.loaded = true;
  module.exports = filterAborted;
  require.cache[path] = module;
}

install();
