/**
 * The outside clients of the mediation benchmarks (bench/mediation.ts), run in their own worker
 * process (bench/worker.ts role `load`), so neither the relay, the contact point, the LAN
 * services nor the bench process share an event loop with the load.
 *
 * - bulk: one or more TCP connections that upload to (or download from) the LAN bulk server
 *   (bench/mediation-services.ts) a fixed number of bytes, bounded by time too.
 * - http: a closed-loop HTTP/1.1 load generator on raw sockets: each of `conns` keep-alive
 *   connections has exactly one request in flight (no pipelining: as wrk does by default);
 *   the response is parsed by Content-Length. Optionally `resetters` more connections at the
 *   same time connect, send (part of) a request and reset (resetAndDestroy) before or while
 *   the answer comes, in a loop.
 * - udp: a closed-loop UDP echo client with `lanes` datagrams in flight; a datagram not
 *   answered within UDP_LOSS_MS counts as lost and its lane sends the next one.
 * - idle: N TCP connections that connect and send nothing (the memory benchmark).
 */
import { createSocket } from 'node:dgram';
import { connect, type OnReadOpts, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Role } from './mediation-services.js';
import { pool, round, Samples } from './util.js';

const BULK_WRITE_BYTES = 1024 * 1024;
const UDP_LOSS_MS = 250;
const SAMPLE_CAPACITY = 4_000_000;

function dial(port: number, onread?: OnReadOpts): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true, noDelay: true, ...(onread ? { onread } : {}) });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface BulkArgs {
  port: number;
  dir: 'up' | 'down';
  bytes: number;
  maxMs: number;
  streams?: number;
}
interface BulkOne {
  bytes: number;
  ms: number;
  confirmed: number;
}

/** Upload: write `bytes` (or for `maxMs`), FIN, wait for the server's count. Timed from connect to that answer. */
async function upload(port: number, bytes: number, maxMs: number): Promise<BulkOne> {
  const block = Buffer.alloc(BULK_WRITE_BYTES, 0x41);
  const s = await dial(port);
  const t0 = performance.now();
  const answer = new Promise<number>((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.once('end', () => {
      const b = Buffer.concat(chunks);
      if (b.length === 8) resolve(b.readDoubleLE(0));
      else reject(new Error(`bulk server answered ${b.length} bytes`));
    });
    s.once('error', reject);
    s.once('close', () => reject(new Error('connection closed before the answer')));
  });
  answer.catch(() => undefined);
  s.write('U');
  let sent = 0;
  const deadline = t0 + maxMs;
  while (sent < bytes && performance.now() < deadline) {
    if (s.destroyed) break;
    const ok = s.write(block);
    sent += block.length;
    if (!ok) await new Promise<void>((r) => s.once('drain', r));
  }
  s.end();
  const confirmed = await answer;
  const ms = performance.now() - t0;
  s.destroy();
  return { bytes: sent, ms, confirmed };
}

/** Download: ask for `bytes` (the server stops after `maxMs` too), count until its FIN. */
async function download(port: number, bytes: number, maxMs: number): Promise<BulkOne> {
  const s = await dial(port);
  const t0 = performance.now();
  let got = 0;
  const ended = new Promise<void>((resolve, reject) => {
    s.on('data', (d: Buffer) => (got += d.length));
    s.once('end', () => resolve());
    s.once('error', reject);
  });
  const req = Buffer.alloc(13);
  req[0] = 0x44; // 'D'
  req.writeDoubleLE(bytes, 1);
  req.writeUInt32LE(maxMs, 9);
  s.write(req);
  await ended;
  const ms = performance.now() - t0;
  s.end();
  s.destroy();
  return { bytes: got, ms, confirmed: got };
}

async function bulk(a: BulkArgs): Promise<Record<string, unknown>> {
  const streams = a.streams ?? 1;
  const t0 = performance.now();
  const runs = await Promise.all(Array.from({ length: streams }, () => (a.dir === 'up' ? upload(a.port, a.bytes / streams, a.maxMs) : download(a.port, a.bytes / streams, a.maxMs))));
  const ms = performance.now() - t0;
  const bytes = runs.reduce((n, r) => n + r.bytes, 0);
  const confirmed = runs.reduce((n, r) => n + r.confirmed, 0);
  return { bytes, confirmed, ms: round(ms, 1), mbPerS: round(bytes / 1e6 / (ms / 1000), 1), perStream: runs.map((r) => round(r.bytes / 1e6 / (r.ms / 1000), 1)) };
}

interface HttpArgs {
  port: number;
  conns: number;
  warmupMs: number;
  windowMs: number;
  /** extra connections that reset themselves in a loop while the others are measured */
  resetters?: number;
}

/**
 * The one buffer every HTTP lane reads into (node's `onread`): no new buffer per read, the same
 * for the path and its baselines. A read is parsed before the next one can happen; what a lane
 * keeps of it (a response cut in two) is copied.
 */
const LANE_READ_BYTES = 64 * 1024;
let laneReadBuffer: Buffer | undefined;

const REQUEST = Buffer.from('GET /status HTTP/1.1\r\nHost: printer.lan\r\nUser-Agent: contact-point-bench\r\n\r\n', 'latin1');
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');

/** One keep-alive connection with one request in flight at a time. */
class HttpLane {
  private socket: Socket | undefined;
  private buf: Buffer | undefined;
  private need = -1;
  private sentAt = 0;
  private stopped = false;
  done = 0;
  errors = 0;
  lastError: string | undefined;

  constructor(
    private readonly port: number,
    private readonly onDone: (latencyMs: number) => void,
  ) {}

  async start(): Promise<void> {
    await this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.socket?.destroy();
  }

  private async connect(): Promise<void> {
    while (!this.stopped) {
      try {
        const dialed: { socket?: Socket } = {};
        const onread: OnReadOpts = {
          buffer: () => (laneReadBuffer ??= Buffer.allocUnsafe(LANE_READ_BYTES)),
          // Reads of a socket this lane already gave up on (and replaced) are ignored.
          callback: (n: number, buf: Uint8Array) => {
            if (dialed.socket !== undefined && this.socket === dialed.socket) this.onData((buf as Buffer).subarray(0, n));
            return true;
          },
        };
        const s = await dial(this.port, onread);
        dialed.socket = s;
        this.socket = s;
        // Events of a socket this lane already gave up on (and replaced) are ignored.
        s.on('error', (err: NodeJS.ErrnoException) => this.socket === s && this.fail(`socket error ${err.code ?? err.message}`));
        s.on('close', () => this.socket === s && this.fail('connection closed'));
        this.send();
        return;
      } catch (err: unknown) {
        this.errors++;
        this.lastError = `connect: ${(err as Error).message}`;
        await sleep(10);
      }
    }
  }

  private send(): void {
    this.buf = undefined;
    this.need = -1;
    this.sentAt = performance.now();
    this.socket!.write(REQUEST);
  }

  private fail(why: string): void {
    const s = this.socket;
    if (!s) return;
    this.socket = undefined;
    s.destroy();
    if (this.stopped) return;
    this.errors++;
    this.lastError = why;
    void this.connect();
  }

  /** `d` is in the shared read buffer: valid until this returns. */
  private onData(d: Buffer): void {
    const b = this.buf ? Buffer.concat([this.buf, d]) : d;
    if (this.need < 0) {
      const end = b.indexOf(CRLFCRLF);
      if (end < 0) {
        this.buf = b === d ? Buffer.from(d) : b;
        return;
      }
      const head = b.toString('latin1', 0, end);
      if (!head.startsWith('HTTP/1.1 200')) return this.fail(`status line "${head.split('\r\n', 1)[0]}"`);
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (!m) return this.fail('no content-length');
      this.need = end + 4 + Number(m[1]);
    }
    if (b.length < this.need) {
      this.buf = b === d ? Buffer.from(d) : b;
      return;
    }
    if (b.length > this.need) return this.fail('more bytes than one response');
    this.done++;
    this.onDone(performance.now() - this.sentAt);
    if (!this.stopped) this.send();
  }
}

/** Connects, sends a request (or half of one), resets before or while the answer comes; again and again. */
async function resetLoop(port: number, stats: { resets: number; refused: number; answered: number }, stopped: () => boolean): Promise<void> {
  let i = 0;
  while (!stopped()) {
    const variant = i++ % 3;
    let s: Socket;
    try {
      s = await dial(port);
    } catch {
      stats.refused++;
      await sleep(5);
      continue;
    }
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    s.on('error', () => undefined);
    if (variant === 0) {
      // mid-request: half the request line, then RST
      s.write(REQUEST.subarray(0, 20));
      await sleep(1);
      s.resetAndDestroy();
    } else if (variant === 1) {
      // whole request, RST at once (the answer is on its way)
      s.write(REQUEST);
      s.resetAndDestroy();
    } else {
      // whole request, RST when the first answer bytes arrive (or after 50 ms)
      s.write(REQUEST);
      await Promise.race([new Promise<void>((r) => s.once('data', () => r())), sleep(50), closed]).then(() => {
        if (!s.destroyed) stats.answered++;
      });
      if (!s.destroyed) s.resetAndDestroy();
    }
    stats.resets++;
    await closed;
  }
}

async function http(a: HttpArgs): Promise<Record<string, unknown>> {
  const samples = new Samples(SAMPLE_CAPACITY);
  let counting = false;
  let completed = 0;
  const lanes = Array.from({ length: a.conns }, () => new HttpLane(a.port, (ms) => {
    if (!counting) return;
    completed++;
    samples.push(ms);
  }));
  await Promise.all(lanes.map((l) => l.start()));
  const resetStats = { resets: 0, refused: 0, answered: 0 };
  let stopResets = false;
  const resetters = Array.from({ length: a.resetters ?? 0 }, () => resetLoop(a.port, resetStats, () => stopResets));
  await sleep(a.warmupMs);
  const errorsBefore = lanes.reduce((n, l) => n + l.errors, 0);
  counting = true;
  const t0 = performance.now();
  await sleep(a.windowMs);
  counting = false;
  const ms = performance.now() - t0;
  const errors = lanes.reduce((n, l) => n + l.errors, 0) - errorsBefore;
  stopResets = true;
  await Promise.all(resetters);
  for (const l of lanes) l.stop();
  const s = samples.summary();
  return {
    requests: completed,
    ms: round(ms, 1),
    reqPerS: Math.round(completed / (ms / 1000)),
    p50: round(s.p50),
    p90: round(s.p90),
    p99: round(s.p99),
    p999: round(s.p999),
    max: round(s.max),
    errors,
    // every answer of the call, warm-up included: CPU per request is the processes' CPU over the whole call divided by this
    requestsIncludingWarmup: lanes.reduce((n, l) => n + l.done, 0),
    errorsIncludingWarmup: lanes.reduce((n, l) => n + l.errors, 0),
    lastError: lanes.find((l) => l.lastError)?.lastError,
    ...(a.resetters ? { resets: resetStats.resets, resetterConnectFailures: resetStats.refused, resetterSawAnswerBytes: resetStats.answered } : {}),
  };
}

interface UdpArgs {
  port: number;
  lanes: number;
  size: number;
  warmupMs: number;
  windowMs: number;
}

/** Closed-loop UDP echo: `lanes` datagrams in flight, each lane sends its next when its echo returns (or is lost). */
async function udp(a: UdpArgs): Promise<Record<string, unknown>> {
  const sock = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.connect(a.port, '127.0.0.1', () => {
      sock.off('error', reject);
      resolve();
    });
  });
  sock.on('error', () => undefined);
  const seq = new Uint32Array(a.lanes);
  const sentAt = new Float64Array(a.lanes);
  const samples = new Samples(SAMPLE_CAPACITY);
  let counting = false;
  let stopped = false;
  let echoed = 0;
  let lost = 0;
  let stale = 0;
  const packets = Array.from({ length: a.lanes }, () => Buffer.alloc(Math.max(8, a.size), 0x75));
  const sendLane = (l: number): void => {
    if (stopped) return;
    const p = packets[l]!;
    seq[l] = (seq[l]! + 1) >>> 0;
    p.writeUInt16LE(l, 0);
    p.writeUInt32LE(seq[l]!, 2);
    sentAt[l] = performance.now();
    sock.send(p);
  };
  sock.on('message', (m) => {
    if (m.length < 6) return;
    const l = m.readUInt16LE(0);
    if (l >= a.lanes || m.readUInt32LE(2) !== seq[l]) {
      stale++;
      return;
    }
    if (counting) {
      echoed++;
      samples.push(performance.now() - sentAt[l]!);
    }
    sendLane(l);
  });
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (let l = 0; l < a.lanes; l++) {
      if (now - sentAt[l]! > UDP_LOSS_MS) {
        if (counting) lost++;
        sendLane(l);
      }
    }
  }, 20);
  for (let l = 0; l < a.lanes; l++) sendLane(l);
  await sleep(a.warmupMs);
  counting = true;
  const t0 = performance.now();
  await sleep(a.windowMs);
  counting = false;
  const ms = performance.now() - t0;
  stopped = true;
  clearInterval(sweeper);
  sock.close();
  const s = samples.summary();
  return { echoed, lost, stale, ms: round(ms, 1), pps: Math.round(echoed / (ms / 1000)), p50: round(s.p50), p90: round(s.p90), p99: round(s.p99), max: round(s.max) };
}

export function startLoad(): Role {
  const idle = new Set<Socket>();
  return {
    info: { role: 'load', pid: process.pid, url: '' },
    ops: {
      bulk: (a) => bulk(a as BulkArgs),
      http: (a) => http(a as HttpArgs),
      udp: (a) => udp(a as UdpArgs),
      idleOpen: async (a) => {
        const { port, n, concurrency } = a as { port: number; n: number; concurrency: number };
        let failed = 0;
        await pool(Array.from({ length: n }), concurrency, async () => {
          try {
            const s = await dial(port);
            s.on('error', () => undefined);
            s.on('close', () => idle.delete(s));
            idle.add(s);
          } catch {
            failed++;
          }
        });
        return { open: idle.size, failed };
      },
      idleCount: () => idle.size,
      idleClose: () => {
        for (const s of idle) s.destroy();
        idle.clear();
        return true;
      },
    },
    stop: async () => {
      for (const s of idle) s.destroy();
    },
  };
}
