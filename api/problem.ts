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
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly slug = title.toLowerCase().replace(/[^a-z0-9]+/g, "-"),
  ) {
    super(detail);
  }

  toProblem(instance?: string): Problem {
    return {
      type: `/problems/${this.slug}`,
      title: this.title,
      status: this.status,
      detail: this.detail,
      instance,
    };
  }
}

export const badRequest = (detail: string) =>
  new ProblemError(400, "Invalid request", detail, "invalid-request");
export const tooLarge = (detail: string) =>
  new ProblemError(422, "Query too large", detail, "query-too-large");

/** The standard error responses a route declares, so the OpenAPI document lists them. */
export const problemResponses = (...codes: number[]) =>
  Object.fromEntries(codes.map((code) => [code, { $ref: "Problem#" }])) as Record<number, { $ref: string }>;

interface ValidationIssue {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
  data?: unknown;
}

/** Fastify's schema-validation error as a problem: each bad parameter, its value, and what is accepted. */
export function validationProblem(
  error: { validation?: ValidationIssue[]; validationContext?: string },
  instance: string,
): Problem {
  const errors = (error.validation ?? []).map((v) => {
    const missing =
      v.keyword === "required"
        ? `.${String(v.params.missingProperty)}`
        : v.keyword === "additionalProperties"
          ? `.${String(v.params.additionalProperty)}`
          : "";
    const location = `${error.validationContext ?? "request"}${v.instancePath.replace(/\//g, ".")}${missing}`;
    let message = v.message ?? "is not valid";
    if (v.keyword === "additionalProperties") message = "is not a known property";
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
