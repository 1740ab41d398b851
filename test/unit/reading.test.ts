import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DEAD_LETTER_REASONS,
  DEFAULT_LIMITS,
  type DeadLetterReason,
  MAX_FIELDS,
  MAX_TAGS,
  type ParseResult,
  parseReading,
  RESERVED_KEYS,
  type Reading,
} from "../../common/reading.js";

const NOW = Date.UTC(2024, 9, 27, 4, 0, 0);
const SEED_TIME = 1730000000000;

const REASONS = DEAD_LETTER_REASONS;

function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function parseText(text: string): ParseResult {
  return parseReading(bytes(text), NOW);
}

function parseObject(doc: unknown): ParseResult {
  return parseText(JSON.stringify(doc));
}

function reading(result: ParseResult): Reading {
  if (!result.ok) throw new Error(`expected a reading, got ${result.reason}: ${result.detail}`);
  return result.reading;
}

function reason(result: ParseResult): DeadLetterReason {
  if (result.ok) throw new Error(`expected a dead letter, got ${JSON.stringify(result.reading)}`);
  return result.reason;
}

// C0, DEL and C1 control characters: never part of a sensor id or tag value.
function hasControl(text: string): boolean {
  return [...text].some((c) => {
    const code = c.codePointAt(0) as number;
    return code < 0x20 || (code >= 0x7f && code <= 0x9f);
  });
}

const base = { sensor_id: "sensor_1", timestamp: SEED_TIME, temperature: 21.3 };

describe("parseReading: accepted readings", () => {
  it("parses the seed message unchanged", () => {
    const result = parseText('{"sensor_id":"sensor_1","temperature":21.3,"timestamp":1730000000000}');
    expect(result).toEqual({
      ok: true,
      reading: { sensorId: "sensor_1", time: SEED_TIME, fields: { temperature: 21.3 }, tags: {} },
    });
  });

  it("accepts RFC 3339 timestamps with Z, offsets, fractions and a space separator", () => {
    const cases: [string, number][] = [
      ["2024-10-27T03:33:20Z", SEED_TIME],
      ["2024-10-27T03:33:20.5Z", SEED_TIME + 500],
      ["2024-10-27T03:33:20.123456789Z", SEED_TIME + 123],
      ["2024-10-27T04:33:20+01:00", SEED_TIME],
      ["2024-10-26T23:33:20-04:00", SEED_TIME],
      ["2024-10-27 03:33:20Z", SEED_TIME],
      ["2024-10-27t03:33:20z", SEED_TIME],
    ];
    for (const [timestamp, time] of cases) {
      expect(reading(parseObject({ ...base, timestamp })).time, timestamp).toBe(time);
    }
  });

  it("accepts integer epoch milliseconds at both ends of the accepted range", () => {
    expect(reading(parseObject({ ...base, timestamp: DEFAULT_LIMITS.minTime })).time).toBe(
      DEFAULT_LIMITS.minTime,
    );
    const latest = NOW + DEFAULT_LIMITS.maxFutureMs;
    expect(reading(parseObject({ ...base, timestamp: latest })).time).toBe(latest);
  });

  it("separates numeric fields from string tags", () => {
    const result = parseObject({ ...base, humidity: 40, site: "north", floor: "2" });
    expect(reading(result)).toEqual({
      sensorId: "sensor_1",
      time: SEED_TIME,
      fields: { temperature: 21.3, humidity: 40 },
      tags: { site: "north", floor: "2" },
    });
  });

  it("accepts exactly the maximum number of fields and tags", () => {
    const doc: Record<string, unknown> = { sensor_id: "s", timestamp: SEED_TIME };
    for (let i = 0; i < MAX_FIELDS; i++) doc[`f${i}`] = i;
    for (let i = 0; i < MAX_TAGS; i++) doc[`t${i}`] = `v${i}`;
    const parsed = reading(parseObject(doc));
    expect(Object.keys(parsed.fields)).toHaveLength(MAX_FIELDS);
    expect(Object.keys(parsed.tags)).toHaveLength(MAX_TAGS);
  });

  it("accepts a message of exactly maxBytes", () => {
    const prefix = JSON.stringify(base).slice(0, -1);
    const padding = "x".repeat(DEFAULT_LIMITS.maxBytes - prefix.length - ',"pad":""}'.length);
    const text = `${prefix},"pad":"${padding}"}`;
    expect(bytes(text).length).toBe(DEFAULT_LIMITS.maxBytes);
    // The padding tag is longer than a tag may be, which proves the size check let it through.
    expect(reason(parseText(text))).toBe("invalid_tag_value");
  });
});

describe("parseReading: every dead-letter reason", () => {
  const cases: [string, Uint8Array | null, DeadLetterReason][] = [
    ["null value", null, "empty"],
    ["zero bytes", new Uint8Array(0), "empty"],
    ["one byte over the limit", new Uint8Array(DEFAULT_LIMITS.maxBytes + 1).fill(0x20), "oversize"],
    ["a lone continuation byte", Uint8Array.from([0x7b, 0x80, 0x7d]), "invalid_utf8"],
    ["a truncated 2-byte sequence", Uint8Array.from([0x22, 0xc3, 0x22]), "invalid_utf8"],
    ["an encoded surrogate", Uint8Array.from([0xed, 0xa0, 0x80]), "invalid_utf8"],
    ["plain text", bytes("not json at all"), "invalid_json"],
    ["a truncated object", bytes('{"sensor_id":"s"'), "invalid_json"],
    ["an array", bytes("[1,2,3]"), "not_an_object"],
    ["null", bytes("null"), "not_an_object"],
    ["a number", bytes("42"), "not_an_object"],
    ["a string", bytes('"sensor_1"'), "not_an_object"],
  ];
  for (const [name, value, expected] of cases) {
    it(`${expected}: ${name}`, () => {
      expect(reason(parseReading(value, NOW))).toBe(expected);
    });
  }

  const docs: [string, Record<string, unknown>, DeadLetterReason][] = [
    ["no sensor_id", { timestamp: SEED_TIME, temperature: 1 }, "missing_sensor_id"],
    ["numeric sensor_id", { ...base, sensor_id: 1 }, "invalid_sensor_id"],
    ["empty sensor_id", { ...base, sensor_id: "" }, "invalid_sensor_id"],
    ["sensor_id with a control character", { ...base, sensor_id: "sensor\u00011" }, "invalid_sensor_id"],
    ["sensor_id with a C1 control character", { ...base, sensor_id: "sensor\u00851" }, "invalid_sensor_id"],
    ["sensor_id ending with a backslash", { ...base, sensor_id: "C:\\data\\" }, "invalid_sensor_id"],
    ["sensor_id of 257 bytes", { ...base, sensor_id: `${"é".repeat(128)}s` }, "invalid_sensor_id"],
    ["null sensor_id", { ...base, sensor_id: null }, "invalid_sensor_id"],
    ["no timestamp", { sensor_id: "s", temperature: 1 }, "missing_timestamp"],
    ["fractional epoch ms", { ...base, timestamp: SEED_TIME + 0.5 }, "invalid_timestamp"],
    ["epoch ms as a string", { ...base, timestamp: String(SEED_TIME) }, "invalid_timestamp"],
    ["a word", { ...base, timestamp: "yesterday" }, "invalid_timestamp"],
    ["RFC 3339 without a zone", { ...base, timestamp: "2024-10-27T03:33:20" }, "invalid_timestamp"],
    ["a date without a time", { ...base, timestamp: "2024-10-27" }, "invalid_timestamp"],
    ["month 13", { ...base, timestamp: "2024-13-01T00:00:00Z" }, "invalid_timestamp"],
    ["hour 25", { ...base, timestamp: "2024-10-27T25:00:00Z" }, "invalid_timestamp"],
    ["a boolean timestamp", { ...base, timestamp: true }, "invalid_timestamp"],
    ["null timestamp", { ...base, timestamp: null }, "invalid_timestamp"],
    ["1 ms before 2000", { ...base, timestamp: DEFAULT_LIMITS.minTime - 1 }, "timestamp_out_of_range"],
    ["epoch seconds", { ...base, timestamp: 1730000000 }, "timestamp_out_of_range"],
    ["1999 as RFC 3339", { ...base, timestamp: "1999-12-31T23:59:59Z" }, "timestamp_out_of_range"],
    [
      "1 ms past the future bound",
      { ...base, timestamp: NOW + DEFAULT_LIMITS.maxFutureMs + 1 },
      "future_timestamp",
    ],
    ["year 9999", { ...base, timestamp: "9999-01-01T00:00:00Z" }, "future_timestamp"],
    ["no fields at all", { sensor_id: "s", timestamp: SEED_TIME }, "no_fields"],
    ["only tags", { sensor_id: "s", timestamp: SEED_TIME, site: "north" }, "no_fields"],
    ["a key with a dash", { ...base, "air-temp": 1 }, "invalid_key"],
    ["a key starting with a digit", { ...base, "1st": 1 }, "invalid_key"],
    ["a key starting with _", { ...base, __proto: 1 }, "invalid_key"],
    ["an empty key", { ...base, "": 1 }, "invalid_key"],
    ["a key of 65 characters", { ...base, [`k${"x".repeat(64)}`]: 1 }, "invalid_key"],
    ["reserved key time", { ...base, time: 1 }, "reserved_key"],
    ["reserved key measurement", { ...base, measurement: "m" }, "reserved_key"],
    ["a boolean value", { ...base, ok: true }, "invalid_value_type"],
    ["a null value", { ...base, humidity: null }, "invalid_value_type"],
    ["an object value", { ...base, nested: { a: 1 } }, "invalid_value_type"],
    ["an array value", { ...base, list: [1] }, "invalid_value_type"],
    ["an empty tag", { ...base, site: "" }, "invalid_tag_value"],
    ["a tag with a newline", { ...base, site: "a\nb" }, "invalid_tag_value"],
    ["a tag with DEL", { ...base, site: "a\u007fb" }, "invalid_tag_value"],
    ["a tag of 257 characters", { ...base, site: "x".repeat(257) }, "invalid_tag_value"],
  ];
  for (const [name, doc, expected] of docs) {
    it(`${expected}: ${name}`, () => {
      expect(reason(parseObject(doc))).toBe(expected);
    });
  }

  it("every reserved key is rejected", () => {
    for (const key of RESERVED_KEYS)
      expect(reason(parseObject({ ...base, [key]: 1 })), key).toBe("reserved_key");
  });

  it("field_out_of_range: magnitudes above 1e100 are rejected, 1e100 itself is accepted", () => {
    expect(reason(parseText('{"sensor_id":"s","timestamp":1730000000000,"temperature":1.0000001e100}'))).toBe(
      "field_out_of_range",
    );
    expect(reason(parseText('{"sensor_id":"s","timestamp":1730000000000,"temperature":-1e308}'))).toBe(
      "field_out_of_range",
    );
    expect(parseText('{"sensor_id":"s","timestamp":1730000000000,"temperature":1e100}').ok).toBe(true);
  });

  it("invalid_timestamp: calendar dates that do not exist", () => {
    for (const t of [
      "2024-02-30T00:00:00Z",
      "2023-02-29T00:00:00Z",
      "2024-04-31T00:00:00Z",
      "2024-01-01T24:00:00Z",
    ]) {
      expect(reason(parseText(`{"sensor_id":"s","timestamp":"${t}","temperature":1}`))).toBe(
        "invalid_timestamp",
      );
    }
    expect(parseText('{"sensor_id":"s","timestamp":"2024-02-29T23:59:59Z","temperature":1}').ok).toBe(true);
  });

  it("non_finite_field: 1e400 overflows to Infinity and is rejected", () => {
    const result = parseText('{"sensor_id":"s","timestamp":1730000000000,"temperature":1e400}');
    expect(reason(result)).toBe("non_finite_field");
    expect(reason(parseText('{"sensor_id":"s","timestamp":1730000000000,"t":-1e400}'))).toBe(
      "non_finite_field",
    );
  });

  it("too_many_keys: one field or one tag over the limit", () => {
    const fields: Record<string, unknown> = { sensor_id: "s", timestamp: SEED_TIME };
    for (let i = 0; i <= MAX_FIELDS; i++) fields[`f${i}`] = i;
    expect(reason(parseObject(fields))).toBe("too_many_keys");

    const tags: Record<string, unknown> = { ...base };
    for (let i = 0; i <= MAX_TAGS; i++) tags[`t${i}`] = "v";
    expect(reason(parseObject(tags))).toBe("too_many_keys");
  });

  it("accepts the sensor ids real fleets use: spaces, slashes, backslashes, non-ASCII, up to 256 bytes", () => {
    for (const id of [
      "sensor_1",
      "_s",
      "Hall 3 / north wall",
      "C:\\data\\probe",
      "温度计-1",
      "Zürich Bahnhofstraße",
      "a,b=c d",
      " ",
      "é".repeat(128),
      "s".repeat(256),
    ]) {
      expect(reading(parseObject({ ...base, sensor_id: id })).sensorId, id).toBe(id);
    }
  });

  it("a timestamp exactly at the future bound is accepted; the detail of one past it names the bound", () => {
    expect(reading(parseObject({ ...base, timestamp: NOW + DEFAULT_LIMITS.maxFutureMs })).time).toBe(
      NOW + DEFAULT_LIMITS.maxFutureMs,
    );
    const ahead = parseObject({ ...base, timestamp: NOW + 3_600_000 });
    expect(ahead.ok ? "" : ahead.reason).toBe("future_timestamp");
    expect(ahead.ok ? "" : ahead.detail).toContain("3600 s ahead of the worker's clock");
    expect(ahead.ok ? "" : ahead.detail).toContain("READING_MAX_FUTURE_MS");
  });

  it("the detail names the offending key or value", () => {
    const bad = parseObject({ ...base, humidity: null });
    expect(bad.ok ? "" : bad.detail).toContain("humidity");
    const id = parseObject({ ...base, sensor_id: "bad id\\" });
    expect(id.ok ? "" : id.detail).toContain(JSON.stringify("bad id\\"));
  });

  it("all reasons but influx_rejected are produced by the cases above", () => {
    const produced = new Set<DeadLetterReason>([
      ...cases.map((c) => c[2]),
      ...docs.map((d) => d[2]),
      "non_finite_field",
      "field_out_of_range",
      "too_many_keys",
    ]);
    expect([...produced].sort()).toEqual(REASONS.filter((r) => r !== "influx_rejected").sort());
  });
});

describe("parseReading: properties", () => {
  function checkOutcome(result: ParseResult): void {
    if (result.ok) {
      const values = Object.values(result.reading.fields);
      expect(values.length).toBeGreaterThanOrEqual(1);
      for (const v of values) expect(Number.isFinite(v)).toBe(true);
    } else {
      expect(REASONS).toContain(result.reason);
      expect(result.detail.length).toBeGreaterThan(0);
    }
  }

  it("never throws on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (value) => {
        checkOutcome(parseReading(value, NOW));
      }),
      { numRuns: 500 },
    );
  });

  it("never throws on arbitrary JSON values", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (doc) => {
        checkOutcome(parseObject(doc));
      }),
      { numRuns: 500 },
    );
  });

  it("never throws on objects with a valid sensor_id and timestamp and arbitrary other members", () => {
    const member = fc.dictionary(fc.string({ maxLength: 70 }), fc.jsonValue({ maxDepth: 2 }), {
      maxKeys: 40,
    });
    fc.assert(
      fc.property(member, fc.constantFrom<unknown>(SEED_TIME, "2024-10-27T03:33:20Z", 0, "x"), (rest, ts) => {
        checkOutcome(parseObject({ sensor_id: "sensor_1", timestamp: ts, ...rest }));
      }),
      { numRuns: 500 },
    );
  });

  const keyArb = fc
    .stringMatching(/^[A-Za-z][A-Za-z0-9_]{0,63}$/)
    .filter((k) => !RESERVED_KEYS.has(k) && k !== "sensor_id" && k !== "timestamp");
  const tagValueArb = fc
    .string({ unit: "binary", minLength: 1, maxLength: 40 })
    .filter((s) => s.length <= 256 && !hasControl(s) && !s.endsWith("\\"));
  const fieldValueArb = fc
    .double({ noNaN: true, min: -1e100, max: 1e100 })
    // JSON writes -0 as 0.
    .map((x) => (x === 0 ? 0 : x));
  const validReadingArb = fc
    .record({
      sensorId: fc
        .string({ unit: "binary", minLength: 1, maxLength: 80 })
        .filter((s) => !hasControl(s) && !s.endsWith("\\") && new TextEncoder().encode(s).length <= 256),
      time: fc.integer({ min: DEFAULT_LIMITS.minTime, max: NOW + DEFAULT_LIMITS.maxFutureMs }),
      keys: fc.uniqueArray(keyArb, { minLength: 1, maxLength: MAX_FIELDS + MAX_TAGS }),
      fieldCount: fc.integer({ min: 1, max: MAX_FIELDS }),
      values: fc.array(fieldValueArb, { minLength: MAX_FIELDS, maxLength: MAX_FIELDS }),
      tagValues: fc.array(tagValueArb, { minLength: MAX_TAGS, maxLength: MAX_TAGS }),
      rfc3339: fc.boolean(),
    })
    .map(({ sensorId, time, keys, fieldCount, values, tagValues, rfc3339 }) => {
      const nFields = Math.min(fieldCount, keys.length);
      const fields: Record<string, number> = {};
      const tags: Record<string, string> = {};
      keys.slice(0, nFields).forEach((k, i) => {
        fields[k] = values[i] as number;
      });
      keys.slice(nFields, nFields + MAX_TAGS).forEach((k, i) => {
        tags[k] = tagValues[i] as string;
      });
      return { sensorId, time, fields, tags, rfc3339 };
    });

  it("round-trips any valid reading (fields, tags, time)", () => {
    fc.assert(
      fc.property(validReadingArb, ({ sensorId, time, fields, tags, rfc3339 }) => {
        const doc = {
          ...tags,
          sensor_id: sensorId,
          ...fields,
          timestamp: rfc3339 ? new Date(time).toISOString() : time,
        };
        expect(reading(parseObject(doc))).toEqual({ sensorId, time, fields, tags });
      }),
      { numRuns: 300 },
    );
  });
});
