/** The API's own OpenAPI document, as the reliability tests read it: operations, parameters, responses. */

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
