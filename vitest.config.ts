import { defineConfig } from 'vitest/config';

// The suites run against the real local stack that scripts/test.sh starts (database,
// pg_net worker, local DTMA); they share it, so files run one at a time.
export default defineConfig({
  test: {
    include: ['client/src/**/*.test.ts', 'scripts/**/*.test.ts', 'test/**/*.test.ts', 'standins/**/*.test.ts', 'console/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
