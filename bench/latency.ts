/**
 * End-to-end latency at a fixed moderate rate, with the worker running as deployed (a child process,
 * `node --import tsx ingest/main.ts`, resuming run 1's group and state): readings of the ingest run's
 * simulated fleet go out in small timed chunks, every chunk with its own event time (its produce
 * time), and a poller asks InfluxDB which pending event times it holds for one probe sensor per
 * partition. A chunk counts as visible when the answer holding every probe's reading of it arrives
 * (a chunk's readings of one partition are one record batch, written together); its latency is that
 * moment minus the moment it was handed to the producer. At the end every reading of every chunk
 * must be in InfluxDB.
 */
import { influxConfig } from "../common/config.js";
import { createInflux, type InfluxDB, v1Database } from "../common/influx.js";
import { Partitioners, withAdmin } from "../common/kafka.js";
import { MEASUREMENTS } from "../common/topics.js";
import { DEFAULT_SIMULATION, simulate } from "../ingest/simulation.js";
import { untilJoined, withChildWorker } from "./child-worker.js";
import { SENSORS } from "./ingest.js";
import { type Env, iso, kafkaFor, percentile, progress, rawTopic, sleep } from "./support.js";

export interface LatencyRun {
  targetRate: number;
  achievedRate: number;
  readings: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Mean time between two answers of the poller: the resolution of the figures above. */
  pollIntervalMs: number;
}

interface Chunk {
  eventTime: number;
  size: number;
  producedAt: number;
  visibleAt?: number;
}

const CHUNK_MS = 100;
const WARM_UP_SECONDS = 5;

async function produceAndWatch(env: Env, rate: number, seconds: number, onProgress: (text: string) => void) {
  const config = influxConfig(env);
  const influx = createInflux(config);
  const query = influx.getQueryApi(config.org);
  const producer = kafkaFor(env).producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const chunks: Chunk[] = [];
  const perChunk = Math.max(1, Math.round((rate * CHUNK_MS) / 1000));
  const chunkCount = Math.max(1, Math.round((seconds * 1000) / CHUNK_MS));
  // The sends, chained: each one after those before it.
  let sent: Promise<unknown> = Promise.resolve();
  // Each sensor's partition is worked out once, with the producer's default partitioner, and given
  // with its messages: the load generator shares the worker's 2 cores, and hashing every key again
  // (kafkajs's murmur2) cost it more CPU than the whole InfluxDB write path of the run.
  const { partitionOf, partitions } = await partitionsBySensor(env);
  // The ingest run's fleet (a random walk per sensor, 1 % anomalies), one reading per sensor and
  // CHUNK_MS; each chunk's event time is when it is produced.
  const fleet = [
    ...simulate({
      ...DEFAULT_SIMULATION,
      sensors: SENSORS,
      count: perChunk * chunkCount,
      startTime: 0,
      intervalMs: CHUNK_MS,
    }),
  ].map((m) => {
    const r = JSON.parse(m.value) as { sensor_id: string; temperature: number };
    return {
      sensor: r.sensor_id,
      temperature: r.temperature,
      partition: partitionOf.get(r.sensor_id) as number,
    };
  });
  let polls = 0;
  let producing = true;

  const produceAll = async () => {
    const t0 = Date.now();
    for (let c = 0; c < chunkCount; c++) {
      await sleep(Math.max(0, t0 + c * CHUNK_MS - Date.now()));
      const producedAt = Date.now();
      const eventTime = Math.max(producedAt, (chunks.at(-1)?.eventTime ?? 0) + 1);
      const messages = Array.from({ length: perChunk }, (_, i) => {
        const { sensor, temperature, partition } = fleet[c * perChunk + i] as (typeof fleet)[number];
        return {
          key: sensor,
          partition,
          value: `{"sensor_id":"${sensor}","temperature":${temperature},"timestamp":${eventTime}}`,
        };
      });
      chunks.push({ eventTime, size: perChunk, producedAt });
      // Handed over now; sent after the sends before it (kafkajs's idempotent producer can lose or
      // repeat messages when sends overlap). Time queued in the producer counts in the latency.
      sent = sent.then(() => producer.send({ topic: rawTopic(env), acks: -1, messages }));
    }
    producing = false;
  };

  // One probe sensor per partition: a chunk's readings of one partition are one record batch,
  // fetched, processed and written together, so when every probe's reading of a chunk is visible,
  // all of the chunk is. Asking for 6 series instead of the fleet keeps the poller's own load on
  // InfluxDB small (a whole-fleet count costs 70 ms per pending chunk, and more as chunks pile up),
  // and so does asking in InfluxQL: the poller asks about 20 times a second on the worker's 2 cores,
  // and the same question cost InfluxDB 6.6 ms of CPU in InfluxQL against 13.0 ms in Flux.
  const probes = probeSensors(partitionOf, partitions);
  const probeFilter = probes.map((p) => `sensor_id = '${p}'`).join(" OR ");
  const database = await v1Database(config);
  const watch = async () => {
    const deadline = Date.now() + seconds * 1000 + 60_000;
    while (Date.now() < deadline) {
      const pending = chunks.filter((c) => c.visibleAt === undefined);
      if (pending.length === 0) {
        if (!producing) return;
        await sleep(5);
        continue;
      }
      const from = (pending[0] as Chunk).eventTime;
      const to = (pending.at(-1) as Chunk).eventTime + 1;
      const times = await influxqlTimes(
        influx,
        database,
        `SELECT temperature FROM ${MEASUREMENTS.readings} WHERE (${probeFilter}) AND time >= ${from}ms AND time < ${to}ms`,
      );
      const answeredAt = Date.now();
      polls++;
      const seen = new Map<number, number>();
      for (const t of times) seen.set(t, (seen.get(t) ?? 0) + 1);
      for (const c of pending) if ((seen.get(c.eventTime) ?? 0) >= probes.length) c.visibleAt = answeredAt;
      onProgress(`${chunks.length - pending.length}/${chunkCount} chunks visible`);
      await sleep(20);
    }
  };

  const started = Date.now();
  try {
    await Promise.all([produceAll(), watch()]);
    await sent;
  } finally {
    await producer.disconnect();
  }
  // Every reading of every chunk, not only the probes', must be stored.
  const first = (chunks[0] as Chunk).eventTime;
  const stored = await query.collectRows<{ _value: number }>(
    `from(bucket: "${config.bucket}")
  |> range(start: ${iso(first)}, stop: ${iso((chunks.at(-1) as Chunk).eventTime + 1)})
  |> filter(fn: (r) => r._measurement == "${MEASUREMENTS.readings}" and r._field == "temperature")
  |> count()
  |> group()
  |> sum()`,
  );
  const expected = chunks.length * perChunk;
  if ((stored[0]?._value ?? 0) !== expected) {
    throw new Error(`InfluxDB holds ${stored[0]?._value ?? 0} of the ${expected} readings produced`);
  }
  return { chunks, perChunk, polls, elapsedMs: Date.now() - started };
}

/** The times (epoch ms) of the points an InfluxQL query returns. */
async function influxqlTimes(influx: InfluxDB, database: string, q: string): Promise<number[]> {
  const body = (await influx.transport.request(
    `/query?db=${encodeURIComponent(database)}&epoch=ms&q=${encodeURIComponent(q)}`,
    null,
    { method: "GET" },
  )) as { results?: { error?: string; series?: { values: [number, ...unknown[]][] }[] }[] };
  const error = body.results?.[0]?.error;
  if (error !== undefined) throw new Error(`InfluxQL ${q}: ${error}`);
  return (body.results?.[0]?.series ?? []).flatMap((s) => s.values.map((v) => v[0]));
}

/** The partition of each simulated sensor's key on the raw topic, as the default partitioner puts it. */
async function partitionsBySensor(
  env: Env,
): Promise<{ partitionOf: Map<string, number>; partitions: number }> {
  const topic = rawTopic(env);
  const metadata = await withAdmin(kafkaFor(env), (admin) => admin.fetchTopicMetadata({ topics: [topic] }));
  const partitionMetadata = metadata.topics[0]?.partitions ?? [];
  if (partitionMetadata.length === 0) throw new Error(`no partitions found for ${topic}`);
  const partitioner = Partitioners.DefaultPartitioner();
  const bySensor = new Map<string, number>();
  for (let i = 1; i <= SENSORS; i++) {
    const sensor = `sensor_${i}`;
    bySensor.set(sensor, partitioner({ topic, partitionMetadata, message: { key: sensor, value: null } }));
  }
  return { partitionOf: bySensor, partitions: partitionMetadata.length };
}

/** For each partition, the first sensor (by number) whose key is put there. */
function probeSensors(partitionOf: Map<string, number>, partitions: number): string[] {
  const probes = new Map<number, string>();
  for (const [sensor, partition] of partitionOf) if (!probes.has(partition)) probes.set(partition, sensor);
  if (probes.size !== partitions)
    throw new Error(`no probe sensor for ${partitions - probes.size} partitions`);
  return [...probes.values()];
}

export async function runLatency(env: Env, rate = 2000, seconds = 15): Promise<LatencyRun> {
  const line = progress("3/5 latency");
  return withChildWorker(env, async (child) => {
    line.update("worker starting");
    await untilJoined(env, child);
    // The same stream for WARM_UP_SECONDS first, not measured: the worker's first batches restore
    // its state and close every window the bulk load left open, and its code is not yet compiled
    // hot; the bound is on a steady stream.
    await produceAndWatch(env, rate, WARM_UP_SECONDS, (t) => line.update(`warm-up: ${t}`));
    const producedFor = Date.now();
    const { chunks, perChunk, polls, elapsedMs } = await produceAndWatch(env, rate, seconds, (t) =>
      line.update(`${rate} readings/s for ${seconds} s: ${t}`),
    );
    return summary(chunks, perChunk, polls, elapsedMs, rate, producedFor, line);
  });
}

function summary(
  chunks: Chunk[],
  perChunk: number,
  polls: number,
  elapsedMs: number,
  rate: number,
  producedFor: number,
  line: ReturnType<typeof progress>,
): LatencyRun {
  const latencies = chunks
    .filter((c) => c.visibleAt !== undefined)
    .map((c) => (c.visibleAt as number) - c.producedAt)
    .sort((a, b) => a - b);
  if (latencies.length < chunks.length) {
    throw new Error(
      `${chunks.length - latencies.length} of ${chunks.length} chunks never became visible in InfluxDB`,
    );
  }
  const last = chunks.at(-1) as Chunk;
  const first = chunks[0] as Chunk;
  line.done(
    `p50 ${percentile(latencies, 50)} ms, p99 ${percentile(latencies, 99)} ms (${Date.now() - producedFor} ms)`,
  );
  return {
    targetRate: rate,
    achievedRate: (chunks.length * perChunk) / ((last.producedAt - first.producedAt + CHUNK_MS) / 1000),
    readings: chunks.length * perChunk,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.at(-1) as number,
    pollIntervalMs: elapsedMs / Math.max(1, polls),
  };
}
