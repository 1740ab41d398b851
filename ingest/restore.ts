/**
 * Rebuilds the state of newly assigned partitions from the compacted changelog, all of them in one
 * pass. Each partition's state lives in the changelog partition of the same number; a marker with a
 * fresh nonce, written by the partition's newly fenced producer (TransactionalProducers.fence), ends
 * it: once the reader has seen the marker, everything any previous owner committed has been read.
 *
 * kafkajs has no manual partition assignment, so the reader is one short-lived consumer (its own
 * throwaway group, never committing) for the whole set; partitions outside the set are paused the
 * moment they show up, and each wanted partition is paused once its marker arrived.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { Kafka } from "../common/kafka.js";
import { PartitionTask, type TaskConfig } from "./partition-task.js";
import { MARKER_KEY } from "./transactions.js";

export interface RestoreRequest {
  kafka: Kafka;
  changelogTopic: string;
  groupId: string;
  /** The marker nonce each partition's restore must read up to. */
  markers: Map<number, string>;
  task: TaskConfig;
  timeoutMs: number;
  logger: Logger;
  /** Aborting ends the restore at once with the abort's reason (e.g. a marker could not be written). */
  signal?: AbortSignal;
}

export class RestoreTimeout extends Error {
  override name = "RestoreTimeout";
}

export async function restorePartitions(request: RestoreRequest): Promise<Map<number, PartitionTask>> {
  const { kafka, changelogTopic, markers, logger } = request;
  const started = Date.now();
  const tasks = new Map<number, PartitionTask>();
  const records = new Map<number, number>();
  for (const partition of markers.keys()) {
    tasks.set(partition, new PartitionTask(request.task, partition));
    records.set(partition, 0);
  }
  const pending = new Set(markers.keys());
  const reader = kafka.consumer({
    groupId: `${request.groupId}-restore-${randomUUID()}`,
    readUncommitted: false,
    maxWaitTimeInMs: 100,
  });
  let timer: NodeJS.Timeout | undefined;
  await reader.connect();
  try {
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new RestoreTimeout(
              `restoring partitions ${[...pending].join(", ")} of ${changelogTopic} took longer than ${request.timeoutMs} ms`,
            ),
          ),
        request.timeoutMs,
      );
      if (request.signal?.aborted) reject(request.signal.reason);
      request.signal?.addEventListener("abort", () => reject(request.signal?.reason), { once: true });
      reader
        .subscribe({ topic: changelogTopic, fromBeginning: true })
        .then(() =>
          reader.run({
            autoCommit: false,
            eachBatch: async ({ batch, pause }) => {
              const task = pending.has(batch.partition) ? tasks.get(batch.partition) : undefined;
              if (task === undefined) {
                pause();
                return;
              }
              const nonce = markers.get(batch.partition);
              for (const m of batch.messages) {
                const key = m.key?.toString() ?? "";
                if (key === MARKER_KEY) {
                  if (m.value?.toString() !== nonce) continue;
                  pending.delete(batch.partition);
                  pause();
                  if (pending.size === 0) resolve();
                  return;
                }
                task.restore(key, m.value === null ? null : m.value.toString());
                records.set(batch.partition, (records.get(batch.partition) ?? 0) + 1);
              }
            },
          }),
        )
        .catch(reject);
    });
  } finally {
    clearTimeout(timer);
    await reader.disconnect().catch(() => {});
  }
  for (const [partition, task] of tasks) {
    logger.info(
      { partition, records: records.get(partition), ms: Date.now() - started, ...task.stateSize },
      "restored partition state",
    );
  }
  return tasks;
}
