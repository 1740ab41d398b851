/**
 * Ingest end to end: N seed-format readings are put on the raw topic first, then the real worker
 * starts; the clock runs from worker start until the group has committed every offset and InfluxDB
 * holds every distinct (sensor, timestamp) reading.
 */
import { RuleStore } from "../api/rule-store.js";
import { kafkaConfig } from "../common/config.js";
import type { AlertRuleInput } from "../common/rules.js";
import { ingestSettings } from "../ingest/config.js";
import { IngestMetrics } from "../ingest/metrics.js";
import { DEFAULT_SIMULATION, simulate } from "../ingest/simulation.js";
import { IngestWorker } from "../ingest/worker.js";
import { until, withChildWorker } from "./child-worker.js";
import {
  committedOffsets,
  countReadings,
  type Env,
  kafkaFor,
  logger,
  type Outgoing,
  produce,
  progress,
  sleep,
} from "./support.js";

export const SENSORS = 1000;
const INTERVAL_MS = 1000;

export interface IngestRun {
  readings: number;
  distinct: number;
  /** Event-time range of the data, epoch ms: [start, stop). */
  start: number;
  stop: number;
  messages: Outgoing[];
  produceSeconds: number;
  seconds: number;
  readingsPerSecond: number;
  /** From worker start until its first batch was stored in InfluxDB (group join, state restore, first batch). */
  firstStoredSeconds: number;
  /** Rate from the first batch stored to the end: the worker's pace once it runs. */
  steadyReadingsPerSecond: number;
  batches: number;
  meanBatchMessages: number;
  /** Mean time per batch from its start until its InfluxDB write returned (decode, detect, window, write). */
  meanBatchWriteMs: number;
  /** This process's peak RSS while the worker ran in it (includes the bench's own heap). */
  peakRssMb: number;
  /** This process's user + system CPU seconds from worker start to the end (the bench's polling included). */
  cpuSeconds: number;
  /** Bytes (key and value) of the raw messages processed and of the state changelog committed. */
  inputBytes: number;
  changelogBytes: number;
  worker: IngestWorker;
}

/** Generates the readings: 1000 sensors, one reading a second each, ending 10 minutes ago. */
export function readingsFor(
  count: number,
  now = Date.now(),
): { messages: Outgoing[]; start: number; stop: number } {
  const ticks = Math.ceil(count / SENSORS);
  const start = Math.floor((now - 10 * 60_000 - ticks * INTERVAL_MS) / 60_000) * 60_000;
  const messages: Outgoing[] = [];
  for (const m of simulate({
    ...DEFAULT_SIMULATION,
    sensors: SENSORS,
    count,
    startTime: start,
    intervalMs: INTERVAL_MS,
  })) {
    messages.push({ key: m.key, value: m.value });
  }
  return { messages, start, stop: start + ticks * INTERVAL_MS };
}

function distinctReadings(messages: Outgoing[]): number {
  const seen = new Set<string>();
  for (const m of messages) {
    const r = JSON.parse(m.value) as { sensor_id: string; timestamp: number };
    seen.add(`${r.sensor_id}\u001f${r.timestamp}`);
  }
  return seen.size;
}

function histogramMean(histogram: IngestMetrics["batchSize"]): Promise<{ count: number; mean: number }> {
  return histogram.get().then((h) => {
    const sum = h.values.find((v) => v.metricName?.endsWith("_sum"))?.value ?? 0;
    const count = h.values.find((v) => v.metricName?.endsWith("_count"))?.value ?? 0;
    return { count, mean: count === 0 ? 0 : sum / count };
  });
}

/** Rules the worker evaluates during the run, one per kind of condition, over every sensor. */
export const BENCH_RULES: AlertRuleInput[] = [
  { name: "hot", condition: { type: "threshold", op: "above", value: 24 }, for: "5s", hysteresis: 0.5 },
  { name: "jumpy", condition: { type: "rate_of_change", per: "1s", op: "above", value: 5 } },
  { name: "spiky", condition: { type: "anomaly" }, resolve_after: "30s" },
  { name: "silent", condition: { type: "deadman", after: "2m" } },
  { name: "warm-minute", condition: { type: "window", fn: "mean", window: "1m", op: "above", value: 23 } },
].map(
  (r) => ({ sensors: { type: "all" }, field: "temperature", severity: "warning", ...r }) as AlertRuleInput,
);

async function createRules(env: Env): Promise<void> {
  const store = new RuleStore(kafkaFor(env), kafkaConfig(env));
  await store.start();
  try {
    for (const rule of BENCH_RULES) await store.create(rule);
  } finally {
    await store.stop();
  }
}

/** Readings of the warm-up run (see warmUp). */
export const WARM_UP_READINGS = 20_000;

/**
 * Not measured: the deployed worker (its own process, so none of its code is compiled hot in the
 * bench process) ingests WARM_UP_READINGS readings through the same broker and InfluxDB, on topics
 * and a bucket of its own. A freshly started broker and InfluxDB are slow for their first work (the
 * broker's JIT, InfluxDB's first shards and queries); without this, run 1 would pay for it and the
 * tools measured after it (write-only, consume-only, Telegraf) would not. Returns its seconds.
 */
export async function warmUp(env: Env): Promise<number> {
  const line = progress("0/5 warm-up");
  const { messages } = readingsFor(WARM_UP_READINGS);
  const distinct = distinctReadings(messages);
  await produce(env, messages, (sent) => line.update(`producing ${sent}/${messages.length}`));
  await createRules(env);
  const started = performance.now();
  await withChildWorker(env, async (child) => {
    const admin = kafkaFor(env).admin();
    await admin.connect();
    try {
      await until(
        "the warm-up readings committed and stored",
        async () => {
          const committed = await committedOffsets(admin, env, env.INGEST_GROUP_ID as string);
          line.update(`${committed}/${messages.length} offsets committed`);
          return committed >= messages.length && (await countReadings(env)) === distinct;
        },
        180_000,
        child,
      );
    } finally {
      await admin.disconnect();
    }
  });
  const seconds = (performance.now() - started) / 1000;
  line.done(
    `${messages.length} readings through the deployed worker in ${seconds.toFixed(1)} s (not measured)`,
  );
  return seconds;
}

/** Runs the measurement and leaves the worker running (the latency run reuses it); the caller stops it. */
export async function runIngest(env: Env, count: number): Promise<IngestRun> {
  const line = progress("1/5 ingest");
  line.update(`generating ${count} readings`);
  const { messages, start, stop } = readingsFor(count);
  const distinct = distinctReadings(messages);
  const produceStarted = performance.now();
  await produce(env, messages, (sent) => line.update(`producing ${sent}/${count}`));
  const produceSeconds = (performance.now() - produceStarted) / 1000;

  line.update(`creating ${BENCH_RULES.length} alert rules`);
  await createRules(env);

  const metrics = new IngestMetrics();
  const worker = new IngestWorker({ ...ingestSettings(env), logger, metrics });
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 100);
  const admin = kafkaFor(env).admin();
  await admin.connect();
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const timeoutMs = Math.max(180_000, count * 2);
  let firstStored = 0;
  let firstStoredCount = 0;
  let finished = 0;
  try {
    await worker.start();
    for (;;) {
      const elapsed = performance.now() - started;
      if (elapsed > timeoutMs) throw new Error(`ingest not done after ${timeoutMs / 1000} s`);
      const committed = await committedOffsets(admin, env, env.INGEST_GROUP_ID as string);
      const stored = (await metrics.written.get()).values[0]?.value ?? 0;
      if (stored > 0 && firstStored === 0) {
        firstStored = performance.now();
        firstStoredCount = stored;
      }
      line.update(`${committed}/${count} offsets committed after ${(elapsed / 1000).toFixed(1)} s`);
      if (committed >= count) {
        const stored = await countReadings(env);
        if (stored === distinct) {
          finished = performance.now();
          break;
        }
        line.update(`all committed; ${stored}/${distinct} readings in InfluxDB`);
      }
      await sleep(200);
    }
  } finally {
    clearInterval(sampler);
    await admin.disconnect();
  }
  const seconds = (finished - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const batches = await histogramMean(metrics.batchSize);
  const writes = await histogramMean(metrics.writeLatency);
  line.done(`${count} readings in ${seconds.toFixed(1)} s`);
  return {
    readings: count,
    distinct,
    start,
    stop,
    messages,
    produceSeconds,
    seconds,
    readingsPerSecond: count / seconds,
    firstStoredSeconds: (firstStored - started) / 1000,
    steadyReadingsPerSecond:
      firstStoredCount < count ? (count - firstStoredCount) / ((finished - firstStored) / 1000) : Number.NaN,
    batches: batches.count,
    meanBatchMessages: batches.mean,
    meanBatchWriteMs: writes.mean * 1000,
    peakRssMb: peakRss / 2 ** 20,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    inputBytes: (await metrics.inputBytes.get()).values[0]?.value ?? 0,
    changelogBytes: (await metrics.changelogBytes.get()).values[0]?.value ?? 0,
    worker,
  };
}
