/**
 * The container image without a Docker engine: the Dockerfile's instructions are replayed in a
 * temporary directory (test/support/dockerfile.ts), then each compose service's command runs there
 * with the environment docker-compose.yml gives that service, against the real Kafka and InfluxDB.
 * Only what the container network provides is replaced: the kafka/influxdb addresses (by the test's
 * services, with a fresh bucket and topic prefix), and listen addresses and ports (loopback, free
 * ports). A service that exits is restarted as its compose `restart:` policy says, a few times at most
 * (the worker can exit once on a first start, just after it created the topics). Whatever the
 * Dockerfile becomes, its image must serve the API, store what the simulator produces, and pass
 * compose's own health checks.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../scripts/services/local.js";
import { compose, type Env, execForm, resolvedEnvironment, service } from "../support/compose.js";
import { imagePath, replayDockerfile, type Stage, stageEnvironment } from "../support/dockerfile.js";
import { eventually, fluxRows, isolatedEnv, ROOT } from "../support/harness.js";

const children: ChildProcess[] = [];
let workDir: string;
let image: Stage;
let isolated: Env;

/** Builds take a while on two shared cores; npm may answer from its local cache. */
const REPLAY_TIMEOUT_MS = 240_000;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), "sensor-analytics-image-"));
  const stages = await replayDockerfile({
    context: ROOT,
    into: workDir,
    runEnv: { npm_config_prefer_offline: "true", npm_config_update_notifier: "false" },
    log: (line) => process.env.TEST_LOG_LEVEL && process.stderr.write(`[image] ${line}\n`),
  });
  image = stages.at(-1) as Stage;
  isolated = await isolatedEnv("image");
}, REPLAY_TIMEOUT_MS);

afterAll(async () => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

/**
 * The service's compose environment with what the container network provides swapped for the test's:
 * each replaced variable must be one compose really sets for the service.
 */
async function environmentFor(name: string, ports: Env = {}): Promise<Env> {
  const env = resolvedEnvironment(await compose(), name);
  const replacements: Env = {
    KAFKA_BROKERS: isolated.KAFKA_BROKERS as string,
    KAFKA_TOPIC_PREFIX: isolated.KAFKA_TOPIC_PREFIX as string,
    INFLUX_URL: isolated.INFLUX_URL as string,
    INFLUX_TOKEN: isolated.INFLUX_TOKEN as string,
    INFLUX_ORG: isolated.INFLUX_ORG as string,
    INFLUX_BUCKET: isolated.INFLUX_BUCKET as string,
    INGEST_GROUP_ID: isolated.INGEST_GROUP_ID as string,
    API_HOST: "127.0.0.1",
    INGEST_METRICS_HOST: "127.0.0.1",
    ...ports,
  };
  for (const [key, value] of Object.entries(replacements)) {
    if (key in env) env[key] = value;
  }
  for (const key of ["KAFKA_BROKERS", ...Object.keys(ports)]) {
    if (env[key] !== replacements[key]) throw new Error(`docker-compose.yml sets no ${key} for ${name}`);
  }
  return env;
}

async function commandFor(name: string): Promise<string[]> {
  const command = execForm(service(await compose(), name).command, `${name}'s command`) ?? image.cmd;
  if (!command) throw new Error(`${name}: neither compose nor the image's CMD gives a command`);
  return command;
}

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** Runs a command the way the container would: in the image's WORKDIR, with the image's ENV. */
function start(name: string, command: string[], env: Env): Started {
  const child = spawn(command[0] as string, command.slice(1), {
    cwd: imagePath(image, "."),
    env: stageEnvironment(image, env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let output = "";
  const collect = (d: Buffer) => {
    output = (output + d.toString()).slice(-20_000);
    if (process.env.TEST_LOG_LEVEL) process.stderr.write(`[${name}] ${d}`);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** How often a service may exit and be restarted (as its compose restart policy does) before it fails. */
const MAX_RESTARTS = 3;

interface RunningService {
  /** Rejects, with the output, once the service exits and its restart policy gives up on it. */
  failed: Promise<never>;
  /** SIGTERM, as `docker compose stop` sends; resolves with the exit code. */
  stop: () => Promise<number | null>;
}

/** A compose service's command, restarted on exit the way its `restart:` policy says. */
async function startService(name: string, env: Env): Promise<RunningService> {
  const command = await commandFor(name);
  const policy = service(await compose(), name).restart;
  let current = start(name, command, env);
  let stopping = false;
  let restarts = 0;
  let earlier = "";
  const failed = new Promise<never>((_, reject) => {
    const watch = (run: Started) =>
      run.exited.then((code) => {
        if (stopping) return;
        earlier += run.output();
        const restarting =
          policy === "always" || policy === "unless-stopped" || (policy === "on-failure" && code !== 0);
        if (!restarting || restarts >= MAX_RESTARTS) {
          reject(
            new Error(`${name} exited with ${code} after ${restarts} restart(s); its output:\n${earlier}`),
          );
          return;
        }
        restarts++;
        process.stderr.write(`[${name}] exited with ${code}; restarting it, as restart: ${policy} does\n`);
        current = start(name, command, env);
        watch(current);
      });
    watch(current);
  });
  failed.catch(() => {});
  return {
    failed,
    stop: () => {
      stopping = true;
      current.child.kill("SIGTERM");
      return current.exited;
    },
  };
}

/** Waits for `condition`, failing at once if one of the services fails first. */
async function whileRunning<T>(services: RunningService[], condition: Promise<T>): Promise<T> {
  return Promise.race([condition, ...services.map((s) => s.failed)]);
}

/** Runs compose's health check for a service, in the container's place, and returns its exit code. */
async function healthCheck(name: string, env: Env): Promise<{ code: number | null; output: string }> {
  const test = execForm(service(await compose(), name).healthcheck?.test, `${name}'s healthcheck`);
  if (test?.[0] !== "CMD") throw new Error(`${name}: expected a ["CMD", ...] health check`);
  const check = start(`${name} health`, test.slice(1), env);
  const code = await check.exited;
  return { code, output: check.output() };
}

describe("the container image, built by replaying the Dockerfile", () => {
  it("holds the compiled code and production dependencies only, and runs as the non-root node user", async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    for (const script of ["dist/api/main.js", "dist/ingest/main.js", "dist/ingest/simulator.js"]) {
      expect(existsSync(imagePath(image, script)), script).toBe(true);
    }
    for (const dependency of Object.keys(pkg.dependencies)) {
      expect(existsSync(imagePath(image, `node_modules/${dependency}`)), dependency).toBe(true);
    }
    // What would let TypeScript run at start-up must not be there: the image runs compiled code.
    for (const devOnly of ["tsx", "typescript", "vitest", "@biomejs/biome"]) {
      expect(existsSync(imagePath(image, `node_modules/${devOnly}`)), devOnly).toBe(false);
    }
    const appFiles = await readdir(imagePath(image, "."), { recursive: true });
    const sources = appFiles.filter(
      (f) => !f.startsWith("node_modules") && /\.ts$/.test(f) && !/\.d\.ts$/.test(f),
    );
    expect(sources).toEqual([]);
    expect(image.skipped.filter((s) => s.keyword === "USER").map((s) => s.args)).toEqual(["node"]);
    expect(image.env.NODE_ENV).toBe("production");
  });

  // The two run side by side: each waits mostly on its services.
  it.concurrent("api: the command compose runs serves /health, and compose's health check passes", async ({
    expect,
  }) => {
    const env = await environmentFor("api", { API_PORT: String(await freePort()) });
    const api = await startService("api", env);
    const url = `http://127.0.0.1:${env.API_PORT}/health`;
    const health = await whileRunning(
      [api],
      eventually(
        `GET ${url} answers 200`,
        async () => {
          const res = await fetch(url);
          return { status: res.status, body: await res.json() };
        },
        (r) => r.status === 200,
        60_000,
      ),
    );
    expect(health.body).toEqual({ status: "ok" });
    const check = await healthCheck("api", env);
    expect(check.code, check.output).toBe(0);
    expect(await api.stop()).toBe(0);
  });

  it.concurrent("simulator and ingest: a reading the simulator produces is stored in InfluxDB by ingest", async ({
    expect,
  }) => {
    const ingestEnv = await environmentFor("ingest", { INGEST_METRICS_PORT: String(await freePort()) });
    const ingest = await startService("ingest", ingestEnv);
    const simulator = await startService("simulator", await environmentFor("simulator"));

    const sensors = await whileRunning(
      [ingest, simulator],
      eventually(
        "a simulated reading in InfluxDB",
        () =>
          fluxRows<{ sensor_id: string; _value: number }>(
            isolated,
            `from(bucket: "${isolated.INFLUX_BUCKET}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "readings" and r._field == "temperature") |> group(columns: ["sensor_id"]) |> last()`,
          ),
        (rows) => rows.length > 0,
        90_000,
      ),
    );
    // The simulator compose runs names its sensors sensor_1 ... sensor_N and sends temperatures.
    for (const row of sensors) {
      expect(row.sensor_id).toMatch(/^sensor_\d+$/);
      expect(Number.isFinite(row._value)).toBe(true);
    }

    const check = await healthCheck("ingest", ingestEnv);
    expect(check.code, check.output).toBe(0);
    // Both stop cleanly on the signal `docker compose stop` sends.
    expect(await simulator.stop()).toBe(0);
    expect(await ingest.stop()).toBe(0);
  });
});
