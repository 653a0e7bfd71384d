#!/usr/bin/env node
// Runs before `npm start` and `npm test` (prestart/pretest): on a fresh clone it installs the
// locked dependencies first, so the README's quick start is just those two commands.
// Uses nothing but Node's own modules, since nothing else is installed yet.
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const marker = join(root, 'node_modules', '.package-lock.json');
const lock = join(root, 'package-lock.json');

function installed() {
  // node_modules linked from another checkout (a git worktree sharing one install): npm ci would
  // empty the linked folder, the other checkout's dependencies with it. Its owner keeps it current.
  try {
    if (lstatSync(join(root, 'node_modules')).isSymbolicLink()) return true;
  } catch {
    // no node_modules at all: install
  }
  if (!existsSync(marker)) return false;
  // npm rewrites node_modules/.package-lock.json on every install: older than the lock file
  // means someone pulled new dependencies since.
  return statSync(marker).mtimeMs >= statSync(lock).mtimeMs - 1000;
}

if (!installed()) {
  const name = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).name;
  process.stderr.write(`${name}: installing dependencies (npm ci) first...\n`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    process.stderr.write('npm ci failed; see above.\n');
    process.exit(r.status ?? 1);
  }
}
