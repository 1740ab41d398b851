/** The opaque cursor round-trips, rejects anything it did not produce, and reaches Flux only as values. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { comparePositions, compareText, decodeCursor, encodeCursor } from "../../api/pagination.js";
import { ProblemError } from "../../api/problem.js";

describe("cursor", () => {
  it("decodes what it encoded", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 4_102_444_800_000 }),
        fc.array(fc.string({ maxLength: 40 }), { maxLength: 4 }),
        (t, k) => {
          expect(decodeCursor(encodeCursor({ t, k }), k.length)).toEqual({ t, k });
        },
      ),
    );
  });

  it.each([
    ["not base64 JSON", "%%%"],
    ["JSON of the wrong shape", Buffer.from('{"t":"x","k":[]}').toString("base64url")],
    ["extra properties", Buffer.from('{"t":1,"k":[],"x":1}').toString("base64url")],
    ["a negative time", Buffer.from('{"t":-5,"k":[]}').toString("base64url")],
  ])(
    "rejects %s with a 422 (well-formed text, not a position it issued) that says what to pass",
    (_what, cursor) => {
      try {
        decodeCursor(cursor, 0);
        expect.unreachable();
      } catch (err) {
        expect(err).toBeInstanceOf(ProblemError);
        expect((err as ProblemError).status).toBe(422);
        expect((err as ProblemError).detail).toContain("next_cursor");
      }
    },
  );

  it("rejects a cursor made for another key (a different endpoint)", () => {
    expect(() => decodeCursor(encodeCursor({ t: 1, k: ["a"] }), 3)).toThrow(ProblemError);
  });
});

describe("page order", () => {
  it("compares text as InfluxDB does: by UTF-8 bytes (code points), not UTF-16 units", () => {
    const text = fc.string({ unit: "grapheme", maxLength: 6 });
    fc.assert(
      fc.property(text, text, (a, b) => {
        expect(Math.sign(compareText(a, b))).toBe(Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))));
      }),
      { numRuns: 5000 },
    );
    // The case UTF-16 order gets wrong: U+FF21 (one unit 0xFF21) before U+1F600 (units 0xD83D 0xDE00).
    expect(compareText("\uFF21", "\u{1F600}")).toBeLessThan(0);
  });

  it("orders positions by time, then each key in turn", () => {
    expect(comparePositions({ t: 1, k: ["b", "a"] }, { t: 2, k: ["a", "a"] })).toBeLessThan(0);
    expect(comparePositions({ t: 2, k: ["a", "b"] }, { t: 2, k: ["a", "a"] })).toBeGreaterThan(0);
    expect(comparePositions({ t: 2, k: ["a", "a"] }, { t: 2, k: ["a", "a"] })).toBe(0);
  });
});
