/**
 * Starts real Kafka and InfluxDB once for the whole test run (or uses KAFKA_BROKERS/INFLUX_URL
 * when given) and hands their addresses to the tests through `inject("services")`.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { ensureServices, type ServiceEnv } from "../../scripts/services/local.js";

declare module "vitest" {
  export interface ProvidedContext {
    services: ServiceEnv;
  }
}

export default async function setup(project: TestProject) {
  const dir = await mkdtemp(join(tmpdir(), "sensor-analytics-test-"));
  const services = await ensureServices(dir);
  project.provide("services", services.env);
  return async () => {
    await services.stop();
    await rm(dir, { recursive: true, force: true });
  };
}
