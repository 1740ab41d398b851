import { setLogger } from "@influxdata/influxdb-client";
import { type Logger, pino } from "pino";

/** Structured JSON logs (pino) on stdout; LOG_LEVEL picks the level. */
export function createLogger(name: string): Logger {
  const logger = pino({ name, level: process.env.LOG_LEVEL ?? "info" });
  // The InfluxDB client logs to the console by default; route it through pino instead.
  setLogger({
    error: (message, error) =>
      logger.debug({ error: (error as Error | undefined)?.message }, `influxdb-client: ${message}`),
    warn: (message, error) =>
      logger.debug({ error: (error as Error | undefined)?.message }, `influxdb-client: ${message}`),
  });
  return logger;
}
