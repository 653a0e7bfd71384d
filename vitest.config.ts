import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: files run in parallel, but not so many that timing-sensitive tests starve.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
