import { bool, influxConfig, kafkaConfig, num, str } from "../common/config.js";
import { DEFAULT_LIMITS } from "../common/reading.js";
import { DEFAULT_STATE_TTL_MS } from "./partition-task.js";
import { DEFAULT_WINDOWS } from "./windows.js";
import type { WorkerOptions } from "./worker.js";

type Env = Record<string, string | undefined>;

export interface IngestSettings extends Omit<WorkerOptions, "logger" | "metrics"> {
  metricsPort: number;
  metricsHost: string;
  metricsEnabled: boolean;
  pipelineIntervalMs: number;
  workerId: string;
}

export function ingestSettings(env: Env = process.env): IngestSettings {
  return {
    kafka: kafkaConfig(env),
    influx: influxConfig(env),
    groupId: str(env, "INGEST_GROUP_ID", "sensor-ingest"),
    partitionConcurrency: num(env, "INGEST_PARTITION_CONCURRENCY", 3, { min: 1, max: 64, integer: true }),
    maxBytesPerPartition: num(env, "INGEST_MAX_BYTES_PER_PARTITION", 1024 * 1024, {
      min: 1024,
      max: 64 * 1024 * 1024,
      integer: true,
    }),
    commitIntervalMs: num(env, "INGEST_COMMIT_INTERVAL_MS", 3000, { min: 0, max: 60_000, integer: true }),
    sessionTimeoutMs: num(env, "INGEST_SESSION_TIMEOUT_MS", 30_000, {
      min: 6000,
      max: 300_000,
      integer: true,
    }),
    workerId: str(env, "INGEST_WORKER_ID", `${process.env.HOSTNAME ?? "worker"}-${process.pid}`),
    metricsEnabled: bool(env, "INGEST_METRICS_ENABLED", true),
    metricsPort: num(env, "INGEST_METRICS_PORT", 9464, { min: 0, max: 65535, integer: true }),
    metricsHost: str(env, "INGEST_METRICS_HOST", "127.0.0.1"),
    pipelineIntervalMs: num(env, "INGEST_PIPELINE_INTERVAL_MS", 10_000, { min: 100, integer: true }),
    task: {
      stateTtlMs: num(env, "STATE_TTL_MS", DEFAULT_STATE_TTL_MS, {
        min: 1000,
        max: 365 * 86_400_000,
        integer: true,
      }),
      detectors: {
        delta: { threshold: num(env, "ANOMALY_DELTA_THRESHOLD", 5, { min: 0 }) },
        zscore: {
          window: num(env, "ANOMALY_ZSCORE_WINDOW", 30, { min: 2, max: 10_000, integer: true }),
          threshold: num(env, "ANOMALY_ZSCORE_THRESHOLD", 4, { min: 0 }),
          minSamples: num(env, "ANOMALY_ZSCORE_MIN_SAMPLES", 10, { min: 2, integer: true }),
        },
        ewma: {
          alpha: num(env, "ANOMALY_EWMA_ALPHA", 0.1, { min: 0.0001, max: 1 }),
          threshold: num(env, "ANOMALY_EWMA_THRESHOLD", 5, { min: 0 }),
          warmup: num(env, "ANOMALY_EWMA_WARMUP", 10, { min: 1, integer: true }),
        },
      },
      windows: {
        tiersMs: DEFAULT_WINDOWS.tiersMs,
        allowedLatenessMs: num(env, "WINDOW_ALLOWED_LATENESS_MS", DEFAULT_WINDOWS.allowedLatenessMs, {
          min: 0,
          max: 3_600_000,
          integer: true,
        }),
        revisionMs: num(env, "WINDOW_REVISION_MS", DEFAULT_WINDOWS.revisionMs, {
          min: 0,
          max: 86_400_000,
          integer: true,
        }),
        idleMs: num(env, "WINDOW_IDLE_MS", DEFAULT_WINDOWS.idleMs, {
          min: 1000,
          max: 86_400_000,
          integer: true,
        }),
      },
      limits: {
        maxBytes: num(env, "READING_MAX_BYTES", DEFAULT_LIMITS.maxBytes, {
          min: 64,
          max: 1024 * 1024,
          integer: true,
        }),
        maxFutureMs: num(env, "READING_MAX_FUTURE_MS", DEFAULT_LIMITS.maxFutureMs, { min: 0, integer: true }),
        minTime: DEFAULT_LIMITS.minTime,
      },
    },
  };
}
