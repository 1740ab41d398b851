import { InfluxDB } from "@influxdata/influxdb-client";
import type { InfluxConfig } from "./config.js";

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
  return new InfluxDB({ url: config.url, token: config.token, timeout });
}

/** True when InfluxDB answers its health endpoint with "pass". */
export async function influxHealthy(config: InfluxConfig, timeoutMs = 2000): Promise<boolean> {
  try {
    const res = await fetch(`${config.url}/health`, { signal: AbortSignal.timeout(timeoutMs) });
    return res.ok;
  } catch {
    return false;
  }
}
