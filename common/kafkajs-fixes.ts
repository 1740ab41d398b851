/**
 * Fixes to kafkajs 2.2.4 modules, put in its place in the module cache before kafkajs loads. This
 * module then loads kafkajs and hands it to common/kafka.ts, the only module that uses it: a
 * static `import ... from "kafkajs"` would not do, as Node's ES module loader runs a CommonJS
 * dependency before any ES module that imports it, fixes or not.
 *
 * 1. A correct read_committed filter (consumer/filterAbortedMessages.js).
 *
 * kafkajs drops the records of aborted transactions itself, from the fetch response's list of
 * aborted transactions. It takes that list as sorted by first offset, which the broker does not
 * promise, and takes at most one entry of it per record. When a fetch starts inside two aborted
 * transactions of different producers, a record of one of them can be returned as if committed. It
 * happens wherever several transactional producers write to one partition and a fetch starts among
 * their aborted transactions: the output topics after a rebalance fenced a worker mid-transaction
 * (a read_committed kafkajs reader saw 20 aborted window messages next to the 480 committed ones
 * the Java consumer returns for the same topic).
 *
 * This filter is the Java consumer's: every aborted transaction that begins at or before the last
 * offset of a record's batch marks its producer aborted; the producer's abort marker ends that; a
 * transactional record of a producer marked aborted is dropped.
 *
 * 2. Record-level replacements that give the same bytes and records with less work (producing:
 *    grouping by partition, record encoding, key hashing, the produce request, the batch checksum;
 *    consuming: record decoding), in ./kafkajs-records.ts.
 */
import { createRequire, Module } from "node:module";
import {
  crc32c,
  decodeRecord,
  encodeRecord,
  groupMessagesPerPartition,
  murmur2,
  produceRequestV3,
} from "./kafkajs-records.js";

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

/** The kafkajs modules replaced, by path inside the package. */
const FIXES: Record<string, unknown> = {
  "kafkajs/src/consumer/filterAbortedMessages.js": filterAborted,
  "kafkajs/src/producer/groupMessagesPerPartition.js": groupMessagesPerPartition,
  "kafkajs/src/protocol/recordBatch/record/v0/index.js": encodeRecord,
  "kafkajs/src/protocol/recordBatch/record/v0/decoder.js": decodeRecord,
  "kafkajs/src/producer/partitioners/default/murmur2.js": murmur2,
  "kafkajs/src/protocol/recordBatch/crc32C/index.js": crc32c,
  "kafkajs/src/protocol/requests/produce/v3/request.js": produceRequestV3,
};

/** Marks the module objects this installs: a second copy of this module (a test runner's) finds them. */
const FIXED = Symbol.for("sensor-analytics.kafkajs-fixes");

/** Puts the fixes in kafkajs's place; throws if kafkajs was loaded already without them. */
function install(): void {
  const paths = Object.keys(FIXES).map((id) => require.resolve(id));
  if (require.cache[require.resolve("kafkajs")] !== undefined) {
    if (paths.every((path) => (require.cache[path] as { [FIXED]?: true } | undefined)?.[FIXED])) return;
    throw new Error(
      "kafkajs was loaded before common/kafkajs-fixes.ts: import kafkajs only through common/kafka.ts",
    );
  }
  for (const [id, exports] of Object.entries(FIXES)) {
    const path = require.resolve(id);
    const module = Object.assign(new Module(path), { [FIXED]: true });
    module.filename = path;
    module.loaded = true;
    module.exports = exports;
    require.cache[path] = module;
  }
}

install();

/** kafkajs, loaded with the fixes in place. */
export const kafkajs = require("kafkajs") as typeof import("kafkajs");
