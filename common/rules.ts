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
/**
 * A rule's durations: above 0 and at most 7 days, in digits a unit can hold without spilling into
 * the next (ms below 10^8, s below 10^5, m below 10^4, h up to 168, d up to 7).
 */
const UP_TO_7D =
  "[1-9][0-9]{0,7}ms|[1-9][0-9]{0,4}s|[1-9][0-9]{0,3}m|([1-9][0-9]?|1[0-5][0-9]|16[0-8])h|[1-7]d";
const RULE_DURATION = `^(${UP_TO_7D})$`;
/** `for` may also be zero: fire on the first reading that meets the condition. */
const HOLD_DURATION = `^(0(ms|s|m|h|d)|${UP_TO_7D})$`;
/** Window conditions: at least 1s, so one window never holds a handful of milliseconds. */
const WINDOW_DURATION =
  "^([1-9][0-9]{3,7}ms|[1-9][0-9]{0,4}s|[1-9][0-9]{0,3}m|([1-9][0-9]?|1[0-5][0-9]|16[0-8])h|[1-7]d)$";
/**
 * Free text (rule names, tag values): no control characters (C0, DEL, C1), which would end up in
 * logs, webhook bodies and dashboards.
 */
export const TEXT_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Durations already parsed: rules ask for theirs on every reading they evaluate. */
const DURATIONS = new Map<string, number>();

export function durationToMs(text: string): number {
  const known = DURATIONS.get(text);
  if (known !== undefined) return known;
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  if (!match) throw new RangeError(`duration ${JSON.stringify(text)} is not valid: use e.g. 30s, 5m, 1h`);
  const ms = Number(match[1]) * (UNIT_MS[match[2] as string] as number);
  if (DURATIONS.size < 10_000) DURATIONS.set(text, ms);
  return ms;
}

const Duration = (description: string, pattern = RULE_DURATION) =>
  Type.String({ pattern, description, examples: ["30s", "5m"] });
const Field = Type.String({
  pattern: "^[A-Za-z][A-Za-z0-9_]{0,63}$",
  description: "The numeric field, e.g. temperature",
});
const Comparison = Type.Union([Type.Literal("above"), Type.Literal("below")]);

const TAG_KEY = "^[A-Za-z][A-Za-z0-9_]{0,63}$";

export type SensorSelector = Static<typeof SensorSelector>;
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
        // Keys are tag names (TAG_KEY), checked when the rule is saved (422): an OpenAPI 3.0
        // document cannot state a pattern for property names, so the schema does not either.
        tags: Type.Record(
          Type.String(),
          Type.String({ minLength: 1, maxLength: 256, pattern: TEXT_PATTERN }),
          {
            minProperties: 1,
            maxProperties: 16,
            description:
              "Tag name → value. Names: 1–64 characters of A-Z a-z 0-9 _, starting with a letter (otherwise 422)",
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
      window: Duration("Tumbling window size, aligned to the epoch (1s to 7d)", WINDOW_DURATION),
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

const WebhookUrl = Type.String({
  format: "uri",
  pattern: "^https?://",
  maxLength: 2048,
  description:
    "POSTed a JSON payload on every transition. Its host must not resolve to a loopback, link-local, private or metadata address unless listed in WEBHOOK_ALLOWED_HOSTS",
});
const WebhookSecret = Type.String({
  pattern: "^[!-~]{32,128}$",
  description:
    "The key of the HMAC-SHA256 signature in the X-Sensor-Signature header (32–128 visible ASCII characters); generated when not given",
});
const WebhookOptions = {
  timeout_ms: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000, default: 5000 })),
  max_attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 10, default: 5 })),
};

/** What an operator sends: the secret is optional (the API generates one). */
export const Webhook = Type.Object(
  { url: WebhookUrl, secret: Type.Optional(WebhookSecret), ...WebhookOptions },
  { additionalProperties: false },
);

/** What an operator sends (POST / PUT body). */
export const AlertRuleInput = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200, pattern: TEXT_PATTERN }),
    sensors: SensorSelector,
    field: Field,
    condition: Condition,
    severity: Severity,
    for: Type.Optional(
      Duration(
        "How long the condition must hold before the alert fires (event time), 0s to 7d; default 0s",
        HOLD_DURATION,
      ),
    ),
    hysteresis: Type.Optional(
      Type.Number({
        minimum: 0,
        description:
          "Threshold, rate and window conditions resolve only once the value is back past value ∓ hysteresis; default 0. Anomaly and deadman conditions ignore it",
      }),
    ),
    resolve_after: Type.Optional(
      Duration(
        "Anomaly conditions resolve after this long without a flag (up to 7d); default 5m. Other conditions ignore it",
      ),
    ),
    enabled: Type.Optional(Type.Boolean({ default: true })),
    webhook: Type.Optional(Webhook),
  },
  { additionalProperties: false },
);
export type AlertRuleInput = Static<typeof AlertRuleInput>;

const RuleIdentity = Type.Object({
  id: Type.String({ pattern: "^[A-Za-z0-9-]{1,64}$" }),
  version: Type.Integer({ minimum: 1 }),
  created_at: Type.String({ format: "date-time" }),
  updated_at: Type.String({ format: "date-time" }),
});

/** A stored rule: the input (with its webhook's secret) plus identity and version (the ETag). */
export const AlertRule = Type.Composite([
  Type.Omit(AlertRuleInput, ["webhook"]),
  Type.Object({ webhook: Type.Optional(Webhook) }),
  RuleIdentity,
]);
export type AlertRule = Static<typeof AlertRule>;

/**
 * A rule as the API answers it: the webhook's url and secret are there for admin tokens only (a URL
 * often carries a credential of its own).
 */
export const AlertRuleView = Type.Composite(
  [
    Type.Omit(AlertRuleInput, ["webhook"]),
    Type.Object({
      webhook: Type.Optional(
        Type.Object(
          { url: Type.Optional(WebhookUrl), secret: Type.Optional(WebhookSecret), ...WebhookOptions },
          {
            additionalProperties: false,
            description: "url and secret are present for admin tokens only",
          },
        ),
      ),
    }),
    RuleIdentity,
  ],
  { additionalProperties: false },
);
export type AlertRuleView = Static<typeof AlertRuleView>;

/** The first tag name of a tags selector that is not a valid tag name, if any. */
export function invalidTagKey(rule: { sensors: SensorSelector }): string | undefined {
  if (rule.sensors.type !== "tags") return undefined;
  const valid = new RegExp(TAG_KEY);
  return Object.keys(rule.sensors.tags).find((key) => !valid.test(key));
}

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
