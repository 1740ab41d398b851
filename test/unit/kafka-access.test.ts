/**
 * Which start-up failures are worth retrying. The errors are kafkajs's own classes, built the way
 * kafkajs builds them; the integration test `kafka-sasl-ssl.test.ts` meets the real ones.
 */
import { describe, expect, it } from "vitest";
import { ConfigError, type KafkaConfig } from "../../common/config.js";
import { InfluxAccessError } from "../../common/influx.js";
import {
  isConfigurationError,
  KafkaAccessError,
  KafkaJSConnectionError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
  KafkaJSSASLAuthenticationError,
  kafkaAccessProblem,
} from "../../common/kafka.js";

const CONFIG: KafkaConfig = {
  brokers: ["kafka.example:9093"],
  clientId: "sensor-analytics",
  topicPrefix: "",
  partitions: 6,
  securityProtocol: "SASL_SSL",
  tls: {},
  sasl: { mechanism: "scram-sha-512", username: "ingest", password: "wrong" },
};

// kafkajs's typings omit the message argument its own code passes.
const SaslAuthenticationError = KafkaJSSASLAuthenticationError as unknown as new (message: string) => Error;

function connectionError(code: string) {
  return new KafkaJSConnectionError(`Connection error: ${code}`, { broker: "kafka.example:9093", code });
}

describe("kafkaAccessProblem and isConfigurationError", () => {
  it("names the user and mechanism of a failed SASL authentication, and does not retry it", () => {
    const err = new SaslAuthenticationError(
      "SASL SCRAM SHA512 authentication failed: Invalid username or password",
    );
    const problem = kafkaAccessProblem(err, CONFIG);
    expect(problem).toBeInstanceOf(KafkaAccessError);
    expect(problem?.reason).toBe("authentication");
    expect(problem?.message).toMatch(
      /^Kafka authentication failed for user "ingest" with mechanism scram-sha-512 \(SASL SCRAM SHA512 .*\): check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM$/,
    );
    expect(isConfigurationError(err)).toBe(true);
  });

  it("sees an untrusted certificate even after kafkajs has retried it, and points at KAFKA_SSL_CA_FILE", () => {
    const err = new KafkaJSNumberOfRetriesExceeded(connectionError("SELF_SIGNED_CERT_IN_CHAIN"), {
      retryCount: 10,
      retryTime: 10_000,
    });
    expect(kafkaAccessProblem(err, CONFIG)?.message).toBe(
      "certificate of Kafka broker kafka.example:9093 not trusted (SELF_SIGNED_CERT_IN_CHAIN): set KAFKA_SSL_CA_FILE to the PEM file of the CA that signed it",
    );
    expect(isConfigurationError(err)).toBe(true);
  });

  it("tells a missing client certificate from a refused one", () => {
    const refused = connectionError("ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED");
    expect(kafkaAccessProblem(refused, CONFIG)?.message).toContain(
      "the broker probably requires a client certificate: set KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE",
    );
    const withCert = { ...CONFIG, tls: { cert: "pem", key: "pem" } };
    expect(kafkaAccessProblem(refused, withCert)?.message).toContain(
      "the broker does not accept the client certificate in KAFKA_SSL_CERT_FILE",
    );
  });

  it("reports missing ACLs as non-retriable", () => {
    // The shape kafkajs builds protocol errors from (its protocol/error.js table).
    const err = new KafkaJSProtocolError(
      Object.assign(new Error("Not authorized to access topics: [Topic authorization failed]"), {
        type: "TOPIC_AUTHORIZATION_FAILED",
        code: 29,
        retriable: false,
      }),
    );
    expect(kafkaAccessProblem(err, CONFIG)?.reason).toBe("authorization");
    expect(isConfigurationError(err)).toBe(true);
  });

  it("retries a broker that is not up yet, and never retries configuration errors", () => {
    const refused = new KafkaJSNumberOfRetriesExceeded(connectionError("ECONNREFUSED"), {
      retryCount: 10,
      retryTime: 10_000,
    });
    expect(kafkaAccessProblem(refused, CONFIG)).toBeUndefined();
    expect(isConfigurationError(refused)).toBe(false);
    expect(isConfigurationError(new ConfigError("KAFKA_BROKERS is required"))).toBe(true);
    expect(isConfigurationError(new InfluxAccessError("token rejected"))).toBe(true);
  });
});
