import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two test files at a time (vitest's default on 2 cores is 1): most files wait on child
    // processes, disks and sockets, not on the CPU. The suite is checked for this at load 15-20.
    maxWorkers: 2,
  },
});
