import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TimerQueue } from "../../ingest/timers.js";

describe("TimerQueue", () => {
  it("hands out exactly the keys whose latest deadline has passed, earliest first", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({
              op: fc.constant("set" as const),
              key: fc.constantFrom("a", "b", "c", "d"),
              due: fc.nat(100),
            }),
            fc.record({ op: fc.constant("delete" as const), key: fc.constantFrom("a", "b", "c", "d") }),
            fc.record({ op: fc.constant("due" as const), now: fc.nat(100) }),
          ),
          { maxLength: 60 },
        ),
        (ops) => {
          const queue = new TimerQueue();
          const model = new Map<string, number>();
          for (const op of ops) {
            if (op.op === "set") {
              queue.set(op.key, op.due);
              model.set(op.key, op.due);
            } else if (op.op === "delete") {
              queue.delete(op.key);
              model.delete(op.key);
            } else {
              const expected = [...model]
                .filter(([, due]) => due <= op.now)
                .sort((x, y) => x[1] - y[1] || (x[0] < y[0] ? -1 : 1))
                .map(([key]) => key);
              for (const key of expected) model.delete(key);
              expect(queue.due(op.now)).toEqual(expected);
              const earliest = Math.min(...model.values());
              expect(queue.next()).toBe(model.size === 0 ? undefined : earliest);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
