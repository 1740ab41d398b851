import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bool,
  ConfigError,
  influxConfig,
  kafkaConfig,
  list,
  num,
  optionalStr,
  str,
} from "../../common/config.js";
import { securityOptions } from "../../common/kafka.js";
import { ingestSettings } from "../../ingest/config.js";
import { CLIENT_KEY_PASSWORD, createTestPki, type TestPki } from "../support/tls.js";

const INFLUX = {
  INFLUX_URL: "http://127.0.0.1:8086/",
  INFLUX_TOKEN: "token",
  INFLUX_ORG: "org",
  INFLUX_BUCKET: "bucket",
};

/** Runs `fn`, expecting a ConfigError, and returns its message. */
function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).name).toBe("ConfigError");
    return (err as Error).message;
  }
  throw new Error("expected a ConfigError, but nothing was thrown");
}

describe("str and optionalStr", () => {
  it("trims values and treats blank as unset", () => {
    expect(str({ A: "  x  " }, "A")).toBe("x");
    expect(str({ A: "   " }, "A", "fallback")).toBe("fallback");
    expect(optionalStr({ A: "" }, "A")).toBeUndefined();
    expect(optionalStr({ A: " y" }, "A")).toBe("y");
  });

  it("names a required variable that is missing", () => {
    expect(configError(() => str({}, "INFLUX_TOKEN"))).toBe("INFLUX_TOKEN is required but not set");
  });
});

describe("num", () => {
  it("parses numbers and falls back when unset", () => {
    expect(num({ N: "42" }, "N", 1)).toBe(42);
    expect(num({ N: " 2.5 " }, "N", 1)).toBe(2.5);
    expect(num({}, "N", 7)).toBe(7);
    expect(num({ N: "" }, "N", 7)).toBe(7);
  });

  it("names the variable, the value and the accepted range", () => {
    expect(configError(() => num({ WINDOW_SIZE_MS: "abc" }, "WINDOW_SIZE_MS", 1))).toBe(
      'WINDOW_SIZE_MS="abc" is not valid: expected a number in [-Infinity, Infinity]',
    );
    expect(
      configError(() =>
        num({ KAFKA_PARTITIONS: "1.5" }, "KAFKA_PARTITIONS", 6, { min: 1, max: 1000, integer: true }),
      ),
    ).toBe('KAFKA_PARTITIONS="1.5" is not valid: expected an integer in [1, 1000]');
    expect(configError(() => num({ P: "0" }, "P", 6, { min: 1, max: 10 }))).toBe(
      'P="0" is not valid: expected a number in [1, 10]',
    );
    expect(configError(() => num({ P: "11" }, "P", 6, { min: 1, max: 10 }))).toContain('P="11"');
  });

  it("rejects non-finite values", () => {
    for (const text of ["Infinity", "-Infinity", "NaN", "1e400"]) {
      expect(configError(() => num({ X: text }, "X", 0))).toContain(`X="${text}"`);
    }
  });

  it("accepts the range bounds themselves", () => {
    expect(num({ P: "1" }, "P", 6, { min: 1, max: 10 })).toBe(1);
    expect(num({ P: "10" }, "P", 6, { min: 1, max: 10 })).toBe(10);
  });
});

describe("bool", () => {
  it("accepts the usual spellings in any case", () => {
    for (const text of ["1", "true", "TRUE", "yes", "On"]) expect(bool({ B: text }, "B", false)).toBe(true);
    for (const text of ["0", "false", "No", "OFF"]) expect(bool({ B: text }, "B", true)).toBe(false);
    expect(bool({}, "B", true)).toBe(true);
  });

  it("names the variable and says what is accepted", () => {
    const message = configError(() =>
      bool({ INGEST_METRICS_ENABLED: "maybe" }, "INGEST_METRICS_ENABLED", true),
    );
    expect(message).toBe('INGEST_METRICS_ENABLED="maybe" is not valid: expected true or false');
  });
});

describe("list", () => {
  it("splits on commas, trims and drops empty entries", () => {
    expect(list({ L: " a, b ,,c " }, "L", [])).toEqual(["a", "b", "c"]);
    expect(list({}, "L", ["x"])).toEqual(["x"]);
  });
});

describe("kafkaConfig", () => {
  it("reads brokers and defaults", () => {
    expect(kafkaConfig({ KAFKA_BROKERS: "a:9092, b.example:19092" })).toEqual({
      brokers: ["a:9092", "b.example:19092"],
      clientId: "sensor-analytics",
      topicPrefix: "",
      partitions: 6,
      securityProtocol: "PLAINTEXT",
    });
  });

  it("requires KAFKA_BROKERS", () => {
    expect(configError(() => kafkaConfig({}))).toBe(
      "KAFKA_BROKERS is required: a comma-separated list of host:port",
    );
    expect(configError(() => kafkaConfig({ KAFKA_BROKERS: " , " }))).toContain("KAFKA_BROKERS is required");
  });

  it("names a broker entry that is not host:port", () => {
    for (const broker of ["localhost", "localhost:", ":9092", "host:port", "a b:9092", "h:123456"]) {
      expect(
        configError(() => kafkaConfig({ KAFKA_BROKERS: `ok:9092,${broker}` })),
        broker,
      ).toBe(`KAFKA_BROKERS entry ${JSON.stringify(broker)} is not valid: expected host:port`);
    }
  });

  it("validates KAFKA_PARTITIONS", () => {
    expect(configError(() => kafkaConfig({ KAFKA_BROKERS: "a:1", KAFKA_PARTITIONS: "0" }))).toBe(
      'KAFKA_PARTITIONS="0" is not valid: expected an integer in [1, 1000]',
    );
  });
});

describe("influxConfig", () => {
  it("reads the connection and drops trailing slashes from the URL", () => {
    expect(influxConfig(INFLUX)).toMatchObject({
      url: "http://127.0.0.1:8086",
      token: "token",
      org: "org",
      bucket: "bucket",
    });
  });

  it("names INFLUX_URL and its value when it is not an http(s) URL", () => {
    for (const url of ["localhost:8086", "ftp://host:21", "not a url", "http://"]) {
      expect(
        configError(() => influxConfig({ ...INFLUX, INFLUX_URL: url })),
        url,
      ).toBe(`INFLUX_URL=${JSON.stringify(url)} is not valid: expected an http(s) URL`);
    }
    expect(influxConfig({ ...INFLUX, INFLUX_URL: "https://influx.example" }).url).toBe(
      "https://influx.example",
    );
  });

  it("names each missing variable", () => {
    for (const name of Object.keys(INFLUX)) {
      expect(configError(() => influxConfig({ ...INFLUX, [name]: undefined }))).toBe(
        `${name} is required but not set`,
      );
    }
  });
});

describe("influxConfig rollup buckets and retention", () => {
  it("derives rollup bucket names from the raw bucket and keeps data forever by default", () => {
    const c = influxConfig({ ...INFLUX, INFLUX_BUCKET: "fleet" });
    expect(c.rollupBuckets).toEqual({ "1m": "fleet_1m", "1h": "fleet_1h" });
    expect(c.retentionMs).toEqual({ raw: 0, "1m": 0, "1h": 0 });
  });

  it("takes retentions as durations and refuses what InfluxDB would", () => {
    const c = influxConfig({ ...INFLUX, INFLUX_RETENTION_RAW: "30d", INFLUX_RETENTION_1M: "400d" });
    expect(c.retentionMs.raw).toBe(30 * 86_400_000);
    expect(c.retentionMs["1m"]).toBe(400 * 86_400_000);
    expect(configError(() => influxConfig({ ...INFLUX, INFLUX_RETENTION_1H: "10m" }))).toContain(
      "at least 1h",
    );
    expect(configError(() => influxConfig({ ...INFLUX, INFLUX_RETENTION_RAW: "a month" }))).toContain(
      'INFLUX_RETENTION_RAW="a month"',
    );
  });
});

describe("ingestSettings", () => {
  const env = { KAFKA_BROKERS: "a:9092", ...INFLUX };

  it("names the variable of a bad detector or window setting", () => {
    expect(configError(() => ingestSettings({ ...env, ANOMALY_ZSCORE_WINDOW: "1" }))).toContain(
      'ANOMALY_ZSCORE_WINDOW="1"',
    );
    expect(configError(() => ingestSettings({ ...env, WINDOW_REVISION_MS: "1m" }))).toContain(
      'WINDOW_REVISION_MS="1m"',
    );
    expect(configError(() => ingestSettings({ ...env, INGEST_METRICS_ENABLED: "si" }))).toContain(
      "INGEST_METRICS_ENABLED",
    );
  });

  it("passes valid settings through to the task", () => {
    const settings = ingestSettings({
      ...env,
      ANOMALY_DELTA_THRESHOLD: "2.5",
      WINDOW_ALLOWED_LATENESS_MS: "0",
      WINDOW_REVISION_MS: "600000",
    });
    expect(settings.task.detectors.delta.threshold).toBe(2.5);
    expect(settings.task.windows).toEqual({
      tiersMs: [60_000, 3_600_000],
      allowedLatenessMs: 0,
      revisionMs: 600_000,
      idleMs: 300_000,
    });
  });
});

describe("Kafka and InfluxDB security settings", () => {
  let pki: TestPki;
  const BROKERS = { KAFKA_BROKERS: "kafka.example:9093" };
  const SCRAM = {
    KAFKA_SASL_MECHANISM: "SCRAM-SHA-512",
    KAFKA_SASL_USERNAME: "ingest",
    KAFKA_SASL_PASSWORD: "s3cret",
  };

  beforeAll(() => {
    pki = createTestPki(mkdtempSync(join(tmpdir(), "config-pki-")));
  });
  afterAll(() => rmSync(pki.dir, { recursive: true, force: true }));

  it("reads SASL_SSL with a custom CA, in any case, into kafkajs's ssl and sasl options", () => {
    const config = kafkaConfig({
      ...BROKERS,
      ...SCRAM,
      KAFKA_SECURITY_PROTOCOL: "sasl_ssl",
      KAFKA_SSL_CA_FILE: pki.caFile,
    });
    expect(config.securityProtocol).toBe("SASL_SSL");
    expect(config.tls?.ca).toContain("-----BEGIN CERTIFICATE-----");
    expect(config.sasl).toEqual({ mechanism: "scram-sha-512", username: "ingest", password: "s3cret" });
    const options = securityOptions(config);
    expect(options.ssl).toEqual({ ca: [config.tls?.ca] });
    expect(options.sasl).toEqual({ mechanism: "scram-sha-512", username: "ingest", password: "s3cret" });
  });

  it("uses the system's roots for TLS without KAFKA_SSL_CA_FILE, and no TLS or SASL for PLAINTEXT", () => {
    expect(securityOptions(kafkaConfig({ ...BROKERS, KAFKA_SECURITY_PROTOCOL: "SSL" }))).toEqual({ ssl: {} });
    expect(securityOptions(kafkaConfig(BROKERS))).toEqual({});
    const plain = kafkaConfig({
      ...BROKERS,
      ...SCRAM,
      KAFKA_SECURITY_PROTOCOL: "SASL_PLAINTEXT",
      KAFKA_SASL_MECHANISM: "plain",
    });
    expect(securityOptions(plain)).toEqual({
      sasl: { mechanism: "plain", username: "ingest", password: "s3cret" },
    });
  });

  it("reads a client certificate with a plain or an encrypted key (mTLS)", () => {
    const plainKey = kafkaConfig({
      ...BROKERS,
      KAFKA_SECURITY_PROTOCOL: "SSL",
      KAFKA_SSL_CA_FILE: pki.caFile,
      KAFKA_SSL_CERT_FILE: pki.clientCertFile,
      KAFKA_SSL_KEY_FILE: pki.clientKeyFile,
    });
    expect(plainKey.tls?.cert).toContain("-----BEGIN CERTIFICATE-----");
    expect(plainKey.tls?.key).toContain("PRIVATE KEY-----");
    expect(plainKey.tls?.passphrase).toBeUndefined();
    const encrypted = kafkaConfig({
      ...BROKERS,
      KAFKA_SECURITY_PROTOCOL: "SSL",
      KAFKA_SSL_CERT_FILE: pki.clientCertFile,
      KAFKA_SSL_KEY_FILE: pki.clientEncryptedKeyFile,
      KAFKA_SSL_KEY_PASSWORD: CLIENT_KEY_PASSWORD,
    });
    expect(encrypted.tls?.key).toContain("-----BEGIN ENCRYPTED PRIVATE KEY-----");
    expect(securityOptions(encrypted).ssl).toEqual({
      cert: encrypted.tls?.cert,
      key: encrypted.tls?.key,
      passphrase: CLIENT_KEY_PASSWORD,
    });
  });

  it("names the protocol or mechanism it does not know and lists the accepted ones", () => {
    expect(configError(() => kafkaConfig({ ...BROKERS, KAFKA_SECURITY_PROTOCOL: "TLS" }))).toBe(
      'KAFKA_SECURITY_PROTOCOL="TLS" is not valid: expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL',
    );
    expect(
      configError(() =>
        kafkaConfig({
          ...BROKERS,
          ...SCRAM,
          KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
          KAFKA_SASL_MECHANISM: "GSSAPI",
        }),
      ),
    ).toBe('KAFKA_SASL_MECHANISM="GSSAPI" is not valid: expected one of plain, scram-sha-256, scram-sha-512');
  });

  it("names the SASL setting a SASL protocol is missing", () => {
    for (const name of Object.keys(SCRAM)) {
      const env = { ...BROKERS, ...SCRAM, KAFKA_SECURITY_PROTOCOL: "SASL_SSL", [name]: "" };
      expect(
        configError(() => kafkaConfig(env)),
        name,
      ).toContain(`KAFKA_SECURITY_PROTOCOL=SASL_SSL needs ${name}, which is not set`);
    }
  });

  it("names a CA, certificate or key file that does not exist, or holds something else", () => {
    const ssl = { ...BROKERS, KAFKA_SECURITY_PROTOCOL: "SSL" };
    expect(configError(() => kafkaConfig({ ...ssl, KAFKA_SSL_CA_FILE: "/nonexistent/ca.pem" }))).toBe(
      'KAFKA_SSL_CA_FILE="/nonexistent/ca.pem" does not exist: expected the path of a PEM file holding the CA certificate(s)',
    );
    expect(configError(() => kafkaConfig({ ...ssl, KAFKA_SSL_CA_FILE: pki.clientKeyFile }))).toBe(
      `KAFKA_SSL_CA_FILE=${JSON.stringify(pki.clientKeyFile)} is not valid: expected a PEM file holding the CA certificate(s) (no matching "-----BEGIN" block found)`,
    );
    expect(configError(() => kafkaConfig({ ...ssl, KAFKA_SSL_CA_FILE: pki.dir }))).toBe(
      `KAFKA_SSL_CA_FILE=${JSON.stringify(pki.dir)} cannot be read (EISDIR): expected the path of a PEM file holding the CA certificate(s)`,
    );
    expect(
      configError(() =>
        kafkaConfig({
          ...ssl,
          KAFKA_SSL_CERT_FILE: pki.clientCertFile,
          KAFKA_SSL_KEY_FILE: pki.clientCertFile,
        }),
      ),
    ).toBe(
      `KAFKA_SSL_KEY_FILE=${JSON.stringify(pki.clientCertFile)} is not valid: expected a PEM file holding the client's private key (no matching "-----BEGIN" block found)`,
    );
  });

  it("refuses half a client certificate, a key that is not the certificate's, and a wrong key password", () => {
    const ssl = { ...BROKERS, KAFKA_SECURITY_PROTOCOL: "SSL" };
    expect(configError(() => kafkaConfig({ ...ssl, KAFKA_SSL_CERT_FILE: pki.clientCertFile }))).toBe(
      "KAFKA_SSL_CERT_FILE is set but KAFKA_SSL_KEY_FILE is not: a client certificate needs both (or neither)",
    );
    expect(configError(() => kafkaConfig({ ...ssl, KAFKA_SSL_KEY_FILE: pki.clientKeyFile }))).toBe(
      "KAFKA_SSL_KEY_FILE is set but KAFKA_SSL_CERT_FILE is not: a client certificate needs both (or neither)",
    );
    expect(configError(() => kafkaConfig({ ...ssl, KAFKA_SSL_KEY_PASSWORD: "x" }))).toBe(
      "KAFKA_SSL_KEY_PASSWORD is set but KAFKA_SSL_KEY_FILE is not: it decrypts that key",
    );
    const client = { ...ssl, KAFKA_SSL_CERT_FILE: pki.clientCertFile };
    expect(configError(() => kafkaConfig({ ...client, KAFKA_SSL_KEY_FILE: pki.serverKeyFile }))).toBe(
      `KAFKA_SSL_KEY_FILE=${JSON.stringify(pki.serverKeyFile)} is not the private key of KAFKA_SSL_CERT_FILE=${JSON.stringify(pki.clientCertFile)}`,
    );
    const encrypted = { ...client, KAFKA_SSL_KEY_FILE: pki.clientEncryptedKeyFile };
    expect(configError(() => kafkaConfig(encrypted))).toContain(
      `KAFKA_SSL_KEY_FILE=${JSON.stringify(pki.clientEncryptedKeyFile)} cannot be loaded (if it is encrypted, set KAFKA_SSL_KEY_PASSWORD)`,
    );
    expect(configError(() => kafkaConfig({ ...encrypted, KAFKA_SSL_KEY_PASSWORD: "wrong" }))).toContain(
      "cannot be loaded with KAFKA_SSL_KEY_PASSWORD (wrong password?)",
    );
  });

  it("refuses security settings the chosen protocol would silently ignore", () => {
    expect(configError(() => kafkaConfig({ ...BROKERS, KAFKA_SSL_CA_FILE: pki.caFile }))).toBe(
      "KAFKA_SSL_CA_FILE is set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use it: set KAFKA_SECURITY_PROTOCOL to SSL or SASL_SSL",
    );
    expect(
      configError(() =>
        kafkaConfig({
          ...BROKERS,
          ...SCRAM,
          KAFKA_SECURITY_PROTOCOL: "SASL_PLAINTEXT",
          KAFKA_SSL_CA_FILE: pki.caFile,
        }),
      ),
    ).toBe(
      "KAFKA_SSL_CA_FILE is set but KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use it: set KAFKA_SECURITY_PROTOCOL to SSL or SASL_SSL",
    );
    expect(configError(() => kafkaConfig({ ...BROKERS, ...SCRAM, KAFKA_SECURITY_PROTOCOL: "SSL" }))).toBe(
      "KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL=SSL does not use them: set KAFKA_SECURITY_PROTOCOL to SASL_PLAINTEXT or SASL_SSL",
    );
  });

  it("reads INFLUX_CA_FILE for an https INFLUX_URL and refuses it for http", () => {
    const https = { ...INFLUX, INFLUX_URL: "https://influx.example:8086", INFLUX_CA_FILE: pki.caFile };
    expect(influxConfig(https).ca).toContain("-----BEGIN CERTIFICATE-----");
    expect(configError(() => influxConfig({ ...https, INFLUX_URL: "http://influx.example:8086" }))).toBe(
      'INFLUX_CA_FILE is set but INFLUX_URL="http://influx.example:8086" is not https: use an https:// URL or unset INFLUX_CA_FILE',
    );
    expect(configError(() => influxConfig({ ...https, INFLUX_CA_FILE: "/nonexistent/ca.pem" }))).toBe(
      'INFLUX_CA_FILE="/nonexistent/ca.pem" does not exist: expected the path of a PEM file holding the CA certificate(s)',
    );
  });
});
