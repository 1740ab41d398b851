/**
 * `npm run bench`: starts real Kafka and InfluxDB (or uses KAFKA_BROKERS/INFLUX_URL when set), runs
 * every measurement in turn, prints one table and writes it to bench-results/latest.json.
 *   npm run bench -- --readings 200000     (or BENCH_READINGS)
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ensureServices } from "../scripts/services/local.js";
import { type RouteBench, runApi } from "./api.js";
import type { DashboardBenchResult } from "./dashboards.js";
import { runIngest, SENSORS, WARM_UP_READINGS, warmUp } from "./ingest.js";
import { runLatency } from "./latency.js";
import { runLimits } from "./limits.js";
import { MEMORY_SENSORS, runMemory } from "./memory.js";
import { readOptions, runRead } from "./read.js";
import { type Env, isolatedEnv } from "./support.js";
import { runTelegraf, type TelegrafRun } from "./telegraf.js";

/** The rate the ingest issue sets its latency bound at (p99 ≤ 250 ms). */
const LATENCY_RATE = 10_000;
/** What a dashboard query may take (the read path's done-when). */
const PANEL_BUDGET_MS = 500;
/** A minute: every measured run includes one close of the 1m windows of every sensor. */
const LATENCY_SECONDS = 60;

function readingsOption(): number {
  const { values } = parseArgs({ options: { readings: { type: "string" } } });
  const text = values.readings ?? process.env.BENCH_READINGS ?? "200000";
  const n = Number(text);
  if (!Number.isInteger(n) || n < SENSORS || n > 10_000_000) {
    throw new Error(
      `--readings ${JSON.stringify(text)} is not valid: expected an integer in [${SENSORS}, 10000000]`,
    );
  }
  return n;
}

type Row = [part: string, measure: string, value: string, detail: string];

const int = (n: number) => Math.round(n).toLocaleString("en-US");
const ms = (n: number) => `${n < 10 ? n.toFixed(1) : Math.round(n)} ms`;
const mib = (n: number) => `${Math.round(n)} MiB`;
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;

function routeRows(r: RouteBench): Row[] {
  const load = (l: RouteBench["api"]) =>
    l.requestsPerSecond === 0
      ? `no answer within ${r.shape.seconds} s${l.failed ? `, ${l.failed} failed` : ""}`
      : `p50 ${ms(l.p50Ms)}, p99 ${ms(l.p99Ms)}, ${l.requestsPerSecond.toFixed(1)} req/s${l.failed ? `, ${l.failed} failed` : ""}`;
  return [
    [
      "4 api",
      `${r.route} via API`,
      load(r.api),
      `${r.items === 0 ? "0 items per answer (nothing in the range)" : `${r.items} items per answer`}, ${r.shape.connections} connections, ${r.shape.seconds} s`,
    ],
    [
      "4 api",
      `${r.route} direct Flux`,
      load(r.direct),
      `${r.route.includes("aggregates") ? "hand-written pushdown Flux, one aggregateWindow per function" : "hand-written Flux: the 101st of the series' first points bounds the range, pivot, sort, limit"}, QueryApi, same concurrency`,
    ],
    [
      "4 api",
      `${r.route} API/direct`,
      r.api.requestsPerSecond === 0 || r.direct.requestsPerSecond === 0
        ? "n/a: no answer within the run"
        : `p50 ${ratio(r.api.p50Ms, r.direct.p50Ms)}, p99 ${ratio(r.api.p99Ms, r.direct.p99Ms)}`,
      `req/s ${ratio(r.api.requestsPerSecond, r.direct.requestsPerSecond)}`,
    ],
  ];
}

function print(rows: Row[]): void {
  const header: Row = ["part", "measure", "value", "detail"];
  const widths = header.map((_, i) => Math.max(...[header, ...rows].map((r) => r[i]?.length ?? 0)));
  const format = (r: Row) => r.map((c, i) => c.padEnd(widths[i] as number)).join(" │ ");
  process.stdout.write(`\n${format(header)}\n${widths.map((w) => "─".repeat(w)).join("─┼─")}\n`);
  for (const r of rows) process.stdout.write(`${format(r)}\n`);
}

async function readBench(): Promise<void> {
  const options = readOptions(process.argv.slice(3));
  const dir = await mkdtemp(join(tmpdir(), "sensor-bench-"));
  const services = await ensureServices(dir);
  const began = Date.now();
  const loadBefore = loadavg()[0] as number;
  try {
    const { figures, panels, loaded } = await runRead(services.env as unknown as Env, options);
    const rows: Row[] = figures.map((f) => [
      f.name,
      `API p50 ${ms(f.api.p50)}, p99 ${ms(f.api.p99)}`,
      Number.isNaN(f.direct.p50) ? "—" : `p50 ${ms(f.direct.p50)}, p99 ${ms(f.direct.p99)}`,
      Number.isNaN(f.direct.p50)
        ? `${f.tier}, ${f.same}`
        : `p99 ${ratio(f.api.p99, f.direct.p99)}; ${f.items} items; tier ${f.tier}; ${f.same}`,
    ]);
    const header: Row = ["request", "API", "hand-written Flux on raw", "API/Flux, answer"];
    const widths = header.map((_, i) => Math.max(...[header, ...rows].map((r) => r[i]?.length ?? 0)));
    const format = (r: Row) => r.map((c, i) => c.padEnd(widths[i] as number)).join(" │ ");
    process.stdout.write(`\n${loaded.join("\n")}\n${options.iterations} timed runs each, alternating\n`);
    process.stdout.write(`\n${format(header)}\n${widths.map((w) => "─".repeat(w)).join("─┼─")}\n`);
    for (const r of rows) process.stdout.write(`${format(r)}\n`);
    const slowest = (p: DashboardBenchResult) => p.p99Ms;
    const panelRows: Row[] = [...panels]
      .sort((a, b) => slowest(b) - slowest(a))
      .map((p) => [
        `${p.dashboard}: ${p.panel}`,
        `p50 ${ms(p.p50Ms)}, p99 ${ms(p.p99Ms)}${p.p99Ms > PANEL_BUDGET_MS ? ` (over ${PANEL_BUDGET_MS} ms)` : ""}`,
        `${p.maxPointsPerSeries} of ${p.maxDataPoints}`,
        p.tier,
      ]);
    if (panelRows.length > 0) {
      const panelHeader: Row = [
        "dashboard query (range)",
        "InfluxDB",
        "points/series of maxDataPoints",
        "tier",
      ];
      const pw = panelHeader.map((_, i) =>
        Math.max(...[panelHeader, ...panelRows].map((r) => r[i]?.length ?? 0)),
      );
      const pf = (r: Row) => r.map((c, i) => c.padEnd(pw[i] as number)).join(" │ ");
      process.stdout.write(`\n${pf(panelHeader)}\n${pw.map((w) => "─".repeat(w)).join("─┼─")}\n`);
      for (const r of panelRows) process.stdout.write(`${pf(r)}\n`);
    }
    const took = (Date.now() - began) / 1000;
    process.stdout.write(
      `\n${cpus().length} CPUs, load average ${loadBefore.toFixed(1)} at start, ${(loadavg()[0] as number).toFixed(1)} at end, Node ${process.version}, ${took.toFixed(0)} s in all\n`,
    );
    await mkdir("bench-results", { recursive: true });
    await writeFile(
      join("bench-results", "read.json"),
      `${JSON.stringify({ at: new Date().toISOString(), options, loaded, figures, panels }, null, 2)}\n`,
    );
    process.stdout.write("written to bench-results/read.json\n");
    const mismatched = figures.filter((f) => f.same !== "same numbers" && f.same !== "no query sent");
    if (mismatched.length > 0) {
      throw new Error(`answers differ: ${mismatched.map((f) => `${f.name}: ${f.same}`).join("; ")}`);
    }
    const overfull = panels.filter((p) => p.maxPointsPerSeries > p.maxDataPoints);
    if (overfull.length > 0) {
      throw new Error(
        `dashboard queries return more points per series than their maxDataPoints: ${overfull.map((p) => `${p.dashboard}: ${p.panel} (${p.maxPointsPerSeries} > ${p.maxDataPoints})`).join("; ")}`,
      );
    }
  } finally {
    await services.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.argv[2] === "read") return readBench();
  const readings = readingsOption();
  const dir = await mkdtemp(join(tmpdir(), "sensor-bench-"));
  const services = await ensureServices(dir);
  const began = Date.now();
  const loadBefore = loadavg()[0] as number;
  try {
    const warmUpSeconds = await warmUp(await isolatedEnv(services.env as unknown as Env, "warm-up"));
    const env = await isolatedEnv(services.env as unknown as Env, "ingest");
    const ingest = await runIngest(env, readings);
    let limits: Awaited<ReturnType<typeof runLimits>>;
    let telegraf: TelegrafRun;
    try {
      // Limits and Telegraf before latency, so the raw topic holds exactly run 1's readings; the
      // worker idles meanwhile.
      limits = await runLimits(env, ingest.messages, ingest.meanBatchMessages);
      telegraf = await runTelegraf(env, ingest.distinct);
    } finally {
      await ingest.worker.stop();
    }
    // The worker as deployed, in its own process, resuming run 1's group and state.
    const latency = await runLatency(env, LATENCY_RATE, LATENCY_SECONDS);
    const api = await runApi(env, ingest.start, ingest.stop);
    const memory = await runMemory(services.env as unknown as Env, env);

    const slower = Math.min(limits.kafkaReadingsPerSecond, limits.influxReadingsPerSecond);
    const slowerName = slower === limits.kafkaReadingsPerSecond ? "Kafka consume" : "InfluxDB write";
    const rows: Row[] = [
      [
        "0 warm-up",
        "services warmed, not measured",
        `${warmUpSeconds.toFixed(1)} s`,
        `${int(WARM_UP_READINGS)} readings through the deployed worker (own process, own topics and bucket), so the broker and InfluxDB are past their first work before any tool is measured`,
      ],
      [
        "1 ingest",
        "end to end",
        `${int(ingest.readingsPerSecond)} readings/s`,
        `${int(readings)} readings, ${SENSORS} sensors, 6 partitions, 3 detectors and 5 alert rules (one per condition type), partition concurrency ${process.env.INGEST_PARTITION_CONCURRENCY ?? "3"}, ${ingest.seconds.toFixed(1)} s from worker start to all committed and stored`,
      ],
      [
        "1 ingest",
        "after the first batch stored",
        Number.isFinite(ingest.steadyReadingsPerSecond)
          ? `${int(ingest.steadyReadingsPerSecond)} readings/s`
          : "n/a",
        "the worker's pace once running (first batch stored → all committed and stored)",
      ],
      [
        "1 ingest",
        "worker start → first batch stored",
        `${ingest.firstStoredSeconds.toFixed(1)} s`,
        "group join, changelog restore of each partition, first batch processed and written (polled every 200 ms)",
      ],
      [
        "1 ingest",
        "worker batches",
        `${int(ingest.batches)} × ${ingest.meanBatchMessages.toFixed(0)} messages`,
        `mean ${ms(ingest.meanBatchWriteMs)} per batch from start to InfluxDB write done (commit not included)`,
      ],
      [
        "1 ingest",
        "state changelog ÷ input",
        ratio(ingest.changelogBytes, ingest.inputBytes),
        `${int(ingest.changelogBytes)} changelog bytes committed for ${int(ingest.inputBytes)} bytes of raw messages (keys and values)`,
      ],
      [
        "2 limits",
        "Kafka consume-only",
        `${int(limits.kafkaReadingsPerSecond)} readings/s`,
        "kafkajs group, same fetch settings, eachBatch only counts",
      ],
      [
        "2 limits",
        "InfluxDB write-only",
        `${int(limits.influxReadingsPerSecond)} readings/s`,
        `${int(limits.influxBatches)} sequential writes of ${limits.influxBatchLines} pre-built lines (worker's mean batch)`,
      ],
      [
        "2 limits",
        "worker CPU only",
        `${int(limits.cpuReadingsPerSecond)} readings/s`,
        "PartitionTask.process (parse, detect, window, the 5 rules, line protocol) + changelog once per commit interval, one thread, no I/O",
      ],
      [
        "2 limits",
        "of which parseReading",
        `${int(limits.parseReadingsPerSecond)} readings/s`,
        `bytes → validated reading alone: ${Math.round((100 * limits.cpuReadingsPerSecond) / limits.parseReadingsPerSecond)}% of the CPU time`,
      ],
      [
        "2 limits",
        `Telegraf ${telegraf.version} kafka_consumer → influxdb_v2`,
        `${int(telegraf.readingsPerSecond)} readings/s`,
        `same topic, broker and InfluxDB; parse and store only, at-least-once; ${telegraf.seconds.toFixed(1)} s, ${telegraf.cpuSeconds.toFixed(1)} CPU s, peak RSS ${mib(telegraf.peakRssMb)}`,
      ],
      [
        "2 limits",
        "worker / Telegraf",
        `${ratio(ingest.readingsPerSecond, telegraf.readingsPerSecond)} the rate`,
        `worker ${ingest.cpuSeconds.toFixed(1)} CPU s (bench process, polling included) vs Telegraf ${telegraf.cpuSeconds.toFixed(1)} CPU s: ${ratio(ingest.cpuSeconds, telegraf.cpuSeconds)}; worker peak RSS ${mib(ingest.peakRssMb)} (bench heap included)`,
      ],
      [
        "2 limits",
        "pipeline / slower limit",
        ratio(ingest.readingsPerSecond, slower),
        `slower limit: ${slowerName}`,
      ],
      [
        "3 latency",
        "produce → visible in InfluxDB",
        `p50 ${ms(latency.p50Ms)}, p99 ${ms(latency.p99Ms)}`,
        `max ${ms(latency.maxMs)}; ${int(latency.readings)} readings at ${int(latency.achievedRate)}/s; poll every ${ms(latency.pollIntervalMs)}`,
      ],
      ...api.flatMap(routeRows),
      [
        "5 memory",
        "peak RSS during run 1",
        mib(ingest.peakRssMb),
        "in-process worker; includes the bench's own heap (the readings it produced)",
      ],
      [
        "5 memory",
        "child worker replaying run 1",
        `peak ${mib(memory.replayPeakRssMb)}, after ${mib(memory.replayAfterRssMb)}`,
        `VmHWM/VmRSS of \`node --import tsx ingest/main.ts\` over ${int(memory.replayReadings)} messages, new group`,
      ],
      [
        "5 memory",
        `child worker, ${int(MEMORY_SENSORS)} sensors`,
        `idle ${mib(memory.idleRssMb)}, after ${mib(memory.afterRssMb)}`,
        `${int(memory.readings)} readings, idle = joined, before any data; peak (VmHWM) ${mib(memory.peakRssMb)}`,
      ],
    ];
    print(rows);
    const took = (Date.now() - began) / 1000;
    const load = `load average ${loadBefore.toFixed(1)} at start, ${(loadavg()[0] as number).toFixed(1)} at end`;
    process.stdout.write(
      `\n${cpus().length} CPUs, ${load}, Node ${process.version}, ${took.toFixed(0)} s in all\n`,
    );
    await mkdir("bench-results", { recursive: true });
    const { messages: _messages, worker: _worker, ...ingestFigures } = ingest;
    await writeFile(
      join("bench-results", "latest.json"),
      `${JSON.stringify(
        {
          at: new Date().toISOString(),
          node: process.version,
          cpus: cpus().length,
          loadAverage: { start: loadBefore, end: loadavg()[0] },
          seconds: took,
          readings,
          warmUp: { readings: WARM_UP_READINGS, seconds: warmUpSeconds },
          ingest: ingestFigures,
          limits,
          telegraf,
          latency,
          api,
          memory,
          table: rows.map(([part, measure, value, detail]) => ({ part, measure, value, detail })),
        },
        null,
        2,
      )}\n`,
    );
    process.stdout.write("written to bench-results/latest.json\n");
  } finally {
    await services.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`\nbench failed: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
