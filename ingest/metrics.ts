/**
 * The worker's own numbers: Prometheus metrics on a small HTTP port, and the same figures written
 * every few seconds to the `pipeline` measurement for the Grafana health dashboard.
 */
import { createServer, type Server } from "node:http";
import type { InfluxDB } from "@influxdata/influxdb-client";
import type { Logger } from "pino";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { MEASUREMENTS } from "../common/topics.js";
import { pointLine } from "./line-protocol.js";

export interface BatchStats {
  partition: number;
  messages: number;
  readings: number;
  anomalies: number;
  deadLetters: number;
  late: number;
  windows: number;
  writeMs: number;
  lag: number;
}

export class IngestMetrics {
  readonly registry = new Registry();
  readonly consumed = new Counter({
    name: "ingest_messages_consumed_total",
    help: "Kafka messages consumed",
    registers: [this.registry],
  });
  readonly written = new Counter({
    name: "ingest_readings_written_total",
    help: "Readings stored in InfluxDB",
    registers: [this.registry],
  });
  readonly deadLetters = new Counter({
    name: "ingest_dead_letters_total",
    help: "Messages sent to the dead-letter topic",
    registers: [this.registry],
  });
  readonly late = new Counter({
    name: "ingest_late_readings_total",
    help: "Readings that arrived after their window closed",
    registers: [this.registry],
  });
  readonly anomalies = new Counter({
    name: "ingest_anomalies_total",
    help: "Anomaly flags written",
    registers: [this.registry],
  });
  readonly windows = new Counter({
    name: "ingest_windows_emitted_total",
    help: "Closed windows published",
    registers: [this.registry],
  });
  readonly inputBytes = new Counter({
    name: "ingest_input_bytes_total",
    help: "Bytes (key and value) of the raw messages processed",
    registers: [this.registry],
  });
  readonly changelogBytes = new Counter({
    name: "ingest_changelog_bytes_total",
    help: "Bytes (key and value) of state changelog records committed",
    registers: [this.registry],
  });
  readonly writeRetries = new Counter({
    name: "ingest_influx_write_retries_total",
    help: "InfluxDB write attempts that failed and were retried",
    registers: [this.registry],
  });
  readonly writeFailures = new Counter({
    name: "ingest_influx_write_failures_total",
    help: "Failed InfluxDB write attempts whose batch was held and retried, by cause (unauthorized and not_found need an operator)",
    labelNames: ["cause"],
    registers: [this.registry],
  });
  readonly consumerRestarts = new Counter({
    name: "ingest_consumer_restarts_total",
    help: "Consumer crashes, each followed by a restart from the committed offsets (by kafkajs itself or by the worker rebuilding the consumer)",
    labelNames: ["by"],
    registers: [this.registry],
  });
  readonly consumingGauge = new Gauge({
    name: "ingest_consuming",
    help: "1 while the worker's consumer is in its group, 0 while it is not consuming",
    registers: [this.registry],
  });
  private notConsumingSince: number | undefined = Date.now();
  readonly notConsuming = new Counter({
    name: "ingest_not_consuming_seconds_total",
    help: "Time the worker spent without a consumer in its group (starting, restarting, rebuilding)",
    registers: [this.registry],
    collect: () => this.accountNotConsuming(),
  });

  /** Records whether the worker is consuming, for `ingest_consuming` and the time not consuming. */
  setConsuming(consuming: boolean): void {
    this.accountNotConsuming();
    this.notConsumingSince = consuming ? undefined : Date.now();
    this.consumingGauge.set(consuming ? 1 : 0);
  }

  private accountNotConsuming(): void {
    if (this.notConsumingSince === undefined) return;
    const now = Date.now();
    this.notConsuming.inc((now - this.notConsumingSince) / 1000);
    this.notConsumingSince = now;
  }

  readonly writeLatency = new Histogram({
    name: "ingest_batch_write_seconds",
    help: "Time from batch start until its InfluxDB write succeeded",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: "ingest_batch_messages",
    help: "Messages per processed batch",
    buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
    registers: [this.registry],
  });
  readonly lag = new Gauge({
    name: "ingest_consumer_lag",
    help: "Messages behind the partition's high watermark",
    labelNames: ["partition"],
    registers: [this.registry],
  });

  private interval = {
    messages: 0,
    readings: 0,
    deadLetters: 0,
    anomalies: 0,
    late: 0,
    batches: 0,
    writeMs: 0,
  };
  private readonly lagByPartition = new Map<number, number>();
  private lastFlush = Date.now();

  recordBatch(s: BatchStats): void {
    this.consumed.inc(s.messages);
    this.written.inc(s.readings);
    this.deadLetters.inc(s.deadLetters);
    this.late.inc(s.late);
    this.anomalies.inc(s.anomalies);
    this.windows.inc(s.windows);
    this.writeLatency.observe(s.writeMs / 1000);
    this.batchSize.observe(s.messages);
    this.lag.set({ partition: String(s.partition) }, s.lag);
    this.lagByPartition.set(s.partition, s.lag);
    const i = this.interval;
    i.messages += s.messages;
    i.readings += s.readings;
    i.deadLetters += s.deadLetters;
    i.anomalies += s.anomalies;
    i.late += s.late;
    i.batches++;
    i.writeMs += s.writeMs;
  }

  /** The interval's figures as one `pipeline` point, and a fresh interval. */
  takePipelinePoint(workerId: string, now = Date.now()): string {
    const seconds = Math.max(0.001, (now - this.lastFlush) / 1000);
    const i = this.interval;
    let lag = 0;
    for (const v of this.lagByPartition.values()) lag += v;
    const line = pointLine(
      MEASUREMENTS.pipeline,
      { worker: workerId },
      {
        consumed_per_s: i.messages / seconds,
        written_per_s: i.readings / seconds,
        dlq_per_s: i.deadLetters / seconds,
        anomalies_per_s: i.anomalies / seconds,
        late_per_s: i.late / seconds,
        dlq: i.deadLetters,
        consumer_lag: lag,
        write_latency_ms: i.batches === 0 ? 0 : i.writeMs / i.batches,
        batch_size: i.batches === 0 ? 0 : i.messages / i.batches,
      },
      now,
    );
    this.interval = {
      messages: 0,
      readings: 0,
      deadLetters: 0,
      anomalies: 0,
      late: 0,
      batches: 0,
      writeMs: 0,
    };
    this.lastFlush = now;
    return line;
  }
}

/** Writes the pipeline point every `everyMs`. Best effort: a failed write is logged, never retried. */
export function startPipelineReporter(
  metrics: IngestMetrics,
  influx: InfluxDB,
  target: { org: string; bucket: string },
  workerId: string,
  everyMs: number,
  logger: Logger,
): () => Promise<void> {
  const flush = async () => {
    const api = influx.getWriteApi(target.org, target.bucket, "ms", { maxRetries: 0, flushInterval: 0 });
    api.writeRecord(metrics.takePipelinePoint(workerId));
    await api
      .close()
      .catch((err: Error) => logger.warn({ error: err.message }, "could not write pipeline stats"));
  };
  const timer = setInterval(() => void flush(), everyMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await flush();
  };
}

/**
 * `/metrics`, `/health` (the process is up) and `/ready` (503 while the worker is not consuming:
 * starting, restarting or rebuilding its consumer).
 */
export function startMetricsServer(
  registry: Registry,
  port: number,
  host: string,
  ready: () => boolean = () => true,
): Promise<Server> {
  const server = createServer(async (req, res) => {
    if (req.url === "/metrics") {
      res.setHeader("content-type", registry.contentType);
      res.end(await registry.metrics());
    } else if (req.url === "/health") {
      res.setHeader("content-type", "application/json");
      res.end('{"status":"ok"}');
    } else if (req.url === "/ready") {
      const consuming = ready();
      res.statusCode = consuming ? 200 : 503;
      res.setHeader("content-type", "application/json");
      res.end(consuming ? '{"status":"ready"}' : '{"status":"not consuming"}');
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  return new Promise((resolve) => server.listen(port, host, () => resolve(server)));
}
