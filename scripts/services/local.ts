/**
 * Real Kafka and InfluxDB on loopback, provisioned by the project itself: Kafka from its Maven
 * Central artifacts (KRaft, one broker), influxd built from its Go module. Binaries are cached under
 * ~/.cache/sensor-analytics keyed by version; data lives in the directory the caller names.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { influxConfig } from "../../common/config.js";
import { ensureBuckets } from "../../common/influx.js";

export const KAFKA_VERSION = process.env.KAFKA_VERSION ?? "3.9.1";
export const INFLUXDB_VERSION = process.env.INFLUXDB_VERSION ?? "v2.7.12";
/** Telegraf, the tool the ingest bench compares the worker with (built only for the bench). */
export const TELEGRAF_VERSION = process.env.TELEGRAF_VERSION ?? "v1.37.2";
const CACHE = process.env.SENSOR_CACHE_DIR ?? join(homedir(), ".cache", "sensor-analytics");
const HERE = fileURLToPath(new URL(".", import.meta.url));

export interface ServiceEnv {
  KAFKA_BROKERS: string;
  INFLUX_URL: string;
  /** The operator token (all access): provisioning and tests only. */
  INFLUX_TOKEN: string;
  INFLUX_ORG: string;
  INFLUX_BUCKET: string;
  /** Reads the org's buckets and nothing else: the API's queries and Grafana. */
  INFLUX_READ_TOKEN?: string;
  /** Writes the org's buckets and nothing else: the ingest worker. */
  INFLUX_WRITE_TOKEN?: string;
}

export function log(message: string): void {
  process.stderr.write(`[services] ${message}\n`);
}

/** Runs a build script with its progress shown on stderr. */
function runScript(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [join(HERE, script)], {
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...process.env, SENSOR_CACHE_DIR: CACHE, KAFKA_VERSION, INFLUXDB_VERSION, TELEGRAF_VERSION },
    });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${script} exited with ${code}`))));
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, proc?: ChildProcess) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc && proc.exitCode !== null)
      throw new Error(`${what} exited with code ${proc.exitCode} while starting`);
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} was not ready after ${timeoutMs / 1000} s`);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    import("node:net").then(({ connect }) => {
      const socket = connect({ port, host: "127.0.0.1" });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
  });
}

/** A managed child process that can be stopped gracefully, killed, and started again on the same ports. */
abstract class LocalService {
  protected proc: ChildProcess | undefined;
  constructor(readonly dir: string) {}

  protected launch(name: string, command: string, args: string[]): ChildProcess {
    const out = createWriteStream(join(this.dir, `${name}.log`), { flags: "a" });
    // Its own process group: a terminal's Ctrl-C goes to the caller's group only, so the caller
    // stops its own clients first and the service last, instead of the service dying under them.
    const proc = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], cwd: this.dir, detached: true });
    proc.stdout?.pipe(out);
    proc.stderr?.pipe(out);
    this.proc = proc;
    liveChildren.add(proc);
    proc.on("exit", () => liveChildren.delete(proc));
    return proc;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** SIGTERM to its process group, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 30_000): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    signalGroup(proc, "SIGTERM");
    const timer = setTimeout(() => signalGroup(proc, "SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  }

  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    signalGroup(proc, "SIGKILL");
    await exited;
  }
}

/** Signals the whole process group a service leads (it was spawned detached). */
function signalGroup(proc: ChildProcess, signal: NodeJS.Signals): void {
  if (proc.pid === undefined) return;
  try {
    process.kill(-proc.pid, signal);
  } catch {
    // The group is already gone.
  }
}

const liveChildren = new Set<ChildProcess>();
// In their own groups, services outlive this process unless it takes them along.
process.once("exit", () => {
  for (const child of liveChildren) signalGroup(child, "SIGKILL");
});

/** Listeners beside the PLAINTEXT one (which stays the inter-broker listener), e.g. for TLS and SASL tests. */
export interface KafkaSecurityOptions {
  /** Listener name → security protocol (SSL, SASL_PLAINTEXT, SASL_SSL); each gets a free port. */
  listeners?: Record<string, string>;
  /** More server.properties entries: keystores, SASL mechanisms, JAAS configs. */
  properties?: Record<string, string>;
  /** More storage format arguments, e.g. `--add-scram` for SCRAM users (KRaft keeps them in metadata). */
  formatArgs?: string[];
}

export class LocalKafka extends LocalService {
  port = 0;
  private controllerPort = 0;
  /** Port of each extra listener, by name. */
  readonly listenerPorts: Record<string, number> = {};

  constructor(
    dir: string,
    private readonly security: KafkaSecurityOptions = {},
  ) {
    super(dir);
  }

  get brokers(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    await runScript("fetch-kafka.sh");
    const home = join(CACHE, `kafka-2.13-${KAFKA_VERSION}`);
    await mkdir(this.dir, { recursive: true });
    if (this.port === 0) {
      this.port = await freePort();
      this.controllerPort = await freePort();
      for (const name of Object.keys(this.security.listeners ?? {}))
        this.listenerPorts[name] = await freePort();
    }
    const extra = Object.entries(this.security.listeners ?? {});
    const endpoints = extra.map(([name]) => `,${name}://127.0.0.1:${this.listenerPorts[name]}`).join("");
    const props = join(this.dir, "server.properties");
    await writeFile(
      props,
      [
        "process.roles=broker,controller",
        "node.id=1",
        `controller.quorum.voters=1@127.0.0.1:${this.controllerPort}`,
        `listeners=PLAINTEXT://127.0.0.1:${this.port},CONTROLLER://127.0.0.1:${this.controllerPort}${endpoints}`,
        `advertised.listeners=PLAINTEXT://127.0.0.1:${this.port}${endpoints}`,
        "controller.listener.names=CONTROLLER",
        `listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT${extra.map(([n, p]) => `,${n}:${p}`).join("")}`,
        `log.dirs=${join(this.dir, "data")}`,
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=4",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "num.partitions=1",
        "log.retention.ms=-1",
        "log.cleaner.backoff.ms=1000",
        ...Object.entries(this.security.properties ?? {}).map(([k, v]) => `${k}=${v}`),
        "",
      ].join("\n"),
    );
    const log4j = join(this.dir, "log4j.properties");
    await writeFile(
      log4j,
      [
        "log4j.rootLogger=WARN, stdout",
        "log4j.appender.stdout=org.apache.log4j.ConsoleAppender",
        "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout",
        "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n",
        "log4j.logger.kafka.server.KafkaRaftServer=INFO",
        "",
      ].join("\n"),
    );
    const classpath = `${join(home, "libs")}/*`;
    const jvm = [
      "-Xms256m",
      "-Xmx1g",
      "-XX:+UseG1GC",
      "-Djava.awt.headless=true",
      `-Dlog4j.configuration=file:${log4j}`,
    ];
    if (!existsSync(join(this.dir, "data", "meta.properties"))) {
      await new Promise<void>((resolve, reject) => {
        const format = spawn(
          "java",
          [
            ...jvm,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            kafkaClusterId(),
            "-c",
            props,
            ...(this.security.formatArgs ?? []),
          ],
          { stdio: ["ignore", "ignore", "inherit"] },
        );
        format.on("error", reject);
        format.on("exit", (code) =>
          code === 0 ? resolve() : reject(new Error(`kafka storage format exited ${code}`)),
        );
      });
    }
    const proc = this.launch("kafka", "java", [...jvm, "-cp", classpath, "kafka.Kafka", props]);
    await waitFor(`Kafka on port ${this.port}`, () => canConnect(this.port), 60_000, proc);
  }
}

/** A KRaft cluster id: 16 random bytes, base64url; never starting with "-", which the CLI would take for an option. */
function kafkaClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString("base64url");
    if (!id.startsWith("-")) return id;
  }
}

/** Builds influxd into the cache the first time (a no-op afterwards) and returns its path. */
export async function influxdBinary(): Promise<string> {
  await runScript("build-influxd.sh");
  return join(CACHE, `influxdb-${INFLUXDB_VERSION}`, "influxd");
}

/** Builds Telegraf (Kafka input, JSON parser, InfluxDB output only) into the cache the first time; its path. */
export async function telegrafBinary(): Promise<string> {
  await runScript("build-telegraf.sh");
  return join(CACHE, `telegraf-${TELEGRAF_VERSION}`, "telegraf");
}

export class LocalInflux extends LocalService {
  port = 0;
  readonly org = "sensors";
  readonly bucket = "sensors";
  token = "";
  readToken = "";
  writeToken = "";

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const bin = await influxdBinary();
    await mkdir(this.dir, { recursive: true });
    if (this.port === 0) this.port = await freePort();
    const proc = this.launch("influxd", bin, [
      `--bolt-path=${join(this.dir, "influxd.bolt")}`,
      `--engine-path=${join(this.dir, "engine")}`,
      `--sqlite-path=${join(this.dir, "influxd.sqlite")}`,
      `--http-bind-address=127.0.0.1:${this.port}`,
      "--reporting-disabled",
      "--log-level=warn",
      // Query memory defaults are unbounded; keep a test or dev machine responsive.
      "--query-concurrency=16",
      "--query-queue-size=64",
      // Write the in-memory cache to TSM files 30 s after writes stop (default 10 min), so a store
      // that was just loaded settles (snapshot, then level compactions) before it is measured.
      "--storage-cache-snapshot-write-cold-duration=30s",
    ]);
    await waitFor(
      `InfluxDB on port ${this.port}`,
      async () => (await fetch(`${this.url}/health`)).ok,
      60_000,
      proc,
    );
    await this.setup();
    // The rollup buckets too, with the operator token: the worker may get a write-only one.
    await ensureBuckets(
      influxConfig({
        INFLUX_URL: this.url,
        INFLUX_TOKEN: this.token,
        INFLUX_ORG: this.org,
        INFLUX_BUCKET: this.bucket,
      }),
    );
    await this.scopedTokens();
  }

  /**
   * A read-only and a write-only token for the org's buckets, created once and saved beside the
   * operator token, so each service gets only the access it needs.
   */
  private async scopedTokens(): Promise<void> {
    const saved = join(this.dir, "scoped-tokens.json");
    if (existsSync(saved)) {
      const tokens = JSON.parse(await readFile(saved, "utf8")) as { read: string; write: string };
      this.readToken = tokens.read;
      this.writeToken = tokens.write;
      return;
    }
    const headers = { authorization: `Token ${this.token}`, "content-type": "application/json" };
    const orgs = (await (await fetch(`${this.url}/api/v2/orgs?org=${this.org}`, { headers })).json()) as {
      orgs: { id: string }[];
    };
    const orgID = orgs.orgs[0]?.id;
    if (!orgID) throw new Error(`InfluxDB org ${this.org} not found`);
    const create = async (action: "read" | "write") => {
      const res = await fetch(`${this.url}/api/v2/authorizations`, {
        method: "POST",
        headers,
        body: JSON.stringify({
          orgID,
          description: `sensor-analytics ${action}-only`,
          permissions: [{ action, resource: { type: "buckets", orgID } }],
        }),
      });
      if (!res.ok) throw new Error(`InfluxDB ${action} token: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { token: string }).token;
    };
    this.readToken = await create("read");
    this.writeToken = await create("write");
    await writeFile(saved, JSON.stringify({ read: this.readToken, write: this.writeToken }), { mode: 0o600 });
  }

  /** First start: create org, bucket and an operator token; later starts: read the saved token. */
  private async setup(): Promise<void> {
    const saved = join(this.dir, "credentials.json");
    const status = (await (await fetch(`${this.url}/api/v2/setup`)).json()) as { allowed: boolean };
    if (!status.allowed) {
      this.token = (JSON.parse(await readFile(saved, "utf8")) as { token: string }).token;
      return;
    }
    const token = randomBytes(24).toString("base64url");
    const res = await fetch(`${this.url}/api/v2/setup`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        username: "admin",
        password: randomUUID(),
        org: this.org,
        bucket: this.bucket,
        token,
        retentionPeriodSeconds: 0,
      }),
    });
    if (!res.ok) throw new Error(`InfluxDB setup failed: ${res.status} ${await res.text()}`);
    this.token = token;
    await writeFile(saved, JSON.stringify({ token, org: this.org, bucket: this.bucket }), { mode: 0o600 });
  }
}

export interface LocalServices {
  kafka: LocalKafka;
  influx: LocalInflux;
  env: ServiceEnv;
  /** Both at once; each gets SIGTERM, then SIGKILL after `graceMs` (default 30 s). */
  stop(graceMs?: number): Promise<void>;
}

/** Builds (first time), starts and waits for both services. Kafka and InfluxDB start in parallel. */
export async function startLocalServices(dir: string): Promise<LocalServices> {
  const kafka = new LocalKafka(join(dir, "kafka"));
  const influx = new LocalInflux(join(dir, "influxdb"));
  const started = Date.now();
  const results = await Promise.allSettled([kafka.start(), influx.start()]);
  const failure = results.find((r) => r.status === "rejected");
  if (failure) {
    await Promise.all([kafka.stop(), influx.stop()]);
    throw (failure as PromiseRejectedResult).reason;
  }
  log(
    `Kafka ${KAFKA_VERSION} at ${kafka.brokers}, InfluxDB ${INFLUXDB_VERSION} at ${influx.url} (${Date.now() - started} ms)`,
  );
  return {
    kafka,
    influx,
    env: {
      KAFKA_BROKERS: kafka.brokers,
      INFLUX_URL: influx.url,
      INFLUX_TOKEN: influx.token,
      INFLUX_ORG: influx.org,
      INFLUX_BUCKET: influx.bucket,
      INFLUX_READ_TOKEN: influx.readToken,
      INFLUX_WRITE_TOKEN: influx.writeToken,
    },
    stop: async (graceMs?: number) => {
      await Promise.all([kafka.stop(graceMs), influx.stop(graceMs)]);
    },
  };
}

/**
 * The one entry point for `npm start`, `npm test` and CI: external services when KAFKA_BROKERS and
 * INFLUX_URL are set (nothing is provisioned), local ones otherwise.
 */
export async function ensureServices(
  dir: string,
): Promise<{ env: ServiceEnv; stop(graceMs?: number): Promise<void>; local?: LocalServices }> {
  const e = process.env;
  if (e.KAFKA_BROKERS && e.INFLUX_URL) {
    const missing = ["INFLUX_TOKEN", "INFLUX_ORG", "INFLUX_BUCKET"].filter((k) => !e[k]);
    if (missing.length > 0) {
      throw new Error(`INFLUX_URL is set, so these must be set too: ${missing.join(", ")}`);
    }
    log(`using external Kafka ${e.KAFKA_BROKERS} and InfluxDB ${e.INFLUX_URL}`);
    return {
      env: {
        KAFKA_BROKERS: e.KAFKA_BROKERS,
        INFLUX_URL: e.INFLUX_URL,
        INFLUX_TOKEN: e.INFLUX_TOKEN as string,
        INFLUX_ORG: e.INFLUX_ORG as string,
        INFLUX_BUCKET: e.INFLUX_BUCKET as string,
        ...(e.INFLUX_READ_TOKEN ? { INFLUX_READ_TOKEN: e.INFLUX_READ_TOKEN } : {}),
        ...(e.INFLUX_WRITE_TOKEN ? { INFLUX_WRITE_TOKEN: e.INFLUX_WRITE_TOKEN } : {}),
      },
      stop: async () => {},
    };
  }
  if (e.KAFKA_BROKERS || e.INFLUX_URL) {
    throw new Error(
      "set both KAFKA_BROKERS and INFLUX_URL to use external services, or neither to run local ones",
    );
  }
  const local = await startLocalServices(dir);
  return { env: local.env, stop: local.stop, local };
}
