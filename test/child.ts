import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Tests that run real processes need the compiled core (`npm test` builds it first). */
export function requireBuild(): void {
  if (!existsSync(`${ROOT}/dist/core/relay/relay.js`)) throw new Error('dist/ is missing: run `npm run build` (npm test does it for you)');
}

export interface Child {
  proc: ChildProcess;
  ready: Record<string, unknown>;
  stderr: () => string;
}

/** Spawns a node process and waits for its `{"event":"ready",...}` line on stdout. */
export function spawnReady(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): Promise<Child> {
  const proc = spawn(process.execPath, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 100_000) err = err.slice(-50_000);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`no ready line within ${opts.timeoutMs ?? 10_000} ms from ${args.join(' ')}\n${err}`));
    }, opts.timeoutMs ?? 10_000);
    const lines = createInterface({ input: proc.stdout });
    lines.on('line', (line) => {
      try {
        const j = JSON.parse(line) as Record<string, unknown>;
        if (j.event === 'ready') {
          clearTimeout(timer);
          resolve({ proc, ready: j, stderr: () => err });
        }
      } catch {
        // not a JSON line
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`process exited (${code}) before ready: ${args.join(' ')}\n${err}`));
    });
  });
}

export function killHard(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once('exit', () => resolve());
    proc.kill('SIGKILL');
  });
}
