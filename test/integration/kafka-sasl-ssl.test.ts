/**
 * Secured services, for real: a second local Kafka broker with a SASL_SSL listener (SCRAM-SHA-256,
 * SCRAM-SHA-512 and PLAIN users) and an mTLS listener, and an influxd serving https, both with
 * certificates from a CA this test makes with openssl and keytool. The simulator, the worker and the
 * API run over them as separate users; a wrong password, a missing CA or a wrong token stops a
 * process at start with a message naming the setting to fix.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { influxConfig, kafkaConfig } from "../../common/config.js";
import { influxHealthy } from "../../common/influx.js";
import { createKafka, ensureTopics, verifyKafkaAccess, withAdmin } from "../../common/kafka.js";
import { DEFAULT_SIMULATION, simulate } from "../../ingest/simulation.js";
import { freePort, influxdBinary, LocalKafka } from "../../scripts/services/local.js";
import {
  ADMIN_TOKEN,
  type Env,
  eventually,
  getJson,
  READ_TOKEN,
  ROOT,
  startApi,
} from "../support/harness.js";
import { CLIENT_KEY_PASSWORD, createTestPki, STORE_PASSWORD, type TestPki } from "../support/tls.js";

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const SENSORS = 4;
const COUNT = 200;
const SEED = 7;
const SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
const USERS = {
  simulator: {
    KAFKA_SASL_MECHANISM: "scram-sha-256",
    KAFKA_SASL_USERNAME: "simulator",
    KAFKA_SASL_PASSWORD: "simulator-secret",
  },
  worker: {
    KAFKA_SASL_MECHANISM: "scram-sha-512",
    KAFKA_SASL_USERNAME: "worker",
    KAFKA_SASL_PASSWORD: "worker-secret",
  },
  api: { KAFKA_SASL_MECHANISM: "plain", KAFKA_SASL_USERNAME: "api", KAFKA_SASL_PASSWORD: "api-secret" },
};

/** A JSON request over https trusting only `ca`, for provisioning the test's influxd. */
function httpsJson(
  url: string,
  method: string,
  ca: string,
  body?: unknown,
  token?: string,
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        ca,
        headers: {
          "content-type": "application/json",
          ...(token ? { authorization: `Token ${token}` } : {}),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : null }));
      },
    );
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** influxd with --tls-cert/--tls-key, set up with an org, a bucket and an operator token. */
async function startHttpsInflux(dir: string, pki: TestPki) {
  const port = await freePort();
  const proc = spawn(
    await influxdBinary(),
    [
      `--bolt-path=${join(dir, "influxd.bolt")}`,
      `--engine-path=${join(dir, "engine")}`,
      `--sqlite-path=${join(dir, "influxd.sqlite")}`,
      `--http-bind-address=127.0.0.1:${port}`,
      `--tls-cert=${pki.serverCertFile}`,
      `--tls-key=${pki.serverKeyFile}`,
      "--reporting-disabled",
      "--log-level=warn",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  proc.stderr?.on("data", (d) => (stderr += d));
  const url = `https://127.0.0.1:${port}`;
  const ca = readFileSync(pki.caFile, "utf8");
  const config = {
    ...influxConfig({ INFLUX_URL: url, INFLUX_TOKEN: "-", INFLUX_ORG: "sensors", INFLUX_BUCKET: "sensors" }),
    ca,
  };
  const deadline = Date.now() + 60_000;
  while (!(await influxHealthy(config))) {
    if (proc.exitCode !== null) throw new Error(`influxd exited with ${proc.exitCode}: ${stderr}`);
    if (Date.now() > deadline) throw new Error(`influxd on ${url} not healthy after 60 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const token = `tls-test-token-${Date.now()}`;
  const setup = await httpsJson(`${url}/api/v2/setup`, "POST", ca, {
    username: "admin",
    password: "admin-password-123",
    org: config.org,
    bucket: config.bucket,
    token,
    retentionPeriodSeconds: 0,
  });
  if (setup.status !== 201)
    throw new Error(`influxd setup failed: ${setup.status} ${JSON.stringify(setup.body)}`);
  const { org, bucket } = setup.body as { org: { id: string }; bucket: { id: string } };
  // The rollup buckets, created as an operator would before handing out scoped tokens.
  const buckets = [bucket.id];
  for (const name of Object.values(
    influxConfig({ INFLUX_URL: url, INFLUX_TOKEN: "-", INFLUX_ORG: config.org, INFLUX_BUCKET: config.bucket })
      .rollupBuckets,
  )) {
    const created = await httpsJson(
      `${url}/api/v2/buckets`,
      "POST",
      ca,
      { orgID: org.id, name, retentionRules: [] },
      token,
    );
    if (created.status !== 201) throw new Error(`creating bucket ${name} failed: ${created.status}`);
    buckets.push((created.body as { id: string }).id);
  }
  // Tokens with only the permissions the README lists: the worker writes, the API reads.
  const scoped = async (action: "read" | "write") => {
    const res = await httpsJson(
      `${url}/api/v2/authorizations`,
      "POST",
      ca,
      {
        orgID: org.id,
        description: `${action} ${config.bucket}`,
        permissions: buckets.map((id) => ({ action, resource: { type: "buckets", id, orgID: org.id } })),
      },
      token,
    );
    if (res.status !== 201) throw new Error(`creating a ${action} token failed: ${res.status}`);
    return (res.body as { token: string }).token;
  };
  return {
    proc,
    url,
    token,
    writeToken: await scoped("write"),
    readToken: await scoped("read"),
    org: config.org,
    bucket: config.bucket,
  };
}

interface Exited {
  code: number | null;
  output: string;
}

/** Runs one of the project's entry points with exactly `env` (nothing inherited but PATH and HOME). */
function launch(
  script: string,
  args: string[],
  env: Env,
): { child: ChildProcess; output: () => string; exited: Promise<Exited> } {
  const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (d) => (output += d));
  child.stderr?.on("data", (d) => (output += d));
  const exited = new Promise<Exited>((resolve) => child.on("exit", (code) => resolve({ code, output })));
  return { child, output: () => output, exited };
}

/** Waits for a process to exit by itself; kills it and fails at the deadline. */
async function exitOf(script: string, args: string[], env: Env, timeoutMs = 90_000): Promise<Exited> {
  const run = launch(script, args, env);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      run.child.kill("SIGKILL");
      reject(new Error(`${script} still running after ${timeoutMs} ms; output so far:\n${run.output()}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([run.exited, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The `error` of the fatal line a service logs (pino JSON) before exiting. */
function fatalError(output: string): string | undefined {
  for (const line of output.split("\n")) {
    if (!line.startsWith("{")) continue;
    const entry = JSON.parse(line) as { level?: number; error?: string };
    if (entry.level === 60) return entry.error;
  }
  return undefined;
}

describe("Kafka over SASL_SSL and mTLS, InfluxDB over https", () => {
  let dir: string;
  let pki: TestPki;
  let kafka: LocalKafka;
  let influx: Awaited<ReturnType<typeof startHttpsInflux>>;
  let base: Env;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "kafka-sasl-ssl-"));
    pki = createTestPki(mkdtempSync(join(dir, "pki-")));
    kafka = new LocalKafka(join(dir, "kafka"), {
      listeners: { SASL_SSL: "SASL_SSL", MTLS: "SSL" },
      properties: {
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": pki.keystoreFile,
        "ssl.keystore.password": STORE_PASSWORD,
        "ssl.key.password": STORE_PASSWORD,
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": pki.truststoreFile,
        "ssl.truststore.password": STORE_PASSWORD,
        "listener.name.mtls.ssl.client.auth": "required",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": `org.apache.kafka.common.security.plain.PlainLoginModule required user_api="${USERS.api.KAFKA_SASL_PASSWORD}";`,
        "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": SCRAM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": SCRAM,
      },
      // KRaft keeps SCRAM credentials in its metadata log: they are added when storage is formatted.
      formatArgs: [
        "--add-scram",
        `SCRAM-SHA-256=[name=simulator,password=${USERS.simulator.KAFKA_SASL_PASSWORD}]`,
        "--add-scram",
        `SCRAM-SHA-512=[name=worker,password=${USERS.worker.KAFKA_SASL_PASSWORD}]`,
      ],
    });
    const [, started] = await Promise.all([kafka.start(), startHttpsInflux(join(dir, "influxdb"), pki)]);
    influx = started;
    base = {
      KAFKA_BROKERS: `127.0.0.1:${kafka.listenerPorts.SASL_SSL}`,
      KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
      KAFKA_SSL_CA_FILE: pki.caFile,
      KAFKA_TOPIC_PREFIX: "tls.",
      KAFKA_PARTITIONS: "3",
      INFLUX_URL: influx.url,
      INFLUX_CA_FILE: pki.caFile,
      INFLUX_TOKEN: influx.token,
      INFLUX_ORG: influx.org,
      INFLUX_BUCKET: influx.bucket,
      INGEST_GROUP_ID: "ingest-tls",
      INGEST_METRICS_ENABLED: "false",
      API_READ_TOKENS: READ_TOKEN,
      API_ADMIN_TOKENS: ADMIN_TOKEN,
      API_PORT: "0",
      LOG_LEVEL: "warn",
    };
  });

  afterAll(async () => {
    for (const child of children) child.kill("SIGKILL");
    await kafka?.stop();
    if (influx && influx.proc.exitCode === null) {
      const exited = new Promise((r) => influx.proc.once("exit", r));
      influx.proc.kill("SIGTERM");
      await exited;
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("runs simulator (SCRAM-SHA-256), worker (SCRAM-SHA-512, write-only token) and API (PLAIN, read-only token) over SASL_SSL and https: every reading is queryable", async () => {
    const simulated = await exitOf(
      "ingest/simulator.ts",
      [
        "--sensors",
        String(SENSORS),
        "--count",
        String(COUNT),
        "--rate",
        "0",
        "--start",
        String(T0),
        "--anomaly",
        "0",
        "--seed",
        String(SEED),
      ],
      { ...base, ...USERS.simulator },
    );
    expect(simulated.output).toContain(`done: ${COUNT} messages to tls.sensor-readings-raw`);
    expect(simulated.code).toBe(0);

    const worker = launch("ingest/main.ts", [], {
      ...base,
      ...USERS.worker,
      INFLUX_TOKEN: influx.writeToken,
    });
    children.push(worker.child);
    const api = await startApi({ ...base, ...USERS.api, INFLUX_TOKEN: influx.readToken });
    try {
      const expected = new Map<string, { time: string; temperature: number }[]>();
      for (const m of simulate({
        ...DEFAULT_SIMULATION,
        sensors: SENSORS,
        count: COUNT,
        startTime: T0,
        anomalyProbability: 0,
        seed: SEED,
      })) {
        const r = JSON.parse(m.value) as { sensor_id: string; temperature: number; timestamp: number };
        expected.set(r.sensor_id, [
          ...(expected.get(r.sensor_id) ?? []),
          { time: new Date(r.timestamp).toISOString(), temperature: r.temperature },
        ]);
      }
      expect(expected.size).toBe(SENSORS);
      const range = `start=${new Date(T0).toISOString()}&stop=${new Date(T0 + 3_600_000).toISOString()}&limit=1000`;
      for (const [sensor, readings] of expected) {
        const answer = await eventually(
          `${readings.length} readings of ${sensor} served by the API (worker output: ${worker.output().slice(-500)})`,
          () =>
            getJson<{ readings: { time: string; fields: Record<string, number> }[] }>(
              `${api.url}/v1/sensors/${sensor}/readings?${range}`,
            ),
          (r) => r.status === 200 && r.body.readings.length >= readings.length,
          90_000,
        );
        expect(
          answer.body.readings.map((r) => ({ time: r.time, temperature: r.fields.temperature })),
        ).toEqual(readings);
      }
      // The API's own reachability check goes over the same TLS settings.
      const ready = await getJson<{ status: string; kafka: boolean; influxdb: boolean }>(`${api.url}/ready`);
      expect(ready.status).toBe(200);
      expect(ready.body).toMatchObject({ status: "ok", kafka: true, influxdb: true });
    } finally {
      await api.stop();
      worker.child.kill("SIGTERM");
      expect((await worker.exited).code).toBe(0);
    }
  });

  it("a wrong password stops the worker and the simulator at start, naming the user and the mechanism", async () => {
    const worker = await exitOf("ingest/main.ts", [], {
      ...base,
      ...USERS.worker,
      KAFKA_SASL_PASSWORD: "not-the-password",
    });
    expect(worker.code).not.toBe(0);
    expect(fatalError(worker.output)).toMatch(
      /^Kafka authentication failed for user "worker" with mechanism scram-sha-512 \(.*invalid credentials.*\): check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM$/,
    );
    const simulator = await exitOf("ingest/simulator.ts", ["--count", "1"], {
      ...base,
      ...USERS.api,
      KAFKA_SASL_PASSWORD: "not-the-password",
    });
    expect(simulator.code).toBe(2);
    expect(simulator.output).toContain('Kafka authentication failed for user "api" with mechanism plain');
  });

  it("a client without the CA stops at start: certificate not trusted, set KAFKA_SSL_CA_FILE / INFLUX_CA_FILE", async () => {
    const noKafkaCa = await exitOf("ingest/main.ts", [], { ...base, ...USERS.worker, KAFKA_SSL_CA_FILE: "" });
    expect(noKafkaCa.code).not.toBe(0);
    expect(fatalError(noKafkaCa.output)).toBe(
      `certificate of Kafka broker ${base.KAFKA_BROKERS} not trusted (SELF_SIGNED_CERT_IN_CHAIN): set KAFKA_SSL_CA_FILE to the PEM file of the CA that signed it`,
    );
    // Trusting some other CA is no better than trusting the system's roots.
    const otherCa = await exitOf("api/main.ts", [], {
      ...base,
      ...USERS.api,
      INFLUX_CA_FILE: pki.otherCaFile,
    });
    expect(otherCa.code).not.toBe(0);
    expect(fatalError(otherCa.output)).toMatch(
      new RegExp(
        `^certificate of InfluxDB at ${influx.url} not trusted \\([A-Z_]+\\): set INFLUX_CA_FILE to the PEM file of the CA that signed it$`,
      ),
    );
    const wrongToken = await exitOf("api/main.ts", [], {
      ...base,
      ...USERS.api,
      INFLUX_TOKEN: "not-a-token",
    });
    expect(wrongToken.code).not.toBe(0);
    expect(fatalError(wrongToken.output)).toContain(
      `InfluxDB at ${influx.url} rejected INFLUX_TOKEN (401 unauthorized)`,
    );
  });

  it("mTLS: a client certificate with an encrypted key is accepted; without one the broker refuses and the error says so", async () => {
    const mtls = {
      KAFKA_BROKERS: `127.0.0.1:${kafka.listenerPorts.MTLS}`,
      KAFKA_SECURITY_PROTOCOL: "SSL",
      KAFKA_SSL_CA_FILE: pki.caFile,
      KAFKA_TOPIC_PREFIX: "mtls.",
    };
    const config = kafkaConfig({
      ...mtls,
      KAFKA_SSL_CERT_FILE: pki.clientCertFile,
      KAFKA_SSL_KEY_FILE: pki.clientEncryptedKeyFile,
      KAFKA_SSL_KEY_PASSWORD: CLIENT_KEY_PASSWORD,
    });
    await verifyKafkaAccess(config);
    const topics = await withAdmin(createKafka(config), async (admin) => {
      await ensureTopics(admin, config, ["raw"]);
      return admin.listTopics();
    });
    expect(topics).toContain("mtls.sensor-readings-raw");
    await expect(verifyKafkaAccess(kafkaConfig(mtls))).rejects.toThrow(
      new RegExp(
        `^Kafka broker ${mtls.KAFKA_BROKERS} refused the TLS handshake \\(ERR_SSL_[A-Z0-9_]+\\): the broker probably requires a client certificate: set KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE$`,
      ),
    );
  });
});
