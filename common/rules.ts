/**
 * Alert rules: the schema (TypeBox, so the API validates, types and documents with the same
 * object) and the helpers the worker needs. Rules live in the compacted topic `alert-rules`,
 * key = rule id, value = the rule as JSON, tombstone = deleted.
 */
import { FormatRegistry, type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { SENSOR_ID_PATTERN } from "./reading.js";

// TypeBox's Value.Check knows no formats by default; the API's validator (ajv-formats) does.
if (!FormatRegistry.Has("date-time")) FormatRegistry.Set("date-time", (v) => !Number.isNaN(Date.parse(v)));
if (!FormatRegistry.Has("uri")) {
  FormatRegistry.Set("uri", (v) => {
    try {
      new URL(v);
      return true;
    } catch {
      return false;
    }
  });
}

export const DURATION = "^[0-9]{1,9}(ms|s|m|h|d)$";
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function durationToMs(text: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  if (!match) throw new RangeError(`duration ${JSON.stringify(text)} is not valid: use e.g. 30s, 5m, 1h`);
  return Number(match[1]) * (UNIT_MS[match[2] as string] as number);
}

const Duration = (description: string) =>
  Type.String({ pattern: DURATION, description, examples: ["30s", "5m"] });
const Field = Type.String({
  pattern: "^[A-Za-z][A-Za-z0-9_]{0,63}$",
  description: "The numeric field, e.g. temperature",
});
const Comparison = Type.Union([Type.Literal("above"), Type.Literal("below")]);

export const SensorSelector = Type.Union(
  [
    Type.Object({ type: Type.Literal("all") }, { additionalProperties: false }),
    Type.Object(
      {
        type: Type.Literal("ids"),
        ids: Type.Array(Type.String({ pattern: SENSOR_ID_PATTERN.source }), {
          minItems: 1,
          maxItems: 1000,
          uniqueItems: true,
        }),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        type: Type.Literal("tags"),
        tags: Type.Record(
          Type.String({ pattern: "^[A-Za-z][A-Za-z0-9_]{0,63}$" }),
          Type.String({ minLength: 1, maxLength: 256 }),
          {
            minProperties: 1,
          },
        ),
      },
      { additionalProperties: false },
    ),
  ],
  {
    description:
      "Which sensors the rule watches: all, a list of ids, or those whose readings carry all the given tags",
  },
);

export const Condition = Type.Union([
  Type.Object(
    { type: Type.Literal("threshold"), op: Comparison, value: Type.Number() },
    { additionalProperties: false, description: "The reading's value is above/below `value`" },
  ),
  Type.Object(
    {
      type: Type.Literal("rate_of_change"),
      per: Duration("Rate unit, e.g. 1m: change per minute"),
      op: Comparison,
      value: Type.Number(),
    },
    {
      additionalProperties: false,
      description: "The change since the previous reading, scaled to `per`, is above/below `value`",
    },
  ),
  Type.Object(
    {
      type: Type.Literal("anomaly"),
      detectors: Type.Optional(
        Type.Array(Type.Union([Type.Literal("delta"), Type.Literal("zscore"), Type.Literal("ewma")]), {
          minItems: 1,
          uniqueItems: true,
        }),
      ),
    },
    { additionalProperties: false, description: "One of the ingest detectors flagged the reading" },
  ),
  Type.Object(
    { type: Type.Literal("deadman"), after: Duration("Silence that counts as dead") },
    { additionalProperties: false, description: "No reading from the sensor for `after` (event time)" },
  ),
  Type.Object(
    {
      type: Type.Literal("window"),
      fn: Type.Union([Type.Literal("mean"), Type.Literal("min"), Type.Literal("max"), Type.Literal("count")]),
      window: Duration("Tumbling window size, aligned to the epoch"),
      op: Comparison,
      value: Type.Number(),
    },
    {
      additionalProperties: false,
      description: "The aggregate of a closed event-time window is above/below `value`",
    },
  ),
]);
export type Condition = Static<typeof Condition>;

export const Severity = Type.Union([Type.Literal("info"), Type.Literal("warning"), Type.Literal("critical")]);

export const Webhook = Type.Object(
  {
    url: Type.String({
      format: "uri",
      pattern: "^https?://",
      maxLength: 2048,
      description: "POSTed a JSON payload on every transition",
    }),
    timeout_ms: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000, default: 5000 })),
    max_attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 10, default: 5 })),
  },
  { additionalProperties: false },
);

/** What an operator sends (POST / PUT body). */
export const AlertRuleInput = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    sensors: SensorSelector,
    field: Field,
    condition: Condition,
    severity: Severity,
    for: Type.Optional(
      Duration("How long the condition must hold before the alert fires (event time); default 0s"),
    ),
    hysteresis: Type.Optional(
      Type.Number({
        minimum: 0,
        description:
          "Threshold, rate and window conditions resolve only once the value is back past value ∓ hysteresis; default 0",
      }),
    ),
    resolve_after: Type.Optional(
      Duration("Anomaly conditions resolve after this long without a flag; default 5m"),
    ),
    enabled: Type.Optional(Type.Boolean({ default: true })),
    webhook: Type.Optional(Webhook),
  },
  { additionalProperties: false },
);
export type AlertRuleInput = Static<typeof AlertRuleInput>;

/** A stored rule: the input plus identity and version (the ETag). */
export const AlertRule = Type.Composite([
  AlertRuleInput,
  Type.Object({
    id: Type.String(),
    version: Type.Integer({ minimum: 1 }),
    created_at: Type.String({ format: "date-time" }),
    updated_at: Type.String({ format: "date-time" }),
  }),
]);
export type AlertRule = Static<typeof AlertRule>;

/** Parses a record from the alert-rules topic; a value that is not a valid rule is ignored (returns null). */
export function parseStoredRule(text: string): AlertRule | null {
  try {
    const value = JSON.parse(text) as unknown;
    return Value.Check(AlertRule, value) ? value : null;
  } catch {
    return null;
  }
}

export function selects(rule: AlertRule, sensorId: string, tags: Record<string, string>): boolean {
  const s = rule.sensors;
  if (s.type === "all") return true;
  if (s.type === "ids") return s.ids.includes(sensorId);
  for (const key in s.tags) if (tags[key] !== s.tags[key]) return false;
  return true;
}
