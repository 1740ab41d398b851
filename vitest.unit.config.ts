import { defineConfig } from "vitest/config";

/**
 * `npm run test:unit`: the pure tests alone. No global setup, so no Kafka or InfluxDB is started;
 * anything that needs a broker or a database lives in test/integration.
 */
export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts"],
    // The property tests are CPU-bound: on a busy two-core machine some take several seconds.
    testTimeout: 30_000,
    reporters: ["default"],
  },
});
