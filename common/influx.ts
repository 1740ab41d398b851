import { HttpError, InfluxDB } from "@influxdata/influxdb-client";
import type { InfluxConfig } from "./config.js";
import { errorChain, tlsProblem } from "./tls.js";

export type { QueryApi, WriteApi } from "@influxdata/influxdb-client";
export {
  flux,
  fluxDateTime,
  fluxDuration,
  fluxExpression,
  fluxInteger,
  fluxString,
} from "@influxdata/influxdb-client";

export function createInflux(config: InfluxConfig, timeout = 30_000): InfluxDB {
  return new InfluxDB({
    url: config.url,
    token: config.token,
    timeout,
    // Passed to https.request: a CA given replaces the system's roots for this server.
    ...(config.ca === undefined ? {} : { transportOptions: { ca: [config.ca] } }),
  });
}

/** True when InfluxDB answers its health endpoint with "pass". */
export async function influxHealthy(config: InfluxConfig, timeoutMs = 2000): Promise<boolean> {
  try {
    // Through the client's transport, so an https URL with a custom CA is checked as it is used.
    const health = (await createInflux(config, timeoutMs).transport.request("/health", null, {
      method: "GET",
    })) as { status?: string } | undefined;
    return health?.status === "pass";
  } catch {
    return false;
  }
}

/** InfluxDB refused this configuration: a token it does not know, or a certificate not trusted. */
export class InfluxAccessError extends Error {
  override name = "InfluxAccessError";
  readonly retriable = false;
}

/**
 * One authenticated request at start-up, so an untrusted certificate or a wrong token fails the
 * process with a message naming the setting, instead of the worker retrying writes forever.
 * Other failures (InfluxDB not up yet) are left to the callers, which retry them.
 */
export async function verifyInfluxAccess(config: InfluxConfig, timeoutMs = 10_000): Promise<void> {
  try {
    // Any valid token may list buckets (the list is filtered to what it may read), so only a token
    // InfluxDB does not know gets 401 here.
    await createInflux(config, timeoutMs).transport.request("/api/v2/buckets?limit=1", null, {
      method: "GET",
    });
  } catch (err) {
    if (err instanceof HttpError && err.statusCode === 401) {
      throw new InfluxAccessError(
        `InfluxDB at ${config.url} rejected INFLUX_TOKEN (401 unauthorized): set a token of org ${JSON.stringify(config.org)} that may use bucket ${JSON.stringify(config.bucket)}`,
        { cause: err },
      );
    }
    for (const e of errorChain(err)) {
      const problem =
        typeof e.code === "string" &&
        tlsProblem(
          e.code,
          `InfluxDB at ${config.url}`,
          "INFLUX_CA_FILE",
          "it requires a client certificate, which this project does not send",
        );
      if (problem) throw new InfluxAccessError(problem, { cause: err });
    }
  }
}
