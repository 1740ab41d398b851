/**
 * Configuration from environment variables, validated once at start-up. Every variable the code
 * reads is declared here (and documented in .env.example), so a typo fails fast with a message
 * naming the variable, the value and what is accepted.
 */

import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
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

export const KAFKA_SECURITY_PROTOCOLS = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] as const;
export type KafkaSecurityProtocol = (typeof KAFKA_SECURITY_PROTOCOLS)[number];
export const KAFKA_SASL_MECHANISMS = ["plain", "scram-sha-256", "scram-sha-512"] as const;
export type KafkaSaslMechanism = (typeof KAFKA_SASL_MECHANISMS)[number];

/** TLS to the brokers. PEM contents, read and checked at start-up. */
export interface KafkaTls {
  /** CA certificate(s) the brokers' certificates must chain to; unset: the system's trusted roots. */
  ca?: string;
  /** Client certificate and key, for brokers that require them (mTLS). */
  cert?: string;
  key?: string;
  passphrase?: string;
}

export interface KafkaSasl {
  mechanism: KafkaSaslMechanism;
  username: string;
  password: string;
}

export interface KafkaConfig {
  brokers: string[];
  clientId: string;
  /** Prefixed to every topic name, so several deployments (or test runs) can share a cluster. */
  topicPrefix: string;
  /** Partitions given to sensor-readings-raw (and the worker's state changelog) when created. */
  partitions: number;
  securityProtocol: KafkaSecurityProtocol;
  /** Present for SSL and SASL_SSL. */
  tls?: KafkaTls;
  /** Present for SASL_PLAINTEXT and SASL_SSL. */
  sasl?: KafkaSasl;
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
  /** PEM CA certificate(s) an https INFLUX_URL's certificate must chain to; unset: the system's roots. */
  ca?: string;
}

function oneOf<T extends string>(
  name: string,
  text: string | undefined,
  accepted: readonly T[],
  fallback: T,
): T {
  if (text === undefined) return fallback;
  const found = accepted.find((a) => a.toLowerCase() === text.toLowerCase());
  if (found === undefined) {
    throw new ConfigError(
      `${name}=${JSON.stringify(text)} is not valid: expected one of ${accepted.join(", ")}`,
    );
  }
  return found;
}

/**
 * The PEM file a variable names, read now so that a wrong path or a file of the wrong kind fails
 * at start-up rather than at the first connection. `what` describes the expected content.
 */
function pemFile(name: string, path: string, what: string, pemLabel: RegExp): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const reason =
      (err as NodeJS.ErrnoException).code === "ENOENT"
        ? "does not exist"
        : `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
    throw new ConfigError(
      `${name}=${JSON.stringify(path)} ${reason}: expected the path of a PEM file holding ${what}`,
    );
  }
  if (!pemLabel.test(text)) {
    throw new ConfigError(
      `${name}=${JSON.stringify(path)} is not valid: expected a PEM file holding ${what} (no matching "-----BEGIN" block found)`,
    );
  }
  return text;
}

const CERTIFICATE = /-----BEGIN CERTIFICATE-----/;
const PRIVATE_KEY = /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/;

function caFile(name: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  const ca = pemFile(name, path, "the CA certificate(s)", CERTIFICATE);
  try {
    new X509Certificate(ca);
  } catch (err) {
    throw new ConfigError(
      `${name}=${JSON.stringify(path)} is not valid: its certificate cannot be parsed (${(err as Error).message})`,
    );
  }
  return ca;
}

function kafkaTls(env: Env): KafkaTls {
  const certPath = optionalStr(env, "KAFKA_SSL_CERT_FILE");
  const keyPath = optionalStr(env, "KAFKA_SSL_KEY_FILE");
  const passphrase = optionalStr(env, "KAFKA_SSL_KEY_PASSWORD");
  const tls: KafkaTls = {};
  const ca = caFile("KAFKA_SSL_CA_FILE", optionalStr(env, "KAFKA_SSL_CA_FILE"));
  if (ca !== undefined) tls.ca = ca;
  if ((certPath === undefined) !== (keyPath === undefined)) {
    throw new ConfigError(
      `${certPath === undefined ? "KAFKA_SSL_KEY_FILE" : "KAFKA_SSL_CERT_FILE"} is set but ${certPath === undefined ? "KAFKA_SSL_CERT_FILE" : "KAFKA_SSL_KEY_FILE"} is not: a client certificate needs both (or neither)`,
    );
  }
  if (certPath === undefined || keyPath === undefined) {
    if (passphrase !== undefined) {
      throw new ConfigError(
        "KAFKA_SSL_KEY_PASSWORD is set but KAFKA_SSL_KEY_FILE is not: it decrypts that key",
      );
    }
    return tls;
  }
  const cert = pemFile("KAFKA_SSL_CERT_FILE", certPath, "the client certificate", CERTIFICATE);
  const key = pemFile("KAFKA_SSL_KEY_FILE", keyPath, "the client's private key", PRIVATE_KEY);
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(passphrase === undefined ? key : { key, passphrase });
  } catch (err) {
    throw new ConfigError(
      `KAFKA_SSL_KEY_FILE=${JSON.stringify(keyPath)} cannot be loaded${passphrase === undefined ? " (if it is encrypted, set KAFKA_SSL_KEY_PASSWORD)" : " with KAFKA_SSL_KEY_PASSWORD (wrong password?)"}: ${(err as Error).message}`,
    );
  }
  let matches: boolean;
  try {
    matches = new X509Certificate(cert).checkPrivateKey(keyObject);
  } catch (err) {
    throw new ConfigError(
      `KAFKA_SSL_CERT_FILE=${JSON.stringify(certPath)} is not valid: its certificate cannot be parsed (${(err as Error).message})`,
    );
  }
  if (!matches) {
    throw new ConfigError(
      `KAFKA_SSL_KEY_FILE=${JSON.stringify(keyPath)} is not the private key of KAFKA_SSL_CERT_FILE=${JSON.stringify(certPath)}`,
    );
  }
  return { ...tls, cert, key, ...(passphrase === undefined ? {} : { passphrase }) };
}

function kafkaSasl(env: Env, protocol: KafkaSecurityProtocol): KafkaSasl {
  const missing = (name: string, accepted = "") =>
    new ConfigError(`KAFKA_SECURITY_PROTOCOL=${protocol} needs ${name}, which is not set${accepted}`);
  const given = optionalStr(env, "KAFKA_SASL_MECHANISM");
  if (given === undefined)
    throw missing("KAFKA_SASL_MECHANISM", `: one of ${KAFKA_SASL_MECHANISMS.join(", ")}`);
  const username = optionalStr(env, "KAFKA_SASL_USERNAME");
  if (username === undefined) throw missing("KAFKA_SASL_USERNAME");
  const password = optionalStr(env, "KAFKA_SASL_PASSWORD");
  if (password === undefined) throw missing("KAFKA_SASL_PASSWORD");
  return {
    mechanism: oneOf("KAFKA_SASL_MECHANISM", given, KAFKA_SASL_MECHANISMS, "plain"),
    username,
    password,
  };
}

const KAFKA_TLS_VARIABLES = [
  "KAFKA_SSL_CA_FILE",
  "KAFKA_SSL_CERT_FILE",
  "KAFKA_SSL_KEY_FILE",
  "KAFKA_SSL_KEY_PASSWORD",
];
const KAFKA_SASL_VARIABLES = ["KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"];

/**
 * Security settings a protocol would ignore are refused: a CA file or a password that silently
 * goes unused usually means KAFKA_SECURITY_PROTOCOL was forgotten.
 */
function refuseUnused(env: Env, protocol: KafkaSecurityProtocol, names: string[], needs: string): void {
  const set = names.filter((n) => raw(env, n) !== undefined);
  if (set.length > 0) {
    throw new ConfigError(
      `${set.join(", ")} ${set.length === 1 ? "is" : "are"} set but KAFKA_SECURITY_PROTOCOL=${protocol} does not use ${set.length === 1 ? "it" : "them"}: set KAFKA_SECURITY_PROTOCOL to ${needs}`,
    );
  }
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
    ...kafkaSecurity(env),
  };
}

function kafkaSecurity(env: Env): Pick<KafkaConfig, "securityProtocol" | "tls" | "sasl"> {
  const securityProtocol = oneOf(
    "KAFKA_SECURITY_PROTOCOL",
    optionalStr(env, "KAFKA_SECURITY_PROTOCOL"),
    KAFKA_SECURITY_PROTOCOLS,
    "PLAINTEXT",
  );
  const usesTls = securityProtocol === "SSL" || securityProtocol === "SASL_SSL";
  const usesSasl = securityProtocol.startsWith("SASL_");
  if (!usesTls) refuseUnused(env, securityProtocol, KAFKA_TLS_VARIABLES, "SSL or SASL_SSL");
  if (!usesSasl) refuseUnused(env, securityProtocol, KAFKA_SASL_VARIABLES, "SASL_PLAINTEXT or SASL_SSL");
  return {
    securityProtocol,
    ...(usesTls ? { tls: kafkaTls(env) } : {}),
    ...(usesSasl ? { sasl: kafkaSasl(env, securityProtocol) } : {}),
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
  const ca = caFile("INFLUX_CA_FILE", optionalStr(env, "INFLUX_CA_FILE"));
  if (ca !== undefined && new URL(url).protocol !== "https:") {
    throw new ConfigError(
      `INFLUX_CA_FILE is set but INFLUX_URL=${JSON.stringify(url)} is not https: use an https:// URL or unset INFLUX_CA_FILE`,
    );
  }
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
    ...(ca === undefined ? {} : { ca }),
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
