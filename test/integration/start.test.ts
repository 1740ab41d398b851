/**
 * `npm start` as a user runs it: a real child in its own process group (a terminal's foreground
 * group), an empty data directory, its own Kafka and InfluxDB from the provisioned cache. Ctrl-C is
 * what a terminal sends: SIGINT to the whole group.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DEFAULT_SIMULATION, simulate } from "../../ingest/simulation.js";
import { freePort, LocalInflux } from "../../scripts/services/local.js";
import { eventually, fluxRows, getJson, groupProgress, ROOT } from "../support/harness.js";

interface Proc {
  pid: number;
  pgid: number;
  command: string;
}

/** Every process in the given group, or started (at any depth) with this data directory. */
async function processesOf(pgid: number, dataDir: string): Promise<Proc[]> {
  const found: Proc[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      // Fields after the command name (which may hold spaces) in parentheses: state ppid pgrp …
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] === "Z") continue;
      const group = Number(fields[2]);
      const environ = await readFile(`/proc/${entry}/environ`, "utf8").catch(() => "");
      if (group === pgid || environ.split("\0").includes(`SENSOR_DATA_DIR=${dataDir}`)) {
        const command = (await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "")).replaceAll(
          "\0",
          " ",
        );
        found.push({ pid: Number(entry), pgid: group, command: command.slice(0, 160) });
      }
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}

async function waitForOutput(what: string, output: () => string, pattern: RegExp, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const match = pattern.exec(output());
    if (match) return match;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not printed within ${timeoutMs} ms; output so far:\n${output()}`);
}

function childEnv(dataDir: string, apiPort: number, metricsPort: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SENSOR_DATA_DIR: dataDir,
    API_PORT: String(apiPort),
    INGEST_METRICS_PORT: String(metricsPort),
    LOG_LEVEL: "info",
  };
  // Its own services and generated tokens, whatever the shell running the tests has set.
  for (const name of [
    "KAFKA_BROKERS",
    "INFLUX_URL",
    "INFLUX_TOKEN",
    "INFLUX_ORG",
    "INFLUX_BUCKET",
    "KAFKA_TOPIC_PREFIX",
    "INGEST_GROUP_ID",
    "API_READ_TOKENS",
    "API_ADMIN_TOKENS",
  ])
    delete env[name];
  return env;
}

describe("npm start", () => {
  it("on an empty data directory serves readings within 60 s of the services being up; Ctrl-C stops every process within 10 s and every produced reading is stored", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "sensor-analytics-start-"));
    const apiPort = await freePort();
    const metricsPort = await freePort();
    let output = "";
    const npm: ChildProcess = spawn("npm", ["start"], {
      cwd: ROOT,
      env: childEnv(dataDir, apiPort, metricsPort),
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const pgid = npm.pid as number;
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      npm.once("exit", (code, signal) => resolve({ code, signal })),
    );
    npm.stdout?.on("data", (d) => (output += d));
    npm.stderr?.on("data", (d) => (output += d));
    let influx: LocalInflux | undefined;
    try {
      await waitForOutput("services up", () => output, /\[services\] Kafka \S+ at \S+, InfluxDB/, 180_000);
      const servicesUp = Date.now();
      const banner = await waitForOutput(
        "the running banner",
        () => output,
        /Sensor analytics is running[\s\S]*read token\s+(\S+)/,
        60_000,
      );
      const token = banner[1] as string;
      const api = `http://127.0.0.1:${apiPort}`;
      const sensors = await eventually(
        "all 10 simulated sensors listed by the API",
        () => getJson<{ sensors: { sensor_id: string }[] }>(`${api}/v1/sensors?start=-1h`, token),
        (r) => r.status === 200 && r.body.sensors.length === 10,
        Math.max(1000, servicesUp + 60_000 - Date.now()),
      );
      expect(sensors.body.sensors.map((s) => s.sensor_id).sort()).toEqual(
        Array.from({ length: 10 }, (_, i) => `sensor_${i + 1}`).sort(),
      );
      const readings = await getJson<{ readings: unknown[] }>(
        `${api}/v1/sensors/sensor_1/readings?start=-1h&limit=1000`,
        token,
      );
      expect(readings.status).toBe(200);
      expect(readings.body.readings.length).toBeGreaterThan(0);
      const ingestReady = await fetch(`http://127.0.0.1:${metricsPort}/ready`);
      expect(ingestReady.status).toBe(200);
      expect(output).not.toMatch(/exited \(/);

      // Someone who started it a while ago: the backlog of the first seconds, produced while the
      // worker was still joining its group, has been worked off (at most 2 s of readings behind).
      const brokers = (/Kafka\s+(127\.0\.0\.1:\d+)/.exec(output) as RegExpExecArray)[1] as string;
      // And enough traffic for the stop to interrupt: more than 100 readings produced.
      await eventually(
        "more than 100 readings produced and the worker within 20 readings of the simulator",
        () =>
          groupProgress({ KAFKA_BROKERS: brokers, KAFKA_TOPIC_PREFIX: "", INGEST_GROUP_ID: "sensor-ingest" }),
        (g) => g.end > 100 && g.committed > 0 && g.end - g.committed <= 20,
        90_000,
      );

      // A terminal's Ctrl-C: SIGINT to every process of the foreground group.
      const beforeStop = (await processesOf(pgid, dataDir)).length;
      expect(beforeStop).toBeGreaterThanOrEqual(5); // npm start, ingest, api, simulator, Kafka, InfluxDB
      process.kill(-pgid, "SIGINT");
      const stopAt = Date.now();
      let left: Proc[] = [];
      while (Date.now() - stopAt < 10_000) {
        left = await processesOf(pgid, dataDir);
        if (left.length === 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(left, `still running 10 s after SIGINT:\n${JSON.stringify(left, null, 1)}\n${output}`).toEqual(
        [],
      );
      // npm ends itself with the signal it was sent once its script is done; the script's own exit is
      // the "stopped in" line below.
      expect([
        { code: 0, signal: null },
        { code: null, signal: "SIGINT" },
      ]).toContainEqual(await exited);
      expect(output).toMatch(/\[start\] stopped in \d+\.\d s/);
      const order = [
        "simulator stopped",
        "worker caught up",
        "worker stopped",
        "API stopped",
        "Kafka and InfluxDB stopped",
      ].map((line) => output.indexOf(line));
      expect(
        order.every((at) => at >= 0),
        output,
      ).toBe(true);
      expect(
        [...order].sort((a, b) => a - b),
        output,
      ).toEqual(order);
      expect(output).not.toMatch(/exited \(|readings left|forcing|killed/);

      const logs = join(dataDir, "logs");
      for (const name of await readdir(logs)) {
        expect(await readFile(join(logs, name), "utf8"), name).not.toContain("\r");
      }

      // Nothing lost: every reading the simulator says it produced is in InfluxDB, as produced.
      const simulatorLog = await readFile(join(logs, "simulator.log"), "utf8");
      const started =
        /producing to \S+: (\d+) sensors \(one reading each every (\d+) ms\), .*anomaly probability ([\d.]+), seed (\d+), first event time (\d+)/.exec(
          simulatorLog,
        );
      const done = /done: (\d+) messages/.exec(simulatorLog);
      expect(started, simulatorLog).not.toBeNull();
      expect(done, simulatorLog).not.toBeNull();
      const [, sensorCount, intervalMs, anomaly, seed, startTime] = (started as RegExpExecArray).map(Number);
      const count = Number((done as RegExpExecArray)[1]);
      expect(count).toBeGreaterThan(100);
      const expected = [
        ...simulate({
          ...DEFAULT_SIMULATION,
          sensors: sensorCount as number,
          intervalMs: intervalMs as number,
          anomalyProbability: anomaly as number,
          seed: seed as number,
          startTime: startTime as number,
          count,
        }),
      ].map((m) => {
        const r = JSON.parse(m.value) as { sensor_id: string; temperature: number; timestamp: number };
        return `${r.sensor_id}|${r.timestamp}|${r.temperature}`;
      });

      influx = new LocalInflux(join(dataDir, "services", "influxdb"));
      await influx.start();
      const rows = await fluxRows<{ sensor_id: string; _time: string; _value: number }>(
        {
          INFLUX_URL: influx.url,
          INFLUX_TOKEN: influx.token,
          INFLUX_ORG: influx.org,
          INFLUX_BUCKET: influx.bucket,
        },
        `from(bucket: "${influx.bucket}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "readings" and r._field == "temperature") |> group() |> keep(columns: ["sensor_id", "_time", "_value"])`,
      );
      const stored = rows.map((r) => `${r.sensor_id}|${Date.parse(r._time)}|${r._value}`);
      expect(stored.length).toBe(count);
      expect(new Set(stored)).toEqual(new Set(expected));
    } finally {
      if (npm.exitCode === null && npm.signalCode === null) process.kill(-pgid, "SIGKILL");
      for (const p of await processesOf(pgid, dataDir)) process.kill(p.pid, "SIGKILL");
      await influx?.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 330_000);
});
