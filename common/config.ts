/**
 * Configuration from environment variables, validated once at start-up. Every variable the code
 * reads is declared here (and documented in .env.example), so a typo fails fast with a message
 * naming the variable, the value and what is accepted.
 */

import type { TierName } from "./rollups.js";
import { durationToMs } from "./rules.js";

export class ConfigError extends Error {
  override name = "ConfigError";
}

type Env = Record<string, string | undefined>;

function raw(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

export function str(env: Env, name: string, fallback?: string): string {
  const value = raw(env, name) ?? fallback;
  if (value === undefined) throw new ConfigError(`${name} is required but not set`);
  return value;
}

export function optionalStr(env: Env, name: string): string | undefined {
  return raw(env, name);
}

export function num(
  env: Env,
  name: string,
  fallback: number,
  { min = -Infinity, max = Infinity, integer = false } = {},
): number {
  const text = raw(env, name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < min || value > max) {
    const kind = integer ? "an integer" : "a number";
    throw new ConfigError(
      `${name}=${JSON.stringify(text)} is not valid: expected ${kind} in [${min}, ${max}]`,
    );
  }
  return value;
}

export function bool(env: Env, name: string, fallback: boolean): boolean {
  const text = raw(env, name)?.toLowerCase();
  if (text === undefined) return fallback;
  if (["1", "true", "yes", "on"].includes(text)) return true;
  if (["0", "false", "no", "off"].includes(text)) return false;
  throw new ConfigError(`${name}=${JSON.stringify(text)} is not valid: expected true or false`);
}

export function list(env: Env, name: string, fallback: string[]): string[] {
  const text = raw(env, name);
  if (text === undefined) return fallback;
  return text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

export interface KafkaConfig {
  brokers: string[];
  clientId: string;
  /** Prefixed to every topic name, so several deployments (or test runs) can share a cluster. */
  topicPrefix: string;
  /** Partitions given to sensor-readings-raw (and the worker's state changelog) when created. */
  partitions: number;
}

export interface InfluxConfig {
  url: string;
  token: string;
  org: string;
  /** Raw readings, anomaly flags, alert transitions and pipeline stats. */
  bucket: string;
  /** One bucket per rollup tier (see common/rollups.ts). */
  rollupBuckets: Record<TierName, string>;
  /** Retention given to each bucket when it is created (0 = forever); existing buckets keep theirs. */
  retentionMs: { raw: number } & Record<TierName, number>;
}

export function kafkaConfig(env: Env = process.env): KafkaConfig {
  const brokers = list(env, "KAFKA_BROKERS", []);
  if (brokers.length === 0)
    throw new ConfigError("KAFKA_BROKERS is required: a comma-separated list of host:port");
  for (const broker of brokers) {
    const port = Number(broker.split(":").pop());
    if (!/^[^\s:]+:\d{1,5}$/.test(broker) || port < 1 || port > 65535) {
      throw new ConfigError(`KAFKA_BROKERS entry ${JSON.stringify(broker)} is not valid: expected host:port`);
    }
  }
  return {
    brokers,
    clientId: str(env, "KAFKA_CLIENT_ID", "sensor-analytics"),
    topicPrefix: str(env, "KAFKA_TOPIC_PREFIX", ""),
    partitions: num(env, "KAFKA_PARTITIONS", 6, { min: 1, max: 1000, integer: true }),
  };
}

export function influxConfig(env: Env = process.env): InfluxConfig {
  const url = str(env, "INFLUX_URL");
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error("protocol");
  } catch {
    throw new ConfigError(`INFLUX_URL=${JSON.stringify(url)} is not valid: expected an http(s) URL`);
  }
  const bucket = str(env, "INFLUX_BUCKET");
  return {
    url: url.replace(/\/+$/, ""),
    token: str(env, "INFLUX_TOKEN"),
    org: str(env, "INFLUX_ORG"),
    bucket,
    rollupBuckets: {
      "1m": str(env, "INFLUX_ROLLUP_BUCKET_1M", `${bucket}_1m`),
      "1h": str(env, "INFLUX_ROLLUP_BUCKET_1H", `${bucket}_1h`),
    },
    retentionMs: {
      raw: retention(env, "INFLUX_RETENTION_RAW"),
      "1m": retention(env, "INFLUX_RETENTION_1M"),
      "1h": retention(env, "INFLUX_RETENTION_1H"),
    },
  };
}

/** A retention: a duration such as 30d or 8760h, at least one hour, or 0 for forever (the default). */
function retention(env: Env, name: string): number {
  const text = raw(env, name);
  if (text === undefined || text === "0") return 0;
  let ms: number;
  try {
    ms = durationToMs(text);
  } catch {
    throw new ConfigError(
      `${name}=${JSON.stringify(text)} is not valid: expected 0 (forever) or a duration such as 30d`,
    );
  }
  if (ms < 3_600_000) {
    throw new ConfigError(`${name}=${JSON.stringify(text)} is too short: InfluxDB keeps data at least 1h`);
  }
  return ms;
}
