/**
 * End-to-end latency at a fixed moderate rate, with the worker running: readings go out in small
 * timed chunks, every chunk with its own event time (its produce time), and a poller asks InfluxDB
 * how many readings each pending event time has. A chunk counts as visible when the answer holding
 * all of it arrives; its latency is that moment minus the moment it was handed to the producer.
 */
import { influxConfig } from "../common/config.js";
import { createInflux } from "../common/influx.js";
import { MEASUREMENTS } from "../common/topics.js";
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

async function produceAndWatch(env: Env, rate: number, seconds: number, onProgress: (text: string) => void) {
  const config = influxConfig(env);
  const query = createInflux(config).getQueryApi(config.org);
  const producer = kafkaFor(env).producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const chunks: Chunk[] = [];
  const perChunk = Math.max(1, Math.round((rate * CHUNK_MS) / 1000));
  const chunkCount = Math.max(1, Math.round((seconds * 1000) / CHUNK_MS));
  const sends: Promise<unknown>[] = [];
  let polls = 0;
  let producing = true;

  const produceAll = async () => {
    const t0 = Date.now();
    for (let c = 0; c < chunkCount; c++) {
      await sleep(Math.max(0, t0 + c * CHUNK_MS - Date.now()));
      const producedAt = Date.now();
      const eventTime = Math.max(producedAt, (chunks.at(-1)?.eventTime ?? 0) + 1);
      const messages = Array.from({ length: perChunk }, (_, i) => {
        const sensor = `sensor_${((c * perChunk + i) % SENSORS) + 1}`;
        const temperature = Math.round((20 + Math.sin(c + i)) * 100) / 100;
        return {
          key: sensor,
          value: JSON.stringify({ sensor_id: sensor, temperature, timestamp: eventTime }),
        };
      });
      chunks.push({ eventTime, size: perChunk, producedAt });
      sends.push(producer.send({ topic: rawTopic(env), acks: -1, messages }));
    }
    producing = false;
  };

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
      const rows = await query.collectRows<{ _time: string; _value: number }>(
        `from(bucket: "${config.bucket}")
  |> range(start: ${iso(from)}, stop: ${iso(to)})
  |> filter(fn: (r) => r._measurement == "${MEASUREMENTS.readings}" and r._field == "temperature")
  |> group(columns: ["_time"])
  |> count()`,
      );
      const answeredAt = Date.now();
      polls++;
      const counts = new Map(rows.map((r) => [Date.parse(r._time), r._value]));
      for (const c of pending) if ((counts.get(c.eventTime) ?? 0) >= c.size) c.visibleAt = answeredAt;
      const seen = chunks.length - pending.length;
      onProgress(`${seen}/${chunkCount} chunks visible`);
      await sleep(20);
    }
  };

  const started = Date.now();
  try {
    await Promise.all([produceAll(), watch()]);
    await Promise.all(sends);
  } finally {
    await producer.disconnect();
  }
  return { chunks, perChunk, polls, elapsedMs: Date.now() - started };
}

export async function runLatency(env: Env, rate = 2000, seconds = 15): Promise<LatencyRun> {
  const line = progress("3/5 latency");
  // One chunk first: the first batch after the bulk load closes every open window, which is not
  // what a steady stream costs.
  await produceAndWatch(env, rate, CHUNK_MS / 1000, (t) => line.update(`warm-up: ${t}`));
  const producedFor = Date.now();
  const { chunks, perChunk, polls, elapsedMs } = await produceAndWatch(env, rate, seconds, (t) =>
    line.update(`${rate} readings/s for ${seconds} s: ${t}`),
  );
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
