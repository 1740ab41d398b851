/**
 * The Kafka messages a batch publishes, built as pure functions: dead letters and late readings
 * (the original key and bytes plus headers naming the source), and the split of a transaction's
 * messages into sends the broker accepts.
 */
import { FORWARD_MAX_MESSAGE_BYTES, type KafkaMessage, type Message } from "../common/kafka.js";
import type { DeadLetter } from "./partition-task.js";

export interface Source {
  topic: string;
  partition: number;
}

/**
 * Bytes of keys, values and headers per topic in one produce request: kafkajs puts a request's
 * messages for a partition into one record batch, which the broker refuses above the topic's
 * max.message.bytes (1 MiB by default); this stays well below it.
 */
export const SEND_BYTES = 512 * 1024;
/** Record-batch framing around a message, generously counted. */
const BATCH_OVERHEAD = 128;

/** An upper bound of the bytes a message takes in a record batch. */
export function sizeOf(m: Message): number {
  let n = 64 + byteLength(m.key) + byteLength(m.value);
  for (const [k, v] of Object.entries(m.headers ?? {})) {
    n += Buffer.byteLength(k) + 8;
    for (const one of Array.isArray(v) ? v : [v]) n += byteLength(one as string | Buffer | null | undefined);
  }
  return n;
}

function byteLength(v: string | Buffer | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === "string" ? Buffer.byteLength(v) : v.length;
}

/** Splits messages into consecutive runs of at most `limit` bytes (a larger message goes alone). */
export function bySize(messages: Message[], limit = SEND_BYTES): Message[][] {
  const chunks: Message[][] = [];
  let current: Message[] = [];
  let bytes = 0;
  for (const m of messages) {
    const size = sizeOf(m);
    if (current.length > 0 && bytes + size > limit) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(m);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/**
 * A transaction's messages as produce requests (one kafkajs sendBatch each): request i holds the
 * i-th run of at most `limit` bytes of every topic, in order, so a commit with less than `limit`
 * bytes per topic is one request however many topics it feeds. Each produce request waits for the
 * previous one (one in flight per transactional producer): nine small sends of one commit took
 * 450-580 ms under load.
 */
export function produceRequests<T extends { topic: string; messages: Message[] }>(
  outputs: T[],
  limit = SEND_BYTES,
): { topic: string; messages: Message[] }[][] {
  const requests: { topic: string; messages: Message[] }[][] = [];
  for (const { topic, messages } of outputs) {
    bySize(messages, limit).forEach((chunk, i) => {
      const request = requests[i];
      if (request === undefined) requests.push([{ topic, messages: chunk }]);
      else request.push({ topic, messages: chunk });
    });
  }
  return requests;
}

/**
 * A message no larger than `limit` as one record batch. One that would not fit keeps its key and
 * headers and the first bytes of its value, with `truncated-from` giving the original length: a
 * message the broker refuses would stop the partition for good, and one dropped would be lost.
 */
export function fitMessage(m: Message, limit: number): Message {
  const size = sizeOf(m) + BATCH_OVERHEAD;
  if (size <= limit) return m;
  const value = m.value === null || m.value === undefined ? null : Buffer.from(m.value);
  const length = value?.length ?? 0;
  const keep = Math.max(0, length - (size - limit) - 64);
  return {
    ...m,
    value: value === null ? null : value.subarray(0, keep),
    headers: { ...m.headers, "truncated-from": String(length) },
  };
}

export function deadLetterMessage(
  source: Source,
  original: KafkaMessage,
  letter: Pick<DeadLetter, "reason" | "detail">,
  limit = FORWARD_MAX_MESSAGE_BYTES,
): Message {
  return fitMessage(
    {
      key: original.key,
      value: original.value ?? null,
      headers: {
        "dlq-reason": letter.reason,
        "dlq-detail": letter.detail,
        "dlq-source-topic": source.topic,
        "dlq-source-partition": String(source.partition),
        "dlq-source-offset": original.offset,
      },
    },
    limit,
  );
}

export function lateMessage(
  source: Source,
  original: KafkaMessage,
  limit = FORWARD_MAX_MESSAGE_BYTES,
): Message {
  return fitMessage(
    {
      key: original.key,
      value: original.value ?? null,
      headers: { "late-source-partition": String(source.partition), "late-source-offset": original.offset },
    },
    limit,
  );
}

/** One dead letter per message: a reading whose reading and anomaly lines were both refused is one. */
export function uniqueBySource<T extends { index: number }>(letters: T[]): T[] {
  const seen = new Set<number>();
  return letters.filter((l) => !seen.has(l.index) && seen.add(l.index));
}
