/** The opaque cursor round-trips, rejects anything it did not produce, and reaches Flux only as values. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { afterPosition, decodeCursor, encodeCursor } from "../../api/pagination.js";
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

  it("puts the position into Flux as escaped string and time literals", () => {
    const text = afterPosition(["sensor_id", "field"], {
      t: Date.UTC(2026, 0, 1),
      k: ['a") |> drop() //', "b\nc"],
    }).toString();
    expect(text).toBe(
      '|> filter(fn: (r) => r._time > time(v: "2026-01-01T00:00:00.000Z") or (r._time == time(v: "2026-01-01T00:00:00.000Z") and (r.sensor_id > "a\\") |> drop() //" or (r.sensor_id == "a\\") |> drop() //" and r.field > "b\\nc"))))',
    );
  });
});
