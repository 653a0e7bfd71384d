import { fork, type ChildProcess } from 'node:child_process';

/**
 * A tiny request/response protocol over the Node IPC channel between the bench process and
 * its worker processes (bench/worker.ts). Every call has a timeout, so a stuck worker fails
 * the benchmark instead of hanging it.
 */

export interface Request {
  readonly id: number;
  readonly op: string;
  readonly args?: unknown;
}
export type Response = { readonly id: number; readonly ok: true; readonly result: unknown } | { readonly id: number; readonly ok: false; readonly error: string };

/** What a worker answers `ready` with once its role has started. */
export interface ReadyInfo {
  readonly role: string;
  readonly pid: number;
  readonly url: string;
  readonly [key: string]: unknown;
}

const CALL_TIMEOUT_MS = 60_000;
const START_TIMEOUT_MS = 30_000;

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Children that are still running when the bench exits (error or not) are ended by their pid. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
}

export class WorkerHandle {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private exited: Promise<void>;

  private constructor(
    readonly child: ChildProcess,
    readonly role: string,
    public info: ReadyInfo,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get url(): string {
    return this.info.url;
  }

  /**
   * Forks `script` with `role` and its config, waits for its `ready` message.
   * `execArgv` goes to node (e.g. --expose-gc, --cpu-prof).
   */
  static async start(script: URL, role: string, config: unknown, execArgv: string[]): Promise<WorkerHandle> {
    installExitHook();
    // A worker's stdout is dropped (stdout is the bench's JSON lines) unless BENCH_WORKER_STDOUT is set,
    // e.g. to read the workers' `--trace-gc` lines (BENCH_WORKER_FLAGS) on the terminal.
    const stdout = process.env.BENCH_WORKER_STDOUT ? 'inherit' : 'ignore';
    const child = fork(script, [role, JSON.stringify(config)], { execArgv, stdio: ['ignore', stdout, 'inherit', 'ipc'], serialization: 'json' });
    live.add(child);
    child.once('exit', () => live.delete(child));
    const info = await new Promise<ReadyInfo>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        child.kill('SIGKILL');
        reject(new Error(`worker ${role} did not start within ${START_TIMEOUT_MS} ms`));
      }, START_TIMEOUT_MS);
      const onMessage = (m: unknown): void => {
        const msg = m as { ready?: ReadyInfo; failed?: string };
        if (msg.ready) {
          cleanup();
          resolve(msg.ready);
        } else if (msg.failed !== undefined) {
          cleanup();
          reject(new Error(`worker ${role} failed to start: ${msg.failed}`));
        }
      };
      const onExit = (code: number | null): void => {
        cleanup();
        reject(new Error(`worker ${role} exited (${code}) before it was ready`));
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
    const handle = new WorkerHandle(child, role, info);
    child.on('message', (m: unknown) => handle.onResponse(m as Response));
    child.once('exit', (code) => {
      for (const [, w] of handle.waiting) {
        clearTimeout(w.timer);
        w.reject(new Error(`worker ${role} exited (${code})`));
      }
      handle.waiting.clear();
    });
    return handle;
  }

  call<T = unknown>(op: string, args?: unknown, timeoutMs = CALL_TIMEOUT_MS): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`worker ${this.role}: ${op} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.child.send({ id, op, args } satisfies Request);
    });
  }

  /**
   * `fn` gets the data of each `{ event: name, data }` message the worker sends of its own
   * accord (not an answer to a call); returns the unsubscribe function.
   */
  onEvent(name: string, fn: (data: unknown) => void): () => void {
    const listener = (m: unknown): void => {
      const e = m as { event?: string; data?: unknown };
      if (e.event === name) fn(e.data);
    };
    this.child.on('message', listener);
    return () => void this.child.off('message', listener);
  }

  /** Asks the worker to stop cleanly (so --cpu-prof can write its profile); kills it if it does not. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    try {
      this.child.send({ id: 0, op: 'exit' } satisfies Request);
    } catch {
      // channel already closed
    }
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }

  private onResponse(r: Response): void {
    const w = this.waiting.get(r.id);
    if (!w) return;
    this.waiting.delete(r.id);
    clearTimeout(w.timer);
    if (r.ok) w.resolve(r.result);
    else w.reject(new Error(`worker ${this.role}: ${r.error}`));
  }
}
