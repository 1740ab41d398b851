/**
 * Time parameters: RFC 3339 dates that exist, epoch milliseconds, relative durations; everything
 * else (a date like February 30th, epoch seconds) refused with the accepted forms.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { epochMs, iso, parseDateTime, parseRange, parseTime } from "../../api/params.js";

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const DAY = 86_400_000;

describe("parseTime", () => {
  it.each([
    ["2024-02-29T00:00:00Z", Date.UTC(2024, 1, 29)],
    ["2024-10-27T03:33:20.5Z", Date.UTC(2024, 9, 27, 3, 33, 20, 500)],
    ["2024-10-27T05:33:20+02:00", Date.UTC(2024, 9, 27, 3, 33, 20)],
    ["2024-10-27t03:33:20z", Date.UTC(2024, 9, 27, 3, 33, 20)],
    ["2016-12-31T23:59:60Z", Date.UTC(2016, 11, 31, 23, 59, 59, 999)],
    ["1730000000000", 1730000000000],
    ["-1h", NOW - 3_600_000],
    ["-90s", NOW - 90_000],
  ])("%s → its instant", (text, expected) => {
    expect(parseTime(text, "start", NOW)).toBe(expected);
  });

  it.each([
    ["2024-02-30T00:00:00Z", "February 30th does not exist"],
    ["2023-02-29T00:00:00Z", "2023 is not a leap year"],
    ["2024-04-31T00:00:00Z", "April has 30 days"],
    ["2024-13-01T00:00:00Z", "no 13th month"],
    ["2024-01-01T24:00:00Z", "no hour 24"],
    ["2024-01-01T00:00:00", "no zone: ambiguous"],
    ["2024-01-01", "a date without a time"],
    ["1700000000", "10 digits: epoch seconds, not milliseconds"],
    ["17000000000", "11 digits: ambiguous"],
    ["yesterday", "not a time"],
    ["-1w", "weeks are not a unit"],
  ])("%s is refused (%s) with the accepted forms", (text) => {
    expect(() => parseTime(text, "start", NOW)).toThrow(/start=.* is not valid: use RFC 3339/);
    expect(() => parseTime(text, "start", NOW)).toThrow(/epoch milliseconds \(12–13 digits/);
  });

  it("agrees with the schema's date-time format on calendar validity", () => {
    expect(parseDateTime("2000-02-29T12:00:00Z")).toBe(Date.UTC(2000, 1, 29, 12));
    expect(parseDateTime("1900-02-29T12:00:00Z")).toBeUndefined();
    expect(parseDateTime("2024-06-31T00:00:00Z")).toBeUndefined();
  });
});

describe("parseRange", () => {
  it("takes stop alone: the hour before it", () => {
    const stop = NOW - 2 * DAY;
    expect(parseRange({ stop: String(stop) }, 31 * DAY, NOW)).toEqual({ start: stop - 3_600_000, stop });
  });

  it("refuses an empty range with 422 and says why", () => {
    expect(() => parseRange({ start: "-1h", stop: "-1h" }, 31 * DAY, NOW)).toThrow(
      expect.objectContaining({ status: 422, message: expect.stringContaining("is empty") }),
    );
  });
});

describe("iso", () => {
  it("writes any epoch ms exactly as Date#toISOString does", () => {
    for (const ms of [
      0, 1, 999, 86_399_999, 86_400_000, 951_782_400_000, 4_107_542_400_000, 253_402_300_799_999,
    ]) {
      expect(iso(ms)).toBe(new Date(ms).toISOString());
    }
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 253_402_300_799_999 }), (ms) => {
        expect(iso(ms)).toBe(new Date(ms).toISOString());
      }),
      { numRuns: 20_000 },
    );
    // Outside four-digit years and whole ms it is toISOString itself.
    for (const ms of [-1, -62_135_596_800_000, 253_402_300_800_000, 1.5]) {
      expect(iso(ms)).toBe(new Date(ms).toISOString());
    }
  });
});

describe("epochMs", () => {
  it("reads InfluxDB's RFC 3339 times exactly as Date.parse does, to the millisecond", () => {
    const fraction = fc.constantFrom("", ".", ".5", ".12", ".123", ".123456", ".123456789");
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 253_402_300_799_999 }), fraction, (ms, frac) => {
        const whole = new Date(Math.floor(ms / 1000) * 1000).toISOString().slice(0, 19);
        const time = frac === "." ? `${whole}Z` : `${whole}${frac}Z`;
        expect(epochMs(time), time).toBe(Date.parse(time));
      }),
      { numRuns: 20_000 },
    );
    for (const time of [
      "1970-01-01T00:00:00Z",
      "2000-02-29T23:59:59.999Z",
      "2100-03-01T00:00:00Z",
      "2026-12-31T23:59:59.999999999Z",
    ])
      expect(epochMs(time), time).toBe(Date.parse(time));
    // Other forms (an offset) go to Date.parse.
    expect(epochMs("2026-01-01T01:00:00+01:00")).toBe(Date.UTC(2026, 0, 1));
  });
});
