/**
 * Runs parameterised Flux (the client's `flux` templates, never string concatenation), times it,
 * holds it to a time budget, and says whose fault a failure is: InfluxDB unreachable or overloaded
 * is a 503 with Retry-After, a query past its budget is cancelled (the request is aborted, which
 * makes InfluxDB cancel the query) and answered 504, and anything else InfluxDB refuses is a query
 * this service built wrongly: a 500 with an error id.
 */
import { randomUUID } from "node:crypto";
import { HttpError, type InfluxDB, type ParameterizedQuery } from "@influxdata/influxdb-client";
import { Histogram, type Registry } from "prom-client";
import { AnnotatedCsv, type CsvTable, rowObject } from "./flux-csv.js";
import { ProblemError, unavailable } from "./problem.js";

/** What the API asks InfluxDB's CSV to hold: the annotations name each table's columns and result. */
const DIALECT = {
  header: true,
  delimiter: ",",
  quoteChar: '"',
  commentPrefix: "#",
  annotations: ["datatype", "group", "default"],
};

const NETWORK_ERRORS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "ETIMEDOUT",
]);

export class FluxRunner {
  private readonly latency: Histogram;

  constructor(
    private readonly influx: InfluxDB,
    private readonly org: string,
    registry: Registry,
    private readonly timeoutMs = 20_000,
  ) {
    this.latency = new Histogram({
      name: "api_influx_query_seconds",
      help: "InfluxDB query latency seen by the API",
      labelNames: ["query"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
  }

  /** Every row as an object by column, typed by its datatype (see `rowObject`). */
  async rows<T>(name: string, query: ParameterizedQuery | string): Promise<T[]> {
    const rows: T[] = [];
    await this.stream(
      name,
      query.toString(),
      (t) => t.labels.map((_, i) => i),
      (values, t) => rows.push(rowObject(values, t) as T),
    );
    return rows;
  }

  /** The named columns of every row, as InfluxDB's text (no object per row: for large answers). */
  async columns(name: string, query: string, columns: string[]): Promise<(string | undefined)[][]> {
    const [rows = []] = await this.columnsOfEach(name, [query], columns, false);
    return rows;
  }

  /**
   * Several queries in one Flux script, each ending in its own `yield`: one request, one compile,
   * and InfluxDB runs the branches side by side (each still pushed down on its own). The named
   * columns of each query's rows, in the order of `queries`.
   */
  async columnsOfEach(
    name: string,
    queries: readonly string[],
    columns: string[],
    named = true,
  ): Promise<(string | undefined)[][][]> {
    const out: (string | undefined)[][][] = queries.map(() => []);
    await this.eachRow(
      name,
      queries,
      columns,
      (query, values) => out[query]?.push(values.slice(0, columns.length)),
      named,
    );
    return out;
  }

  /**
   * As columnsOfEach, but each row is handed to `row` with the index of its query as it is parsed,
   * and kept nowhere: for answers folded into something smaller. The row's array is reused for the
   * next row (its first `columns.length` items are the named columns).
   */
  async eachRow(
    name: string,
    queries: readonly string[],
    columns: string[],
    row: (query: number, values: (string | undefined)[]) => void,
    named = true,
  ): Promise<void> {
    if (queries.length === 0) return;
    const script = named
      ? queries.map((q, i) => `${q}\n  |> yield(name: "${i}")`).join("\n\n")
      : (queries[0] as string);
    // Each row holds the named columns, then the result name (usually only in its table's
    // #default annotation, not in each row).
    await this.stream(
      name,
      script,
      (t) => [...columns.map((c) => t.labels.indexOf(c)), t.labels.indexOf("result")],
      (values, t) => {
        const label = values[columns.length] || t.defaults[t.labels.indexOf("result")];
        const query = named ? Number(label) : 0;
        if (!(query >= 0 && query < queries.length))
          throw new Error(`${name}: a row of unknown result ${label}`);
        row(query, values);
      },
    );
  }

  /**
   * Runs `script` and hands each row's picked cells to `onRow` as the answer streams in (see
   * AnnotatedCsv), within the time budget; failures classified.
   */
  private async stream(
    name: string,
    script: string,
    pick: (table: CsvTable) => number[],
    onRow: (values: (string | undefined)[], table: CsvTable) => void,
  ): Promise<void> {
    const csv = new AnnotatedCsv(pick, onRow);
    const end = this.latency.startTimer({ query: name });
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new QueryTimeout()), this.timeoutMs);
    try {
      const chunks = this.influx.transport.iterate(
        `/api/v2/query?org=${encodeURIComponent(this.org)}`,
        JSON.stringify({ query: script, dialect: DIALECT, type: "flux" }),
        {
          method: "POST",
          headers: { "content-type": "application/json; encoding=utf-8", "accept-encoding": "identity" },
          signal: abort.signal,
        },
      );
      for await (const chunk of chunks) csv.push(chunk);
      csv.end();
    } catch (err) {
      throw classify(abort.signal.aborted ? new QueryTimeout() : err, name, this.timeoutMs);
    } finally {
      clearTimeout(timer);
      end();
    }
  }
}

class QueryTimeout extends Error {}

function classify(err: unknown, name: string, timeoutMs: number): ProblemError {
  if (err instanceof QueryTimeout || (err as Error).name === "RequestTimedOutError") {
    return new ProblemError(
      504,
      "Query timed out",
      `the ${name} query ran longer than ${timeoutMs} ms and was cancelled: narrow the range (start/stop), ask for fewer sensors, or use a larger window`,
      "query-timeout",
    );
  }
  if (err instanceof HttpError) {
    if (err.statusCode === 429 || err.statusCode === 503) {
      return unavailable("Storage", `InfluxDB is overloaded (HTTP ${err.statusCode}); retry shortly`);
    }
  } else {
    const code = (err as NodeJS.ErrnoException).code ?? (err as { cause?: { code?: string } }).cause?.code;
    if (code && NETWORK_ERRORS.has(code)) {
      return unavailable("Storage", `InfluxDB cannot be reached (${code}); retry shortly`);
    }
  }
  // InfluxDB refused a query this service built: our bug, never the caller's.
  const errorId = randomUUID();
  const problem = new ProblemError(
    500,
    "Internal error",
    `the ${name} query failed; it has been logged under error id ${errorId}`,
    "internal",
  );
  problem.errorId = errorId;
  problem.cause = err;
  return problem;
}
