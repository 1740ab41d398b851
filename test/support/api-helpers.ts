/** Helpers for the API tests: seed readings through the real worker and wait until they are stored. */
import { randomBytes } from "node:crypto";
import type { FastifyInstance, RouteOptions } from "fastify";
import { inject } from "vitest";
import { apiSettings } from "../../api/config.js";
import { buildServer } from "../../api/server.js";
import { createKafka } from "../../common/kafka.js";
import {
  ADMIN_TOKEN,
  countPoints,
  type Env,
  eventually,
  produce,
  READ_TOKEN,
  startWorker,
} from "./harness.js";

export interface SeedReading {
  sensor_id: string;
  timestamp: number;
  [key: string]: string | number;
}

/** Produces `readings` to the raw topic, runs the real worker until all are stored, then stops it. */
export async function seedReadings(env: Env, readings: SeedReading[], field = "temperature"): Promise<void> {
  await produce(
    env,
    readings.map((r) => ({ key: r.sensor_id, value: JSON.stringify(r) })),
  );
  const worker = await startWorker(env);
  try {
    const expected = readings.filter((r) => typeof r[field] === "number").length;
    await eventually(
      "seeded readings stored",
      () => countPoints(env, "readings", field),
      (n) => n === expected,
    );
  } finally {
    await worker.stop();
  }
}

/** A GET with the read token; the body parsed as JSON whatever the status. */
export async function get<T = Record<string, unknown>>(
  url: string,
  token: string | null = READ_TOKEN,
): Promise<{ status: number; contentType: string; body: T }> {
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return {
    status: res.status,
    contentType: res.headers.get("content-type") ?? "",
    body: (await res.json()) as T,
  };
}

export const isoAt = (ms: number) => new Date(ms).toISOString();

/**
 * The API app without listening (requests go through `app.inject`), on the test services with its
 * own topic prefix. For requests answered before any query runs: validation, auth, rate limits, the
 * OpenAPI document. Its bucket does not exist, so nothing a test does here can touch stored data.
 */
export async function buildTestApp(
  extra: Record<string, string> = {},
  onRoute?: (route: RouteOptions) => void,
): Promise<FastifyInstance> {
  const services = inject("services");
  const id = randomBytes(4).toString("hex");
  const settings = apiSettings({
    ...services,
    KAFKA_TOPIC_PREFIX: `api-unit-${id}.`,
    KAFKA_PARTITIONS: "1",
    INFLUX_BUCKET: `absent-${id}`,
    API_READ_TOKENS: READ_TOKEN,
    API_ADMIN_TOKENS: ADMIN_TOKEN,
    ...extra,
  });
  const app = await buildServer({ settings, kafka: createKafka(settings.kafka), onRoute });
  await app.ready();
  return app;
}
