/**
 * A read_committed consumer of this project never sees an aborted record, also when its fetch
 * starts inside one aborted transaction and the next record belongs to another: the layout the
 * output topics get when rebalances fence workers mid-transaction. Real broker, kafkajs consumer
 * made by common/kafka.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Kafka, Producer } from "../../common/kafka.js";
import { type Env, eventually, isolatedEnv, kafkaFor } from "../support/harness.js";

describe("read_committed consumption", () => {
  let env: Env;
  let kafka: Kafka;
  let topic: string;
  const producers: Producer[] = [];

  beforeAll(async () => {
    env = await isolatedEnv("rc");
    kafka = kafkaFor(env);
    topic = `${env.KAFKA_TOPIC_PREFIX}read-committed`;
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();
    const transactional = async (id: string) => {
      const p = kafka.producer({
        transactionalId: `${env.KAFKA_TOPIC_PREFIX}${id}`,
        idempotent: true,
        maxInFlightRequests: 1,
      });
      await p.connect();
      producers.push(p);
      return p;
    };
    const a = await transactional("a");
    const b = await transactional("b");
    const txA = await a.transaction();
    const txB = await b.transaction();
    // Offsets 0, 1, 2: A, B, A, each send its own record batch; then both abort (markers 3, 4).
    await txA.send({ topic, messages: [{ value: "a-aborted-1" }] });
    await txB.send({ topic, messages: [{ value: "b-aborted" }] });
    await txA.send({ topic, messages: [{ value: "a-aborted-2" }] });
    await txA.abort();
    await txB.abort();
    const c = await transactional("c");
    const txC = await c.transaction();
    await txC.send({ topic, messages: [{ value: "c-committed" }] });
    await txC.commit();
  });

  afterAll(async () => {
    await Promise.all(producers.map((p) => p.disconnect()));
  });

  it("returns only committed records to a consumer whose fetch starts inside an aborted transaction", async () => {
    const groupId = `${env.KAFKA_TOPIC_PREFIX}reader`;
    const admin = kafka.admin();
    await admin.connect();
    // The group resumes at offset 2, A's second record: inside both aborted transactions. The broker
    // lists them B first (kafkajs 2.2.4 then marked only B aborted at that record and returned it).
    await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: "2" }] });
    await admin.disconnect();
    const seen: string[] = [];
    const consumer = kafka.consumer({ groupId, readUncommitted: false, maxWaitTimeInMs: 100 });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic });
      await consumer.run({
        eachMessage: async ({ message }) => {
          seen.push(message.value?.toString() ?? "");
        },
      });
      await eventually(
        "the committed record is consumed",
        async () => seen,
        (s) => s.includes("c-committed"),
        30_000,
      );
    } finally {
      await consumer.disconnect();
    }
    expect(seen).toEqual(["c-committed"]);
  });
});
