/**
 * The state TTL on the real pipeline: a sensor silent past STATE_TTL_MS is dropped by the worker's
 * timer and tombstoned in the changelog, so the state a (re)started worker restores has no entry for
 * it, while a sensor that keeps sending keeps its state. The restored state is rebuilt here exactly
 * as a worker rebuilds it (restorePartitions, read up to a marker placed at the changelog's end).
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { topicConfig, withAdmin } from "../../common/kafka.js";
import { changelogTopic } from "../../common/topics.js";
import { ingestSettings } from "../../ingest/config.js";
import { restorePartitions } from "../../ingest/restore.js";
import { MARKER_KEY } from "../../ingest/transactions.js";
import {
  drained,
  type Env,
  eventually,
  isolatedEnv,
  kafkaFor,
  produce,
  quietLogger,
  startWorker,
} from "../support/harness.js";

const TTL_MS = 6_000;

describe("state TTL: a silent sensor's state is dropped and stays dropped after a restart", () => {
  let env: Env;
  let worker: Awaited<ReturnType<typeof startWorker>> | undefined;
  let sent = 0;
  /** When gone_1's only reading was handed to Kafka: its state cannot expire before this + TTL. */
  let goneSentAt = 0;
  const send = async (sensor: string) => {
    await produce(env, [
      {
        key: sensor,
        value: JSON.stringify({ sensor_id: sensor, temperature: 20 + (sent % 3), timestamp: Date.now() }),
      },
    ]);
    sent++;
  };

  /** The sensors the partition's state holds, as a worker restoring it now would rebuild it. */
  const restoredSensors = async (): Promise<string[]> => {
    const settings = ingestSettings(env);
    const topic = changelogTopic(settings.kafka.topicPrefix, settings.groupId);
    const nonce = randomUUID();
    const producer = kafkaFor(env).producer();
    await producer.connect();
    try {
      await producer.send({ topic, acks: -1, messages: [{ key: MARKER_KEY, value: nonce, partition: 0 }] });
    } finally {
      await producer.disconnect();
    }
    const tasks = await restorePartitions({
      kafka: kafkaFor(env),
      changelogTopic: topic,
      groupId: `${settings.groupId}-inspect`,
      markers: new Map([[0, nonce]]),
      task: settings.task,
      timeoutMs: 30_000,
      logger: quietLogger,
    });
    return [...(tasks.get(0)?.sensors() ?? [])].sort();
  };

  beforeAll(async () => {
    env = await isolatedEnv("state-ttl", { STATE_TTL_MS: String(TTL_MS), KAFKA_PARTITIONS: "1" });
    goneSentAt = Date.now();
    await send("gone_1");
    await send("stay_1");
    worker = await startWorker(env);
    await drained(env, sent);
  });

  afterAll(async () => {
    await worker?.stop();
  });

  it("the worker created its changelog compacted, with segments that roll and a ratio at which compaction runs", async () => {
    const settings = ingestSettings(env);
    const topic = changelogTopic(settings.kafka.topicPrefix, settings.groupId);
    const config = await withAdmin(kafkaFor(env), (admin) =>
      topicConfig(admin, topic, ["cleanup.policy", "segment.ms", "min.cleanable.dirty.ratio"]),
    );
    expect(config).toEqual({
      "cleanup.policy": "compact",
      "segment.ms": "600000",
      "min.cleanable.dirty.ratio": "0.1",
    });
  });

  it("drops the silent sensor's state, tombstoned so that a restarted worker's restore has no entry for it", async () => {
    expect(await restoredSensors()).toEqual(["gone_1", "stay_1"]);
    // stay_1 keeps sending; gone_1 does not.
    const after = await eventually(
      "the silent sensor's state expires",
      async () => {
        await send("stay_1");
        return restoredSensors();
      },
      (sensors) => !sensors.includes("gone_1"),
      TTL_MS + 30_000,
    );
    expect(after).toEqual(["stay_1"]);
    expect(Date.now() - goneSentAt).toBeGreaterThanOrEqual(TTL_MS);

    // Restart: the next worker restores the state (and commits from it); gone_1 does not come back.
    await send("stay_1");
    await drained(env, sent);
    await worker?.stop();
    worker = await startWorker(env);
    await send("stay_1");
    await drained(env, sent);
    await worker.stop();
    worker = undefined;
    expect(await restoredSensors()).toEqual(["stay_1"]);
  });
});
