/**
 * Errors as RFC 9457 problem details (application/problem+json): every 4xx says what was wrong
 * and what would be accepted, in one shape.
 */
import { type Static, Type } from "@sinclair/typebox";

export const Problem = Type.Object(
  {
    type: Type.String({ description: "A URI reference naming the problem type" }),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String({ description: "What was wrong and what would be accepted" }),
    instance: Type.Optional(Type.String()),
    error_id: Type.Optional(
      Type.String({
        description: "On 500: the id the server logged the error under; quote it when reporting",
      }),
    ),
    errors: Type.Optional(
      Type.Array(Type.Object({ location: Type.String(), message: Type.String() }), {
        description: "Each invalid parameter",
      }),
    ),
  },
  { $id: "Problem", title: "Problem details (RFC 9457)" },
);
export type Problem = Static<typeof Problem>;

export class ProblemError extends Error {
  /** Response headers that belong to the problem (Retry-After on 429/503). */
  readonly headers: Record<string, string> = {};
  /** On a 500: the id the error is logged under, also given to the client. */
  errorId: string | undefined;

  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly slug = title.toLowerCase().replace(/[^a-z0-9]+/g, "-"),
  ) {
    super(detail);
  }

  withHeader(name: string, value: string): this {
    this.headers[name] = value;
    return this;
  }

  toProblem(instance?: string): Problem {
    return {
      type: `/problems/${this.slug}`,
      title: this.title,
      status: this.status,
      detail: this.detail,
      instance,
      ...(this.errorId ? { error_id: this.errorId } : {}),
    };
  }
}

export const badRequest = (detail: string) =>
  new ProblemError(400, "Invalid request", detail, "invalid-request");
export const tooLarge = (detail: string) =>
  new ProblemError(422, "Query too large", detail, "query-too-large");
/** Parameters each valid alone that together ask for nothing sensible (an empty range, a time storage cannot hold). */
export const unprocessable = (detail: string) =>
  new ProblemError(422, "Unprocessable request", detail, "unprocessable-request");
/** InfluxDB or Kafka cannot be reached: the client may retry after `retryAfterS`. */
export const unavailable = (what: string, detail: string, retryAfterS = 5) =>
  new ProblemError(503, `${what} unavailable`, detail, `${what.toLowerCase()}-unavailable`).withHeader(
    "retry-after",
    String(retryAfterS),
  );

export const PROBLEM_MEDIA_TYPE = "application/problem+json";

const header = (description: string, schema: Record<string, unknown> = { type: "string" }) => ({
  description,
  schema,
});
/** Headers that come with some problems; documented on every route that can answer them. */
export const PROBLEM_HEADERS: Record<number, Record<string, ReturnType<typeof header>>> = {
  401: { "WWW-Authenticate": header('The scheme to authenticate with: Bearer realm="sensor-analytics"') },
  429: { "Retry-After": header("Seconds until the rate limit lets requests through", { type: "integer" }) },
  503: { "Retry-After": header("Seconds after which a retry may succeed", { type: "integer" }) },
};

const STATUS_TEXT: Record<number, string> = {
  400: "Invalid parameter, header or body",
  401: "No valid bearer token",
  403: "The token's scope does not allow this",
  404: "Not found",
  405: "Method not allowed on this path",
  409: "Conflicts with the current state",
  412: "If-Match does not match the current ETag",
  413: "Body too large",
  415: "Unsupported Content-Type",
  422: "Each parameter is valid, together they are not (the detail says how to change them)",
  428: "If-Match is required",
  429: "Rate limited",
  500: "Server error; the problem carries an error_id",
  503: "InfluxDB or Kafka unreachable",
  504: "The query ran past its time budget and was cancelled",
};

/** The response a route declares for an error status: a problem document, with its headers. */
export function problemResponse(code: number) {
  return {
    description: STATUS_TEXT[code] ?? "Problem details",
    ...(PROBLEM_HEADERS[code] ? { headers: PROBLEM_HEADERS[code] } : {}),
    content: { [PROBLEM_MEDIA_TYPE]: { schema: { $ref: "Problem#" } } },
  };
}

/** The standard error responses a route declares, so the OpenAPI document lists them. */
export const problemResponses = (...codes: number[]) =>
  Object.fromEntries(codes.map((code) => [code, problemResponse(code)])) as Record<
    number,
    ReturnType<typeof problemResponse>
  >;

interface ValidationIssue {
  keyword: string;
  instancePath: string;
  schemaPath?: string;
  parentSchema?: { description?: string; anyOf?: { type?: string }[] };
  message?: string;
  params: Record<string, unknown>;
  data?: unknown;
}

/** Fastify's schema-validation error as a problem: each bad parameter, its value, and what is accepted. */
export function validationProblem(
  error: { validation?: ValidationIssue[]; validationContext?: string },
  instance: string,
): Problem {
  const issues = error.validation ?? [];
  // A scalar with alternative forms (a time: RFC 3339, epoch ms or -duration) that matches none is
  // one error described by its schema, not one per form. Object alternatives keep each branch's
  // errors: they say which property was wrong.
  const scalarChoice = (v: ValidationIssue) =>
    v.keyword === "anyOf" &&
    v.parentSchema?.description !== undefined &&
    (v.parentSchema.anyOf ?? []).every((branch) => branch.type !== "object");
  const alternatives = issues.filter(scalarChoice).map((v) => `${v.schemaPath ?? ""}/`);
  const kept = issues.filter(
    (v) => !alternatives.some((prefix) => prefix !== "/" && (v.schemaPath ?? "").startsWith(prefix)),
  );
  const errors = kept.map((v) => {
    const missing =
      v.keyword === "required"
        ? `.${String(v.params.missingProperty)}`
        : v.keyword === "additionalProperties"
          ? `.${String(v.params.additionalProperty)}`
          : "";
    const location = `${error.validationContext ?? "request"}${v.instancePath.replace(/\//g, ".")}${missing}`;
    let message = v.message ?? "is not valid";
    if (v.keyword === "additionalProperties") message = "is not a known property";
    if (v.keyword === "anyOf" && v.parentSchema?.description)
      message = `must be ${v.parentSchema.description}`;
    if (v.keyword === "enum") {
      message = `must be one of ${(v.params.allowedValues as unknown[]).map(String).join(", ")}`;
    }
    const given =
      v.keyword === "required" || v.keyword === "additionalProperties" || v.data === undefined
        ? ""
        : ` (got ${JSON.stringify(v.data).slice(0, 80)})`;
    return { location, message: `${message}${given}` };
  });
  return {
    type: "/problems/invalid-request",
    title: "Invalid request",
    status: 400,
    detail: errors.map((e) => `${e.location} ${e.message}`).join("; "),
    instance,
    errors,
  };
}
