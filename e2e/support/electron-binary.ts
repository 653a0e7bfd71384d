import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './stack.js';

/**
 * The Electron binary, found without `require('electron')` (which would try to download it):
 * ELECTRON_PATH, else the electron package's own binary when its download step ran.
 */
export function findElectron(): { path: string } | { path: undefined; why: string } {
  const fromEnv = process.env.ELECTRON_PATH;
  if (fromEnv) return existsSync(fromEnv) ? { path: fromEnv } : { path: undefined, why: `ELECTRON_PATH=${fromEnv} does not exist` };
  const dir = join(ROOT, 'node_modules', 'electron');
  if (!existsSync(join(dir, 'package.json'))) return { path: undefined, why: 'the electron package is not installed' };
  const pathFile = join(dir, 'path.txt');
  if (!existsSync(pathFile)) return { path: undefined, why: 'node_modules/electron has no binary: its download step did not run (npm skips install scripts here and the Electron download host is not reachable); set ELECTRON_PATH to an Electron 45 binary to run it' };
  const bin = join(dir, 'dist', readFileSync(pathFile, 'utf8').trim());
  return existsSync(bin) ? { path: bin } : { path: undefined, why: `${bin} is missing` };
}
