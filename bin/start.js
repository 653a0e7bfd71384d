#!/usr/bin/env node
// `npm start`: the desktop app where an Electron binary is installed, otherwise the same
// contact point headless (`contact-point start`: embedded demo relay) with the admin GUI at
// the URL it prints. The Electron binary is looked up without `require('electron')`, which
// would try to download it.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

function electronBinary() {
  const fromEnv = process.env.ELECTRON_PATH;
  if (fromEnv) return existsSync(fromEnv) ? { bin: fromEnv } : { why: `ELECTRON_PATH=${fromEnv} does not exist` };
  const dir = join(root, 'node_modules', 'electron');
  if (!existsSync(join(dir, 'package.json'))) return { why: 'the electron package is not installed' };
  const pathFile = join(dir, 'path.txt');
  if (!existsSync(pathFile)) return { why: 'node_modules/electron has no binary: its download step did not run (npm skips install scripts, or the download host is unreachable)' };
  const bin = join(dir, 'dist', readFileSync(pathFile, 'utf8').trim());
  return existsSync(bin) ? { bin } : { why: `${bin} is missing` };
}

const args = process.argv.slice(2);
const electron = electronBinary();
if (electron.bin && !args.includes('--headless')) {
  const child = spawn(electron.bin, [root, ...args], { stdio: 'inherit', cwd: root });
  // Ctrl-C reaches Electron from the terminal itself; a SIGTERM sent to this launcher is passed on.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else {
  if (!electron.bin) process.stderr.write(`contact-point: no desktop app here (${electron.why}); running headless instead. Open the admin URL printed below in a browser.\n`);
  // In this process, like bin/contact-point.js, so signals reach the CLI's own shutdown once.
  const cli = join(root, 'dist', 'core', 'cli.js');
  if (!existsSync(cli)) {
    process.stderr.write('contact-point: not built yet; run `npm run build` first\n');
    process.exit(1);
  }
  // As bin/contact-point.js: the young generation kept small before the CLI loads (core/runtime/gc.ts).
  const { keepYoungGenerationSmall } = await import(pathToFileURL(join(root, 'dist', 'core', 'runtime', 'gc.js')).href);
  keepYoungGenerationSmall();
  const { main } = await import(pathToFileURL(cli).href);
  process.exitCode = await main(['start', ...args.filter((a) => a !== '--headless')]);
}
