import { defineConfig } from 'vitest/config';

// `npm run bench:gui`: the GUI benchmark only (not part of `npm test`).
export default defineConfig({
  test: {
    include: ['e2e/gui-bench.ts'],
    testTimeout: 300_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
