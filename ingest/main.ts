/** Entry point of the ingest worker: `npm run ingest`. Configured by environment (see .env.example). */
import { ConfigError } from "../common/config.js";
import { createInflux, verifyInfluxAccess } from "../common/influx.js";
import { verifyKafkaAccess } from "../common/kafka.js";
import { createLogger } from "../common/log.js";
import { ingestSettings } from "./config.js";
import { IngestMetrics, startMetricsServer, startPipelineReporter } from "./metrics.js";
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
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down: finishing the batch in flight, committing, leaving the group");
    const force = setTimeout(() => {
      logger.error("shutdown took longer than 30 s; exiting");
      process.exit(1);
    }, 30_000);
    await worker.stop();
    await stopReporter();
    server?.close();
    clearTimeout(force);
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));

  await worker.start();
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
