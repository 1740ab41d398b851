/** Entry point of the ingest worker: `npm run ingest`. Configured by environment (see .env.example). */
import { ConfigError } from "../common/config.js";
import { createInflux, verifyInfluxAccess } from "../common/influx.js";
import { verifyKafkaAccess } from "../common/kafka.js";
import { onStopRequest } from "../common/lifecycle.js";
import { createLogger } from "../common/log.js";
import { ingestSettings } from "./config.js";
import { IngestMetrics, startMetricsServer, startPipelineReporter } from "./metrics.js";
import { describeStartupError, isRetriableStartupError, startupBackoffMs } from "./startup.js";
import { IngestWorker } from "./worker.js";

const logger = createLogger("ingest");

async function main(): Promise<void> {
  let settings: ReturnType<typeof ingestSettings>;
  try {
    settings = ingestSettings();
  } catch (err) {
    if (err instanceof ConfigError) {
      logger.fatal(err.message);
      process.exit(2);
    }
    throw err;
  }
  // Wrong credentials or an untrusted certificate: fail now with the setting to fix, not retry.
  await Promise.all([verifyKafkaAccess(settings.kafka), verifyInfluxAccess(settings.influx)]);
  const metrics = new IngestMetrics();
  const worker = new IngestWorker({ ...settings, logger, metrics });
  const server = settings.metricsEnabled
    ? await startMetricsServer(
        metrics.registry,
        settings.metricsPort,
        settings.metricsHost,
        () => worker.ready,
      )
    : undefined;
  const stopReporter = startPipelineReporter(
    metrics,
    createInflux(settings.influx),
    settings.influx,
    settings.workerId,
    settings.pipelineIntervalMs,
    logger,
  );

  let stopping = false;
  let cutBackoffShort = () => {};
  const shutdown = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    cutBackoffShort();
    logger.info({ reason }, "shutting down: finishing the batch in flight, committing, leaving the group");
    const force = setTimeout(() => {
      logger.error("shutdown took longer than 30 s; exiting");
      process.exit(1);
    }, 30_000);
    await Promise.all([worker.stop(), stopReporter()]);
    server?.close();
    clearTimeout(force);
    process.exit(0);
  };
  onStopRequest((reason) => void shutdown(reason));

  // Right after the broker starts or the topics are created, Kafka answers "unknown
  // topic-partition" or "coordinator loading" for a few seconds: wait that out instead of dying.
  for (let attempt = 1; ; attempt++) {
    try {
      await worker.start();
      break;
    } catch (err) {
      // A half-started worker may hold connections and the rule table's consumer: release them.
      await worker
        .stop()
        .catch((e: Error) => logger.warn({ error: e.message }, "cleaning up the failed start failed"));
      if (stopping) return;
      if (!isRetriableStartupError(err)) {
        logger.fatal(
          { error: describeStartupError(err), stack: (err as Error).stack },
          "ingest worker could not start, and the error is not one that passes by itself (configuration, authorization): not retrying",
        );
        process.exit(1);
      }
      const delayMs = startupBackoffMs(attempt);
      logger.warn(
        { attempt, delayMs, error: describeStartupError(err) },
        "ingest worker start failed with a transient Kafka error; retrying",
      );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        cutBackoffShort = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (stopping) return;
    }
  }
  logger.info(
    {
      group: settings.groupId,
      metrics: server ? `http://${settings.metricsHost}:${settings.metricsPort}/metrics` : "off",
    },
    "ingest worker running",
  );
}

main().catch((err) => {
  logger.fatal({ error: (err as Error).message, stack: (err as Error).stack }, "ingest worker failed");
  process.exit(1);
});
