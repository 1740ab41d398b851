/**
 * The worker's memory as the operating system sees it: the real worker as a child process
 * (`node --import tsx ingest/main.ts`), its resident set read from /proc/<pid>/status: at its peak
 * (VmHWM) while it replays run 1's topic under a new group, and idle in its group, then after it has
 * processed readings from 10000 distinct sensors.
 */
import type { ChildProcess } from "node:child_process";
import { kafkaConfig } from "../common/config.js";
import { ensureTopics, withAdmin } from "../common/kafka.js";
import { DEFAULT_SIMULATION, simulate } from "../ingest/simulation.js";
import { residentOf, type Usage, until, untilJoined, withChildWorker } from "./child-worker.js";
import {
  committedOffsets,
  type Env,
  isolatedEnv,
  kafkaFor,
  produce,
  progress,
  rawTopic,
  sleep,
} from "./support.js";

export const MEMORY_SENSORS = 10_000;
const READINGS_PER_SENSOR = 3;

export interface MemoryRun {
  /** Messages the child worker replayed from run 1's raw topic, and its resident set then. */
  replayReadings: number;
  replayPeakRssMb: number;
  replayAfterRssMb: number;
  sensors: number;
  readings: number;
  idleRssMb: number;
  afterRssMb: number;
  peakRssMb: number;
}

function untilCommitted(env: Env, count: number, child: ChildProcess, onProgress: (text: string) => void) {
  return withAdmin(kafkaFor(env), (admin) =>
    until(
      `${count} offsets committed`,
      async () => {
        const committed = await committedOffsets(admin, env, env.INGEST_GROUP_ID as string);
        onProgress(`${committed}/${count} offsets committed`);
        return committed >= count;
      },
      180_000,
      child,
    ),
  );
}

/** A second group replays run 1's raw topic (its readings and the latency run's) in a child worker. */
async function replay(
  runEnv: Env,
  onProgress: (text: string) => void,
): Promise<Usage & { readings: number }> {
  const env = { ...runEnv, INGEST_GROUP_ID: `${runEnv.INGEST_GROUP_ID}-replay` };
  const ends = await withAdmin(kafkaFor(env), (admin) => admin.fetchTopicOffsets(rawTopic(env)));
  const readings = ends.reduce((n, p) => n + Number(p.high), 0);
  return withChildWorker(env, async (child, pid) => {
    await untilCommitted(env, readings, child, (t) => onProgress(`replaying run 1: ${t}`));
    return { ...(await residentOf(pid)), readings };
  });
}

/** A fresh topic: the worker joins idle, then gets READINGS_PER_SENSOR readings from each of 10000 sensors. */
async function manySensors(services: Env, onProgress: (text: string) => void) {
  const env = await isolatedEnv(services, "memory");
  await withAdmin(kafkaFor(env), (admin) => ensureTopics(admin, kafkaConfig(env)));
  return withChildWorker(env, async (child, pid) => {
    onProgress("worker starting");
    await untilJoined(env, child);
    await sleep(1000);
    const idle = await residentOf(pid);
    const count = MEMORY_SENSORS * READINGS_PER_SENSOR;
    const messages = [];
    const start = Date.now() - 15 * 60_000;
    for (const m of simulate({ ...DEFAULT_SIMULATION, sensors: MEMORY_SENSORS, count, startTime: start })) {
      messages.push({ key: m.key, value: m.value });
    }
    await produce(env, messages, (sent) => onProgress(`producing ${sent}/${count}`));
    await untilCommitted(env, count, child, onProgress);
    await sleep(1000);
    return { idle, after: await residentOf(pid), readings: count };
  });
}

export async function runMemory(services: Env, runEnv: Env): Promise<MemoryRun> {
  const line = progress("5/5 memory");
  const replayed = await replay(runEnv, (t) => line.update(t));
  const many = await manySensors(services, (t) => line.update(`${MEMORY_SENSORS} sensors: ${t}`));
  line.done(
    `run 1 replay peak ${replayed.hwmMb.toFixed(0)} MiB; ${MEMORY_SENSORS} sensors: idle ${many.idle.rssMb.toFixed(0)} MiB, after ${many.after.rssMb.toFixed(0)} MiB`,
  );
  return {
    replayReadings: replayed.readings,
    replayPeakRssMb: replayed.hwmMb,
    replayAfterRssMb: replayed.rssMb,
    sensors: MEMORY_SENSORS,
    readings: many.readings,
    idleRssMb: many.idle.rssMb,
    afterRssMb: many.after.rssMb,
    peakRssMb: many.after.hwmMb,
  };
}
