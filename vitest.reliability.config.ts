import { defineConfig } from "vitest/config";

/**
 * `npm run test:reliability`: the crash, outage and scale-out tests at a larger scale, plus the
 * reliability tests (malformed-input corpus, API fuzzing, auth) against the same real services.
 */
export default defineConfig({
  test: {
    include: [
      "test/integration/ingest-crash-recovery.test.ts",
      "test/integration/ingest-outages.test.ts",
      "test/integration/ingest-scale-out.test.ts",
      "test/reliability/**/*.test.ts",
    ],
    globalSetup: ["test/support/global-setup.ts"],
    fileParallelism: false,
    env: {
      RELIABILITY_READINGS: "200000",
      RELIABILITY_KILLS: "5",
      RELIABILITY_INFLUX_OUTAGE_S: "30",
    },
    testTimeout: 600_000,
    hookTimeout: 1_200_000,
    reporters: ["default"],
  },
});
