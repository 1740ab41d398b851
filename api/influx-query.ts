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

  async rows<T>(name: string, query: ParameterizedQuery | string): Promise<T[]> {
    return this.timed(name, () => this.influx.getQueryApi(this.org).collectRows<T>(query));
  }

  /** The named columns of every row, as InfluxDB's text (no object per row: for large answers). */
  async columns(name: string, query: string, columns: string[]): Promise<(string | undefined)[][]> {
    return this.timed(name, async () => {
      const out: (string | undefined)[][] = [];
      let meta: unknown;
      let index: number[] = [];
      for await (const { values, tableMeta } of this.influx.getQueryApi(this.org).iterateRows(query)) {
        if (tableMeta !== meta) {
          meta = tableMeta;
          index = columns.map((c) => tableMeta.columns.findIndex((col) => col.label === c));
        }
        out.push(index.map((i) => (i < 0 ? undefined : values[i])));
      }
      return out;
    });
  }

  private async timed<T>(name: string, work: () => Promise<T>): Promise<T> {
    const end = this.latency.startTimer({ query: name });
    try {
      return await work();
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
