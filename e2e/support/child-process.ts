import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/** A node child that speaks JSON lines: commands on stdin, events on stdout. */
export class JsonChild {
  readonly events: Record<string, unknown>[] = [];
  private readonly waiters = new Set<() => void>();
  private stderr = '';

  private constructor(readonly proc: ChildProcess, readonly label: string) {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        return;
      }
      for (const w of this.waiters) w();
    });
    proc.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-20_000);
    });
    proc.once('exit', () => {
      for (const w of this.waiters) w();
    });
  }

  static spawn(script: string, args: readonly string[], label: string): JsonChild {
    const proc = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    return new JsonChild(proc, label);
  }

  get exited(): boolean {
    return this.proc.exitCode !== null || this.proc.signalCode !== null;
  }

  send(cmd: Record<string, unknown>): void {
    this.proc.stdin!.write(JSON.stringify(cmd) + '\n');
  }

  /** The first event (already seen or coming) that matches; fails with the child's stderr on timeout or exit. */
  waitFor(match: (e: Record<string, unknown>) => boolean, what: string, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = this.events.find(match);
        if (hit) return done(() => resolve(hit));
        if (this.exited) done(() => reject(new Error(`${this.label} exited before ${what}\n${this.stderr}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`${this.label}: no ${what} within ${timeoutMs} ms\n${this.stderr}`))), timeoutMs);
      const done = (fn: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        fn();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** SIGKILL, like a crash or a pulled cable; resolves once the process is gone. */
  kill(): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      this.proc.once('exit', () => resolve());
      this.proc.kill('SIGKILL');
    });
  }
}
