import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { KafkaMessage, Message } from "../../common/kafka.js";
import {
  bySize,
  deadLetterMessage,
  fitMessage,
  lateMessage,
  produceRequests,
  SEND_BYTES,
  sizeOf,
  uniqueBySource,
} from "../../ingest/outputs.js";

function raw(value: Buffer | null, offset = "42", key: string | null = "sensor_1"): KafkaMessage {
  return {
    key: key === null ? null : Buffer.from(key),
    value,
    offset,
    timestamp: "0",
    attributes: 0,
    headers: {},
  };
}

const source = { topic: "sensor-readings-raw", partition: 2 };

describe("dead letters and late readings", () => {
  it("carry the original key and bytes and name their source", () => {
    const value = Buffer.from([0xff, 0x00, 0x7b]);
    const letter = deadLetterMessage(source, raw(value, "7"), {
      reason: "invalid_utf8",
      detail: "not UTF-8",
    });
    expect(letter.key).toEqual(Buffer.from("sensor_1"));
    expect(letter.value).toEqual(value);
    expect(letter.headers).toEqual({
      "dlq-reason": "invalid_utf8",
      "dlq-detail": "not UTF-8",
      "dlq-source-topic": "sensor-readings-raw",
      "dlq-source-partition": "2",
      "dlq-source-offset": "7",
    });
    const late = lateMessage(source, raw(value, "9"));
    expect(late.value).toEqual(value);
    expect(late.headers).toEqual({ "late-source-partition": "2", "late-source-offset": "9" });
  });

  it("keep a raw message of almost 1 MiB whole, headers and all, within the forwarding topics' limit", () => {
    const value = Buffer.alloc(1024 * 1024 - 100, 0x61);
    const letter = deadLetterMessage(source, raw(value), { reason: "oversize", detail: "too big" });
    expect(letter.value).toEqual(value);
    expect(letter.headers?.["truncated-from"]).toBeUndefined();
  });

  it("are cut to the limit, saying so, only when the topic could not take them whole", () => {
    const value = Buffer.alloc(1024 * 1024, 0x61);
    const limit = 1024 * 1024;
    const letter = deadLetterMessage(source, raw(value), { reason: "oversize", detail: "too big" }, limit);
    expect(sizeOf(letter) + 128).toBeLessThanOrEqual(limit);
    expect(letter.headers?.["truncated-from"]).toBe(String(value.length));
    expect(letter.headers?.["dlq-reason"]).toBe("oversize");
    expect(Buffer.compare(letter.value as Buffer, value.subarray(0, (letter.value as Buffer).length))).toBe(
      0,
    );
  });

  it("fitMessage leaves a message that fits untouched, and any message fits after it", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 20_000 }),
        fc.integer({ min: 1024, max: 30_000 }),
        (length, limit) => {
          const m: Message = { key: "k", value: Buffer.alloc(length, 1), headers: { h: "v" } };
          const fitted = fitMessage(m, limit);
          if (sizeOf(m) + 128 <= limit) expect(fitted).toBe(m);
          else {
            expect(sizeOf(fitted) + 128).toBeLessThanOrEqual(limit);
            expect(fitted.headers?.["truncated-from"]).toBe(String(length));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("one dead letter per message, whichever of its lines were refused", () => {
    const letters = [
      { index: 3, reason: "influx_rejected" },
      { index: 3, reason: "influx_rejected" },
      { index: 1, reason: "invalid_json" },
    ];
    expect(uniqueBySource(letters)).toEqual([letters[0], letters[2]]);
  });
});

describe("sizeOf and bySize", () => {
  it("counts key, value and header bytes (UTF-8), so a bound on it bounds the record batch", () => {
    const m: Message = { key: "é", value: "ab", headers: { "h-é": "ü" } };
    expect(sizeOf(m)).toBe(64 + 2 + 2 + Buffer.byteLength("h-é") + 8 + 2);
  });

  it("splits into consecutive runs within the limit, in order, losing nothing", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 60 }),
        fc.integer({ min: 100, max: 10_000 }),
        (lengths, limit) => {
          const messages: Message[] = lengths.map((n, i) => ({ key: String(i), value: "x".repeat(n) }));
          const chunks = bySize(messages, limit);
          expect(chunks.flat()).toEqual(messages);
          for (const chunk of chunks) {
            const total = chunk.reduce((s, m) => s + sizeOf(m), 0);
            if (chunk.length > 1) expect(total).toBeLessThanOrEqual(limit);
            expect(chunk.length).toBeGreaterThan(0);
          }
        },
      ),
      { numRuns: 300 },
    );
    expect(SEND_BYTES).toBeLessThan(1024 * 1024);
  });

  it("puts a transaction's topics into as few produce requests as the per-topic limit allows, in order", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 40 }), { maxLength: 5 }),
        fc.integer({ min: 100, max: 10_000 }),
        (topics, limit) => {
          const outputs = topics.map((lengths, t) => ({
            topic: `t${t}`,
            messages: lengths.map((n, i): Message => ({ key: `${t}-${i}`, value: "x".repeat(n) })),
          }));
          const requests = produceRequests(outputs, limit);
          // Every topic's messages, in order, nothing lost or added.
          for (const { topic, messages } of outputs) {
            const sent = requests.flatMap((r) =>
              r.filter((m) => m.topic === topic).flatMap((m) => m.messages),
            );
            expect(sent).toEqual(messages);
          }
          // As many requests as the topic needing the most runs, each topic at most once per request.
          const most = Math.max(0, ...outputs.map((o) => bySize(o.messages, limit).length));
          expect(requests.length).toBe(most);
          for (const request of requests) {
            expect(new Set(request.map((m) => m.topic)).size).toBe(request.length);
            for (const { messages } of request) {
              const total = messages.reduce((s, m) => s + sizeOf(m), 0);
              if (messages.length > 1) expect(total).toBeLessThanOrEqual(limit);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
