/**
 * Deterministic sensor traffic: the seed's temperature readings, with optional anomalies,
 * out-of-order, late and malformed messages. The same options and seed give the same messages.
 */

export interface SimulationOptions {
  sensors: number;
  /** Messages to generate in total. */
  count: number;
  /** Event time of the first reading, epoch ms. */
  startTime: number;
  /** Event-time spacing between one sensor's readings. */
  intervalMs: number;
  anomalyProbability: number;
  /** Fraction of readings whose timestamp is pushed back by up to `outOfOrderMs`. */
  outOfOrderFraction: number;
  outOfOrderMs: number;
  /** Fraction of readings sent far behind stream time (beyond any window lateness). */
  lateFraction: number;
  lateMs: number;
  malformedFraction: number;
  seed: number;
}

export const DEFAULT_SIMULATION: SimulationOptions = {
  sensors: 10,
  count: 1000,
  startTime: Date.now(),
  intervalMs: 1000,
  anomalyProbability: 0.01,
  outOfOrderFraction: 0,
  outOfOrderMs: 5000,
  lateFraction: 0,
  lateMs: 15 * 60_000,
  malformedFraction: 0,
  seed: 42,
};

export interface SimulatedMessage {
  key: string;
  value: string;
  kind: "reading" | "anomaly" | "out_of_order" | "late" | "malformed";
}

/** mulberry32: tiny, fast, good enough for test traffic, and reproducible. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MALFORMED = [
  "not json at all",
  '{"sensor_id":"sensor_1","temperature":"warm","timestamp":1730000000000}',
  '{"temperature":21.5,"timestamp":1730000000000}',
  '{"sensor_id":"sensor_1","timestamp":1730000000000}',
  '{"sensor_id":"sensor_1","temperature":21.5,"timestamp":"yesterday"}',
  "[1,2,3]",
  "",
];

export function* simulate(options: SimulationOptions): Generator<SimulatedMessage> {
  const random = prng(options.seed);
  const level = Array.from({ length: options.sensors }, () => 15 + random() * 10);
  for (let i = 0; i < options.count; i++) {
    const s = i % options.sensors;
    const tick = Math.floor(i / options.sensors);
    const key = `sensor_${s + 1}`;
    const roll = random();
    if (roll < options.malformedFraction) {
      yield { key, value: MALFORMED[Math.floor(random() * MALFORMED.length)] as string, kind: "malformed" };
      continue;
    }
    let time = options.startTime + tick * options.intervalMs;
    let kind: SimulatedMessage["kind"] = "reading";
    const r2 = random();
    if (r2 < options.lateFraction) {
      time -= options.lateMs;
      kind = "late";
    } else if (r2 < options.lateFraction + options.outOfOrderFraction) {
      time -= Math.floor(random() * options.outOfOrderMs);
      kind = "out_of_order";
    }
    const current = level[s] as number;
    const next = current + (random() - 0.5) * 0.4;
    level[s] = next;
    let temperature = next;
    if (random() < options.anomalyProbability) {
      temperature += (random() < 0.5 ? -1 : 1) * (8 + random() * 7);
      if (kind === "reading") kind = "anomaly";
    }
    const reading = { sensor_id: key, temperature: Math.round(temperature * 100) / 100, timestamp: time };
    yield { key, value: JSON.stringify(reading), kind };
  }
}
