/**
 * The OpenAPI document is the contract: schemathesis (property-based, from PyPI, installed into a
 * virtual environment under the cache directory) generates requests from /docs/json against the
 * API on loopback with the real Kafka and InfluxDB, with every check enabled and the stateful
 * phase following the links between rule operations, and must report no failure.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN, type Env, isolatedEnv, ROOT, startApi } from "../support/harness.js";

const VERSION = "4.32.5";
const CACHE = process.env.SENSOR_CACHE_DIR ?? join(homedir(), ".cache", "sensor-analytics");
const VENV = join(CACHE, `schemathesis-${VERSION}`);
const BIN = join(VENV, "bin", "schemathesis");
const EXAMPLES = process.env.SCHEMATHESIS_MAX_EXAMPLES ?? "50";

/** Creates the virtual environment once; later runs reuse it. */
function installSchemathesis(): void {
  if (existsSync(BIN)) return;
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { stdio: "inherit" });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${r.status}`);
  };
  run("python3", ["-m", "venv", VENV]);
  run(join(VENV, "bin", "pip"), ["install", "--quiet", `schemathesis==${VERSION}`]);
}

/** Runs in `cwd` (a temporary directory): schemathesis keeps a cache of its own there. */
function schemathesis(args: string[], cwd: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { cwd, env: { ...process.env, NO_COLOR: "1" } });
    let output = "";
    child.stdout.on("data", (c) => (output += c));
    child.stderr.on("data", (c) => (output += c));
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code, output }));
  });
}

describe("schemathesis against the OpenAPI document", () => {
  let env: Env;
  let api: Awaited<ReturnType<typeof startApi>>;

  beforeAll(async () => {
    installSchemathesis();
    env = await isolatedEnv("schemathesis", {
      KAFKA_PARTITIONS: "1",
      // The fuzzer's own volume must not be what it measures.
      API_RATE_LIMIT_PER_MINUTE: "1000000",
    });
    api = await startApi(env);
  });

  afterAll(async () => {
    await api?.stop();
  });

  it("every check, every phase (stateful links included): no failure", async () => {
    const reports = await mkdtemp(join(tmpdir(), "schemathesis-"));
    const args = [
      "--config-file",
      join(ROOT, "test/reliability/schemathesis.toml"),
      "run",
      `${api.url}/docs/json`,
      "--checks",
      "all",
      "--phases",
      "examples,coverage,fuzzing,stateful",
      "--max-examples",
      EXAMPLES,
      "--workers",
      "1",
      "--seed",
      "20260101",
      "--header",
      `Authorization: Bearer ${ADMIN_TOKEN}`,
      "--request-timeout",
      "30",
      "--no-color",
      "--generation-database",
      "none",
      "--report",
      "junit",
      "--report-junit-path",
      join(reports, "junit.xml"),
    ];
    const { code, output } = await schemathesis(args, reports);
    process.stdout.write(`${output}\n`);
    const junit = await readFile(join(reports, "junit.xml"), "utf8").catch(() => "");
    const failures = Number(/failures="(\d+)"/.exec(junit)?.[1] ?? Number.NaN);
    const errors = Number(/errors="(\d+)"/.exec(junit)?.[1] ?? Number.NaN);
    expect({ code, failures, errors }).toEqual({ code: 0, failures: 0, errors: 0 });
  });
});
