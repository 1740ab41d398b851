/**
 * The sensor simulator: produces the seed's readings to sensor-readings-raw, keyed by sensor.
 *   npm run simulate -- --sensors 20 --rate 200 --duration 60
 * Run with --help for every option.
 */
import { parseArgs } from "node:util";
import { ConfigError, kafkaConfig } from "../common/config.js";
import {
  createKafka,
  ensureTopics,
  KafkaAccessError,
  verifyKafkaAccess,
  withAdmin,
} from "../common/kafka.js";
import { onStopRequest } from "../common/lifecycle.js";
import { createLogger } from "../common/log.js";
import { topicName } from "../common/topics.js";
import { DEFAULT_SIMULATION, type SimulationOptions, simulate } from "./simulation.js";

const HELP = `Usage: npm run simulate -- [options]
  --sensors N         distinct sensors (default 10)
  --rate N            messages per second, 0 = as fast as possible (default 10)
  --count N           messages to send; 0 = no limit (default: no limit with --duration, else 1000)
  --duration S        stop after S seconds
  --interval-ms N     event-time spacing of one sensor's readings (default: 1000)
  --start ISO|ms      event time of the first reading (default: now)
  --anomaly P         probability a reading is a spike (default 0.01)
  --out-of-order P    fraction of readings shifted back up to 5 s (default 0)
  --late P            fraction of readings 15 min behind stream time, too late for any window (default 0)
  --malformed P       fraction of malformed messages (default 0)
  --seed N            random seed for reproducible traffic (default 42)
Kafka comes from KAFKA_BROKERS (and KAFKA_TOPIC_PREFIX).`;

function numberArg(
  values: Record<string, string | boolean | undefined>,
  name: string,
  fallback: number,
  min = 0,
): number {
  const text = values[name];
  if (text === undefined) return fallback;
  const n = Number(text);
  if (typeof text !== "string" || !Number.isFinite(n) || n < min) {
    throw new ConfigError(`--${name} ${JSON.stringify(text)} is not valid: expected a number >= ${min}`);
  }
  return n;
}

function timeArg(text: string | undefined): number {
  if (text === undefined) return Date.now();
  const n = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(n))
    throw new ConfigError(`--start ${JSON.stringify(text)} is not valid: expected epoch ms or an ISO date`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: Object.fromEntries(
      [
        "sensors",
        "rate",
        "count",
        "duration",
        "interval-ms",
        "start",
        "anomaly",
        "out-of-order",
        "late",
        "malformed",
        "seed",
      ].map((k) => [k, { type: "string" as const }]),
    ) as Record<string, { type: "string" }>,
    allowPositionals: false,
    strict: false,
  });
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    console.log(HELP);
    return;
  }
  const logger = createLogger("simulator");
  let stop = false;
  let producing = false;
  onStopRequest(() => {
    stop = true;
    // Nothing sent yet (still connecting): nothing to finish either.
    if (!producing) process.exit(0);
  });
  const kafka = kafkaConfig();
  const durationS = numberArg(values, "duration", 0);
  const options: SimulationOptions = {
    ...DEFAULT_SIMULATION,
    sensors: numberArg(values, "sensors", DEFAULT_SIMULATION.sensors, 1),
    count:
      numberArg(values, "count", durationS > 0 ? 0 : DEFAULT_SIMULATION.count) || Number.MAX_SAFE_INTEGER,
    intervalMs: numberArg(values, "interval-ms", DEFAULT_SIMULATION.intervalMs, 1),
    startTime: timeArg(values.start as string | undefined),
    anomalyProbability: numberArg(values, "anomaly", DEFAULT_SIMULATION.anomalyProbability),
    outOfOrderFraction: numberArg(values, "out-of-order", 0),
    lateFraction: numberArg(values, "late", 0),
    malformedFraction: numberArg(values, "malformed", 0),
    seed: numberArg(values, "seed", DEFAULT_SIMULATION.seed),
  };
  const rate = numberArg(values, "rate", 10);
  await verifyKafkaAccess(kafka);
  const client = createKafka(kafka, logger);
  await withAdmin(client, (admin) => ensureTopics(admin, kafka));
  // Idempotent: a retried send never duplicates readings in the topic.
  const producer = client.producer({
    allowAutoTopicCreation: false,
    idempotent: true,
    maxInFlightRequests: 1,
  });
  await producer.connect();
  const topic = topicName(kafka.topicPrefix, "raw");

  const started = Date.now();
  const deadline = durationS > 0 ? started + durationS * 1000 : Number.POSITIVE_INFINITY;
  const chunk = rate > 0 ? Math.max(1, Math.min(500, Math.round(rate / 10))) : 500;
  // A terminal gets one line rewritten in place; a log file gets a plain line every few seconds.
  const tty = process.stderr.isTTY === true;
  const progressEveryMs = tty ? 1000 : 5000;
  process.stderr.write(
    `[simulator] producing to ${topic}: ${options.sensors} sensors (one reading each every ${options.intervalMs} ms), ${rate > 0 ? `${rate}/s` : "as fast as possible"}, anomaly probability ${options.anomalyProbability}, seed ${options.seed}, first event time ${options.startTime} (${new Date(options.startTime).toISOString()})\n`,
  );
  producing = true;
  let sent = 0;
  let lastProgress = started;
  let pending: { key: string; value: string }[] = [];
  const flush = async () => {
    if (pending.length === 0) return;
    await producer.send({ topic, acks: -1, messages: pending });
    // npm start waits for the first acknowledged readings before it says the product is running.
    if (sent === 0) process.send?.({ type: "produced", sent: pending.length });
    sent += pending.length;
    pending = [];
  };
  for (const message of simulate(options)) {
    if (stop || Date.now() >= deadline) break;
    pending.push({ key: message.key, value: message.value });
    if (pending.length >= chunk) {
      await flush();
      if (rate > 0) {
        const due = started + (sent / rate) * 1000;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      if (Date.now() - lastProgress >= progressEveryMs) {
        lastProgress = Date.now();
        const elapsed = (Date.now() - started) / 1000;
        const line = `[simulator] ${sent} messages to ${topic} in ${elapsed.toFixed(0)} s (${(sent / elapsed).toFixed(0)}/s)`;
        process.stderr.write(tty ? `\r${line}   ` : `${line}\n`);
      }
    }
  }
  await flush();
  const elapsed = (Date.now() - started) / 1000;
  process.stderr.write(
    `${tty ? "\r" : ""}[simulator] done: ${sent} messages to ${topic} in ${elapsed.toFixed(1)} s\n`,
  );
  await producer.disconnect();
}

main().catch((err) => {
  const known = err instanceof ConfigError || err instanceof KafkaAccessError;
  console.error(known ? err.message : err);
  process.exit(known ? 2 : 1);
});
