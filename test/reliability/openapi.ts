/** The API's own OpenAPI document, as the reliability tests read it: operations, parameters, responses. */
import fc from "fast-check";

export interface ParameterSchema {
  type?: string;
  pattern?: string;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  items?: ParameterSchema;
  default?: unknown;
}

export interface Parameter {
  name: string;
  in: "query" | "path" | "header" | "cookie";
  required?: boolean;
  schema: ParameterSchema;
  examples?: Record<string, { value: unknown }>;
}

export interface Operation {
  parameters?: Parameter[];
  responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
}

export interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, unknown> };
}

export interface DocumentedOperation {
  method: string;
  /** As written in the document, e.g. /v1/sensors/{sensor_id}/readings. */
  path: string;
  operation: Operation;
}

const METHODS = new Set(["get", "post", "put", "patch", "delete"]);

/** Fetches `/docs/json` from a running API (no token needed) and checks it is an OpenAPI 3 document. */
export async function fetchOpenApi(apiUrl: string): Promise<OpenApiDocument> {
  const res = await fetch(`${apiUrl}/docs/json`);
  if (res.status !== 200) throw new Error(`GET /docs/json answered ${res.status}`);
  const doc = (await res.json()) as Partial<OpenApiDocument>;
  if (typeof doc.openapi !== "string" || !doc.openapi.startsWith("3.") || typeof doc.paths !== "object") {
    throw new Error(`GET /docs/json is not an OpenAPI 3 document: ${JSON.stringify(doc).slice(0, 200)}`);
  }
  return doc as OpenApiDocument;
}

export function operations(doc: OpenApiDocument): DocumentedOperation[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([method]) => METHODS.has(method))
      .map(([method, operation]) => ({ method: method.toUpperCase(), path, operation })),
  );
}

/** A JSON pointer into the document, as a URI fragment (for `$ref`). */
export function pointer(...segments: string[]): string {
  return `#/${segments.map((s) => encodeURIComponent(s.replace(/~/g, "~0").replace(/\//g, "~1"))).join("/")}`;
}

/** Percent-encodes every byte of the UTF-8 form but the unreserved characters (RFC 3986). */
export function percentEncode(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** The path with its `{name}` parameters filled in (percent-encoded). */
export function fillPath(path: string, values: Record<string, string>): string {
  return path.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`no value for path parameter ${name} of ${path}`);
    return percentEncode(value);
  });
}

/** The JSON Schema subset the API's request bodies use, as the OpenAPI document writes it. */
export interface BodySchema {
  $ref?: string;
  type?: string | string[];
  const?: unknown;
  enum?: unknown[];
  anyOf?: BodySchema[];
  oneOf?: BodySchema[];
  allOf?: BodySchema[];
  properties?: Record<string, BodySchema>;
  patternProperties?: Record<string, BodySchema>;
  required?: string[];
  additionalProperties?: boolean | BodySchema;
  minProperties?: number;
  items?: BodySchema;
  minItems?: number;
  maxItems?: number;
  uniqueItems?: boolean;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number | boolean;
  exclusiveMaximum?: number | boolean;
  examples?: unknown[];
  example?: unknown;
  nullable?: boolean;
}

/** The operation's JSON request body: media type and schema, or undefined when it takes none. */
export function requestBody(op: DocumentedOperation): { mediaType: string; schema: BodySchema } | undefined {
  const content = (op.operation as { requestBody?: { content?: Record<string, { schema: BodySchema }> } })
    .requestBody?.content;
  if (!content) return undefined;
  const mediaType = Object.keys(content).find((m) => m.includes("json"));
  if (mediaType === undefined) throw new Error(`${op.method} ${op.path} has a request body but no JSON one`);
  return { mediaType, schema: (content[mediaType] as { schema: BodySchema }).schema };
}

/** Resolves a local `$ref` (`#/components/schemas/X`) in the document. */
export function resolve(doc: OpenApiDocument, schema: BodySchema): BodySchema {
  if (schema.$ref === undefined) return schema;
  let node: unknown = doc;
  for (const segment of schema.$ref.replace(/^#\//, "").split("/")) {
    node = (node as Record<string, unknown> | undefined)?.[
      decodeURIComponent(segment).replace(/~1/g, "/").replace(/~0/g, "~")
    ];
  }
  if (node === undefined) throw new Error(`unresolvable $ref ${schema.$ref}`);
  return resolve(doc, node as BodySchema);
}

/** Any JSON value (for schemas that accept anything). */
const anyJson = fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<unknown>;

/** Values a JSON body schema accepts (the API may still refuse some for reasons beyond the schema). */
export function fittingBody(doc: OpenApiDocument, raw: BodySchema, depth = 0): fc.Arbitrary<unknown> {
  const schema = resolve(doc, raw);
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum) return fc.constantFrom(...schema.enum);
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives) return fc.oneof(...alternatives.map((s) => fittingBody(doc, s, depth + 1)));
  if (schema.allOf)
    return fittingBody(doc, Object.assign({}, ...schema.allOf.map((s) => resolve(doc, s))), depth);
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  const examples = [...(schema.examples ?? []), ...(schema.example === undefined ? [] : [schema.example])];
  switch (type) {
    case "object": {
      const properties = schema.properties ?? {};
      const shape: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [name, s] of Object.entries(properties)) shape[name] = fittingBody(doc, s, depth + 1);
      let arb: fc.Arbitrary<Record<string, unknown>> = fc.record(shape, {
        requiredKeys: (schema.required ?? []).filter((k) => k in properties),
      });
      const patterns = Object.entries(schema.patternProperties ?? {});
      if (patterns.length > 0) {
        const extra = fc.oneof(
          ...patterns.map(([pattern, s]) =>
            fc.dictionary(fc.stringMatching(new RegExp(pattern)), fittingBody(doc, s, depth + 1), {
              minKeys: schema.minProperties ?? 0,
              maxKeys: Math.max(3, schema.minProperties ?? 0),
            }),
          ),
        );
        arb = fc.tuple(arb, extra).map(([fixed, more]) => ({ ...more, ...fixed }));
      }
      return arb;
    }
    case "array":
      return fc
        .array(schema.items ? fittingBody(doc, schema.items, depth + 1) : anyJson, {
          minLength: schema.minItems ?? 0,
          maxLength: Math.min(schema.maxItems ?? 4, Math.max(4, schema.minItems ?? 0)),
        })
        .filter(
          (items) =>
            !schema.uniqueItems || new Set(items.map((i) => JSON.stringify(i))).size === items.length,
        );
    case "string": {
      const fits = (s: string) =>
        s.length >= (schema.minLength ?? 0) && s.length <= (schema.maxLength ?? 10_000);
      const generated = schema.pattern
        ? fc.stringMatching(new RegExp(schema.pattern)).filter(fits)
        : schema.format === "uri"
          ? fc.webUrl().filter(fits)
          : schema.format === "date-time"
            ? fc.date({ noInvalidDate: true }).map((d) => d.toISOString())
            : fc.string({
                minLength: schema.minLength ?? 0,
                maxLength: Math.min(schema.maxLength ?? 40, 40),
              });
      const known = examples.filter((e): e is string => typeof e === "string" && fits(e));
      return known.length > 0 ? fc.oneof(fc.constantFrom(...known), generated) : generated;
    }
    case "integer":
    case "number": {
      const min =
        schema.minimum ?? (typeof schema.exclusiveMinimum === "number" ? schema.exclusiveMinimum + 1 : -1e6);
      const max =
        schema.maximum ?? (typeof schema.exclusiveMaximum === "number" ? schema.exclusiveMaximum - 1 : 1e6);
      return type === "integer"
        ? fc.integer({ min: Math.ceil(min), max: Math.floor(max) })
        : fc.double({ min, max, noNaN: true, noDefaultInfinity: true });
    }
    case "boolean":
      return fc.boolean();
    case "null":
      return fc.constant(null);
    default:
      // No type: anything goes (e.g. the fields of a merge patch, validated after merging).
      return depth > 3 ? fc.constant(null) : anyJson;
  }
}

/** Values the schema should reject: a required property missing, an unknown one, a wrong type. */
export function misfittingBody(doc: OpenApiDocument, raw: BodySchema): fc.Arbitrary<unknown> {
  const schema = resolve(doc, raw);
  const wrongType = fc.oneof(
    fc.constant(null),
    fc.integer(),
    fc.string({ maxLength: 20 }),
    fc.array(fc.integer()),
  );
  if (schema.type !== "object") return wrongType;
  const fitting = fittingBody(doc, schema).map((b) => b as Record<string, unknown>);
  const names = Object.keys(schema.properties ?? {});
  const choices: fc.Arbitrary<unknown>[] = [wrongType];
  if ((schema.required ?? []).length > 0) {
    choices.push(
      fc.tuple(fitting, fc.constantFrom(...(schema.required as string[]))).map(([b, name]) => {
        const { [name]: _removed, ...rest } = b;
        return rest;
      }),
    );
  }
  if (schema.additionalProperties === false) {
    choices.push(fitting.map((b) => ({ ...b, unexpected_property: 1 })));
  }
  if (names.length > 0) {
    choices.push(
      fc
        .tuple(
          fitting,
          fc.constantFrom(...names),
          fc.oneof(fc.constant({ nested: [] }), fc.constant([1, 2]), fc.constant("x".repeat(300))),
        )
        .map(([b, name, value]) => ({ ...b, [name]: value })),
    );
  }
  return fc.oneof(...choices);
}
