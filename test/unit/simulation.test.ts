import { describe, expect, it } from "vitest";
import { DEFAULT_LIMITS, parseReading } from "../../common/reading.js";
import { DEFAULT_DETECTORS } from "../../ingest/detectors.js";
import { PartitionTask } from "../../ingest/partition-task.js";
import { DEFAULT_SIMULATION, prng, type SimulationOptions, simulate } from "../../ingest/simulation.js";
import { DEFAULT_WINDOWS } from "../../ingest/windows.js";

const START = Date.UTC(2024, 9, 27, 3, 33);

function options(overrides: Partial<SimulationOptions> = {}): SimulationOptions {
  return { ...DEFAULT_SIMULATION, startTime: START, ...overrides };
}

describe("prng", () => {
  it("is reproducible and stays in [0, 1)", () => {
    const a = prng(7);
    const b = prng(7);
    const values = Array.from({ length: 1000 }, () => a());
    expect(Array.from({ length: 1000 }, () => b())).toEqual(values);
    for (const v of values) {
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThan(1);
    }
    const mean = values.reduce((s, v) => s + v, 0) / values.length;
    expect(mean).toBeGreaterThan(0.45);
    expect(mean).toBeLessThan(0.55);
    expect(prng(8)()).not.toBe(prng(7)());
  });
});

describe("simulate", () => {
  const mixed = options({
    count: 20_000,
    anomalyProbability: 0.05,
    outOfOrderFraction: 0.2,
    lateFraction: 0.05,
    malformedFraction: 0.1,
  });

  it("gives identical messages for the same seed and different ones for another", () => {
    const first = [...simulate(mixed)];
    expect([...simulate(mixed)]).toEqual(first);
    const other = [...simulate({ ...mixed, seed: mixed.seed + 1 })];
    expect(other).toHaveLength(first.length);
    expect(other).not.toEqual(first);
  });

  it("generates `count` messages, round-robin over the sensors, keyed by sensor", () => {
    const messages = [...simulate(options({ sensors: 3, count: 10 }))];
    expect(messages.map((m) => m.key)).toEqual([
      "sensor_1",
      "sensor_2",
      "sensor_3",
      "sensor_1",
      "sensor_2",
      "sensor_3",
      "sensor_1",
      "sensor_2",
      "sensor_3",
      "sensor_1",
    ]);
  });

  it("respects the fractions over many messages", () => {
    const messages = [...simulate(mixed)];
    const share = (kind: string) => messages.filter((m) => m.kind === kind).length / messages.length;
    const wellFormed = 1 - mixed.malformedFraction;
    expect(share("malformed")).toBeCloseTo(mixed.malformedFraction, 1);
    expect(Math.abs(share("malformed") - 0.1)).toBeLessThan(0.01);
    expect(Math.abs(share("late") - wellFormed * 0.05)).toBeLessThan(0.01);
    expect(Math.abs(share("out_of_order") - wellFormed * 0.2)).toBeLessThan(0.01);
    // Anomalies are counted as their own kind only on otherwise regular readings.
    expect(Math.abs(share("anomaly") - wellFormed * 0.75 * 0.05)).toBeLessThan(0.01);
  });

  it("places readings on the sensor's tick, shifted back as their kind says", () => {
    const sensors = mixed.sensors;
    [...simulate(mixed)].forEach((m, i) => {
      if (m.kind === "malformed") return;
      const doc = JSON.parse(m.value) as { sensor_id: string; timestamp: number; temperature: number };
      expect(doc.sensor_id).toBe(m.key);
      const tick = START + Math.floor(i / sensors) * mixed.intervalMs;
      if (m.kind === "late") expect(doc.timestamp).toBe(tick - mixed.lateMs);
      else if (m.kind === "out_of_order") {
        expect(doc.timestamp).toBeLessThanOrEqual(tick);
        expect(doc.timestamp).toBeGreaterThan(tick - mixed.outOfOrderMs);
      } else expect(doc.timestamp).toBe(tick);
    });
  });

  it("produces readings the input contract accepts, and malformed messages it rejects", () => {
    const now = START + 86_400_000;
    let malformed = 0;
    for (const m of simulate(mixed)) {
      const result = parseReading(Buffer.from(m.value), now);
      if (m.kind === "malformed") {
        malformed++;
        expect(result.ok, m.value).toBe(false);
      } else {
        expect(result.ok, m.value).toBe(true);
        if (result.ok) {
          expect(result.reading.sensorId).toBe(m.key);
          expect(Object.keys(result.reading.fields)).toEqual(["temperature"]);
        }
      }
    }
    expect(malformed).toBeGreaterThan(1000);
  });

  it("anomalies stand out: the ingest pipeline flags most injected spikes", () => {
    const sim = options({ sensors: 5, count: 5_000, anomalyProbability: 0.02 });
    const messages = [...simulate(sim)];
    const task = new PartitionTask({
      detectors: DEFAULT_DETECTORS,
      windows: DEFAULT_WINDOWS,
      limits: DEFAULT_LIMITS,
    });
    const out = task.process(
      messages.map((m) => ({ value: Buffer.from(m.value) })),
      START + 86_400_000,
    );
    const injected = messages.flatMap((m, i) => (m.kind === "anomaly" ? [i] : []));
    const flagged = new Set(out.lines.filter((l) => l.line.startsWith("anomalies,")).map((l) => l.source));
    expect(injected.length).toBeGreaterThan(50);
    const caught = injected.filter((i) => flagged.has(i)).length;
    expect(caught / injected.length).toBeGreaterThan(0.9);
  });

  it("late messages are classified late by the pipeline", () => {
    const sim = options({ sensors: 5, count: 10_000, lateFraction: 0.05 });
    const messages = [...simulate(sim)];
    const task = new PartitionTask({
      detectors: DEFAULT_DETECTORS,
      windows: DEFAULT_WINDOWS,
      limits: DEFAULT_LIMITS,
    });
    const out = task.process(
      messages.map((m) => ({ value: Buffer.from(m.value) })),
      START + 86_400_000,
    );
    // Once stream time is lateMs past the start, a message sent lateMs behind is past every window.
    const settled = START + sim.lateMs;
    const expected = messages.flatMap((m, i) => {
      const tick = START + Math.floor(i / sim.sensors) * sim.intervalMs;
      return m.kind === "late" && tick - sim.intervalMs >= settled ? [i] : [];
    });
    expect(expected.length).toBeGreaterThan(50);
    const late = new Set(out.late);
    expect(expected.filter((i) => !late.has(i))).toEqual([]);
    for (const i of out.late) expect(messages[i]?.kind).toBe("late");
  });
});
