/**
 * A corpus of malformed messages — generated with fast-check from a fixed seed, plus hand-written
 * nasty cases — interleaved with good readings on the real broker and processed by the real worker.
 * Every bad message must reach the DLQ exactly once, with its original key and bytes and the reason
 * `parseReading` gives for those bytes; every good reading must be stored; every offset committed.
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { DEAD_LETTER_REASONS, DEFAULT_LIMITS, parseReading } from "../../common/reading.js";
import {
  type Consumed,
  consumeAll,
  countPoints,
  drained,
  type Env,
  isolatedEnv,
  type Outgoing,
  produce,
  startWorker,
} from "../support/harness.js";

const SEED = 20_261_123;
const RUNS_PER_KIND = 50;
const T0 = Date.UTC(2026, 0, 7, 8, 0, 0);
const SENSORS = ["sensor_1", "sensor_2", "sensor_3", "sensor_4"] as const;
const SITE: Record<string, string> = {
  sensor_1: "north",
  sensor_2: "south",
  sensor_3: "east",
  sensor_4: "west",
};

interface BadMessage {
  key: string | null;
  value: Buffer | null;
  reason: string;
}

const bytes = (text: string) => Buffer.from(text, "utf8");

/** A well-formed reading, the starting point of most mutations. */
const validDoc = fc.record({
  sensor_id: fc.constantFrom(...SENSORS),
  temperature: fc.double({ min: -40, max: 60, noNaN: true }),
  timestamp: fc.integer({ min: T0, max: T0 + 3_600_000 }),
});
const validJson = validDoc.map((d) => JSON.stringify(d));

const INVALID_UTF8_SEQUENCES = [
  [0xff],
  [0xfe],
  [0x80],
  [0xc0, 0xaf], // overlong "/"
  [0xe2, 0x82], // truncated 3-byte sequence
  [0xed, 0xa0, 0x80], // UTF-16 surrogate encoded as UTF-8
  [0xf4, 0x90, 0x80, 0x80], // beyond U+10FFFF
  [0xf8, 0x88, 0x80, 0x80, 0x80], // 5-byte form
];

const controlCharacter = fc
  .oneof(fc.integer({ min: 0, max: 0x1f }), fc.constant(0x7f))
  .map((c) => String.fromCharCode(c));

const wrongTimestamp = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((x) => !Number.isInteger(x)),
  fc.integer({ min: -1e15, max: DEFAULT_LIMITS.minTime - 1 }),
  // Far ahead of any clock this test runs on.
  fc.integer({ min: Date.UTC(2100, 0, 1), max: 8.64e15 }),
  fc.constantFrom(
    "yesterday",
    "",
    "2024-02-30T00:00:00Z",
    "2023-02-29T12:00:00Z",
    "2024-10-27T24:00:00Z",
    "2024-10-27T03:33:20",
    "2024-13-01T00:00:00Z",
    "2024-10-27T03:60:00Z",
    "1999-12-31T23:59:59Z",
    "1730000000000",
    "2024-10-27T03:33:20.1234567890Z",
    "2024-10-27 03:33:20",
  ),
  fc.string({ maxLength: 40 }),
  fc.constantFrom(true, false, null, [], {}, [T0]),
);

/** The generators of bad messages, one per way a producer can get it wrong. JSON text or raw bytes. */
const KINDS: Record<string, fc.Arbitrary<Buffer>> = {
  randomBytes: fc.uint8Array({ minLength: 0, maxLength: 300 }).map((b) => Buffer.from(b)),
  truncatedJson: fc.tuple(validJson, fc.nat()).map(([text, cut]) => bytes(text.slice(0, cut % text.length))),
  wrongTypes: fc
    .record(
      {
        sensor_id: fc.oneof(fc.constantFrom(...SENSORS), fc.jsonValue({ maxDepth: 2 })),
        timestamp: fc.oneof(fc.constant(T0), fc.jsonValue({ maxDepth: 2 })),
        temperature: fc.oneof(fc.constant(21.5), fc.jsonValue({ maxDepth: 2 })),
      },
      { requiredKeys: [] },
    )
    .map((d) => bytes(JSON.stringify(d))),
  hugeNumbers: fc
    .tuple(
      validDoc,
      fc.constantFrom("", "-"),
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 95, max: 400 }),
      fc.constantFrom("temperature", "timestamp"),
    )
    .map(([d, sign, mantissa, exponent, key]) => {
      const text = JSON.stringify({ ...d, [key]: "NUMBER" });
      return bytes(text.replace('"NUMBER"', `${sign}${mantissa}e${exponent}`));
    }),
  deepNesting: fc
    .tuple(validDoc, fc.integer({ min: 2, max: 5000 }), fc.constantFrom("[", "{"), fc.boolean())
    .map(([d, depth, open, closed]) => {
      const nested =
        open === "["
          ? `${"[".repeat(depth)}1${closed ? "]".repeat(depth) : ""}`
          : `${'{"a":'.repeat(depth)}1${closed ? "}".repeat(depth) : ""}`;
      return bytes(JSON.stringify({ ...d, deep: "NESTED" }).replace('"NESTED"', nested));
    }),
  invalidUtf8: fc
    .tuple(validJson, fc.nat(), fc.constantFrom(...INVALID_UTF8_SEQUENCES))
    .map(([text, at, sequence]) => {
      const good = bytes(text);
      const i = at % (good.length + 1);
      return Buffer.concat([good.subarray(0, i), Buffer.from(sequence), good.subarray(i)]);
    }),
  controlCharactersInTags: fc
    .tuple(validDoc, fc.string({ maxLength: 20 }), controlCharacter, fc.string({ maxLength: 20 }))
    .map(([d, before, control, after]) =>
      bytes(JSON.stringify({ ...d, site: `${before}${control}${after}` })),
    ),
  wrongTimestamps: fc
    .tuple(validDoc, wrongTimestamp)
    .map(([d, timestamp]) => bytes(JSON.stringify({ ...d, timestamp }))),
};

/** Just over the limit and well over it; a few only, so a produce batch stays under the broker's 1 MiB. */
const oversize = fc
  .tuple(validDoc, fc.integer({ min: DEFAULT_LIMITS.maxBytes - 40, max: DEFAULT_LIMITS.maxBytes + 20_000 }))
  .map(([d, size]) => {
    const text = JSON.stringify({ ...d, pad: "" });
    return bytes(text.replace('"pad":""', `"pad":"${"x".repeat(Math.max(0, size - text.length))}"`));
  })
  .filter((b) => b.length > DEFAULT_LIMITS.maxBytes);

const good = (sensor: string, timestamp: number | string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ sensor_id: sensor, temperature: 20.5, timestamp, site: SITE[sensor], ...extra });

/** Nasty cases no generator is likely to hit. */
const HAND_WRITTEN: { key: string | null; value: Buffer | null }[] = [
  { key: null, value: null },
  { key: "sensor_1", value: Buffer.alloc(0) },
  { key: null, value: bytes("{}") },
  { key: "sensor_1", value: bytes("   ") },
  { key: "sensor_1", value: bytes("null") },
  { key: "sensor_1", value: bytes('"sensor_1"') },
  { key: "sensor_1", value: bytes("21.5") },
  { key: "sensor_1", value: bytes('{"sensor_id":"sensor_1","temperature":21.5}') },
  // A leading byte-order mark is decoded away (accepted); one inside the document is not JSON.
  { key: "sensor_1", value: bytes(good("sensor_1", T0).replace(",", ",\ufeff")) },
  { key: "sensor_1", value: bytes(`${good("sensor_1", T0)}\u0000`) },
  { key: "sensor_1", value: bytes(`${good("sensor_1", T0)}${good("sensor_1", T0)}`) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0).replace("{", "{'a':1,")) },
  {
    key: "sensor_1",
    value: bytes(good("sensor_1", T0, { __proto__x: 1 }).replace("__proto__x", "__proto__")),
  },
  {
    key: "sensor_1",
    value: bytes(`{"sensor_id":"sensor_1","sensor_id":"sensor 1\\\\","temperature":1,"timestamp":${T0}}`),
  },
  { key: "sensor_1", value: bytes(good("sensor_1", T0).replace('"sensor_1"', '"sensor\\u0000_1"')) },
  {
    key: "sensor_1",
    value: bytes(JSON.stringify({ sensor_id: "s".repeat(257), temperature: 1, timestamp: T0 })),
  },
  {
    key: "sensor_1",
    value: bytes(JSON.stringify({ sensor_id: "\u0085leading", temperature: 1, timestamp: T0 })),
  },
  { key: "sensor_1", value: bytes(JSON.stringify({ sensor_id: "", temperature: 1, timestamp: T0 })) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0, { température: 1 })) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0, { "": 1 })) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0, { "temp erature": 1 })) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0, { ["a".repeat(65)]: 1 })) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0, { measurement: 1 })) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0, { rule_id: "r" })) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0).replace("20.5", "1e999")) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0).replace("20.5", "-1e101")) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0).replace("20.5", "NaN")) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0).replace("20.5", "Infinity")) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0).replace("20.5", "0x10")) },
  {
    key: "sensor_1",
    value: bytes(good("sensor_1", T0).replace("20.5", '"20.5"').replace(',"site":"north"', "")),
  },
  { key: "sensor_1", value: bytes(good("sensor_1", T0, { site: "x".repeat(257) })) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0, { site: "" })) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0, { site: "a\nb" })) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0, { site: "a\u007fb" })) },
  {
    key: "sensor_1",
    value: bytes(
      good("sensor_1", T0, Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`f${i}`, i]))),
    ),
  },
  {
    key: "sensor_1",
    value: bytes(
      good("sensor_1", T0, Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`t${i}`, "v"]))),
    ),
  },
  // Ahead of the worker's clock by more than READING_MAX_FUTURE_MS: a sensor clock a day fast, and
  // an RFC 3339 time far ahead (the generators reach future_timestamp only by chance).
  { key: "sensor_1", value: bytes(good("sensor_1", Date.now() + 86_400_000)) },
  { key: "sensor_1", value: bytes(good("sensor_1", "2100-01-01T00:00:00Z")) },
  { key: "sensor_1", value: bytes(good("sensor_1", "9007199254740993")) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0).replace(String(T0), "9007199254740993")) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0).replace(String(T0), `${T0}.5`)) },
  { key: "sensor_1", value: bytes(good("sensor_1", T0).replace(String(T0), "-0.5")) },
  {
    key: "sensor_1",
    value: bytes(
      `{"sensor_id":"sensor_1","temperature":1,"timestamp":${T0},"deep":${"[".repeat(30_000)}1${"]".repeat(30_000)}}`,
    ),
  },
  { key: "sensor_1", value: Buffer.from(good("sensor_1", T0), "utf16le") },
];

describe("malformed corpus through the real worker", () => {
  let env: Env;
  let bad: BadMessage[];
  let messages: Outgoing[];
  let distinctGood = 0;
  let dlq: Consumed[];

  beforeAll(async () => {
    env = await isolatedEnv("corpus");
    const now = Date.now();
    /** The reason the worker's parser gives, when it does not depend on the clock the worker reads. */
    const stableReason = (value: Buffer | null): string | undefined => {
      const early = parseReading(value, now - 3_600_000);
      const late = parseReading(value, now + 3_600_000);
      if (early.ok || late.ok || early.reason !== late.reason) return undefined;
      return early.reason;
    };

    bad = [];
    let serial = 0;
    const generated = Object.values(KINDS).flatMap((arb, k) =>
      fc.sample(arb, { seed: SEED + k, numRuns: RUNS_PER_KIND }),
    );
    for (const value of [...generated, ...fc.sample(oversize, { seed: SEED - 1, numRuns: 6 })]) {
      const reason = stableReason(value);
      // A generator may produce a valid reading by chance: it is not part of the bad corpus then.
      if (reason !== undefined) bad.push({ key: `bad-${serial++}`, value, reason });
    }
    for (const m of HAND_WRITTEN) {
      const reason = stableReason(m.value);
      expect(reason, `hand-written case ${m.value?.toString("utf8").slice(0, 80)} is bad`).toBeDefined();
      bad.push({ ...m, reason: reason as string });
    }

    // Good readings: 4 sensors for 10 minutes, a few as RFC 3339 strings, a few repeated (one point each).
    const goods: Outgoing[] = [];
    for (let second = 0; second < 600; second++) {
      for (const sensor of SENSORS) {
        const ms = T0 + second * 1000;
        const timestamp = second % 7 === 0 ? new Date(ms).toISOString() : ms;
        const value = good(sensor, timestamp, {
          temperature: 20 + (second % 13) / 4,
          humidity: 40 + (second % 5),
        });
        goods.push({ key: sensor, value });
        if (second % 50 === 0) goods.push({ key: sensor, value });
      }
    }
    const points = new Set<string>();
    for (const g of goods) {
      const parsed = parseReading(Buffer.from(g.value as string), now);
      expect(parsed.ok).toBe(true);
      if (parsed.ok) points.add(`${parsed.reading.sensorId}|${parsed.reading.time}`);
    }
    distinctGood = points.size;

    // One bad message after every few good ones, so they share batches and partitions.
    messages = [];
    const every = Math.max(1, Math.floor(goods.length / bad.length));
    let next = 0;
    for (let i = 0; i < goods.length; i++) {
      messages.push(goods[i] as Outgoing);
      if (i % every === every - 1 && next < bad.length) messages.push(bad[next++] as BadMessage);
    }
    while (next < bad.length) messages.push(bad[next++] as BadMessage);

    await produce(
      env,
      messages.map((m) => ({ key: m.key, value: m.value })),
    );
    const worker = await startWorker(env);
    try {
      await drained(env, messages.length, 180_000);
    } finally {
      await worker.stop();
    }
    dlq = await consumeAll(env, "deadLetter", bad.length, 60_000);
  }, 300_000);

  it("built a corpus that covers the contract's reasons", () => {
    expect(bad.length).toBeGreaterThan(300);
    const reasons = new Set(bad.map((b) => b.reason));
    const handWritten = new Set(bad.filter((b) => !b.key?.startsWith("bad-")).map((b) => b.reason));
    expect(handWritten, "hand-written future_timestamp cases").toContain("future_timestamp");
    for (const reason of DEAD_LETTER_REASONS.filter((r) => r !== "influx_rejected")) {
      expect(reasons, reason).toContain(reason);
    }
  });

  it("dead-letters every bad message exactly once, with its key, original bytes and parser's reason", () => {
    // Compared as base64 of the bytes; an empty value and a null one both come back as no bytes.
    const encode = (v: Buffer | null) => (v === null ? "" : v.toString("base64"));
    const got = dlq.map((m) => `${m.headers["dlq-reason"]}|${m.key}|${encode(m.value)}`).sort();
    const want = bad.map((b) => `${b.reason}|${b.key}|${encode(b.value)}`).sort();
    expect(got).toHaveLength(bad.length);
    expect(got).toEqual(want);
    const sources = new Set(
      dlq.map((m) => `${m.headers["dlq-source-partition"]}|${m.headers["dlq-source-offset"]}`),
    );
    expect(sources.size).toBe(bad.length);
  });

  it("stores every good reading: one point per sensor and timestamp", async () => {
    expect(distinctGood).toBe(600 * SENSORS.length);
    expect(await countPoints(env, "readings", "temperature")).toBe(distinctGood);
    expect(await countPoints(env, "readings", "humidity")).toBe(distinctGood);
  });

  it("committed every offset of the raw topic", async () => {
    await drained(env, messages.length, 10_000);
  });
});
