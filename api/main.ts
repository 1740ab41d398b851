/** Entry point of the API: `npm run api`. Configured by environment (see .env.example). */
import { ConfigError } from "../common/config.js";
import { verifyInfluxAccess } from "../common/influx.js";
import { createKafka, verifyKafkaAccess } from "../common/kafka.js";
import { onStopRequest } from "../common/lifecycle.js";
import { createLogger } from "../common/log.js";
import { apiSettings } from "./config.js";
import { buildServer } from "./server.js";

const logger = createLogger("api");

async function main(): Promise<void> {
  let settings: ReturnType<typeof apiSettings>;
  try {
    settings = apiSettings();
  } catch (err) {
    if (err instanceof ConfigError) {
      logger.fatal(err.message);
      process.exit(2);
    }
    throw err;
  }
  // Wrong credentials or an untrusted certificate: fail now with the setting to fix, not retry.
  await Promise.all([verifyKafkaAccess(settings.kafka), verifyInfluxAccess(settings.influx)]);
  let app: Awaited<ReturnType<typeof buildServer>> | undefined;
  let stopping = false;
  // Listening before the server is built: a stop while it still connects to Kafka ends it too.
  const shutdown = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ reason }, "shutting down");
    await app?.close();
    process.exit(0);
  };
  onStopRequest((reason) => void shutdown(reason));
  app = await buildServer({
    settings,
    kafka: createKafka(settings.kafka, logger),
    logger: { level: process.env.LOG_LEVEL ?? "info", name: "api" },
  });
  await app.listen({ host: settings.host, port: settings.port });
}

main().catch((err) => {
  logger.fatal({ error: (err as Error).message, stack: (err as Error).stack }, "api failed");
  process.exit(1);
});
