/**
 * kafkajs's own Batch (what every consumer of this project is handed) drops the records of aborted
 * transactions the way the Java consumer does, with common/kafka.ts loaded: the fetch response's
 * aborted transactions below are the shape kafkajs decodes from the wire.
 */
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import "../../common/kafka.js";
import type { AbortedTransaction, FetchedRecord } from "../../common/kafkajs-fixes.js";

const require = createRequire(import.meta.url);
type BatchClass = new (
  topic: string,
  fetchedOffset: string,
  partitionData: {
    partition: number;
    highWatermark: string;
    messages: FetchedRecord[];
    abortedTransactions: AbortedTransaction[];
  },
) => { messages: FetchedRecord[] };
const Batch = require("kafkajs/src/consumer/batch.js") as BatchClass;

/** One record in a batch of its own, as a producer's separate sends write them. */
function record(offset: number, producerId: string, inTransaction: boolean, value: string): FetchedRecord {
  return {
    offset: String(offset),
    key: Buffer.from(value),
    batchContext: { firstOffset: String(offset), lastOffsetDelta: 0, producerId, inTransaction },
  };
}

/** A transaction marker: control record key version 0, type 0 (abort) or 1 (commit). */
function marker(offset: number, producerId: string, type: "abort" | "commit"): FetchedRecord {
  const key = Buffer.alloc(4);
  key.writeInt16BE(type === "abort" ? 0 : 1, 2);
  return {
    offset: String(offset),
    key,
    isControlRecord: true,
    batchContext: { firstOffset: String(offset), lastOffsetDelta: 0, producerId, inTransaction: true },
  };
}

const values = (records: FetchedRecord[]) => records.map((r) => r.key?.toString());

describe("read_committed filtering of kafkajs fetches", () => {
  // Producers A and B each write in a transaction that is then aborted; C commits one afterwards.
  // The fetch starts at offset 1, inside A's transaction: both aborted transactions are already
  // open at its first record.
  const log = [
    record(1, "B", true, "b-aborted"),
    record(2, "A", true, "a-aborted"),
    marker(3, "A", "abort"),
    marker(4, "B", "abort"),
    record(5, "C", true, "c-committed"),
    marker(6, "C", "commit"),
    record(7, "D", false, "d-plain"),
  ];
  const abortedTransactions = [
    { producerId: "A", firstOffset: "0" },
    { producerId: "B", firstOffset: "1" },
  ];

  it("drops every aborted record of a fetch that starts inside an aborted transaction", () => {
    const batch = new Batch("t", "1", {
      partition: 0,
      highWatermark: "8",
      messages: log,
      abortedTransactions,
    });
    expect(values(batch.messages)).toEqual(["c-committed", "d-plain"]);
  });

  it("keeps a producer's committed transaction after its aborted one", () => {
    const same = [
      record(0, "A", true, "a1-aborted"),
      marker(1, "A", "abort"),
      record(2, "A", true, "a2-committed"),
      marker(3, "A", "commit"),
      record(4, "A", true, "a3-aborted"),
      marker(5, "A", "abort"),
    ];
    const batch = new Batch("t", "0", {
      partition: 0,
      highWatermark: "6",
      messages: same,
      abortedTransactions: [
        { producerId: "A", firstOffset: "0" },
        { producerId: "A", firstOffset: "4" },
      ],
    });
    expect(values(batch.messages)).toEqual(["a2-committed"]);
  });

  it("returns the records unchanged when nothing was aborted", () => {
    const batch = new Batch("t", "5", {
      partition: 0,
      highWatermark: "8",
      messages: log.slice(4),
      abortedTransactions: [],
    });
    expect(values(batch.messages)).toEqual(["c-committed", "d-plain"]);
  });
});
