import { setLogger } from "@influxdata/influxdb-client";
import { type Logger, pino } from "pino";

/** Structured JSON logs (pino) on stdout; LOG_LEVEL picks the level. */
export function createLogger(name: string): Logger {
  const logger = pino({ name, level: process.env.LOG_LEVEL ?? "info" });
  routeInfluxClientLogs(logger);
  return logger;
}

/**
 * The InfluxDB client logs every failed write to the console; the callers already retry and log
 * what matters, so its messages go to pino at debug level.
 */
export function routeInfluxClientLogs(logger: Logger): void {
  setLogger({
    error: (message, error) =>
      logger.debug({ error: (error as Error | undefined)?.message }, `influxdb-client: ${message}`),
    warn: (message, error) =>
      logger.debug({ error: (error as Error | undefined)?.message }, `influxdb-client: ${message}`),
  });
}
