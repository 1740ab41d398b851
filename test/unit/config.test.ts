import { describe, expect, it } from "vitest";
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
import { ingestSettings } from "../../ingest/config.js";

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
