#!/usr/bin/env node
// Thin launcher: the CLI is TypeScript compiled to dist/ by `npm run build`.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const cli = fileURLToPath(new URL('../dist/core/cli.js', import.meta.url));
if (!existsSync(cli)) {
  process.stderr.write('contact-point: not built yet; run `npm run build` in the project folder first\n');
  process.exit(1);
}
// First of all, before the CLI's modules load: a forwarding process keeps V8's young
// generation small (core/runtime/gc.ts keepYoungGenerationSmall; harmless for short commands).
const { keepYoungGenerationSmall } = await import(pathToFileURL(fileURLToPath(new URL('../dist/core/runtime/gc.js', import.meta.url))).href);
keepYoungGenerationSmall();
const { main } = await import(pathToFileURL(cli).href);
process.exitCode = await main(process.argv.slice(2));
