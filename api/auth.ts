/**
 * Bearer tokens with two scopes: `read` (queries) and `admin` (read + rule changes). Tokens come
 * from API_READ_TOKENS / API_ADMIN_TOKENS; compared in constant time.
 */
import { timingSafeEqual } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import { ProblemError } from "./problem.js";

export type Scope = "read" | "admin";

export interface TokenSet {
  read: string[];
  admin: string[];
}

function matches(candidate: string, tokens: string[]): boolean {
  const given = Buffer.from(candidate);
  let found = false;
  for (const token of tokens) {
    const expected = Buffer.from(token);
    if (expected.length === given.length && timingSafeEqual(expected, given)) found = true;
  }
  return found;
}

export function scopeOf(header: string | undefined, tokens: TokenSet): Scope | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  if (!match) return undefined;
  const token = match[1] as string;
  if (matches(token, tokens.admin)) return "admin";
  if (matches(token, tokens.read)) return "read";
  return undefined;
}

/**
 * A preValidation hook that lets the request through only with a token of `scope` (admin satisfies
 * read). preValidation: after the rate limit (onRequest), before parameters are looked at.
 */
export function requireScope(scope: Scope, tokens: TokenSet) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const header = request.headers.authorization;
    const granted = scopeOf(header, tokens);
    if (granted === undefined) {
      reply.header("www-authenticate", 'Bearer realm="sensor-analytics"');
      throw new ProblemError(
        401,
        "Unauthorized",
        header
          ? "the bearer token is not valid"
          : "this endpoint needs an Authorization: Bearer <token> header",
      );
    }
    if (scope === "admin" && granted !== "admin") {
      throw new ProblemError(
        403,
        "Forbidden",
        "this endpoint needs a token with the admin scope; yours has read",
      );
    }
  };
}
