/** Runs parameterised Flux (the client's `flux` templates, never string concatenation) and times it. */
import type { InfluxDB, ParameterizedQuery } from "@influxdata/influxdb-client";
import { Histogram, type Registry } from "prom-client";
import { ProblemError } from "./problem.js";

export class FluxRunner {
  private readonly latency: Histogram;

  constructor(
    private readonly influx: InfluxDB,
    private readonly org: string,
    registry: Registry,
  ) {
    this.latency = new Histogram({
      name: "api_influx_query_seconds",
      help: "InfluxDB query latency seen by the API",
      labelNames: ["query"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
  }

  async rows<T>(name: string, query: ParameterizedQuery): Promise<T[]> {
    const end = this.latency.startTimer({ query: name });
    try {
      return await this.influx.getQueryApi(this.org).collectRows<T>(query);
    } catch (err) {
      const message = (err as Error).message;
      throw new ProblemError(
        503,
        "Storage unavailable",
        `InfluxDB could not answer the query: ${message.slice(0, 300)}`,
        "storage-unavailable",
      );
    } finally {
      end();
    }
  }
}
