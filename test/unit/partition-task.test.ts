import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_LIMITS } from "../../common/reading.js";
import type { AlertRule } from "../../common/rules.js";
import {
  type BatchOutput,
  type ChangelogEntry,
  emptyBatchOutput,
  type InputMessage,
  PartitionTask,
  type TaskConfig,
} from "../../ingest/partition-task.js";

/** 2024-10-27T03:33:00Z, a minute boundary. */
const MINUTE = Date.UTC(2024, 9, 27, 3, 33);
const NOW = MINUTE + 86_400_000;

/** Small windows and eager detectors, so short streams close windows, go late and flag anomalies. */
const CONFIG: TaskConfig = {
  detectors: {
    delta: { threshold: 5 },
    zscore: { window: 5, threshold: 1.5, minSamples: 3 },
    ewma: { alpha: 0.3, threshold: 2, warmup: 3 },
  },
  windows: { tiersMs: [60_000, 3_600_000], allowedLatenessMs: 2_000, revisionMs: 8_000, idleMs: 3_600_000 },
  limits: DEFAULT_LIMITS,
};

function message(doc: unknown): InputMessage {
  return { value: Buffer.from(typeof doc === "string" ? doc : JSON.stringify(doc)) };
}

/** Appends a batch's output, shifting its message indexes by where the batch started. */
function append(total: BatchOutput, out: BatchOutput, offset: number): void {
  total.lines.push(...out.lines.map((l) => ({ ...l, source: l.source + offset })));
  total.deadLetters.push(...out.deadLetters.map((d) => ({ ...d, index: d.index + offset })));
  total.late.push(...out.late.map((i) => i + offset));
  total.windows.push(...out.windows);
  total.revisions += out.revisions;
  total.readings += out.readings;
  total.anomalies += out.anomalies;
}

/**
 * Windows close on stream-time timers fired reading by reading, so batches change nothing about
 * them. Only the rollup progress marker is written once per batch (idempotent by design).
 */
function normalised(out: BatchOutput): BatchOutput {
  return { ...out, lines: out.lines.filter((l) => !l.line.startsWith("rollup_progress,")) };
}

function batchesOf(messages: InputMessage[], cuts: number[]): { batch: InputMessage[]; offset: number }[] {
  const bounds = [...new Set(cuts.map((c) => c % (messages.length + 1)))].sort((a, b) => a - b);
  const batches: { batch: InputMessage[]; offset: number }[] = [];
  let start = 0;
  for (const end of [...bounds, messages.length]) {
    batches.push({ batch: messages.slice(start, end), offset: start });
    start = end;
  }
  return batches;
}

/**
 * How the changelog is written and read: state entries one by one; the worker's records (one per
 * sensor); or the older per-entry records until the first restore, which reads them with the
 * worker's reader and writes records from then on (an upgrade).
 */
type LogFormat = "entries" | "records" | "upgrade";

/**
 * Runs the batches; before each batch whose `crashBefore` flag is set, the task is replaced by a
 * fresh one rebuilt from every changelog record produced so far.
 */
function runBatches(
  messages: InputMessage[],
  cuts: number[],
  crashBefore: boolean[] = [],
  format: LogFormat = "entries",
): { output: BatchOutput; log: ChangelogEntry[]; task: PartitionTask } {
  const output = emptyBatchOutput();
  const log: ChangelogEntry[] = [];
  let task = new PartitionTask(CONFIG);
  let records = format === "records";
  batchesOf(messages, cuts).forEach(({ batch, offset }, b) => {
    if (crashBefore[b] === true) {
      task = new PartitionTask(CONFIG);
      if (format === "entries") for (const entry of log) task.restore(entry.key, entry.value);
      else for (const entry of log) task.restoreRecord(entry.key, entry.value);
      if (format === "upgrade") records = true;
    }
    append(output, task.process(batch, NOW), offset);
    log.push(...(records ? task.takeRecords() : task.takeChangelog()));
  });
  return { output, log, task };
}

const MALFORMED = [
  "",
  "not json",
  "[1,2]",
  '{"sensor_id":"s1","timestamp":1730000000000}',
  '{"sensor_id":"s1","timestamp":"yesterday","t":1}',
  '{"sensor_id":"s 1","timestamp":1730000000000,"t":1}',
];

/** A stream of readings moving forward with jitter (some out of order, some late) and malformed messages. */
const streamArb = fc
  .array(
    fc.oneof(
      {
        weight: 8,
        arbitrary: fc.record({
          sensor: fc.constantFrom("s1", "s2", "s3"),
          step: fc.integer({ min: -25_000, max: 6_000 }),
          temperature: fc.integer({ min: -3000, max: 3000 }).map((t) => t / 100),
          humidity: fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined }),
          site: fc.option(fc.constantFrom("north", "south hall", "a,b=c"), { nil: undefined }),
        }),
      },
      { weight: 1, arbitrary: fc.constantFrom(...MALFORMED) },
    ),
    { maxLength: 80, size: "max" },
  )
  .map((items) => {
    let clock = MINUTE + 3_000;
    return items.map((item): InputMessage => {
      if (typeof item === "string") return message(item);
      const { sensor, step, temperature, humidity, site } = item;
      if (step >= 0) clock += step;
      const doc: Record<string, unknown> = {
        sensor_id: sensor,
        temperature,
        timestamp: step >= 0 ? clock : clock + step,
      };
      if (humidity !== undefined) doc.humidity = humidity;
      if (site !== undefined) doc.site = site;
      return message(doc);
    });
  });

const cutsArb = fc.array(fc.nat(), { maxLength: 8 });

function hotRule(overrides: Partial<AlertRule> = {}): AlertRule {
  return {
    id: "hot",
    name: "hot",
    version: 1,
    created_at: "2026-01-01T00:00:00Z",
    updated_at: "2026-01-01T00:00:00Z",
    sensors: { type: "all" },
    field: "temperature",
    severity: "warning",
    condition: { type: "threshold", op: "above", value: 25 },
    ...overrides,
  };
}

describe("PartitionTask", () => {
  it("writes the rollup progress when it moves: when windows close, else at most once a second", () => {
    const task = new PartitionTask(CONFIG);
    const progress = (out: BatchOutput) =>
      out.lines.filter((l) => l.line.startsWith("rollup_progress,")).map((l) => l.line.split(" ")[1]);
    const at = (t: number) => [message({ sensor_id: "sensor_1", temperature: 20, timestamp: t })];
    expect(progress(task.process(at(MINUTE), NOW))).toHaveLength(2);
    // The same second, no window closed: not worked out again.
    expect(progress(task.process(at(MINUTE + 1_000), NOW + 500))).toEqual([]);
    // A second later the stream time moved: the 1m tier's progress moved with it (1h's did not).
    expect(progress(task.process(at(MINUTE + 2_000), NOW + 1_000))).toEqual([`closed_through=${MINUTE}`]);
    // Within the same second again, but the 1m window closes: written at once.
    const closing = task.process(at(MINUTE + 90_000), NOW + 1_100);
    expect(closing.windows.length).toBeGreaterThan(0);
    expect(progress(closing)).toEqual([`closed_through=${MINUTE + 60_000}`]);
  });

  it("writes a readings line per reading and dead-letters the rest with their message index", () => {
    const task = new PartitionTask(CONFIG);
    const out = task.process(
      [
        message({ sensor_id: "sensor_1", temperature: 21.3, timestamp: MINUTE }),
        message("not json"),
        { value: null },
        message({ sensor_id: "sensor_1", temperature: 21.4, site: "north", timestamp: MINUTE + 1000 }),
        message({ sensor_id: "sensor_1", ok: true, timestamp: MINUTE + 2000 }),
      ],
      NOW,
    );
    expect(out.lines).toEqual([
      { line: `readings,sensor_id=sensor_1 temperature=21.3 ${MINUTE}`, source: 0 },
      { line: `readings,sensor_id=sensor_1,site=north temperature=21.4 ${MINUTE + 1000}`, source: 3 },
      // Closed through the earliest open window start, at most stream time less lateness; at the wall-clock minute.
      {
        line: `rollup_progress,partition=0,tier=1m closed_through=${MINUTE - 1_000} ${NOW}`,
        source: 4,
        bucket: "1m",
      },
      {
        line: `rollup_progress,partition=0,tier=1h closed_through=${MINUTE - 33 * 60_000} ${NOW}`,
        source: 4,
        bucket: "1m",
      },
    ]);
    expect(out.deadLetters.map((d) => [d.index, d.reason])).toEqual([
      [1, "invalid_json"],
      [2, "empty"],
      [4, "invalid_value_type"],
    ]);
    expect(out.readings).toBe(2);
    expect(out.anomalies).toBe(0);
    expect(out.windows).toEqual([]);
    expect(out.late).toEqual([]);
  });

  it("writes an anomaly line at the reading's time, tagged by sensor, field and detector", () => {
    const task = new PartitionTask(CONFIG);
    const out = task.process(
      [
        message({ sensor_id: "s1", temperature: 20, timestamp: MINUTE }),
        message({ sensor_id: "s1", temperature: 30, timestamp: MINUTE + 1000 }),
      ],
      NOW,
    );
    expect(out.anomalies).toBe(1);
    expect(out.lines[2]).toEqual({
      line: `anomalies,detector=delta,field=temperature,sensor_id=s1 value=30,score=10,threshold=5,expected=20 ${MINUTE + 1000}`,
      source: 1,
    });
  });

  it("emits a window when stream time passes its end plus lateness, revises it for late readings, then drops it", () => {
    const task = new PartitionTask(CONFIG);
    const first = task.process(
      [
        message({ sensor_id: "s1", temperature: 20, timestamp: MINUTE + 1_000 }),
        message({ sensor_id: "s1", temperature: 22, timestamp: MINUTE + 59_999 }),
        message({ sensor_id: "s1", temperature: 21, timestamp: MINUTE + 61_999 }),
      ],
      NOW,
    );
    expect(first.windows).toEqual([]);
    // Another sensor's clock closes nothing of s1's.
    expect(
      task.process([message({ sensor_id: "s2", temperature: 5, timestamp: MINUTE + 600_000 })], NOW).windows,
    ).toEqual([]);
    const second = task.process(
      [
        message({ sensor_id: "s1", temperature: 5, timestamp: MINUTE + 62_000 }),
        message({ sensor_id: "s1", temperature: 25, timestamp: MINUTE + 5_000 }),
      ],
      NOW,
    );
    // s1's first window closes on its own reading; its late reading then revises it.
    expect(second.windows).toEqual([
      {
        sensor_id: "s1",
        window_start: MINUTE,
        window_end: MINUTE + 60_000,
        count: 2,
        avg_temperature: 21,
        min_temperature: 20,
        max_temperature: 22,
        count_temperature: 2,
      },
      {
        sensor_id: "s1",
        window_start: MINUTE,
        window_end: MINUTE + 60_000,
        count: 3,
        revision: 1,
        avg_temperature: 67 / 3,
        min_temperature: 20,
        max_temperature: 25,
        count_temperature: 3,
      },
    ]);
    expect(second.revisions).toBe(1);
    expect(second.late).toEqual([]);
    // Both emissions rewrite the same rollup point (same identity), the second with the correction.
    const rollups = second.lines.filter((l) => l.line.startsWith("rollup,") && l.bucket === "1m");
    expect(rollups.map((l) => l.line)).toEqual([
      `rollup,field=temperature,sensor_id=s1 count=2,sum=42,sumsq=884,min=20,max=22,first=20,last=22,first_time=${MINUTE + 1_000},last_time=${MINUTE + 59_999},tags="{}" ${MINUTE}`,
      `rollup,field=temperature,sensor_id=s1 count=3,sum=67,sumsq=1509,min=20,max=25,first=20,last=22,first_time=${MINUTE + 1_000},last_time=${MINUTE + 59_999},tags="{}" ${MINUTE}`,
    ]);

    // Past end + lateness (2 s) + revision time (8 s) the window is gone: a reading for it is too late.
    const third = task.process(
      [
        message({ sensor_id: "s1", temperature: 5, timestamp: MINUTE + 70_000 }),
        message({ sensor_id: "s1", temperature: 30, timestamp: MINUTE + 6_000 }),
      ],
      NOW,
    );
    expect(third.late).toEqual([1]);
    expect(third.windows).toEqual([]);
    // A late reading is still stored.
    expect(third.lines.map((l) => l.source)).toContain(1);
  });

  it("gives the same lines, windows, late readings and dead letters however the stream is split", () => {
    fc.assert(
      fc.property(streamArb, cutsArb, (messages, cuts) => {
        const whole = runBatches(messages, []).output;
        const split = runBatches(messages, cuts).output;
        expect(normalised(split)).toEqual(normalised(whole));
      }),
      { numRuns: 150 },
    );
  });

  it.each([
    ["entries", "the state entries one by one"],
    ["records", "the worker's records, one per sensor"],
    ["upgrade", "per entry until a restore, which reads them and writes records from then on"],
  ] as [LogFormat, string][])(
    "recovers from a crash: state rebuilt from the changelog (%s: %s) continues exactly as the original",
    (format) => {
      fc.assert(
        fc.property(
          streamArb,
          cutsArb,
          fc.array(fc.boolean(), { maxLength: 9 }),
          (messages, cuts, crashes) => {
            const whole = runBatches(messages, []).output;
            const recovered = runBatches(messages, cuts, crashes, format).output;
            expect(normalised(recovered)).toEqual(normalised(whole));
          },
        ),
        { numRuns: 150 },
      );
    },
  );

  it("writes one record per changed sensor, and tombstones the older-format entries it restored", () => {
    const at = (sensor: string, t: number) =>
      message({ sensor_id: sensor, temperature: 20, humidity: 40, timestamp: t });
    const legacy = new PartitionTask(CONFIG);
    legacy.process([at("s1", MINUTE), at("s2", MINUTE)], NOW, { version: 1, rules: [hotRule()] });
    const entries = legacy.takeChangelog();
    // Per sensor: two detectors, an alert state, a window per tier and a clock.
    expect(entries.filter((e) => e.key.includes("s1")).length).toBe(6);
    const packable = (key: string) => ["d", "a", "t"].includes(key[0] as string);

    const upgraded = new PartitionTask(CONFIG);
    for (const e of entries) upgraded.restoreRecord(e.key, e.value);
    upgraded.process([at("s1", MINUTE + 1_000)], NOW, { version: 1, rules: [hotRule()] });
    const records = upgraded.takeRecords();
    const sensorRecords = records.filter((r) => r.key.startsWith("p\u001f"));
    expect(sensorRecords.map((r) => r.key).sort()).toEqual(["p\u001fs1", "p\u001fs2"]);
    const s1 = JSON.parse(sensorRecords.find((r) => r.key === "p\u001fs1")?.value ?? "{}");
    expect(Object.keys(s1.d).sort()).toEqual(["humidity", "temperature"]);
    expect(Object.keys(s1.a)).toEqual(["hot"]);
    expect(s1.t.time).toBe(MINUTE + 1_000);
    // Its windows stay a record each: s1's reading changed one per tier.
    expect(records.filter((r) => r.key.startsWith("w")).length).toBe(2);
    // Every older-format entry restored is tombstoned, so compaction drops it.
    const tombstones = records.filter((r) => r.value === null).map((r) => r.key);
    expect(tombstones.sort()).toEqual(
      entries
        .filter((e) => packable(e.key) && e.value !== null)
        .map((e) => e.key)
        .sort(),
    );

    // Next commit: only the sensor that changed, and no more tombstones.
    upgraded.process([at("s2", MINUTE + 2_000)], NOW, { version: 1, rules: [hotRule()] });
    expect(
      upgraded
        .takeRecords()
        .filter((r) => r.key.startsWith("p") || r.value === null)
        .map((r) => r.key),
    ).toEqual(["p\u001fs2"]);

    // The log as written, restored, holds the same state as the task that wrote it.
    const rebuilt = new PartitionTask(CONFIG);
    for (const e of [...entries, ...records]) rebuilt.restoreRecord(e.key, e.value);
    const direct = new PartitionTask(CONFIG);
    direct.process([at("s1", MINUTE), at("s2", MINUTE)], NOW, { version: 1, rules: [hotRule()] });
    direct.process([at("s1", MINUTE + 1_000)], NOW, { version: 1, rules: [hotRule()] });
    expect([...rebuilt.sensors()].sort()).toEqual(["s1", "s2"]);
    expect(rebuilt.stateSize).toEqual(direct.stateSize);
    const next = [at("s1", MINUTE + 90_000), at("s2", MINUTE + 90_000)];
    const rules = {
      version: 1,
      rules: [hotRule({ condition: { type: "threshold", op: "above", value: 19 } })],
    };
    const expected = normalised(direct.process(next, NOW, rules));
    expect(normalised(rebuilt.process(next, NOW, rules))).toEqual(expected);

    // The tombstones may land after the sensors' records (another send of the same transaction):
    // the per-entry records that follow a sensor's record change nothing.
    const reordered = new PartitionTask(CONFIG);
    const late = [...records.filter((r) => r.value !== null), ...records.filter((r) => r.value === null)];
    for (const e of [...entries, ...late]) reordered.restoreRecord(e.key, e.value);
    expect(normalised(reordered.process(next, NOW, rules))).toEqual(expected);
  });

  it("recovers after every batch of a stream that exercises windows, lateness and anomalies", () => {
    const generated = fc.sample(streamArb, { numRuns: 40, seed: 20241027 });
    let late = 0;
    let revisions = 0;
    let windows = 0;
    let anomalies = 0;
    let deadLetters = 0;
    for (const messages of generated) {
      const cuts = messages.map((_, i) => i);
      const whole = runBatches(messages, []).output;
      const recovered = runBatches(messages, cuts, cuts.map(() => true).concat(true));
      expect(normalised(recovered.output)).toEqual(normalised(whole));
      late += whole.late.length;
      revisions += whole.revisions;
      windows += whole.windows.length;
      anomalies += whole.anomalies;
      deadLetters += whole.deadLetters.length;
    }
    // The generated streams must actually reach the paths the equality covers.
    expect(late).toBeGreaterThan(20);
    expect(revisions).toBeGreaterThan(20);
    expect(windows).toBeGreaterThan(20);
    expect(anomalies).toBeGreaterThan(20);
    expect(deadLetters).toBeGreaterThan(20);
  });

  it("hands out each changed state key once per batch and tombstones dropped windows", () => {
    const task = new PartitionTask(CONFIG);
    task.process(
      [
        message({ sensor_id: "s1", temperature: 20, timestamp: MINUTE + 1_000 }),
        message({ sensor_id: "s1", temperature: 21, timestamp: MINUTE + 2_000 }),
      ],
      NOW,
    );
    const first = task.takeChangelog();
    expect(first.map((e) => e.key).length).toBe(new Set(first.map((e) => e.key)).size);
    expect(first.filter((e) => e.value === null)).toEqual([]);
    expect(task.takeChangelog()).toEqual([]);

    // s1's clock moves past its minute window and that window's revision time: it is dropped.
    task.process([message({ sensor_id: "s1", temperature: 5, timestamp: MINUTE + 70_000 })], NOW);
    const second = task.takeChangelog();
    const tombstones = second.filter((e) => e.value === null);
    expect(tombstones).toHaveLength(1);
    expect(tombstones[0]?.key).toBe(`w\u001fs1\u001f60000\u001f${MINUTE}`);
    // Left: s1's hour window and its next minute window.
    expect(task.stateSize).toEqual({ detectors: 1, windows: 2 });

    const rebuilt = new PartitionTask(CONFIG);
    for (const entry of [...first, ...second]) rebuilt.restore(entry.key, entry.value);
    expect(rebuilt.stateSize).toEqual({ detectors: 1, windows: 2 });
  });

  it("stores an out-of-order reading but feeds it to no detector or rule, so nothing flags twice", () => {
    const task = new PartitionTask(CONFIG);
    const rules = {
      version: 1,
      rules: [
        {
          id: "hot",
          name: "hot",
          version: 1,
          created_at: "2026-01-01T00:00:00Z",
          updated_at: "2026-01-01T00:00:00Z",
          sensors: { type: "all" as const },
          field: "temperature",
          severity: "warning" as const,
          condition: { type: "threshold" as const, op: "above" as const, value: 25 },
        },
      ],
    };
    const out = task.process(
      [
        message({ sensor_id: "s1", temperature: 20, timestamp: MINUTE + 1_000 }),
        message({ sensor_id: "s1", temperature: 30, timestamp: MINUTE + 3_000 }),
        message({ sensor_id: "s1", temperature: 20, timestamp: MINUTE + 2_000 }),
        message({ sensor_id: "s1", temperature: 30, timestamp: MINUTE + 4_000 }),
      ],
      NOW,
      rules,
    );
    expect(out.readings).toBe(4);
    expect(out.lines.filter((l) => l.line.startsWith("readings,")).map((l) => l.source)).toEqual([
      0, 1, 2, 3,
    ]);
    // Only the jump 20 → 30 in event time is a delta anomaly; 30 → 20 (late) → 30 is not.
    expect(
      out.lines.filter((l) => l.line.startsWith("anomalies,detector=delta")).map((l) => l.source),
    ).toEqual([1]);
    expect(out.transitions.map((t) => `${t.state}@${t.time - MINUTE}`)).toEqual(["firing@3000"]);
  });

  describe("a rule change ends or updates the alerts it has open", () => {
    const CHANGED_AT = NOW + 60_000;
    /** A task whose rule `hot` fires for s1 (and is pending for nobody else). */
    function firing(): PartitionTask {
      const task = new PartitionTask(CONFIG);
      const out = task.process(
        [message({ sensor_id: "s1", temperature: 30, site: "north", timestamp: MINUTE })],
        NOW,
        { version: 1, rules: [hotRule()] },
      );
      expect(out.transitions.map((t) => t.state)).toEqual(["firing"]);
      task.takeChangelog();
      return task;
    }
    const alertLines = (out: BatchOutput) => out.lines.filter((l) => l.line.startsWith("alerts,"));

    it("deleting the rule resolves its firing alert, saying so, and drops its state", () => {
      const task = firing();
      const out = task.process([], CHANGED_AT, { version: 2, rules: [] });
      expect(out.transitions).toHaveLength(1);
      expect(out.transitions[0]).toMatchObject({
        state: "resolved",
        reason: "rule_deleted",
        sensorId: "s1",
        time: CHANGED_AT,
      });
      expect(out.transitions[0]?.message).toContain("rule deleted");
      expect(alertLines(out)).toHaveLength(1);
      expect(alertLines(out)[0]?.line).toMatch(
        /^alerts,rule_id=hot,sensor_id=s1,severity=warning,state=resolved .*reason="rule_deleted"/,
      );
      expect(task.takeChangelog().filter((e) => e.key.startsWith("a\u001f"))).toEqual([
        { key: "a\u001fhot\u001fs1", value: null },
      ]);
    });

    it("disabling the rule resolves its firing alert as disabled", () => {
      const task = firing();
      const out = task.process([], CHANGED_AT, {
        version: 2,
        rules: [],
        disabled: [hotRule({ enabled: false, version: 2 })],
      });
      expect(out.transitions.map((t) => [t.state, t.reason])).toEqual([["resolved", "rule_disabled"]]);
      expect(out.transitions[0]?.message).toContain("rule disabled");
    });

    it("re-targeting the rule away from the sensor or the field resolves its alert as retargeted", () => {
      for (const change of [
        { sensors: { type: "ids" as const, ids: ["s2"] } },
        { sensors: { type: "tags" as const, tags: { site: "south" } } },
        { field: "humidity" },
      ]) {
        const task = firing();
        const out = task.process([], CHANGED_AT, { version: 2, rules: [hotRule({ ...change, version: 2 })] });
        expect(
          out.transitions.map((t) => [t.state, t.reason]),
          JSON.stringify(change),
        ).toEqual([["resolved", "rule_retargeted"]]);
        expect(out.transitions[0]?.message).toContain("rule retargeted");
      }
      // Still selected (its tags match): nothing happens.
      const kept = firing();
      const out = kept.process([], CHANGED_AT, {
        version: 2,
        rules: [hotRule({ sensors: { type: "tags", tags: { site: "north" } }, version: 2 })],
      });
      expect(out.transitions).toEqual([]);
    });

    it("a severity change mid-episode is one severity_changed record, not a second firing; the end carries the new severity", () => {
      const task = firing();
      const critical = { version: 2, rules: [hotRule({ severity: "critical", version: 2 })] };
      const changed = task.process([], CHANGED_AT, critical);
      expect(changed.transitions.map((t) => [t.state, t.rule.severity, t.reason])).toEqual([
        ["severity_changed", "critical", "severity_changed"],
      ]);
      expect(changed.transitions[0]?.message).toContain("warning → critical");
      expect(alertLines(changed)[0]?.line).toMatch(
        /^alerts,rule_id=hot,sensor_id=s1,severity=critical,state=severity_changed /,
      );
      const later = task.process(
        [
          message({ sensor_id: "s1", temperature: 31, site: "north", timestamp: MINUTE + 1_000 }),
          message({ sensor_id: "s1", temperature: 20, site: "north", timestamp: MINUTE + 2_000 }),
        ],
        CHANGED_AT,
        critical,
      );
      expect(later.transitions.map((t) => [t.state, t.rule.severity])).toEqual([["resolved", "critical"]]);
    });

    it("a rule change's records are stamped with the rule record's time, so a retry from the same state rewrites the same points", () => {
      const RULE_RECORD_AT = NOW + 30_000;
      const changes = [
        { version: 2, rules: [], changedAt: new Map([["hot", RULE_RECORD_AT]]) },
        {
          version: 2,
          rules: [hotRule({ severity: "critical", version: 2 })],
          changedAt: new Map([["hot", RULE_RECORD_AT]]),
        },
      ];
      for (const change of changes) {
        const task = new PartitionTask(CONFIG);
        task.process([message({ sensor_id: "s1", temperature: 30, timestamp: MINUTE })], NOW, {
          version: 1,
          rules: [hotRule()],
        });
        const log = task.takeChangelog();
        // The same state, the change applied at two wall-clock times (a tick and its retry after a failed commit).
        const attempts = [CHANGED_AT, CHANGED_AT + 5_000, CHANGED_AT + 3_600_000].map((at, i) => {
          const retry = new PartitionTask(CONFIG);
          for (const e of log) retry.restore(e.key, e.value);
          return i % 2 === 0 ? retry.process([], at, change) : retry.tick(at, change);
        });
        const lines = attempts.map((out) => alertLines(out).map((l) => l.line));
        expect(lines[0]).toHaveLength(1);
        expect(lines[1]).toEqual(lines[0]);
        expect(lines[2]).toEqual(lines[0]);
        expect(attempts[0]?.transitions[0]?.time).toBe(RULE_RECORD_AT);
      }
    });

    it("a rule record older than the episode stamps the change at the episode's start, never before it", () => {
      const task = firing();
      const out = task.process([], CHANGED_AT, {
        version: 2,
        rules: [],
        changedAt: new Map([["hot", MINUTE - 60_000]]),
      });
      expect(out.transitions.map((t) => [t.state, t.time])).toEqual([["resolved", MINUTE]]);
    });

    it("the memory of what an alert fired under survives a restore from the changelog", () => {
      const task = new PartitionTask(CONFIG);
      task.process([message({ sensor_id: "s1", temperature: 30, timestamp: MINUTE })], NOW, {
        version: 1,
        rules: [hotRule()],
      });
      const rebuilt = new PartitionTask(CONFIG);
      for (const e of task.takeChangelog()) rebuilt.restore(e.key, e.value);
      const out = rebuilt.process([], CHANGED_AT, {
        version: 2,
        rules: [hotRule({ severity: "info", version: 2 })],
      });
      expect(out.transitions.map((t) => t.state)).toEqual(["severity_changed"]);
    });
  });

  describe("the wall-clock tick", () => {
    const IDLE: TaskConfig = { ...CONFIG, windows: { ...CONFIG.windows, idleMs: 5_000 } };
    const s1 = message({ sensor_id: "s1", temperature: 20, timestamp: MINUTE + 1_000 });

    it("closes a silent sensor's windows once idleMs of wall clock passed; a batch alone never does", () => {
      const task = new PartitionTask(IDLE);
      expect(task.process([s1], NOW).windows).toEqual([]);
      // Another sensor's batch well after s1's deadline closes nothing of s1's.
      const other = task.process(
        [message({ sensor_id: "s2", temperature: 1, timestamp: MINUTE })],
        NOW + 10_000,
      );
      expect(other.windows).toEqual([]);
      expect(task.nextDeadline()).toBe(NOW + 5_000);
      expect(task.tick(NOW + 4_999).windows).toEqual([]);
      const ticked = task.tick(NOW + 5_000);
      expect(ticked.windows.map((w) => [w.sensor_id, w.window_start, w.count])).toEqual([["s1", MINUTE, 1]]);
      const rollups = ticked.lines.filter((l) => l.line.startsWith("rollup,")).map((l) => l.bucket);
      expect(rollups).toEqual(["1m", "1h"]);
      // Next: s1's closed windows are dropped once idleMs + revisionMs passed (before s2's idle close).
      expect(task.nextDeadline()).toBe(NOW + 5_000 + 8_000);
    });

    it("a tick is recorded in the changelog: a task restored after it neither closes again nor differs later", () => {
      const task = new PartitionTask(IDLE);
      const log: ChangelogEntry[] = [];
      task.process([s1], NOW);
      log.push(...task.takeChangelog());
      expect(task.tick(NOW + 5_000).windows).toHaveLength(1);
      log.push(...task.takeChangelog());
      const restored = new PartitionTask(IDLE);
      for (const e of log) restored.restore(e.key, e.value);
      expect(restored.tick(NOW + 5_000).windows).toEqual([]);
      const late = [message({ sensor_id: "s1", temperature: 30, timestamp: MINUTE + 2_000 })];
      expect(normalised(restored.process(late, NOW + 6_000))).toEqual(
        normalised(task.process(late, NOW + 6_000)),
      );
    });

    it("with nothing due, a tick changes no state and writes nothing", () => {
      const task = new PartitionTask(IDLE);
      task.process([s1], NOW);
      task.takeChangelog();
      const out = task.tick(NOW + 1_000);
      expect(out.lines).toEqual([]);
      expect(task.takeChangelog()).toEqual([]);
    });
  });

  describe("deadman on wall-clock silence", () => {
    const LIVE = NOW; // readings stamped at the worker's clock: live data
    const deadman = {
      version: 1,
      rules: [hotRule({ id: "dead", name: "dead", condition: { type: "deadman", after: "10s" } })],
    };
    const at = (sensor: string, t: number) => message({ sensor_id: sensor, temperature: 20, timestamp: t });
    const states = (out: BatchOutput) =>
      out.transitions.map((t) => `${t.sensorId}:${t.state}@${t.time - LIVE}`);

    it("fires after `after` of wall-clock silence, once, and resolves on the next reading", () => {
      const task = new PartitionTask(CONFIG);
      task.process([at("s1", LIVE)], NOW, deadman);
      expect(task.nextDeadline()).toBe(NOW + 10_000);
      expect(states(task.tick(NOW + 9_999, deadman))).toEqual([]);
      expect(states(task.tick(NOW + 10_000, deadman))).toEqual(["s1:firing@10000"]);
      expect(states(task.tick(NOW + 60_000, deadman))).toEqual([]);
      expect(states(task.process([at("s1", LIVE + 61_000)], NOW + 61_000, deadman))).toEqual([
        "s1:resolved@61000",
      ]);
    });

    it("other sensors moving on does not make a sensor dead (no partition stream time)", () => {
      const task = new PartitionTask(CONFIG);
      task.process([at("s1", LIVE), at("s2", LIVE)], NOW, deadman);
      const s2 = [9_000, 18_000, 27_000].map((t) => at("s2", LIVE + t));
      const out = task.process([...s2, at("s1", LIVE + 5_000)], NOW + 5_000, deadman);
      expect(states(out)).toEqual([]);
    });

    it("does not flap: a late reading neither resolves nor re-arms it, a burst resolves it once", () => {
      const task = new PartitionTask(CONFIG);
      task.process([at("s1", LIVE)], NOW, deadman);
      expect(states(task.tick(NOW + 10_000, deadman))).toEqual(["s1:firing@10000"]);
      // Out of order (older than what was seen): stored, not a sign of life.
      expect(states(task.process([at("s1", LIVE - 5_000)], NOW + 20_000, deadman))).toEqual([]);
      expect(states(task.tick(NOW + 40_000, deadman))).toEqual([]);
      const burst = [1, 2, 3, 4, 5].map((i) => at("s1", LIVE + 40_000 + i));
      expect(states(task.process(burst, NOW + 40_010, deadman))).toEqual(["s1:resolved@40001"]);
      expect(states(task.tick(NOW + 45_000, deadman))).toEqual([]);
      expect(states(task.tick(NOW + 50_010, deadman))).toEqual(["s1:firing@50010"]);
    });

    it("a gap in a sensor's own event times is one back-dated episode; backfill arms no wall-clock timer", () => {
      const task = new PartitionTask(CONFIG);
      const old = MINUTE; // a day before NOW: backfill
      task.process([at("s1", old)], NOW, deadman);
      // Only the windows' idle close is scheduled.
      expect(task.nextDeadline()).toBe(NOW + CONFIG.windows.idleMs);
      const out = task.process([at("s1", old + 30_000)], NOW, deadman);
      expect(out.transitions.map((t) => `${t.state}@${t.time - old}`)).toEqual([
        "firing@10000",
        "resolved@30000",
      ]);
    });

    it("a firing recorded by a tick is in the changelog: a restored task does not fire it again", () => {
      const task = new PartitionTask(CONFIG);
      const log: ChangelogEntry[] = [];
      task.process([at("s1", LIVE)], NOW, deadman);
      log.push(...task.takeChangelog());
      expect(states(task.tick(NOW + 10_000, deadman))).toEqual(["s1:firing@10000"]);
      log.push(...task.takeChangelog());
      const restored = new PartitionTask(CONFIG);
      for (const e of log) restored.restore(e.key, e.value);
      expect(states(restored.tick(NOW + 20_000, deadman))).toEqual([]);
      expect(states(restored.process([at("s1", LIVE + 21_000)], NOW + 21_000, deadman))).toEqual([
        "s1:resolved@21000",
      ]);
    });
  });

  it("a batch of only dead letters changes no state", () => {
    const task = new PartitionTask(CONFIG);
    task.process([message({ sensor_id: "s1", temperature: 20, timestamp: MINUTE })], NOW);
    task.takeChangelog();
    const out = task.process([message("nope"), { value: null }], NOW);
    expect(out.deadLetters.map((d) => d.index)).toEqual([0, 1]);
    expect(task.takeChangelog()).toEqual([]);
  });

  describe("the state TTL", () => {
    const TTL = 600_000;
    const TTL_CONFIG: TaskConfig = {
      ...CONFIG,
      stateTtlMs: TTL,
      windows: { ...CONFIG.windows, idleMs: 5_000 },
    };
    const replay = (log: ChangelogEntry[]) => {
      const task = new PartitionTask(TTL_CONFIG);
      for (const e of log) task.restore(e.key, e.value);
      return task;
    };

    it("state does not grow with invented field and sensor names once they are silent past the TTL", () => {
      const task = new PartitionTask(TTL_CONFIG);
      const log: ChangelogEntry[] = [];
      for (let round = 0; round < 30; round++) {
        const now = NOW + round * TTL;
        task.process(
          [
            message({
              sensor_id: "s1",
              temperature: 20,
              [`invented_${round}`]: round,
              timestamp: MINUTE + round,
            }),
            message({ sensor_id: `x${round}`, temperature: 20, timestamp: MINUTE + round }),
          ],
          now,
          { version: 1, rules: [hotRule()] },
        );
        task.tick(now, { version: 1, rules: [hotRule()] });
        log.push(...task.takeChangelog());
        // This round's fields and sensors only: s1's temperature and invented field, x<round>'s temperature.
        expect(task.stateSize.detectors, `round ${round}`).toBe(3);
        expect([...task.sensors()].sort(), `round ${round}`).toEqual(["s1", `x${round}`]);
      }
      expect(task.stateSize.windows).toBeLessThanOrEqual(4);
      const restored = replay(log);
      expect([...restored.sensors()].sort()).toEqual(["s1", "x29"]);
      expect(restored.stateSize).toEqual(task.stateSize);
    });

    it("tombstones what expires, keeps a firing alert, and a restored task expires on the same deadlines", () => {
      const task = new PartitionTask(TTL_CONFIG);
      const rules = { version: 1, rules: [hotRule()] };
      task.process(
        [
          message({ sensor_id: "hot_1", temperature: 30, timestamp: MINUTE }),
          message({ sensor_id: "cool_1", temperature: 20, timestamp: MINUTE }),
        ],
        NOW,
        rules,
      );
      const log = task.takeChangelog();
      // Restored before expiry: nothing is due a moment before the TTL, everything at it.
      const restored = replay(log);
      // (The idle close has emitted and dropped the windows by then; the rest of the state stays.)
      restored.tick(NOW + TTL - 1, rules);
      expect(restored.takeChangelog().filter((e) => e.value === null && !e.key.startsWith("w"))).toEqual([]);
      expect([...restored.sensors()].sort()).toEqual(["cool_1", "hot_1"]);

      const expired = task.tick(NOW + TTL, rules);
      // The windows still open (no tick closed them idle here) are emitted before they go.
      expect(expired.windows.map((w) => w.sensor_id).sort()).toEqual(["cool_1", "hot_1"]);
      const entries = task.takeChangelog();
      const tombstones = entries
        .filter((e) => e.value === null)
        .map((e) => e.key.split("\u001f").slice(0, 2).join("|"));
      expect(new Set(tombstones)).toEqual(
        new Set(["d|hot_1", "d|cool_1", "t|hot_1", "t|cool_1", "a|hot", "w|hot_1", "w|cool_1"]),
      );
      expect(entries.find((e) => e.key === "a\u001fhot\u001fcool_1")?.value).toBeNull();
      expect(entries.some((e) => e.key === "a\u001fhot\u001fhot_1")).toBe(false);
      expect([...task.sensors()]).toEqual(["hot_1"]);

      // The restored task (whose windows the idle close already dropped) expires the rest alike.
      restored.tick(NOW + TTL, rules);
      const notWindows = (log: ChangelogEntry[]) =>
        log.filter((e) => !e.key.startsWith("w")).sort((a, b) => (a.key < b.key ? -1 : 1));
      expect(notWindows(restored.takeChangelog())).toEqual(notWindows(entries));
      const afterAll = replay([...log, ...entries]);
      expect([...afterAll.sensors()]).toEqual(["hot_1"]);
      expect(afterAll.stateSize).toEqual({ detectors: 0, windows: 0 });
      // The firing alert still resolves when its sensor comes back.
      const back = afterAll.process(
        [message({ sensor_id: "hot_1", temperature: 10, timestamp: MINUTE + 3_600_000 })],
        NOW + TTL + 1,
        rules,
      );
      expect(back.transitions.map((t) => t.state)).toEqual(["resolved"]);
    });
  });
});
