import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // e2e/: the admin GUI in Chromium (needs `npm run build`); renderer/, electron/: the GUI's
    // store and checks, the desktop host's settings, IPC checks and files (no Electron binary needed).
    include: ['test/**/*.test.ts', 'renderer/src/**/*.test.ts', 'electron/**/*.test.ts', 'e2e/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: files run in parallel, but not so many that timing-sensitive tests starve.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
