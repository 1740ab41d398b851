/**
 * State restore on the real broker reads only the changelog partitions it restores: the reader's
 * throwaway group assigns it exactly those, so a worker that is handed one partition does not fetch
 * the changelog of the others (which, across a fleet of workers, would make every rebalance read the
 * whole changelog).
 */
import { randomUUID } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureChangelogTopic, ensureTopics, withAdmin } from "../../common/kafka.js";
import { ingestSettings } from "../../ingest/config.js";
import { restorePartitions } from "../../ingest/restore.js";
import { MARKER_KEY } from "../../ingest/transactions.js";
import { SENSOR_KEY } from "../../ingest/windows.js";
import { type Env, eventually, isolatedEnv, kafkaFor, quietLogger } from "../support/harness.js";

const clock = (time: number) => JSON.stringify({ time, seen: time, dropped: 0 });

describe("state restore reads only the partitions it restores", () => {
  let env: Env;
  let topic: string;
  const fetched = new Set<number>();
  let sensors: string[] = [];

  beforeAll(async () => {
    env = await isolatedEnv("restore-only", { KAFKA_PARTITIONS: "3" });
    const settings = ingestSettings(env);
    // As the worker makes them; a topic just created can be unknown to the broker's metadata for a
    // moment, so both are retried until every changelog partition has a leader.
    topic = await eventually(
      "the changelog topic, every partition led",
      () =>
        withAdmin(kafkaFor(env), async (admin) => {
          await ensureTopics(admin, settings.kafka);
          const name = await ensureChangelogTopic(admin, settings.kafka, settings.groupId);
          const { topics } = await admin.fetchTopicMetadata({ topics: [name] });
          const partitions = topics[0]?.partitions ?? [];
          return partitions.length === 3 && partitions.every((p) => p.leader >= 0) ? name : "";
        }),
      (name) => name !== "",
      30_000,
    );
    // Partition 1 holds one sensor's state; partitions 0 and 2 hold many others'.
    const nonce = randomUUID();
    const producer = kafkaFor(env).producer();
    await producer.connect();
    try {
      const others = (partition: number) =>
        Array.from({ length: 500 }, (_, i) => ({
          key: `${SENSOR_KEY}other_${partition}_${i}`,
          value: clock(1_700_000_000_000 + i),
          partition,
        }));
      await producer.send({ topic, acks: -1, messages: [...others(0), ...others(2)] });
      await producer.send({
        topic,
        acks: -1,
        messages: [
          { key: `${SENSOR_KEY}mine`, value: clock(1_700_000_000_000), partition: 1 },
          { key: MARKER_KEY, value: nonce, partition: 1 },
        ],
      });
    } finally {
      await producer.disconnect();
    }
    const tasks = await restorePartitions({
      kafka: kafkaFor(env),
      changelogTopic: topic,
      groupId: settings.groupId,
      markers: new Map([[1, nonce]]),
      task: settings.task,
      timeoutMs: 60_000,
      logger: quietLogger,
      onBatch: (partition) => fetched.add(partition),
    });
    sensors = [...(tasks.get(1)?.sensors() ?? [])];
  }, 120_000);

  it("restores the partition's state up to its marker", () => {
    expect(sensors).toEqual(["mine"]);
  });

  it("fetched nothing of the other partitions' changelog", () => {
    expect([...fetched]).toEqual([1]);
  });
});
