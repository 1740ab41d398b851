/**
 * docker-compose.yml as Compose reads it with no .env file and nothing exported: YAML merge keys
 * resolved, `${NAME:-default}` and `${NAME-default}` giving the default, `${NAME}` giving "".
 */
import { readFile } from "node:fs/promises";
import { parse } from "yaml";

export type Env = Record<string, string>;

export interface ComposeService {
  image?: string;
  command?: string[] | string;
  environment?: Record<string, unknown> | string[];
  volumes?: (string | { type?: string; source?: string; target?: string })[];
  healthcheck?: { test?: string[] | string };
  [key: string]: unknown;
}

export interface Compose {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
  [key: string]: unknown;
}

const ROOT = new URL("../../", import.meta.url);

/** Compose's interpolation with every variable unset; `$$` is a literal `$`. */
export function interpolateDefaults(text: string): string {
  return text.replace(/\$\$|\$\{(\w+)(?::?-([^}]*))?\}/g, (whole, _name, fallback?: string) =>
    whole === "$$" ? "$" : (fallback ?? ""),
  );
}

function interpolateAll(value: unknown): unknown {
  if (typeof value === "string") return interpolateDefaults(value);
  if (Array.isArray(value)) return value.map(interpolateAll);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolateAll(v)]));
  }
  return value;
}

/** The parsed file, merge keys resolved, not yet interpolated. */
export async function rawCompose(): Promise<Compose> {
  const text = await readFile(new URL("docker-compose.yml", ROOT), "utf8");
  return parse(text, { merge: true }) as Compose;
}

/** The file as Compose sees it with no .env: merged and interpolated with the defaults. */
export async function compose(): Promise<Compose> {
  return interpolateAll(await rawCompose()) as Compose;
}

export function service(c: Compose, name: string): ComposeService {
  const found = c.services[name];
  if (!found) throw new Error(`docker-compose.yml has no service ${JSON.stringify(name)}`);
  return found;
}

/** A service's environment (map or list form) as strings; a bare name in list form is left out. */
export function resolvedEnvironment(c: Compose, name: string): Env {
  const environment = service(c, name).environment;
  if (!environment) throw new Error(`docker-compose.yml has no environment for service ${name}`);
  const entries = Array.isArray(environment)
    ? environment.filter((e) => e.includes("=")).map((e) => e.split(/=(.*)/s).slice(0, 2) as [string, string])
    : Object.entries(environment);
  return Object.fromEntries(entries.map(([k, v]) => [k, v === null || v === undefined ? "" : String(v)]));
}

/** The exec-form array of a `command:` or `healthcheck.test` entry. */
export function execForm(value: string[] | string | undefined, what: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) {
    throw new Error(`${what} is in shell form (${JSON.stringify(value)}); expected the exec (array) form`);
  }
  return value.map(String);
}
