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
  it("builds a balanced or-chain for a few values and one quoted regex for many", () => {
    const few = ["a", "b", "c", "d", "e", "f", "g", "h"];
    const chain = anyOf("sensor_id", few);
    for (const id of few) expect(chain).toContain(`r.sensor_id == "${id}"`);
    expect(chain.match(/ or /g)).toHaveLength(7);
    expect(depth(chain)).toBeLessThanOrEqual(3);
    expect(anyOf("sensor_id", ["a"])).toBe('(r.sensor_id == "a")');
    expect(anyOf("sensor_id", [])).toBe("");

    const odd = ["a b/c\\d", "x.y*z", "(p|q)", "[r]{2}^$", "ü€😀", "e+f?", "/", "\\"];
    const ids = [...odd, ...Array.from({ length: 1000 }, (_, i) => `sensor_${i}`)];
    const regex = anyOf("sensor_id", ids);
    const body = /^r\.sensor_id =~ \/(.*)\/$/s.exec(regex)?.[1] ?? "";
    expect(body, regex.slice(0, 80)).not.toBe("");
    // Every "/" inside the literal is escaped, so the literal ends where it should.
    expect(body.replace(/\\./gs, "")).not.toContain("/");
    const re = new RegExp(body, "u");
    for (const id of ids) expect(re.test(id), id).toBe(true);
    for (const near of ["a b/c\\dx", "xxy*z", "p", "(p|q", "rr", "sensor_1000", "sensor_", "", "\\\\"])
      expect(re.test(near), near).toBe(false);
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
