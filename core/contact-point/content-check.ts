import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { ContentCheckView } from '../admin/contract.js';
import type { MsgFrame } from '../protocol/codec.js';
import { FLAG_SEALED } from '../protocol/frames.js';
import { MAX_REASON_LENGTH } from '../protocol/limits.js';
import type { Logger } from '../runtime/logger.js';

/** Messages that may wait for the content check, per recipient peer: past it the next one is refused QUEUE_FULL. */
export const MAX_CHECK_QUEUE_PER_PEER = 64;
/** Messages waiting for the content check in all (default 1,024). */
export const MAX_CHECK_QUEUE = 1_024;
/** Payload bytes waiting for the content check in all (default 64 MiB): what the queue may hold in memory. */
export const MAX_CHECK_QUEUE_BYTES = 64 * 1024 * 1024;
/** Longest answer line a check command may write (default 64 KiB); a longer one is a fault and the command is restarted. */
export const MAX_CHECK_LINE_BYTES = 64 * 1024;
/** A crashed check command is started again at most this often (ms, default 1 s); messages meanwhile get "check failed". */
export const CHECK_RESTART_MS = 1_000;
/** How long stop() lets a check command exit after its stdin closes before it is killed (ms). */
export const CHECK_STOP_GRACE_MS = 1_000;
/** What a check command may write on stderr that is kept for the log, per line. */
const MAX_STDERR_LINE = 500;

/** What the check hears of a message (its metadata; the payload travels beside it). */
export interface CheckRequest {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  readonly size: number;
  /** in: from the relay (or a direct external session); local: from another LAN peer */
  readonly dir: 'in' | 'local';
  /**
   * the MSG has FLAG_SEALED: its payload is a sealed envelope (PROTOCOL.md 19), opaque bytes the
   * contact point cannot open. A check may decide on the metadata; it must not read them as content.
   */
  readonly sealed: boolean;
}

/** The check's answer: allow, or refuse with the reason the sender hears. `failed`: the check itself did not answer (timeout, crash). */
export type CheckAnswer = { readonly allow: true } | { readonly allow: false; readonly reason: string; readonly failed?: boolean };

/** One content check implementation: the built-in one or the admin's command. */
export interface Inspector {
  inspect(req: CheckRequest, payload: Buffer): Promise<CheckAnswer>;
  close(): Promise<void>;
}

/**
 * Built-in check: refuses a payload nested deeper than `depth` (`[` and `{` outside JSON strings),
 * so a LAN device's JSON parser never meets a nesting bomb. A single pass over the bytes, no
 * parse and no allocation; payloads that are not JSON are scanned the same way (a binary payload
 * rarely nests brackets that deep; an admin who wants it stricter writes a command).
 */
export function jsonDepthOver(payload: Buffer, depth: number): boolean {
  let d = 0;
  let inString = false;
  for (let i = 0; i < payload.length; i++) {
    const c = payload[i]!;
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++d > depth) return true;
    } else if ((c === 0x5d || c === 0x7d) && d > 0) d--;
  }
  return false;
}

class JsonDepthInspector implements Inspector {
  constructor(private readonly depth: number) {}
  inspect(req: CheckRequest, payload: Buffer): Promise<CheckAnswer> {
    // A sealed payload is ciphertext: its bytes say nothing of the JSON inside, which only the receiver sees.
    if (req.sealed) return Promise.resolve({ allow: true });
    return Promise.resolve(jsonDepthOver(payload, this.depth) ? { allow: false, reason: `JSON nested deeper than ${this.depth} levels` } : { allow: true });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

interface Waiting {
  resolve(a: CheckAnswer): void;
  timer: NodeJS.Timeout;
}

/**
 * The admin's check as a command: ONE long-lived child process (no shell; argv as given) that
 * reads a JSON line per message on stdin and writes a JSON line per answer on stdout, matched
 * by `id`, several outstanding at once (docs/PROTOCOL.md, "Content check"). A child process
 * rather than a module loaded into the contact point: a check that crashes, leaks or spins takes
 * only itself down, it can be written in any language, and it runs with the rights it is given.
 *
 * Each message has the time budget; a late answer is dropped. The child is restarted when it
 * exits, writes garbage, or lets `concurrency` messages in a row time out (it is stuck): the
 * messages it held answer "check failed". Restarts are at most one per CHECK_RESTART_MS.
 */
class CommandInspector implements Inspector {
  private child: ChildProcessWithoutNullStreams | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private lastStart = 0;
  private timeoutsInARow = 0;
  private closed = false;
  /** bytes of stdout not yet ending in a newline */
  private partial = '';
  /** starts the command again after a crash, so the next message does not wait for its start-up */
  private restartTimer: NodeJS.Timeout | undefined;
  /** why the command last went away (what messages hear until it is back) */
  private lastFault: string | undefined;

  constructor(
    private readonly cfg: Extract<ContentCheckView, { kind: 'command' }>,
    private readonly logger: Logger,
  ) {
    this.ensure(); // started now: the first message does not pay for the program's start-up
  }

  inspect(req: CheckRequest, payload: Buffer): Promise<CheckAnswer> {
    const child = this.ensure();
    if (!child) return Promise.resolve({ allow: false, reason: `${this.lastFault ?? 'check failed'}; the check command is restarting`, failed: true });
    const id = this.nextId++;
    return new Promise<CheckAnswer>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        resolve({ allow: false, reason: 'check timed out', failed: true });
        if (++this.timeoutsInARow >= this.cfg.concurrency) this.restart(`${this.timeoutsInARow} messages in a row timed out`);
      }, this.cfg.timeoutMs);
      this.waiting.set(id, { resolve, timer });
      child.stdin.write(`${JSON.stringify({ id, msg: req, payload: payload.toString('base64') })}\n`);
    });
  }

  /** The child, started if needed (undefined while the restart delay runs). */
  private ensure(): ChildProcessWithoutNullStreams | undefined {
    if (this.child) return this.child;
    if (this.closed) return undefined;
    const now = Date.now();
    if (now - this.lastStart < CHECK_RESTART_MS) return undefined;
    this.lastStart = now;
    const [program, ...args] = this.cfg.argv;
    const child = spawn(program!, args, { stdio: ['pipe', 'pipe', 'pipe'], windowsHide: true });
    this.child = child;
    this.partial = '';
    child.stdin.on('error', () => undefined); // EPIPE after a crash: the exit handler answers
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => this.onData(child, chunk));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      for (const line of chunk.split('\n')) if (line.trim()) this.logger.warn('content check said', { line: line.slice(0, MAX_STDERR_LINE) });
    });
    child.on('error', (err) => {
      this.logger.error('content check command could not run', { argv: this.cfg.argv.join(' '), error: err.message });
      this.gone(child, `check failed: ${err.message}`);
    });
    child.on('exit', (code, signal) => {
      if (!this.closed) this.logger.warn('content check command exited', { code, signal });
      this.gone(child, `check failed: the check command exited (${signal ?? `code ${String(code)}`})`);
    });
    return child;
  }

  private onData(child: ChildProcessWithoutNullStreams, chunk: string): void {
    if (child !== this.child) return;
    this.partial += chunk;
    let nl: number;
    while ((nl = this.partial.indexOf('\n')) >= 0) {
      const line = this.partial.slice(0, nl);
      this.partial = this.partial.slice(nl + 1);
      if (line.trim()) this.onLine(line);
      if (child !== this.child) return;
    }
    if (this.partial.length > MAX_CHECK_LINE_BYTES) this.restart(`an answer line longer than ${MAX_CHECK_LINE_BYTES} bytes`);
  }

  private onLine(line: string): void {
    let a: { id?: unknown; allow?: unknown; reason?: unknown };
    try {
      a = JSON.parse(line) as typeof a;
    } catch {
      return this.restart('an answer that is not JSON');
    }
    if (typeof a !== 'object' || a === null || typeof a.id !== 'number' || typeof a.allow !== 'boolean') return this.restart('an answer without a numeric id and a boolean allow');
    const w = this.waiting.get(a.id);
    if (!w) return; // answered after its budget: dropped
    this.waiting.delete(a.id);
    clearTimeout(w.timer);
    this.timeoutsInARow = 0;
    const reason = typeof a.reason === 'string' && a.reason.trim() ? a.reason.slice(0, MAX_REASON_LENGTH) : 'refused by the content check';
    w.resolve(a.allow ? { allow: true } : { allow: false, reason });
  }

  /** Kills the child for a fault; its messages answer "check failed". */
  private restart(why: string): void {
    const child = this.child;
    if (!child) return;
    this.logger.warn('content check command restarted', { why });
    this.gone(child, `check failed: ${why}`);
    child.kill('SIGKILL');
  }

  private gone(child: ChildProcessWithoutNullStreams, reason: string): void {
    if (child !== this.child) return;
    this.child = undefined;
    this.timeoutsInARow = 0;
    this.lastFault = reason;
    if (!this.closed && !this.restartTimer) {
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        this.ensure();
      }, CHECK_RESTART_MS);
      this.restartTimer.unref();
    }
    for (const [id, w] of this.waiting) {
      clearTimeout(w.timer);
      this.waiting.delete(id);
      w.resolve({ allow: false, reason, failed: true });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const child = this.child;
    if (!child) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.stdin.end(); // a well-behaved check exits at end of input
    const kill = setTimeout(() => child.kill('SIGKILL'), CHECK_STOP_GRACE_MS);
    await exited;
    clearTimeout(kill);
  }
}

export function createInspector(cfg: ContentCheckView, logger: Logger): Inspector | undefined {
  switch (cfg.kind) {
    case 'none':
      return undefined;
    case 'json-depth':
      return new JsonDepthInspector(cfg.depth);
    case 'command':
      return new CommandInspector(cfg, logger);
  }
}

/** What the gate does with a message: deliver it, or refuse it (code chosen by the caller from `busy`). */
export type GateOutcome = { readonly pass: true } | { readonly pass: false; readonly busy: boolean; readonly reason: string; readonly detail: string };

interface Job {
  readonly req: CheckRequest;
  readonly payload: Buffer;
  outcome: GateOutcome | undefined;
  started: boolean;
  readonly done: (o: GateOutcome) => void;
}

/**
 * The content check in front of the distributor: messages wait in a queue per recipient peer,
 * at most `concurrency` at the check at once and at most half of those for one peer, taken
 * round-robin across the peers, so a check that is slow or hangs on one peer's traffic does not
 * hold up another's; each peer's messages are handed on in
 * the order they arrived. A full queue refuses at once (busy), so nothing piles up in memory.
 * A check that fails (timeout, crash) refuses or delivers as the admin chose (`failure`).
 */
export class ContentGate {
  private inspector: Inspector | undefined;
  private failure: 'closed' | 'open' = 'closed';
  private concurrency = 1;
  private readonly queues = new Map<string, Job[]>();
  /** round-robin order of peers with jobs not yet started */
  private readonly ready: string[] = [];
  private running = 0;
  /** jobs at the check per peer */
  private readonly atCheck = new Map<string, number>();
  private queued = 0;
  private queuedBytes = 0;

  constructor(private readonly logger: Logger) {}

  get active(): boolean {
    return this.inspector !== undefined;
  }

  /** Swaps in a new check (the old one's messages still get their answers from it). */
  configure(cfg: ContentCheckView): void {
    const old = this.inspector;
    this.inspector = createInspector(cfg, this.logger);
    this.failure = cfg.kind === 'command' ? cfg.failure : 'closed';
    this.concurrency = cfg.kind === 'command' ? cfg.concurrency : 64;
    if (old) void old.close();
  }

  async close(): Promise<void> {
    const old = this.inspector;
    this.inspector = undefined;
    await old?.close();
  }

  /** Messages waiting or at the check now (for tests and status). */
  get pending(): number {
    return this.queued;
  }

  /** Queues `payload` for the check; `done` hears the outcome, in arrival order per peer. */
  submit(peer: string, req: CheckRequest, payload: Buffer, done: (o: GateOutcome) => void): void {
    let q = this.queues.get(peer);
    const n = q?.length ?? 0;
    if (n >= MAX_CHECK_QUEUE_PER_PEER || this.queued >= MAX_CHECK_QUEUE || this.queuedBytes + payload.length > MAX_CHECK_QUEUE_BYTES) {
      return done({ pass: false, busy: true, reason: 'the content check is busy; try again', detail: `content check queue full (${n} waiting for this peer, ${this.queued} in all)` });
    }
    if (!q) this.queues.set(peer, (q = []));
    q.push({ req, payload, outcome: undefined, started: false, done });
    this.queued++;
    this.queuedBytes += payload.length;
    if (!this.ready.includes(peer)) this.ready.push(peer);
    this.pump();
  }

  /** Slots one peer may hold at once: half of them (at least one), so a check that hangs on one peer's traffic leaves room for the others'. */
  private get perPeer(): number {
    return Math.max(1, Math.floor(this.concurrency / 2));
  }

  private pump(): void {
    let skipped = 0;
    while (this.running < this.concurrency && skipped < this.ready.length) {
      const peer = this.ready.shift()!;
      const q = this.queues.get(peer);
      const job = q?.find((j) => !j.started);
      if (!job) continue;
      const active = this.atCheck.get(peer) ?? 0;
      if (active >= this.perPeer) {
        this.ready.push(peer);
        skipped++;
        continue;
      }
      skipped = 0;
      job.started = true;
      this.atCheck.set(peer, active + 1);
      if (q!.some((j) => !j.started)) this.ready.push(peer); // its next one after the other peers'
      this.running++;
      void this.run(peer, job);
    }
  }

  private async run(peer: string, job: Job): Promise<void> {
    let outcome: GateOutcome;
    const inspector = this.inspector;
    if (!inspector) outcome = { pass: true }; // the check was turned off meanwhile
    else {
      let a: CheckAnswer;
      try {
        a = await inspector.inspect(job.req, job.payload);
      } catch (err: unknown) {
        a = { allow: false, reason: `check failed: ${(err as Error).message}`, failed: true };
      }
      if (a.allow) outcome = { pass: true };
      else if (a.failed === true && this.failure === 'open') {
        this.logger.debug('content check failed; delivered (fail-open)', { id: job.req.id, reason: a.reason });
        outcome = { pass: true };
      } else outcome = { pass: false, busy: false, reason: a.reason, detail: a.failed === true ? `${a.reason} (fail-closed)` : a.reason };
    }
    job.outcome = outcome;
    this.running--;
    const active = (this.atCheck.get(peer) ?? 1) - 1;
    if (active > 0) this.atCheck.set(peer, active);
    else this.atCheck.delete(peer);
    this.flush(peer);
    this.pump();
  }

  /** Hands on the peer's finished jobs from the front of its queue, in order. */
  private flush(peer: string): void {
    const q = this.queues.get(peer);
    if (!q) return;
    while (q.length > 0 && q[0]!.outcome !== undefined) {
      const job = q.shift()!;
      this.queued--;
      this.queuedBytes -= job.payload.length;
      job.done(job.outcome!);
    }
    if (q.length === 0) this.queues.delete(peer);
  }
}

/** The metadata a check hears of `msg`. */
export function checkRequest(msg: MsgFrame, dir: 'in' | 'local'): CheckRequest {
  return { id: msg.id, from: msg.from, to: msg.to, size: msg.payload.length, dir, sealed: (msg.flags & FLAG_SEALED) !== 0 };
}
