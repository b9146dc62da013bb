import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["{chain,server,agent,clients,test}/**/*.test.ts"],
    globalSetup: ["test/setup/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration suites start servers and share one Postgres: two workers fit 2 cores.
    pool: "forks",
    maxWorkers: 2,
  },
});
