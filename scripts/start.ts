/**
 * `npm start`: local Kafka and InfluxDB (or the ones named by KAFKA_BROKERS/INFLUX_URL), then the
 * ingest worker, the API and the simulator as supervised child processes. A child that dies is
 * reported and restarted with backoff; "running" is printed once the worker consumes, the API is
 * ready and the simulator has produced. Ctrl-C stops it all in order: simulator, worker (after it
 * caught up and committed), API, then the services. Data persists in SENSOR_DATA_DIR (.data/).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { apiSettings } from "../api/config.js";
import { ConfigError, kafkaConfig } from "../common/config.js";
import { type Admin, createKafka } from "../common/kafka.js";
import { topicName } from "../common/topics.js";
import { ingestSettings } from "../ingest/config.js";
import { ensureServices } from "./services/local.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DATA = resolve(ROOT, process.env.SENSOR_DATA_DIR?.trim() || ".data");
const LOGS = join(DATA, "logs");
/** An orderly stop finishes within this, services included; whatever is still running then is killed. */
const STOP_BUDGET_MS = 9_000;
const SIMULATOR = ["--sensors", "10", "--rate", "10", "--count", "0", "--anomaly", "0.01"];

function say(message: string): void {
  process.stderr.write(`[start] ${message}\n`);
}

/** A path as the user would type it from the repository. */
function shown(path: string): string {
  const rel = relative(ROOT, path);
  return rel.startsWith("..") ? path : rel;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function apiTokens(): Promise<{ read: string; admin: string; generated: boolean }> {
  const read = process.env.API_READ_TOKENS?.split(",")[0]?.trim();
  const admin = process.env.API_ADMIN_TOKENS?.split(",")[0]?.trim();
  if (read || admin) return { read: read ?? admin ?? "", admin: admin ?? "", generated: false };
  const file = join(DATA, "api-tokens.json");
  if (existsSync(file))
    return {
      ...(JSON.parse(await readFile(file, "utf8")) as { read: string; admin: string }),
      generated: true,
    };
  const tokens = {
    read: `read-${randomBytes(18).toString("base64url")}`,
    admin: `admin-${randomBytes(18).toString("base64url")}`,
  };
  await writeFile(file, JSON.stringify(tokens), { mode: 0o600 });
  return { ...tokens, generated: true };
}

/**
 * One child process (`node --import tsx <file>`), restarted with backoff when it dies. Its output
 * goes straight to its log file; an IPC channel tells it that it is supervised (see
 * common/lifecycle.ts) and carries the simulator's "produced" message.
 */
class Supervised {
  private child: ChildProcess | undefined;
  private stopping = false;
  private failures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  readonly log: string;

  constructor(
    readonly name: string,
    private readonly file: string,
    private readonly args: string[],
    private readonly env: NodeJS.ProcessEnv,
    private readonly onMessage: (message: unknown) => void = () => {},
  ) {
    this.log = join(LOGS, `${name}.log`);
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    const fd = openSync(this.log, "a");
    const child = spawn(process.execPath, ["--import", "tsx", this.file, ...this.args], {
      cwd: ROOT,
      env: this.env,
      stdio: ["ignore", fd, fd, "ipc"],
    });
    closeSync(fd);
    const startedAt = Date.now();
    this.child = child;
    child.on("message", (m) => this.onMessage(m));
    child.on("error", (err) => say(`${this.name} could not be started: ${err.message}`));
    child.on("exit", (code, signal) => {
      if (this.stopping) return;
      // A child that ran a while before dying starts over with a short delay.
      if (Date.now() - startedAt > 60_000) this.failures = 0;
      const delayMs = Math.min(30_000, 1000 * 2 ** this.failures);
      this.failures++;
      say(
        `${this.name} exited (${signal ? `signal ${signal}` : `exit code ${code}`}); its log: ${shown(this.log)}; restarting in ${delayMs / 1000} s`,
      );
      this.restartTimer = setTimeout(() => {
        if (!this.stopping) this.start();
      }, delayMs);
    });
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. True when it stopped by itself. */
  async stop(graceMs: number): Promise<boolean> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child || !this.running) return true;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGTERM");
    const inTime = await Promise.race([
      exited.then(() => true),
      sleep(Math.max(0, graceMs)).then(() => false),
    ]);
    if (!inTime) {
      child.kill("SIGKILL");
      await exited;
    }
    return inTime;
  }

  kill(): void {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    if (this.running) this.child?.kill("SIGKILL");
  }
}

async function httpOk(url: string, token?: string): Promise<boolean> {
  try {
    const res = await fetch(url, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(3000),
    });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

/** Messages in the raw topic the worker's group has not committed yet. */
async function uncommitted(admin: Admin, topic: string, groupId: string): Promise<number> {
  const [ends, groups] = await Promise.all([
    admin.fetchTopicOffsets(topic),
    admin.fetchOffsets({ groupId, topics: [topic] }),
  ]);
  const committed = new Map(
    (groups[0]?.partitions ?? []).map((p) => [p.partition, Math.max(0, Number(p.offset))]),
  );
  return ends.reduce((n, p) => n + Math.max(0, Number(p.high) - (committed.get(p.partition) ?? 0)), 0);
}

/** What a signal does; `run` replaces the first-phase versions once the children exist. */
const shutdown = {
  requested: false,
  firstSignalAt: 0,
  stop: async () => {
    say("the services are still starting; they are stopped once up");
  },
  force: (): void => process.exit(130),
};

function onSignal(signal: NodeJS.Signals): void {
  if (!shutdown.requested) {
    shutdown.requested = true;
    shutdown.firstSignalAt = Date.now();
    say(`${signal}: stopping (Ctrl-C again to force)`);
    void shutdown.stop();
    return;
  }
  // One Ctrl-C can arrive twice: the terminal signals the whole group, and npm forwards it again.
  if (Date.now() - shutdown.firstSignalAt < 1000) return;
  say(`${signal} again: forcing`);
  shutdown.force();
}

type Services = Awaited<ReturnType<typeof ensureServices>>;

async function main(): Promise<void> {
  const began = Date.now();
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSignal);
  await mkdir(LOGS, { recursive: true });
  // If this fails or is forced, the exit hook of scripts/services/local.ts kills what did start.
  const services = await ensureServices(join(DATA, "services"));
  if (shutdown.requested) {
    await services.stop(STOP_BUDGET_MS);
    process.exit(0);
  }
  try {
    await run(services, began, Date.now());
  } catch (err) {
    await services.stop(STOP_BUDGET_MS);
    throw err;
  }
}

async function run(services: Services, began: number, servicesUp: number): Promise<void> {
  const tokens = await apiTokens();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...services.env,
    ...(tokens.generated ? { API_READ_TOKENS: tokens.read, API_ADMIN_TOKENS: tokens.admin } : {}),
  };
  // Bad settings fail here, with the variable's name, before any child starts.
  const ingest = ingestSettings(env);
  const api = apiSettings(env);
  const local = (host: string) => (host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host);
  const apiUrl = `http://${local(api.host)}:${api.port}`;
  const metricsUrl = `http://${local(ingest.metricsHost)}:${ingest.metricsPort}`;

  // Connected once running, so that a stop does not pay for a new connection to see the lag.
  const kafka = kafkaConfig(env);
  const rawTopic = topicName(kafka.topicPrefix, "raw");
  const admin = createKafka(kafka, undefined, {
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 500 },
  }).admin();
  let adminConnected = false;
  let produced = false;
  const children = {
    simulator: new Supervised("simulator", "ingest/simulator.ts", SIMULATOR, env, (m) => {
      if (typeof m === "object" && m !== null && (m as { type?: unknown }).type === "produced")
        produced = true;
    }),
    // The worker only writes: it gets the write-only token when provisioning made one.
    ingest: new Supervised(
      "ingest",
      "ingest/main.ts",
      [],
      services.env.INFLUX_WRITE_TOKEN ? { ...env, INFLUX_TOKEN: services.env.INFLUX_WRITE_TOKEN } : env,
    ),
    api: new Supervised("api", "api/main.ts", [], env),
  };

  shutdown.force = () => {
    for (const child of Object.values(children)) child.kill();
    // The exit hook of scripts/services/local.ts kills the services' process groups.
    process.exit(130);
  };
  shutdown.stop = async () => {
    const started = Date.now();
    const left = () => STOP_BUDGET_MS - (Date.now() - started);
    /** Runs one step of the stop and prints what it came to, with its duration. */
    const step = async (fn: () => Promise<string>) => {
      const t = Date.now();
      const outcome = await fn();
      say(`${outcome} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    };
    const stopped =
      (name: string, detail = "") =>
      async (inTime: boolean) =>
        inTime ? `${name} stopped${detail}` : `${name} killed: it did not stop in its share of the time`;
    await step(() => children.simulator.stop(Math.min(1000, left())).then(stopped("simulator")));
    if (children.ingest.running) {
      // Let the worker store what the simulator sent, so a stop loses nothing and replays nothing.
      await step(async () => {
        const until = Date.now() + Math.min(3500, left() - 4500);
        if (!adminConnected)
          await Promise.race([admin.connect().catch(() => {}), sleep(Math.max(0, until - Date.now()))]);
        let behind = "an unknown number of";
        while (Date.now() < until) {
          const n = await Promise.race([
            uncommitted(admin, rawTopic, ingest.groupId).catch(
              (err: Error) => `an unknown number of (${err.message})`,
            ),
            sleep(Math.max(0, until - Date.now())).then(() => undefined),
          ]);
          if (n === 0) return "worker caught up with the simulator";
          if (n !== undefined) behind = String(n);
          await sleep(100);
        }
        return `the worker has ${behind} readings left; the next start processes them`;
      });
    }
    await step(() =>
      children.ingest
        .stop(Math.min(2500, left() - 2000))
        .then(stopped("worker", ": batch finished, offsets committed, group left")),
    );
    // The API's rule-table consumer may be in a fetch that lasts up to 1 s before it can leave.
    await step(() => children.api.stop(Math.min(2000, left() - 1500)).then(stopped("API")));
    void admin.disconnect().catch(() => {});
    await step(async () => {
      await services.stop(Math.max(1500, left()));
      return services.local ? "Kafka and InfluxDB stopped" : "external Kafka and InfluxDB left running";
    });
    say(`stopped in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    process.exit(0);
  };

  if (shutdown.requested) {
    await shutdown.stop();
    return;
  }
  children.ingest.start();
  children.api.start();
  children.simulator.start();

  const checks: Record<keyof typeof children, () => Promise<boolean>> = {
    ingest: async () => !ingest.metricsEnabled || (await httpOk(`${metricsUrl}/ready`)),
    api: () => httpOk(`${apiUrl}/ready`, tokens.read),
    simulator: async () => produced,
  };
  let lastReport = Date.now();
  for (;;) {
    if (shutdown.requested) return;
    const waiting: string[] = [];
    for (const [name, check] of Object.entries(checks)) if (!(await check())) waiting.push(name);
    if (waiting.length === 0) break;
    if (Date.now() - lastReport >= 10_000) {
      lastReport = Date.now();
      say(
        `waiting for ${waiting.join(", ")} (logs: ${waiting.map((n) => shown(join(LOGS, `${n}.log`))).join(", ")})`,
      );
    }
    await sleep(250);
  }

  adminConnected = await admin.connect().then(
    () => true,
    () => false,
  );
  const logs = shown(LOGS);
  console.log(`
Sensor analytics is running (ready ${((Date.now() - servicesUp) / 1000).toFixed(1)} s after Kafka and InfluxDB were up, ${((Date.now() - began) / 1000).toFixed(1)} s after start).
  API            ${apiUrl}
  API docs       ${apiUrl}/docs
  read token     ${tokens.read}
  admin token    ${tokens.admin || "(none configured)"}
  try            curl -H "Authorization: Bearer ${tokens.read}" "${apiUrl}/v1/aggregates?window=1m&start=-10m"
  ingest metrics ${ingest.metricsEnabled ? `${metricsUrl}/metrics` : "(off)"}
  Kafka          ${services.env.KAFKA_BROKERS}
  InfluxDB       ${services.env.INFLUX_URL}  (org ${services.env.INFLUX_ORG}, bucket ${services.env.INFLUX_BUCKET}, token ${services.env.INFLUX_TOKEN})
  read-only InfluxDB token (for Grafana)  ${services.env.INFLUX_READ_TOKEN ?? services.env.INFLUX_TOKEN}
  logs           ${logs}/{ingest,api,simulator}.log${services.local ? `, ${shown(join(DATA, "services"))}/{kafka/kafka,influxdb/influxd}.log` : ""}
The simulator sends 10 readings/s from 10 sensors. A process that dies is reported here and restarted.
Ctrl-C stops everything in order within ${STOP_BUDGET_MS / 1000} s (twice forces).
`);
}

main().catch((err) => {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(err instanceof ConfigError ? 2 : 1);
});
