/**
 * `npm start`: local Kafka and InfluxDB (or the ones named by KAFKA_BROKERS/INFLUX_URL), then the
 * ingest worker, the API and the simulator as child processes. Prints where everything is.
 * Data persists in .data/ between runs; Ctrl-C stops it all cleanly.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureServices, log } from "./services/local.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DATA = join(ROOT, ".data");

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

async function main(): Promise<void> {
  await mkdir(join(DATA, "logs"), { recursive: true });
  const services = await ensureServices(join(DATA, "services"));
  const tokens = await apiTokens();
  const apiPort = process.env.API_PORT ?? "8080";
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...services.env,
    API_PORT: apiPort,
    ...(tokens.generated ? { API_READ_TOKENS: tokens.read, API_ADMIN_TOKENS: tokens.admin } : {}),
  };

  const children: ChildProcess[] = [];
  const run = (name: string, file: string, args: string[] = [], extraEnv: NodeJS.ProcessEnv = {}) => {
    const out = createWriteStream(join(DATA, "logs", `${name}.log`), { flags: "a" });
    const child = spawn(process.execPath, ["--import", "tsx", file, ...args], {
      cwd: ROOT,
      env: { ...env, ...extraEnv },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    child.on("exit", (code, signal) => {
      if (!stopping) log(`${name} exited (${signal ?? code}); see .data/logs/${name}.log`);
    });
    children.push(child);
    return child;
  };

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    log("stopping…");
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
        child.kill("SIGTERM");
        await exited;
      }),
    );
    await services.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop());
  process.on("SIGTERM", () => void stop());

  // The worker only writes: it gets the write-only token when provisioning made one.
  run(
    "ingest",
    "ingest/main.ts",
    [],
    services.env.INFLUX_WRITE_TOKEN ? { INFLUX_TOKEN: services.env.INFLUX_WRITE_TOKEN } : {},
  );
  run("api", "api/main.ts");
  run("simulator", "ingest/simulator.ts", [
    "--sensors",
    "10",
    "--rate",
    "10",
    "--count",
    "0",
    "--anomaly",
    "0.01",
  ]);

  const api = `http://127.0.0.1:${apiPort}`;
  for (let i = 0; i < 100; i++) {
    if (
      await fetch(`${api}/health`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 200));
  }
  console.log(`
Sensor analytics is running.
  API            ${api}
  API docs       ${api}/docs
  read token     ${tokens.read}
  admin token    ${tokens.admin || "(none configured)"}
  try            curl -H "Authorization: Bearer ${tokens.read}" "${api}/v1/aggregates?window=1m&start=-10m"
  ingest metrics http://127.0.0.1:${process.env.INGEST_METRICS_PORT ?? "9464"}/metrics
  Kafka          ${services.env.KAFKA_BROKERS}
  InfluxDB       ${services.env.INFLUX_URL}  (org ${services.env.INFLUX_ORG}, bucket ${services.env.INFLUX_BUCKET})
  read-only InfluxDB token (for Grafana)  ${services.env.INFLUX_READ_TOKEN ?? services.env.INFLUX_TOKEN}
  logs           .data/logs/
The simulator sends 10 readings/s from 10 sensors. Ctrl-C stops everything.
`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
