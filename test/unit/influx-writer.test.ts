import { HttpError } from "@influxdata/influxdb-client";
import { describe, expect, it } from "vitest";
import { CONFIGURATION_CAUSES, classifyWriteError } from "../../ingest/influx-writer.js";

describe("classifyWriteError", () => {
  it.each([400, 413, 422])(
    "%i: the data was refused; bisect and dead-letter what is refused alone",
    (status) => {
      const failure = classifyWriteError(
        new HttpError(status, "Bad Request", '{"message":"field type conflict"}'),
      );
      expect(failure.action).toBe("reject");
      expect(failure.message).toContain(String(status));
    },
  );

  it.each([
    [401, "unauthorized"],
    [403, "unauthorized"],
    [404, "not_found"],
    [429, "throttled"],
    [503, "unavailable"],
    [500, "server_error"],
    [502, "server_error"],
    [405, "http_error"],
    [408, "http_error"],
  ] as const)("%i: says nothing about the data; hold the offsets and retry (%s)", (status, cause) => {
    const failure = classifyWriteError(new HttpError(status, "x", "body"));
    expect(failure).toMatchObject({ action: "retry", cause, status });
  });

  it("token and bucket problems are the ones an operator must fix", () => {
    expect([...CONFIGURATION_CAUSES].sort()).toEqual(["not_found", "unauthorized"]);
  });

  it("honours Retry-After (seconds)", () => {
    const failure = classifyWriteError(new HttpError(429, "Too Many Requests", "", "7"));
    expect(failure).toMatchObject({ action: "retry", cause: "throttled", retryAfterMs: 7000 });
  });

  it("timeouts and network failures are retried", () => {
    const timeout = new Error("The operation was aborted due to timeout");
    timeout.name = "TimeoutError";
    expect(classifyWriteError(timeout)).toMatchObject({ action: "retry", cause: "timeout" });
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:8086"), { code: "ECONNREFUSED" });
    expect(classifyWriteError(refused)).toMatchObject({ action: "retry", cause: "network" });
  });
});
