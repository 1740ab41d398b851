import { describe, expect, it } from "vitest";
import { ConfigError } from "../../common/config.js";
import {
  KafkaJSConnectionError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
  KafkaJSSASLAuthenticationError,
} from "../../common/kafka.js";
import { describeStartupError, isRetriableStartupError, startupBackoffMs } from "../../ingest/startup.js";

/** A broker error as kafkajs builds it from the protocol's error table. */
function brokerError(type: string, retriable: boolean): Error {
  return new KafkaJSProtocolError({ message: `broker says ${type}`, type, code: 3, retriable } as never);
}

describe("isRetriableStartupError", () => {
  it.each([
    ["UNKNOWN_TOPIC_OR_PARTITION"],
    ["LEADER_NOT_AVAILABLE"],
    ["NOT_LEADER_FOR_PARTITION"],
    ["GROUP_LOAD_IN_PROGRESS"],
    ["GROUP_COORDINATOR_NOT_AVAILABLE"],
    ["NOT_COORDINATOR_FOR_GROUP"],
  ])("retries the broker's transient %s", (type) => {
    expect(isRetriableStartupError(brokerError(type, true))).toBe(true);
  });

  it("retries a refused connection while the broker starts, also once kafkajs gave up retrying it", () => {
    const refused = new KafkaJSConnectionError("Connection error: connect ECONNREFUSED 127.0.0.1:9092", {
      broker: "127.0.0.1:9092",
      code: "ECONNREFUSED",
    });
    expect(isRetriableStartupError(refused)).toBe(true);
    expect(
      isRetriableStartupError(new KafkaJSNumberOfRetriesExceeded(refused, { retryCount: 5 } as never)),
    ).toBe(true);
  });

  it("retries a plain ECONNREFUSED from the socket", () => {
    expect(
      isRetriableStartupError(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" })),
    ).toBe(true);
  });

  it("does not retry authorization or authentication failures", () => {
    expect(isRetriableStartupError(brokerError("TOPIC_AUTHORIZATION_FAILED", false))).toBe(false);
    expect(isRetriableStartupError(brokerError("GROUP_AUTHORIZATION_FAILED", false))).toBe(false);
    expect(
      isRetriableStartupError(
        new (KafkaJSSASLAuthenticationError as unknown as new (message: string) => Error)(
          "SASL PLAIN authentication failed",
        ),
      ),
    ).toBe(false);
  });

  it("does not retry configuration errors or unknown failures", () => {
    expect(isRetriableStartupError(new ConfigError("KAFKA_BROKERS is required but not set"))).toBe(false);
    expect(isRetriableStartupError(new TypeError("x is not a function"))).toBe(false);
    expect(isRetriableStartupError("a string")).toBe(false);
  });
});

describe("startupBackoffMs", () => {
  it("doubles from 500 ms and stops at the cap", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((a) => startupBackoffMs(a))).toEqual([
      500, 1000, 2000, 4000, 8000, 15_000, 15_000, 15_000,
    ]);
  });
});

describe("describeStartupError", () => {
  it("names the broker's error type next to the message", () => {
    expect(describeStartupError(brokerError("UNKNOWN_TOPIC_OR_PARTITION", true))).toBe(
      "broker says UNKNOWN_TOPIC_OR_PARTITION (UNKNOWN_TOPIC_OR_PARTITION)",
    );
  });
});
