/**
 * The tool users would otherwise pick: Telegraf's kafka_consumer input → influxdb_v2 output, over
 * the same raw topic, broker and InfluxDB as the worker's run. It parses and stores the readings
 * and nothing else (no validation beyond JSON, no dead letters, detectors, rules, windows or
 * rollups) and is at-least-once. Tuned for throughput: 10,000 undelivered messages in flight,
 * batches of 10,000, a 100 ms flush, no compression on loopback. Timed from its start until
 * InfluxDB holds every distinct reading; its CPU time and peak RSS are read from /proc.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MEASUREMENTS } from "../common/topics.js";
import { TELEGRAF_VERSION, telegrafBinary } from "../scripts/services/local.js";
import { residentOf } from "./child-worker.js";
import { countReadings, createBucket, type Env, progress, rawTopic, sleep } from "./support.js";

export interface TelegrafRun {
  version: string;
  readingsPerSecond: number;
  seconds: number;
  /** User + system CPU seconds of the telegraf process. */
  cpuSeconds: number;
  peakRssMb: number;
}

/** /proc/<pid>/stat's user + system time in seconds (clock ticks of 1/100 s). */
async function cpuSecondsOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function config(env: Env, bucket: string): string {
  const q = JSON.stringify;
  return `[agent]
  interval = "1s"
  flush_interval = "100ms"
  flush_jitter = "0s"
  metric_batch_size = 10000
  metric_buffer_limit = 1000000
  omit_hostname = true

[[inputs.kafka_consumer]]
  brokers = ${q((env.KAFKA_BROKERS ?? "").split(","))}
  topics = [${q(rawTopic(env))}]
  consumer_group = ${q(`telegraf-${randomBytes(4).toString("hex")}`)}
  offset = "oldest"
  max_undelivered_messages = 10000
  data_format = "json_v2"
  [[inputs.kafka_consumer.json_v2]]
    measurement_name = ${q(MEASUREMENTS.readings)}
    timestamp_path = "timestamp"
    timestamp_format = "unix_ms"
    [[inputs.kafka_consumer.json_v2.tag]]
      path = "sensor_id"
    [[inputs.kafka_consumer.json_v2.field]]
      path = "temperature"
      type = "float"

[[outputs.influxdb_v2]]
  urls = [${q(env.INFLUX_URL ?? "")}]
  token = ${q(env.INFLUX_TOKEN ?? "")}
  organization = ${q(env.INFLUX_ORG ?? "")}
  bucket = ${q(bucket)}
  content_encoding = "identity"
`;
}

/** Runs Telegraf over the raw topic of `env` until its bucket holds `distinct` readings. */
export async function runTelegraf(env: Env, distinct: number): Promise<TelegrafRun> {
  const line = progress("2/5 limits: Telegraf kafka_consumer → influxdb_v2");
  line.update("building (once)");
  const binary = await telegrafBinary();
  const bucket = `${env.INFLUX_BUCKET}-telegraf`;
  const target = { ...env, INFLUX_BUCKET: bucket };
  await createBucket(target);
  const dir = await mkdtemp(join(tmpdir(), "bench-telegraf-"));
  const file = join(dir, "telegraf.conf");
  await writeFile(file, config(env, bucket));
  const started = performance.now();
  const child = spawn(binary, ["--config", file], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr.on("data", (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-4000);
  });
  let exited: number | null | undefined;
  child.on("exit", (code) => {
    exited = code;
  });
  const timeoutMs = Math.max(180_000, distinct * 2);
  try {
    const pid = child.pid as number;
    let peakRssMb = 0;
    let cpuSeconds = 0;
    for (;;) {
      const elapsed = performance.now() - started;
      if (exited !== undefined) throw new Error(`telegraf exited with ${exited}:\n${log}`);
      if (elapsed > timeoutMs) throw new Error(`telegraf not done after ${timeoutMs / 1000} s:\n${log}`);
      peakRssMb = (await residentOf(pid)).hwmMb;
      cpuSeconds = await cpuSecondsOf(pid);
      const stored = await countReadings(target);
      line.update(`${stored}/${distinct} readings in InfluxDB after ${(elapsed / 1000).toFixed(1)} s`);
      if (stored >= distinct) break;
      await sleep(200);
    }
    const seconds = (performance.now() - started) / 1000;
    line.done(`${distinct} readings in ${seconds.toFixed(1)} s`);
    return {
      version: TELEGRAF_VERSION,
      readingsPerSecond: distinct / seconds,
      seconds,
      cpuSeconds,
      peakRssMb,
    };
  } finally {
    child.kill("SIGTERM");
    await rm(dir, { recursive: true, force: true });
  }
}
