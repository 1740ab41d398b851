/**
 * Property-based fuzzing of every operation, driven by the API's own OpenAPI document, against the
 * real API over a bucket the real worker filled. Parameters of every GET, and the request bodies of
 * every POST/PUT/PATCH, are generated from their declared schemas — values that fit and values that
 * do not — and every answer must keep the document's promises: never a 5xx, a 2xx body valid
 * against the declared response schema, a 4xx as problem details.
 */
import { Ajv, type ValidateFunction } from "ajv";
import addFormatsModule from "ajv-formats";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SeedReading, seedReadings } from "../support/api-helpers.js";
import { ADMIN_TOKEN, type Env, isolatedEnv, READ_TOKEN, sendJson, startApi } from "../support/harness.js";
import {
  type DocumentedOperation,
  fetchOpenApi,
  fillPath,
  fittingBody,
  misfittingBody,
  type OpenApiDocument,
  operations,
  type Parameter,
  type ParameterSchema,
  pointer,
  requestBody,
  resolve,
} from "./openapi.js";

const RUNS_PER_OPERATION = 30;
const SEED = 20_261_124;
const SENSORS = ["sensor_1", "sensor_2", "sensor_3"];

/** Values a real client would send; each parameter uses those its schema accepts. */
const REALISTIC = [...SENSORS, "temperature", "humidity", "1m", "5m", "30s", "10s", "1h", "2h", "1d"];
const NASTY = [
  "",
  " ",
  "-",
  "0",
  "-1",
  "1e999",
  "NaN",
  "null",
  "true",
  "[]",
  "%",
  "%00",
  "\u0000",
  "💥",
  "é",
  "a b",
  "' or '1'='1",
  '") |> drop(columns: ["_value"]) //',
  "{{x}}",
  "x".repeat(3000),
  "-99999999999d",
  "99999999999999999999",
  "2024-02-30T00:00:00Z",
  "-1h-1h",
];

type Value = string | string[];

interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
}

function timeLike(now: number): fc.Arbitrary<string> {
  return fc.oneof(
    fc.tuple(fc.integer({ min: 1, max: 72 }), fc.constantFrom("m", "h")).map(([n, unit]) => `-${n}${unit}`),
    fc.integer({ min: now - 3 * 86_400_000, max: now }).map(String),
    fc.integer({ min: now - 3 * 86_400_000, max: now }).map((ms) => new Date(ms).toISOString()),
  );
}

/** A single value (string, as it travels in a URL) that the schema accepts. */
function fittingScalar(schema: ParameterSchema, parameter: Parameter, now: number): fc.Arbitrary<string> {
  if (schema.enum) return fc.constantFrom(...schema.enum.map(String));
  if (schema.type === "integer" || schema.type === "number") {
    return fc.integer({ min: schema.minimum ?? -1e9, max: schema.maximum ?? 1e9 }).map(String);
  }
  const examples = Object.values(parameter.examples ?? {}).map((e) => String(e.value));
  const defaults = typeof schema.default === "string" ? [schema.default] : [];
  const fitsLength = (s: string) =>
    s.length >= (schema.minLength ?? 0) && s.length <= (schema.maxLength ?? 2048);
  if (schema.pattern) {
    const re = new RegExp(schema.pattern);
    const realistic = [...REALISTIC, ...examples, ...defaults].filter((s) => re.test(s) && fitsLength(s));
    const generated = fc.stringMatching(re).filter(fitsLength);
    return realistic.length > 0 ? fc.oneof(fc.constantFrom(...realistic), generated) : generated;
  }
  const known = [...examples, ...defaults];
  return fc.oneof(
    ...(known.length > 0 ? [fc.constantFrom(...known)] : []),
    timeLike(now),
    fc.string({ maxLength: Math.min(schema.maxLength ?? 64, 64) }),
  );
}

/** A value the schema most likely rejects (the API may still accept some: they are checked the same way). */
function misfittingScalar(schema: ParameterSchema): fc.Arbitrary<string> {
  const choices: fc.Arbitrary<string>[] = [
    fc.constantFrom(...NASTY),
    fc.string({ unit: "binary", maxLength: 40 }),
    fc.integer().map(String),
    fc.double().map(String),
  ];
  if (schema.minimum !== undefined) {
    choices.push(fc.integer({ min: -1e12, max: schema.minimum - 1 }).map(String));
  }
  if (schema.maximum !== undefined) {
    choices.push(fc.integer({ min: schema.maximum + 1, max: 1e12 }).map(String));
  }
  if (schema.maxLength !== undefined) {
    choices.push(
      fc.integer({ min: schema.maxLength + 1, max: schema.maxLength + 100 }).map((n) => "a".repeat(n)),
    );
  }
  return fc.oneof(...choices);
}

function fitting(parameter: Parameter, now: number): fc.Arbitrary<Value> {
  const { schema } = parameter;
  if (schema.type === "array") {
    const items = schema.items ?? {};
    return fc.array(fittingScalar(items, parameter, now), {
      minLength: Math.max(1, schema.minItems ?? 1),
      maxLength: Math.min(schema.maxItems ?? 4, 4),
    });
  }
  return fittingScalar(schema, parameter, now);
}

function misfitting(parameter: Parameter, now: number): fc.Arbitrary<Value> {
  const { schema } = parameter;
  if (schema.type === "array") {
    const items = schema.items ?? {};
    const tooMany =
      schema.maxItems === undefined
        ? []
        : [
            fc.array(fittingScalar(items, parameter, now), {
              minLength: schema.maxItems + 1,
              maxLength: schema.maxItems + 3,
            }),
          ];
    return fc.oneof(fc.array(misfittingScalar(items), { minLength: 1, maxLength: 3 }), ...tooMany);
  }
  return misfittingScalar(schema);
}

/** Per parameter: left out (when optional), a fitting value, or a misfitting one. */
function requestArbitrary(
  op: DocumentedOperation,
  now: number,
): fc.Arbitrary<Record<string, Value | undefined>> {
  const parameters = (op.operation.parameters ?? []).filter((p) => p.in === "query" || p.in === "path");
  const shape: Record<string, fc.Arbitrary<Value | undefined>> = {};
  for (const p of parameters) {
    const options: fc.Arbitrary<Value | undefined>[] = [fitting(p, now), fitting(p, now), misfitting(p, now)];
    if (!p.required) options.push(fc.constant(undefined));
    let arb = fc.oneof(...options);
    // "." and ".." are URL path syntax (the client resolves them away), not values the API sees.
    if (p.in === "path") arb = arb.filter((v) => v !== undefined && v !== "." && v !== "..");
    shape[p.name] = arb;
  }
  return fc.record(shape);
}

function urlFor(apiUrl: string, op: DocumentedOperation, values: Record<string, Value | undefined>): string {
  const pathValues: Record<string, string> = {};
  const query = new URLSearchParams();
  for (const p of op.operation.parameters ?? []) {
    const value = values[p.name];
    if (value === undefined) continue;
    if (p.in === "path") pathValues[p.name] = String(value);
    else if (p.in === "query") for (const v of [value].flat()) query.append(p.name, v);
  }
  const qs = query.toString();
  return `${apiUrl}${fillPath(op.path, pathValues)}${qs ? `?${qs}` : ""}`;
}

describe("API fuzzing from its OpenAPI document", () => {
  let env: Env;
  let api: Awaited<ReturnType<typeof startApi>>;
  let doc: OpenApiDocument;
  let ajv: Ajv;
  let ruleId: string;
  const validators = new Map<string, ValidateFunction>();

  /** The validator of the response schema the document declares for this status and media type. */
  function responseValidator(op: DocumentedOperation, status: number, mediaType: string): ValidateFunction {
    const key = `${op.method} ${op.path} ${status} ${mediaType}`;
    let validate = validators.get(key);
    if (validate === undefined) {
      const declared = op.operation.responses[String(status)]?.content?.[mediaType];
      expect(declared, `${key} is declared in the document`).toBeDefined();
      validate = ajv.compile({
        $ref: `openapi${pointer("paths", op.path, op.method.toLowerCase(), "responses", String(status), "content", mediaType, "schema")}`,
      });
      validators.set(key, validate);
    }
    return validate;
  }

  async function check(op: DocumentedOperation, url: string, init?: RequestInit): Promise<number> {
    const res = await fetch(url, init ?? { headers: { authorization: `Bearer ${READ_TOKEN}` } });
    const text = await res.text();
    const sent = typeof init?.body === "string" ? ` ${init.body.slice(0, 300)}` : "";
    const where = `${op.method} ${url.slice(api.url.length)}${sent} → ${res.status} ${text.slice(0, 300)}`;
    expect(res.status, where).toBeLessThan(500);
    const mediaType = (res.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
    if (res.status >= 200 && res.status < 300) {
      const validate = responseValidator(op, res.status, mediaType);
      const body: unknown = mediaType === "application/json" ? JSON.parse(text) : text;
      expect(validate(body), `${where}: ${ajv.errorsText(validate.errors)}`).toBe(true);
    } else {
      expect(res.status, where).toBeGreaterThanOrEqual(400);
      expect(mediaType, where).toBe("application/problem+json");
      const problem = JSON.parse(text) as Problem;
      const validate = ajv.getSchema(`openapi${pointer("components", "schemas", "Problem")}`);
      expect(validate?.(problem), `${where}: ${ajv.errorsText(validate?.errors)}`).toBe(true);
      expect(problem.status, where).toBe(res.status);
      expect(problem.type.length, where).toBeGreaterThan(0);
      expect(problem.title.length, where).toBeGreaterThan(0);
      expect(problem.detail.length, where).toBeGreaterThan(0);
    }
    return res.status;
  }

  beforeAll(async () => {
    // Hundreds of requests in a minute: far above the default per-token rate limit.
    env = await isolatedEnv("api-fuzz", { API_RATE_LIMIT_PER_MINUTE: "1000000" });
    api = await startApi(env);
    const created = await sendJson<{ id: string }>("POST", `${api.url}/v1/rules`, {
      name: "warm",
      sensors: { type: "all" },
      field: "temperature",
      severity: "warning",
      condition: { type: "threshold", op: "above", value: 24 },
    });
    expect(created.status).toBe(201);
    ruleId = created.body.id;
    REALISTIC.push(ruleId);

    // 20 minutes of readings up to a minute ago, with spikes: anomalies and alerts to list too.
    const now = Date.now();
    const readings: SeedReading[] = [];
    for (let i = 0; i < 120; i++) {
      for (const [k, sensor] of SENSORS.entries()) {
        const spike = i % 40 === 39 ? 15 : 0;
        readings.push({
          sensor_id: sensor,
          timestamp: now - 21 * 60_000 + i * 10_000,
          temperature: 20 + k + Math.sin(i / 5) + spike,
          humidity: 40 + (i % 7),
          site: `site-${k}`,
        });
      }
    }
    await seedReadings(env, readings);

    doc = await fetchOpenApi(api.url);
    ajv = new Ajv({ strict: false, allErrors: true });
    addFormatsModule.default(ajv);
    ajv.addSchema(doc, "openapi");
  }, 180_000);

  afterAll(async () => {
    await api?.stop();
  });

  it("keeps the document's promises for generated parameters of every GET operation", async () => {
    const gets = operations(doc).filter((op) => op.method === "GET");
    expect(gets.map((op) => op.path)).toEqual(
      expect.arrayContaining([
        "/v1/aggregates",
        "/v1/aggregates/latest",
        "/v1/sensors",
        "/v1/sensors/{sensor_id}/readings",
        "/v1/sensors/{sensor_id}/sessions",
        "/v1/anomalies",
        "/v1/alerts",
        "/v1/rules",
        "/v1/rules/{id}",
      ]),
    );
    const now = Date.now();
    const seen: Record<string, Set<number>> = {};
    for (const op of gets) {
      const statuses = new Set<number>();
      seen[`${op.method} ${op.path}`] = statuses;
      // The plainest request first: required parameters at their realistic values, nothing else.
      const plain: Record<string, string> = {};
      for (const p of op.operation.parameters ?? []) {
        if (!p.required) continue;
        if (p.name === "id") plain[p.name] = ruleId;
        else if (p.name === "sensor_id") plain[p.name] = "sensor_1";
        else plain[p.name] = String(p.schema.default);
      }
      statuses.add(await check(op, urlFor(api.url, op, plain)));

      await fc.assert(
        fc.asyncProperty(requestArbitrary(op, now), async (values) => {
          statuses.add(await check(op, urlFor(api.url, op, values)));
        }),
        { numRuns: RUNS_PER_OPERATION, seed: SEED },
      );
    }
    // Each operation answered a plain request with data, and rejected something generated when it has parameters.
    for (const op of gets) {
      const statuses = [...(seen[`${op.method} ${op.path}`] ?? [])];
      expect(
        statuses.some((s) => s >= 200 && s < 300),
        `${op.path} answered 2xx`,
      ).toBe(true);
      if ((op.operation.parameters ?? []).length > 0) {
        expect(
          statuses.some((s) => s >= 400),
          `${op.path} rejected a generated request`,
        ).toBe(true);
      }
    }
  }, 600_000);

  it("keeps the document's promises for generated request bodies of every POST, PUT and PATCH", async () => {
    const changes = operations(doc).filter((op) => ["POST", "PUT", "PATCH"].includes(op.method));
    expect(changes.map((op) => `${op.method} ${op.path}`).sort()).toEqual(
      expect.arrayContaining(["PATCH /v1/rules/{id}", "POST /v1/rules", "PUT /v1/rules/{id}"]),
    );
    /** A request with `body` as JSON text, on the fuzz rule, with its current ETag. */
    const send = async (op: DocumentedOperation, mediaType: string, body: string) => {
      const headers: Record<string, string> = {
        authorization: `Bearer ${ADMIN_TOKEN}`,
        "content-type": mediaType,
      };
      if (op.path.includes("{id}")) {
        const current = await fetch(`${api.url}/v1/rules/${ruleId}`, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        });
        expect(current.status, "the fuzz rule still exists").toBe(200);
        headers["if-match"] = current.headers.get("etag") ?? "";
      }
      return check(op, `${api.url}${fillPath(op.path, { id: ruleId })}`, {
        method: op.method,
        headers,
        body,
      });
    };
    for (const op of changes) {
      const declared = requestBody(op);
      expect(declared, `${op.method} ${op.path} declares a request body`).toBeDefined();
      const { mediaType, schema } = declared as NonNullable<typeof declared>;
      // A merge patch leaves its fields untyped (the merged result is what gets validated): patches
      // that fit are subsets of the fields a PUT on the same path takes.
      const put = changes.find((o) => o.method === "PUT" && o.path === op.path);
      const putBody = put && requestBody(put);
      const fitSchema =
        op.method === "PATCH" && putBody ? { ...resolve(doc, putBody.schema), required: [] } : schema;
      const fitted: number[] = [];
      const misfitted: number[] = [];
      await fc.assert(
        fc.asyncProperty(fittingBody(doc, fitSchema), async (body) => {
          fitted.push(await send(op, mediaType, JSON.stringify(body)));
        }),
        { numRuns: RUNS_PER_OPERATION, seed: SEED },
      );
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            misfittingBody(doc, schema).map((body) => JSON.stringify(body)),
            // Not JSON at all, or cut short.
            fc.constantFrom("", "{", "not json", '{"name": "x",}', "\u0000"),
          ),
          async (text) => {
            misfitted.push(await send(op, mediaType, text));
          },
        ),
        { numRuns: RUNS_PER_OPERATION, seed: SEED },
      );
      const where = `${op.method} ${op.path}: fitting ${JSON.stringify(fitted)}, misfitting ${JSON.stringify(misfitted)}`;
      // Some generated bodies that fit the schema were taken, and bodies that do not were refused.
      expect(
        fitted.some((s) => s >= 200 && s < 300),
        where,
      ).toBe(true);
      expect(
        misfitted.some((s) => s === 400),
        where,
      ).toBe(true);
    }
  }, 600_000);

  it("checked 2xx bodies with validators that do reject a wrong body", () => {
    expect(validators.size).toBeGreaterThanOrEqual(10);
    for (const [key, validate] of validators) expect(validate({}), key).toBe(false);
  });

  it("answers the plain queries with the seeded data, so the 2xx bodies checked above were not empty", async () => {
    const res = await fetch(`${api.url}/v1/sensors?start=-1h`, {
      headers: { authorization: `Bearer ${READ_TOKEN}` },
    });
    const body = (await res.json()) as { sensors: { sensor_id: string }[] };
    expect(res.status).toBe(200);
    expect(body.sensors.map((s) => s.sensor_id).sort()).toEqual(SENSORS);
  });
});
