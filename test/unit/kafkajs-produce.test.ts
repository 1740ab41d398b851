/**
 * The produce-side kafkajs fixes (common/kafkajs-fixes.ts) give what kafkajs's own modules give:
 * the same record bytes, and the same messages grouped the same way by partition. kafkajs's own
 * modules are compiled here from its package, beside the replacements installed in their place.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire, Module } from "node:module";
import { dirname } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import "../../common/kafka.js";
import {
  type EncodedRecord,
  encodeRecord,
  groupMessagesPerPartition,
  type OutgoingRecord,
} from "../../common/kafkajs-fixes.js";

const require = createRequire(import.meta.url);

/** kafkajs's own version of a module it now gets from common/kafkajs-fixes.ts. */
function original<T>(id: string): T {
  const path = require.resolve(id);
  const m = new Module(path) as Module & { _compile(source: string, path: string): void; paths: string[] };
  m.filename = path;
  m.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(
    dirname(path),
  );
  m._compile(readFileSync(path, "utf8"), path);
  return m.exports as T;
}

const kafkajsRecord = original<(r: OutgoingRecord) => { buffer: Buffer }>(
  "kafkajs/src/protocol/recordBatch/record/v0/index.js",
);
const kafkajsGroup = original<typeof groupMessagesPerPartition>(
  "kafkajs/src/producer/groupMessagesPerPartition.js",
);

const bytes = fc.oneof(
  fc.constant(null),
  fc.string({ unit: "binary", maxLength: 300 }),
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
);

describe("kafkajs produce fixes", () => {
  it("are what kafkajs loads", () => {
    expect(require("kafkajs/src/protocol/recordBatch/record/v0/index.js")).toBe(encodeRecord);
    expect(require("kafkajs/src/producer/groupMessagesPerPartition.js")).toBe(groupMessagesPerPartition);
  });

  it("are what kafkajs loads under Node's own ES module loader too (the worker as deployed)", () => {
    // Node runs a CommonJS package an ES module imports before any ES module: the fixes hold only
    // because common/kafka.ts takes kafkajs from common/kafkajs-fixes.ts after they are in place.
    const code = `
      import { createRequire } from "node:module";
      import { Kafka } from "./common/kafka.ts";
      import * as fixes from "./common/kafkajs-fixes.ts";
      const require = createRequire(import.meta.url);
      console.log(JSON.stringify({
        kafka: typeof Kafka,
        grouping: require("kafkajs/src/producer/groupMessagesPerPartition.js") === fixes.groupMessagesPerPartition,
        record: require("kafkajs/src/protocol/recordBatch/record/v0/index.js") === fixes.encodeRecord,
        filter: require("kafkajs/src/consumer/filterAbortedMessages.js") === fixes.filterAborted,
      }));`;
    const out = execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
      cwd: new URL("../..", import.meta.url),
      encoding: "utf8",
    });
    expect(JSON.parse(out)).toEqual({ kafka: "function", grouping: true, record: true, filter: true });
  });

  it("encode every record byte for byte as kafkajs does", () => {
    fc.assert(
      fc.property(
        fc.record({
          offsetDelta: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
          timestampDelta: fc.oneof(
            fc.integer({ min: -1000, max: 1000 }),
            fc.integer({ min: -(2 ** 45), max: 2 ** 45 }),
          ),
          key: bytes,
          value: fc.oneof(bytes, fc.string({ minLength: 2000, maxLength: 20_000 })),
          headers: fc.dictionary(
            fc.string({ minLength: 1, maxLength: 20 }),
            fc.oneof(
              fc.string({ maxLength: 50 }),
              fc.uint8Array({ maxLength: 50 }).map((a) => Buffer.from(a)),
              fc.array(fc.string({ maxLength: 20 }), { maxLength: 3 }),
            ),
          ),
        }),
        (record) => {
          const ours: EncodedRecord = encodeRecord(record);
          expect(ours.buffer.equals(kafkajsRecord(record).buffer)).toBe(true);
          expect(ours.buf).toBe(ours.buffer);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("encode a record given no optional fields as kafkajs does", () => {
    const record = { key: "sensor_1", value: '{"temperature":21.5}' };
    expect(encodeRecord(record).buffer).toEqual(kafkajsRecord(record).buffer);
  });

  it("group messages by partition, each partition's in send order, as kafkajs does", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 500 }), (partitions) => {
        const messages = partitions.map((partition, i) => ({ partition, value: String(i) }));
        const args = {
          topic: "t",
          partitionMetadata: [0, 1, 2, 3, 4, 5].map((partitionId) => ({ partitionId, leader: 0 })),
          messages,
          partitioner: ({ message }: { message: { partition: number } }) => message.partition,
        };
        expect(groupMessagesPerPartition(args)).toEqual(kafkajsGroup(args));
      }),
    );
    expect(
      groupMessagesPerPartition({ topic: "t", partitionMetadata: [], messages: [1], partitioner: () => 0 }),
    ).toEqual({});
  });
});
