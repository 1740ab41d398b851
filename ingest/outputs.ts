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

/** Bytes of keys, values and headers per transactional send; well below the 1 MiB default limit. */
export const SEND_BYTES = 256 * 1024;
/**
 * Messages per transactional send: kafkajs groups a send's messages by partition in time quadratic
 * in their number: one send of a 1,700-record changelog takes 8.5 ms of the event loop, seven sends of
 * at most 250 take 3.7 ms.
 */
export const SEND_MESSAGES = 250;
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

/**
 * Splits messages into consecutive runs of at most `limit` bytes (a larger message goes alone) and
 * at most `count` messages.
 */
export function bySize(messages: Message[], limit = SEND_BYTES, count = SEND_MESSAGES): Message[][] {
  const chunks: Message[][] = [];
  let current: Message[] = [];
  let bytes = 0;
  for (const m of messages) {
    const size = sizeOf(m);
    if (current.length > 0 && (bytes + size > limit || current.length >= count)) {
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
