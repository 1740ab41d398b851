/**
 * docker-compose.yml against the code: every environment variable the services read is collected
 * from the source, each service's configuration must load from the environment compose gives it
 * (with no .env file), every variable it cannot start without must be set there, and every
 * variable the code reads must be documented in .env.example.
 */
import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { apiSettings } from "../../api/config.js";
import { ConfigError, kafkaConfig } from "../../common/config.js";
import { ingestSettings } from "../../ingest/config.js";

const ROOT = new URL("../../", import.meta.url);
const SOURCE_DIRS = ["api", "ingest", "common"];
/** Set by the container runtime, never by us: the ingest worker's default worker id uses it. */
const RUNTIME_PROVIDED = new Set(["HOSTNAME"]);

type Env = Record<string, string>;

interface Compose {
  services: Record<string, { environment?: Record<string, unknown> }>;
}

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(new URL(`${dir}/`, ROOT), { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith(".ts")).map((e) => join(e.parentPath, e.name));
}

/** Variable names read through the config helpers or straight from process.env, per file. */
async function variablesRead(): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>();
  for (const dir of SOURCE_DIRS) {
    for (const file of await sourceFiles(dir)) {
      const text = await readFile(file, "utf8");
      const names = [
        ...text.matchAll(/\b(?:str|optionalStr|num|list|bool)\(\s*env,\s*"([A-Z][A-Z0-9_]*)"/g),
        ...text.matchAll(/process\.env\.([A-Z][A-Z0-9_]*)/g),
        ...text.matchAll(/process\.env\[\s*"([A-Z][A-Z0-9_]*)"\s*\]/g),
      ].map((m) => m[1] as string);
      for (const name of names) {
        if (RUNTIME_PROVIDED.has(name)) continue;
        found.set(name, [...(found.get(name) ?? []), relative(fileURLToPath(ROOT), file)]);
      }
    }
  }
  return found;
}

async function compose(): Promise<Compose> {
  return parse(await readFile(new URL("docker-compose.yml", ROOT), "utf8"), { merge: true }) as Compose;
}

/**
 * A service's environment as compose resolves it with no .env file and nothing exported:
 * `${NAME:-default}` and `${NAME-default}` give the default, `${NAME}` gives "".
 */
function resolvedEnvironment(c: Compose, service: string): Env {
  const environment = c.services[service]?.environment;
  if (!environment) throw new Error(`docker-compose.yml has no environment for service ${service}`);
  return Object.fromEntries(
    Object.entries(environment).map(([name, value]) => [
      name,
      String(value ?? "").replace(
        /\$\{(\w+)(?::?-([^}]*))?\}/g,
        (_, _name, fallback?: string) => fallback ?? "",
      ),
    ]),
  );
}

/** The configuration each service loads at start-up, by compose service name. */
const SERVICES: Record<string, (env: Env) => unknown> = {
  ingest: ingestSettings,
  api: apiSettings,
  simulator: kafkaConfig,
};

/** What each service cannot start without (a missing one is a ConfigError at start-up). */
const REQUIRED: Record<string, string[]> = {
  ingest: ["KAFKA_BROKERS", "INFLUX_URL", "INFLUX_TOKEN", "INFLUX_ORG", "INFLUX_BUCKET"],
  api: [
    "KAFKA_BROKERS",
    "INFLUX_URL",
    "INFLUX_TOKEN",
    "INFLUX_ORG",
    "INFLUX_BUCKET",
    "API_READ_TOKENS",
    "API_ADMIN_TOKENS",
  ],
  simulator: ["KAFKA_BROKERS"],
};

describe("docker-compose.yml and .env.example against the code", () => {
  it("finds the variables the code reads", async () => {
    const read = await variablesRead();
    for (const name of [
      "KAFKA_BROKERS",
      "INFLUX_URL",
      "INFLUX_TOKEN",
      "INFLUX_ORG",
      "INFLUX_BUCKET",
      "API_READ_TOKENS",
      "API_ADMIN_TOKENS",
      "INGEST_PIPELINE_INTERVAL_MS",
      "LOG_LEVEL",
    ]) {
      expect([...read.keys()]).toContain(name);
    }
  });

  for (const [service, load] of Object.entries(SERVICES)) {
    it(`sets every variable ${service} needs, and ${service}'s configuration loads from it`, async () => {
      const env = resolvedEnvironment(await compose(), service);
      for (const name of REQUIRED[service] ?? []) {
        expect(env[name], `${service}: ${name}`).toBeTruthy();
      }
      expect(() => load(env)).not.toThrow();
    });

    it(`${service} really cannot start without the variables listed as required for it`, async () => {
      const env = resolvedEnvironment(await compose(), service);
      for (const name of REQUIRED[service] ?? []) {
        const { [name]: _dropped, ...without } = env;
        // API tokens: either list is enough, so each is required only while the other is unset.
        const other =
          name === "API_READ_TOKENS"
            ? "API_ADMIN_TOKENS"
            : name === "API_ADMIN_TOKENS"
              ? "API_READ_TOKENS"
              : undefined;
        if (other) delete without[other];
        expect(() => load(without), `${service} without ${name}`).toThrow(ConfigError);
      }
    });
  }

  it("documents every variable the code reads in .env.example", async () => {
    const example = await readFile(new URL(".env.example", ROOT), "utf8");
    const documented = new Set([...example.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]));
    const missing = [...(await variablesRead()).entries()]
      .filter(([name]) => !documented.has(name))
      .map(([name, files]) => `${name} (read in ${[...new Set(files)].join(", ")})`);
    expect(missing).toEqual([]);
  });

  it("gives Grafana the InfluxDB settings its datasource is provisioned from, but not the operator token", async () => {
    const env = resolvedEnvironment(await compose(), "grafana");
    for (const name of ["INFLUX_URL", "INFLUX_ORG", "INFLUX_BUCKET"]) {
      expect(env[name], name).toBeTruthy();
    }
    expect(env.INFLUX_TOKEN).toBeUndefined();
    // The same InfluxDB the ingest worker writes to, or the dashboards stay empty.
    const ingest = resolvedEnvironment(await compose(), "ingest");
    for (const name of ["INFLUX_URL", "INFLUX_ORG", "INFLUX_BUCKET"]) {
      expect(env[name], name).toBe(ingest[name]);
    }
  });
});
