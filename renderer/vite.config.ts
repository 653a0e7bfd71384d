import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The admin GUI: one static build served by the admin endpoint (headless, browser) and loaded
// from disk by the Electron window. Build with `vite build renderer` (root = this folder).
// Relative base so both file:// and http:// work. Two pages share the build: index.html, the
// admin GUI, and relay.html, the relay dashboard the relay's status endpoint serves.
export default defineConfig({
  base: './',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    // No inline scripts or styles: both hosts serve a CSP of script-src 'self'.
    assetsInlineLimit: 0,
    // Entries relative to this folder (the build's root), so the config needs no Node module.
    rollupOptions: {
      input: {
        main: 'index.html',
        relay: 'relay.html',
      },
    },
  },
  server: { host: '127.0.0.1' },
});
