/**
 * Rebuilds the state of newly assigned partitions from the compacted changelog, all of them in one
 * pass. Each partition's state lives in the changelog partition of the same number; a marker with a
 * fresh nonce, written by the partition's newly fenced producer (TransactionalProducers.fence), ends
 * it: once the reader has seen the marker, everything any previous owner committed has been read.
 *
 * kafkajs has no manual partition assignment, so the reader is one short-lived consumer of its own
 * throwaway group (never committing) whose partition assigner hands it exactly the wanted
 * partitions: nothing of the other partitions' changelog is fetched. Each wanted partition is paused
 * once its marker arrived.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { AssignerProtocol, type Kafka, type PartitionAssigner } from "../common/kafka.js";
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
  /** Told the changelog partition of every batch the reader fetched. */
  onBatch?: (partition: number) => void;
}

/**
 * A group assignment of `partitions` of `topic` only (the reader is its group's one member): the
 * manual assignment kafkajs does not offer.
 */
export function onlyPartitions(topic: string, partitions: number[]): PartitionAssigner {
  return () => ({
    name: "RestoreOnlyAssigned",
    version: 1,
    async assign({ members }) {
      return members.map(({ memberId }, i) => ({
        memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({
          version: 1,
          assignment: i === 0 ? { [topic]: partitions } : {},
          userData: Buffer.alloc(0),
        }),
      }));
    },
    protocol({ topics }) {
      return {
        name: "RestoreOnlyAssigned",
        metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: Buffer.alloc(0) }),
      };
    },
  });
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
    partitionAssigners: [onlyPartitions(changelogTopic, [...markers.keys()])],
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
              request.onBatch?.(batch.partition);
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
                task.restoreRecord(key, m.value === null ? null : m.value.toString());
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
