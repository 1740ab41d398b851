/**
 * Pipeline health, from the `pipeline` measurement each ingest worker writes every
 * INGEST_PIPELINE_INTERVAL_MS (10 s by default). Rates are per worker; fleet figures add them up.
 */
import { and, anyOf, eq, lit, read } from "../common/flux-shapes.js";
import { MEASUREMENTS } from "../common/topics.js";
import { FEW_POINTS, GRAFANA, over, SERIES_POINTS, sumAcross, windowed, withImports } from "./flux.js";
import {
  type Dashboard,
  dashboard,
  override,
  seriesLabel,
  stat,
  target,
  thresholds,
  timeseries,
} from "./model.js";

const PIPELINE_UID = "sensor-pipeline";

/** A worker counts as live when it wrote a point in the last minute of the range. */
const LIVE = "1m";
/** At least three points of a worker fall in each window, so one late point does not leave a gap. */
const MIN_WINDOW = "30s";
const PER_SECOND = "suffix: /s";

const pipeline = (field: string) =>
  and(eq("_measurement", lit.str(MEASUREMENTS.pipeline)), eq("_field", lit.str(field)));
const pipelineFields = (fields: readonly string[]) =>
  and(eq("_measurement", lit.str(MEASUREMENTS.pipeline)), anyOf("_field", fields));

/** Each live worker's latest value of `field` (storage's last per series), added up (or averaged). */
function liveTotal(field: string, fn: "sum" | "mean" | "count"): string {
  return withImports(
    ["date"],
    read({
      bucket: GRAFANA.bucket,
      start: `date.sub(d: ${LIVE}, from: ${GRAFANA.stop})`,
      stop: GRAFANA.stop,
      where: pipeline(field),
      aggregate: "last()",
      after: ["group()", `${fn}()`],
    }),
  );
}

/** Per-window mean of each worker, added up across workers, one series per field. */
function fleetRates(fields: readonly string[]): string {
  return windowed(SERIES_POINTS, over(pipelineFields(fields), "mean", sumAcross(["_field"]), "every"));
}

const rename = (names: Record<string, string>) =>
  Object.entries(names).map(([field, displayName]) => override(field, { displayName }));

export function pipelineHealth(): Dashboard {
  return dashboard({
    uid: PIPELINE_UID,
    title: "Ingest pipeline health",
    description:
      "Throughput, consumer lag, InfluxDB write latency, dead-letter and late rates of the ingest workers.",
    time: "now-3h",
    rows: [
      [
        stat({
          title: "Live workers",
          description: "Workers that wrote a pipeline point in the last minute of the range.",
          w: 5,
          h: 4,
          maxDataPoints: FEW_POINTS,
          targets: [target(liveTotal("consumed_per_s", "count"))],
          defaults: {
            unit: "short",
            decimals: 0,
            noValue: "0",
            thresholds: thresholds(["red", null], ["green", 1]),
          },
        }),
        stat({
          title: "Consumed now",
          description: "Messages consumed per second, all live workers.",
          w: 5,
          h: 4,
          maxDataPoints: FEW_POINTS,
          targets: [target(liveTotal("consumed_per_s", "sum"))],
          defaults: { unit: PER_SECOND, decimals: 1, noValue: "0", thresholds: thresholds(["blue", null]) },
        }),
        stat({
          title: "Consumer lag now",
          description: "Messages behind the partitions' high watermarks, all live workers.",
          w: 5,
          h: 4,
          maxDataPoints: FEW_POINTS,
          targets: [target(liveTotal("consumer_lag", "sum"))],
          defaults: {
            unit: "short",
            decimals: 0,
            noValue: "0",
            thresholds: thresholds(["green", null], ["orange", 1000], ["red", 10000]),
          },
        }),
        stat({
          title: "Write latency now",
          description: "Mean time from batch start until InfluxDB stored it, over the live workers.",
          w: 5,
          h: 4,
          maxDataPoints: FEW_POINTS,
          targets: [target(liveTotal("write_latency_ms", "mean"))],
          defaults: {
            unit: "ms",
            decimals: 0,
            thresholds: thresholds(["green", null], ["orange", 500], ["red", 2000]),
          },
        }),
        stat({
          title: "Dead letters now",
          description: "Messages sent to the dead-letter topic per second, all live workers.",
          w: 4,
          h: 4,
          maxDataPoints: FEW_POINTS,
          targets: [target(liveTotal("dlq_per_s", "sum"))],
          defaults: {
            unit: PER_SECOND,
            decimals: 2,
            noValue: "0",
            thresholds: thresholds(["green", null], ["orange", 0.01], ["red", 1]),
          },
        }),
      ],
      [
        timeseries({
          title: "Throughput",
          description: "Messages consumed and readings written to InfluxDB per second, all workers.",
          w: 12,
          h: 8,
          interval: MIN_WINDOW,
          maxDataPoints: SERIES_POINTS,
          targets: [target(fleetRates(["consumed_per_s", "written_per_s"]))],
          defaults: { min: 0, unit: PER_SECOND, decimals: 1 },
          overrides: rename({ consumed_per_s: "consumed", written_per_s: "written" }),
        }),
        timeseries({
          title: "Consumer lag",
          description: "Messages behind the partitions' high watermarks, all workers.",
          w: 12,
          h: 8,
          interval: MIN_WINDOW,
          maxDataPoints: SERIES_POINTS,
          targets: [target(fleetRates(["consumer_lag"]))],
          defaults: {
            min: 0,
            unit: "short",
            decimals: 0,
            thresholds: thresholds(["green", null], ["orange", 1000], ["red", 10000]),
          },
          overrides: rename({ consumer_lag: "lag" }),
          thresholdLines: true,
        }),
      ],
      [
        timeseries({
          title: "Write latency",
          description:
            "Mean time from batch start until InfluxDB stored it, per worker. Intervals without a batch (latency 0) are left out.",
          w: 12,
          h: 8,
          interval: MIN_WINDOW,
          maxDataPoints: SERIES_POINTS,
          targets: [
            target(
              windowed(
                SERIES_POINTS,
                over(
                  `${pipeline("write_latency_ms")} and r._value > 0.0`,
                  "mean",
                  ['sort(columns: ["_time"])'],
                  "every",
                ),
              ),
            ),
          ],
          defaults: {
            min: 0,
            displayName: seriesLabel("worker"),
            unit: "ms",
            decimals: 0,
            thresholds: thresholds(["green", null], ["orange", 500], ["red", 2000]),
          },
          thresholdLines: true,
        }),
        timeseries({
          title: "Dead-letter, late and anomaly rates",
          description:
            "Per second, all workers: messages sent to the dead-letter topic, readings behind the watermark, anomaly flags.",
          w: 12,
          h: 8,
          interval: MIN_WINDOW,
          maxDataPoints: SERIES_POINTS,
          targets: [target(fleetRates(["dlq_per_s", "late_per_s", "anomalies_per_s"]))],
          defaults: { min: 0, unit: PER_SECOND, decimals: 2 },
          overrides: [
            ...rename({ dlq_per_s: "dead letters", late_per_s: "late", anomalies_per_s: "anomalies" }),
            override("dead letters", { color: { mode: "fixed", fixedColor: "red" } }),
          ],
        }),
      ],
      [
        timeseries({
          title: "Batch size",
          description: "Mean messages per processed batch, per worker.",
          w: 12,
          h: 8,
          interval: MIN_WINDOW,
          maxDataPoints: SERIES_POINTS,
          targets: [
            target(
              windowed(
                SERIES_POINTS,
                over(pipeline("batch_size"), "mean", ['sort(columns: ["_time"])'], "every"),
              ),
            ),
          ],
          defaults: { min: 0, displayName: seriesLabel("worker"), unit: "short", decimals: 0 },
        }),
        timeseries({
          title: "Dead letters per window",
          description: "Messages sent to the dead-letter topic in each window, all workers.",
          w: 12,
          h: 8,
          interval: MIN_WINDOW,
          maxDataPoints: SERIES_POINTS,
          draw: "bars",
          targets: [
            target(windowed(SERIES_POINTS, over(pipeline("dlq"), "sum", sumAcross(["_field"]), "every"))),
          ],
          defaults: { min: 0, unit: "short", decimals: 0, color: { mode: "fixed", fixedColor: "red" } },
          overrides: rename({ dlq: "dead letters" }),
        }),
      ],
    ],
  });
}
