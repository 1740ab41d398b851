/**
 * kafkajs 2.2.4's record-level modules, rewritten to give the same bytes and records with less work;
 * ./kafkajs-fixes.ts puts them in kafkajs's place before it loads. Each is property-tested against
 * kafkajs's own module (test/unit/kafkajs-records.test.ts).
 *
 * Producing without per-message waste, byte for byte the same requests:
 * - producer/groupMessagesPerPartition.js copied each partition's list on every message (quadratic
 *   in a send's messages per partition);
 * - protocol/recordBatch/record/v0 made each record in a fresh zero-filled 512-byte buffer through
 *   a chain of growing writes, with varlongs through a 64-bit Long object. Here each record is
 *   sized first and written once into a buffer of exactly its size.
 * - producer/partitioners/default/murmur2.js hashed each keyed message's key (the worker's windows
 *   and alerts, keyed by sensor) in 64-bit Long objects, several per byte quad. Here the same Java
 *   murmur2 runs in 32-bit integer arithmetic, which is what Java's does: the same partitions.
 * - protocol/requests/produce/v3/request.js (every produce version kafkajs uses builds on it) copied
 *   each message into a new object before encoding it as a record. Here the record is encoded
 *   straight from the message.
 * - protocol/recordBatch/crc32C computed each record batch's checksum a byte at a time. Here the
 *   same CRC-32C runs eight bytes a step (slicing-by-8), about 2.4 times the pace.
 * Every process here produces: the worker its outputs and changelog, the bench its load.
 *
 * Consuming without per-record 64-bit objects (protocol/recordBatch/record/v0/decoder.js): kafkajs
 * read each record's timestamp delta as a Long, bit by bit, and added it and the offset delta to
 * Longs parsed from the batch's strings; a third of everything the worker allocated was that. Here
 * the deltas are plain numbers and the sums exact integers (BigInt past 2^53), the same record.
 */
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

export type Bytes = Buffer | string | null | undefined;

export interface OutgoingRecord {
  offsetDelta?: number;
  timestampDelta?: number;
  key?: Bytes;
  value?: Bytes;
  headers?: Record<string, Bytes | Bytes[]>;
}

/** What kafkajs's record batch takes from a record: its bytes (`buf` marks it as encoded). */
export interface EncodedRecord {
  buf: Buffer;
  buffer: Buffer;
}

/** Zigzag, as Kafka's varint and varlong: exact for integers within ±2^52 (time deltas included). */
const zigzag = (n: number): number => (n >= 0 ? n * 2 : -n * 2 - 1);

function sizeOfUVarInt(u: number): number {
  let size = 1;
  while (u >= 128) {
    u = Math.floor(u / 128);
    size++;
  }
  return size;
}

function writeUVarInt(buf: Buffer, at: number, u: number): number {
  while (u >= 128) {
    buf[at++] = (u % 128) | 128;
    u = Math.floor(u / 128);
  }
  buf[at++] = u;
  return at;
}

/** The bytes of a varint-length-prefixed field (length -1: absent). */
const lengthOf = (b: Buffer | null): number => (b === null ? 1 : sizeOfUVarInt(b.length * 2) + b.length);

/** Writes a varint-length-prefixed field at `at`; returns the offset after it. */
function putBytes(buf: Buffer, at: number, b: Buffer | null): number {
  if (b === null) {
    buf[at] = 1; // zigzag(-1)
    return at + 1;
  }
  const end = writeUVarInt(buf, at, b.length * 2);
  return end + b.copy(buf, end);
}

/** kafkajs's encoding of a key, value or header value: a Buffer as is, null as absent, else String(). */
const asBytes = (v: Bytes): Buffer | null =>
  v == null ? null : Buffer.isBuffer(v) ? v : Buffer.from(String(v), "utf8");

/** The record layout of kafkajs's record/v0 (Kafka's record format v2), written in one pass. */
export function encodeRecord({
  offsetDelta = 0,
  timestampDelta = 0,
  key,
  value,
  headers = {},
}: OutgoingRecord): EncodedRecord {
  const k = asBytes(key);
  const v = asBytes(value);
  const hs: [Buffer, Buffer | null][] = [];
  for (const name of Object.keys(headers)) {
    const h = headers[name];
    const values = Array.isArray(h) ? h : [h];
    for (const one of values) hs.push([Buffer.from(name, "utf8"), asBytes(one)]);
  }
  const ts = zigzag(timestampDelta);
  const od = zigzag(offsetDelta);
  let body =
    1 + sizeOfUVarInt(ts) + sizeOfUVarInt(od) + lengthOf(k) + lengthOf(v) + sizeOfUVarInt(hs.length * 2);
  for (const [name, hv] of hs) body += lengthOf(name) + lengthOf(hv);
  const buf = Buffer.allocUnsafe(sizeOfUVarInt(body * 2) + body);
  let at = writeUVarInt(buf, 0, body * 2);
  buf[at++] = 0; // attributes: none used
  at = writeUVarInt(buf, at, ts);
  at = writeUVarInt(buf, at, od);
  at = putBytes(buf, at, k);
  at = putBytes(buf, at, v);
  at = writeUVarInt(buf, at, hs.length * 2);
  for (const [name, hv] of hs) {
    at = putBytes(buf, at, name);
    at = putBytes(buf, at, hv);
  }
  if (at !== buf.length) throw new Error(`record encoded to ${at} bytes, sized ${buf.length}`);
  return { buf, buffer: buf };
}

interface PartitionerArgs<M> {
  topic: string;
  partitionMetadata: unknown[];
  message: M;
}

/** kafkajs's grouping of a topic's messages by partition (each partition's in send order), in one pass. */
export function groupMessagesPerPartition<M>({
  topic,
  partitionMetadata,
  messages,
  partitioner,
}: {
  topic: string;
  partitionMetadata: unknown[];
  messages: M[];
  partitioner: (args: PartitionerArgs<M>) => number;
}): Record<number, M[]> {
  const out: Record<number, M[]> = {};
  if (partitionMetadata.length === 0) return out;
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    const list = out[partition];
    if (list === undefined) out[partition] = [message];
    else list.push(message);
  }
  return out;
}

const MURMUR_M = 0x5bd1e995;

/** Kafka's murmur2 of a message key (Java's Utils.murmur2, as kafkajs's default partitioner calls it). */
export function murmur2(key: Bytes): number {
  const data = Buffer.isBuffer(key) ? key : Buffer.from(String(key));
  const length = data.length;
  let h = 0x9747b28c ^ length;
  const quads = length & ~3;
  for (let i = 0; i < quads; i += 4) {
    let k = data.readInt32LE(i);
    k = Math.imul(k, MURMUR_M);
    k ^= k >>> 24;
    k = Math.imul(k, MURMUR_M);
    h = Math.imul(h, MURMUR_M) ^ k;
  }
  // The tail bytes, last first, then one multiply (Java's switch falls through its cases).
  const tail = length & 3;
  if (tail > 0) {
    if (tail === 3) h ^= data.readUInt8(quads + 2) << 16;
    if (tail >= 2) h ^= data.readUInt8(quads + 1) << 8;
    h ^= data.readUInt8(quads);
    h = Math.imul(h, MURMUR_M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, MURMUR_M);
  h ^= h >>> 15;
  return h | 0;
}

/** A message of a produce request, as kafkajs's producer hands it on. */
interface ProduceMessage {
  key?: Bytes;
  value?: Bytes;
  headers?: Record<string, Bytes | Bytes[]>;
  timestamp?: number | string | null;
}

interface ProducePartition {
  partition: number;
  firstSequence?: number;
  messages: ProduceMessage[];
}

interface ProduceRequestArgs {
  acks: number;
  timeout: number;
  transactionalId?: string | null;
  producerId?: unknown;
  producerEpoch?: number;
  compression?: number;
  topicData: { topic: string; partitions: ProducePartition[] }[];
}

/** A kafkajs Encoder: what its protocol modules write with (only what is used here). */
interface KafkaEncoder {
  buf: Buffer;
  buffer: Buffer;
  size(): number;
  writeInt16(v: number): KafkaEncoder;
  writeInt32(v: number): KafkaEncoder;
  writeString(v: string | null): KafkaEncoder;
  writeArray(v: unknown[]): KafkaEncoder;
  writeEncoder(v: KafkaEncoder): KafkaEncoder;
}

interface KafkajsInternals {
  Encoder: new () => KafkaEncoder;
  RecordBatch(args: Record<string, unknown>): Promise<KafkaEncoder>;
  Long: { fromInt(n: number): unknown };
  Types: { None: number };
}

let internals: KafkajsInternals | undefined;

/** The kafkajs modules the produce request is built with, loaded on first use: after the fixes are in place. */
function kafkajsInternals(): KafkajsInternals {
  internals ??= {
    Encoder: require("kafkajs/src/protocol/encoder.js"),
    RecordBatch: require("kafkajs/src/protocol/recordBatch/v0/index.js").RecordBatch,
    Long: require("kafkajs/src/utils/long.js"),
    Types: require("kafkajs/src/protocol/message/compression/index.js").Types,
  };
  return internals;
}

/** kafkajs's produce request v3 (Kafka's Produce v3: transactional id, acks, timeout, topic data). */
export function produceRequestV3({
  acks,
  timeout,
  transactionalId = null,
  producerId,
  producerEpoch = 0,
  compression,
  topicData,
}: ProduceRequestArgs) {
  const { Encoder, RecordBatch, Long, Types } = kafkajsInternals();
  const id = producerId ?? Long.fromInt(-1);
  const codec = compression ?? Types.None;
  const encodePartition = async ({ partition, messages, firstSequence }: ProducePartition) => {
    const dateNow = Date.now();
    const timestamps = messages
      .map((m) => m.timestamp)
      .filter((t) => t != null)
      .sort();
    const firstTimestamp = timestamps.length === 0 ? dateNow : timestamps[0];
    const maxTimestamp = timestamps.length === 0 ? dateNow : timestamps[timestamps.length - 1];
    const records = new Array<EncodedRecord>(messages.length);
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i] as ProduceMessage;
      records[i] = encodeRecord({
        offsetDelta: i,
        timestampDelta: Number(m.timestamp || dateNow) - Number(firstTimestamp),
        key: m.key,
        value: m.value,
        headers: m.headers,
      });
    }
    const recordBatch = await RecordBatch({
      compression: codec,
      records,
      firstTimestamp,
      maxTimestamp,
      producerId: id,
      producerEpoch,
      firstSequence,
      transactional: !!transactionalId,
      lastOffsetDelta: records.length - 1,
    });
    return new Encoder().writeInt32(partition).writeInt32(recordBatch.size()).writeEncoder(recordBatch);
  };
  return {
    apiKey: 0,
    apiVersion: 3,
    apiName: "Produce",
    expectResponse: () => acks !== 0,
    encode: async () => {
      const topics: KafkaEncoder[] = [];
      for (const { topic, partitions } of topicData) {
        const encoded: KafkaEncoder[] = [];
        for (const p of partitions) encoded.push(await encodePartition(p));
        topics.push(new Encoder().writeString(topic).writeArray(encoded));
      }
      return new Encoder()
        .writeString(transactionalId)
        .writeInt16(acks)
        .writeInt32(timeout)
        .writeArray(topics);
    },
  };
}

/**
 * CRC-32C (Castagnoli, reflected 0x82f63b78) tables for slicing-by-8, one after another in one array
 * (entry k * 256 + b of table k): V8 reads one typed array faster than eight.
 */
const CRC_TABLE: Int32Array = (() => {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c;
  }
  for (let i = 256; i < t.length; i++) {
    const prev = t[i - 256] as number;
    t[i] = (prev >>> 8) ^ (t[prev & 0xff] as number);
  }
  return t;
})();

/** The CRC-32C of `buffer` as an unsigned 32-bit number: what a record batch header carries. */
export function crc32c(buffer: Uint8Array): number {
  // Every index below is inside its array: the reads are numbers (the casts only tell TypeScript).
  const t = CRC_TABLE;
  const b = buffer;
  let crc = -1;
  let i = 0;
  const whole = b.length - (b.length % 8);
  for (; i < whole; i += 8) {
    const lo =
      crc ^
      ((b[i] as number) |
        ((b[i + 1] as number) << 8) |
        ((b[i + 2] as number) << 16) |
        ((b[i + 3] as number) << 24));
    crc =
      (t[1792 + (lo & 0xff)] as number) ^
      (t[1536 + ((lo >>> 8) & 0xff)] as number) ^
      (t[1280 + ((lo >>> 16) & 0xff)] as number) ^
      (t[1024 + (lo >>> 24)] as number) ^
      (t[768 + (b[i + 4] as number)] as number) ^
      (t[512 + (b[i + 5] as number)] as number) ^
      (t[256 + (b[i + 6] as number)] as number) ^
      (t[b[i + 7] as number] as number);
  }
  for (; i < b.length; i++) crc = (t[(crc ^ (b[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

/** kafkajs's Decoder over one record's bytes: what its record decoder reads with. */
export interface RecordDecoder {
  buffer: Buffer;
  offset: number;
  readInt8(): number;
  readVarInt(): number;
  readVarIntBytes(): Buffer | null;
  readVarIntString(): string | null;
}

/** What kafkajs's record batch decoder tells each record about its batch. */
export interface RecordBatchContext {
  firstOffset: string;
  firstTimestamp: string;
  magicByte?: number;
  isControlBatch?: boolean;
  timestampType?: number;
  maxTimestamp?: string;
}

export interface DecodedRecord {
  magicByte: number | undefined;
  attributes: number;
  timestamp: string;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, Buffer | null | (Buffer | null)[]>;
  isControlRecord: boolean;
  batchContext: RecordBatchContext;
}

const LOG_APPEND_TIME = 1;

/** A zigzag varlong: a number while 7 bytes hold it (49 bits, exact), else a BigInt. */
function readVarLong(decoder: RecordDecoder): number | bigint {
  const { buffer } = decoder;
  const start = decoder.offset;
  let at = start;
  let u = 0;
  let scale = 1;
  for (let i = 0; i < 7; i++) {
    const b = buffer[at++];
    if (b === undefined) throw new RangeError("record ends inside a varlong");
    u += (b & 0x7f) * scale;
    if (b < 0x80) {
      decoder.offset = at;
      return u % 2 === 0 ? u / 2 : -(u + 1) / 2;
    }
    scale *= 128;
  }
  let big = 0n;
  at = start;
  for (let shift = 0n; ; shift += 7n) {
    if (shift > 63n) throw new RangeError("varlong longer than 10 bytes");
    const b = buffer[at++];
    if (b === undefined) throw new RangeError("record ends inside a varlong");
    big |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) break;
  }
  decoder.offset = at;
  return BigInt.asIntN(64, (big >> 1n) ^ -(big & 1n));
}

/** `base + delta` as kafkajs's Long gives it: the exact sum in decimal (its BigInt never wraps). */
function plus(base: string, delta: number | bigint): string {
  if (typeof delta === "number") {
    const b = Number(base);
    const sum = b + delta;
    if (Number.isSafeInteger(b) && Number.isSafeInteger(sum)) return String(sum);
  }
  return (BigInt(base) + BigInt(delta)).toString();
}

/** One record of a record batch (Kafka's record format v2), the object kafkajs's decoder makes. */
export function decodeRecord(decoder: RecordDecoder, batchContext: RecordBatchContext): DecodedRecord {
  const {
    firstOffset,
    firstTimestamp,
    magicByte,
    isControlBatch = false,
    timestampType,
    maxTimestamp,
  } = batchContext;
  const attributes = decoder.readInt8();
  const timestampDelta = readVarLong(decoder);
  const timestamp =
    timestampType === LOG_APPEND_TIME && maxTimestamp ? maxTimestamp : plus(firstTimestamp, timestampDelta);
  const offset = plus(firstOffset, decoder.readVarInt());
  const key = decoder.readVarIntBytes();
  const value = decoder.readVarIntBytes();
  const headers: DecodedRecord["headers"] = {};
  const count = decoder.readVarInt();
  for (let i = 0; i < count; i++) {
    const name = decoder.readVarIntString() as string;
    const one = decoder.readVarIntBytes();
    const seen = Object.hasOwn(headers, name) ? headers[name] : undefined;
    const next = seen === undefined ? one : Array.isArray(seen) ? [...seen, one] : [seen, one];
    Object.defineProperty(headers, name, {
      value: next,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return {
    magicByte,
    attributes,
    timestamp,
    offset,
    key,
    value,
    headers,
    isControlRecord: isControlBatch,
    batchContext,
  };
}
