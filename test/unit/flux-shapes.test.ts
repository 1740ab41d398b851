import { describe, expect, it } from "vitest";
import { and, anyOf, eq, lit, windowAggregate } from "../../common/flux-shapes.js";

function depth(text: string): number {
  let d = 0;
  let max = 0;
  for (const c of text) {
    if (c === "(") max = Math.max(max, ++d);
    else if (c === ")") d--;
  }
  return max;
}

describe("flux shapes", () => {
  it("builds an or-chain of any length as a balanced tree that Flux accepts", () => {
    const ids = Array.from({ length: 1000 }, (_, i) => `sensor_${i}`);
    const chain = anyOf("sensor_id", ids);
    for (const id of ids) expect(chain).toContain(`r.sensor_id == "${id}"`);
    expect(chain.match(/ or /g)).toHaveLength(999);
    expect(depth(chain)).toBeLessThanOrEqual(11);
    expect(anyOf("sensor_id", ["a"])).toBe('(r.sensor_id == "a")');
    expect(anyOf("sensor_id", [])).toBe("");
  });

  it("escapes user values into string literals that cannot become code", () => {
    expect(lit.str('a" or true or "')).toBe('"a\\" or true or \\""');
    // Flux string interpolation: "$" + "{" must not survive unescaped.
    const interpolation = ["x$", "{y}"].join("");
    expect(eq("field", lit.str(interpolation))).toBe(`r.field == "x\\$${"{"}y}"`);
  });

  it("keeps the aggregate directly after the filter, the only shape storage runs itself", () => {
    const q = windowAggregate(
      {
        bucket: lit.str("b"),
        start: lit.time(0),
        stop: lit.time(60_000),
        where: and(eq("_field", lit.str("t"))),
      },
      lit.duration(60_000),
      "sum",
    );
    expect(q.split("\n  |> ").map((stage) => stage.split("(")[0])).toEqual([
      "from",
      "range",
      "filter",
      "aggregateWindow",
      "keep",
    ]);
  });
});
