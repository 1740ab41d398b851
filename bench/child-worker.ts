/**
 * The real worker as a child process (`node --import tsx ingest/main.ts`), as it is deployed: for the
 * stages that measure the worker on its own (its latency, its memory), apart from the bench's own
 * producers, pollers and heap.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { withAdmin } from "../common/kafka.js";
import { type Env, kafkaFor, sleep } from "./support.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

export interface Usage {
  rssMb: number;
  /** VmHWM: the peak resident set since the process started. */
  hwmMb: number;
}

/** A process's resident set now and at its peak (VmRSS, VmHWM), from /proc/<pid>/status. */
export async function residentOf(pid: number): Promise<Usage> {
  const text = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? Number.NaN);
  return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024 };
}

export async function until(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  child: ChildProcess,
) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the worker exited with ${child.exitCode} before ${what}`);
    if (await check()) return;
    await sleep(200);
  }
  throw new Error(`${what}: not reached within ${timeoutMs / 1000} s`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  await exited;
  clearTimeout(timer);
}

/** The real worker as a child; `work` runs while it lives, with its pid; its stderr tail explains a failure. */
export async function withChildWorker<T>(
  env: Env,
  work: (child: ChildProcess, pid: number) => Promise<T>,
): Promise<T> {
  const child = spawn(process.execPath, ["--import", "tsx", "ingest/main.ts"], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  try {
    return await work(child, child.pid as number);
  } catch (err) {
    throw new Error(`${(err as Error).message}; worker stderr: ${stderr.slice(-500)}`);
  } finally {
    await stopChild(child);
  }
}

/** Until the child worker's consumer group is Stable: it has joined and been given its partitions. */
export function untilJoined(env: Env, child: ChildProcess): Promise<void> {
  return until(
    "the worker joined its group",
    () =>
      withAdmin(kafkaFor(env), async (admin) => {
        const { groups } = await admin.describeGroups([env.INGEST_GROUP_ID as string]);
        return groups[0]?.state === "Stable";
      }),
    60_000,
    child,
  );
}
