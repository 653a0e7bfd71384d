/** Shared helpers for the benchmarks: output, bounded waits, percentiles. */
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { constants, performance, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';

/** One machine-readable result: a JSON object on its own stdout line (host facts appended). */
export function emit(result: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ ...result, node: process.version, cpus: availableParallelism() }) + '\n');
}

/**
 * Milliseconds on a clock all processes of this host share: the wall clock at process start
 * plus the monotonic clock since (exact within one process, within microseconds across them).
 */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Benchmark payloads: bytes [0, 8) the send time (nowMs()) as float64 LE, byte [8] 1 when the
 * message is inside the measured window; the rest is filler up to `size`.
 */
export function stampedPayload(size: number, measured: boolean): Buffer {
  const b = Buffer.allocUnsafe(size);
  b.fill(0x2e, 9);
  b[8] = measured ? 1 : 0;
  b.writeDoubleLE(nowMs(), 0);
  return b;
}

/** The send time (nowMs()) a stamped payload carries. */
export function sentStamp(p: Buffer): number {
  return p.readDoubleLE(0);
}

/** One-way latency in ms of a measured stamped payload; undefined for unmeasured ones. */
export function readStamp(p: Buffer): number | undefined {
  return p.length >= 9 && p[8] === 1 ? nowMs() - p.readDoubleLE(0) : undefined;
}

/** Human notes go to stderr so stdout stays one JSON object per line. */
export function note(text: string): void {
  process.stderr.write(`[bench] ${text}\n`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every `everyMs` until it holds; throws after `timeoutMs`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 20): Promise<void> {
  const start = Date.now();
  for (;;) {
    if (await cond()) return;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Runs `fn` over `items` with at most `limit` at once. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  });
  await Promise.all(lanes);
  return results;
}

/** A fixed-capacity sample buffer: recording never allocates and never grows past `capacity`. */
export class Samples {
  private readonly data: Float64Array;
  /** each sample's send time (nowMs()), when kept: what tail() pairs the slowest samples with */
  private readonly sentAt: Float64Array | undefined;
  private n = 0;
  dropped = 0;

  /** `keepSentAt`: also keep each sample's send time (push's second argument), for tail(). */
  constructor(capacity: number, keepSentAt = false) {
    this.data = new Float64Array(capacity);
    this.sentAt = keepSentAt ? new Float64Array(capacity) : undefined;
  }

  get count(): number {
    return this.n;
  }

  push(v: number, sentAt = NaN): void {
    if (this.n < this.data.length) {
      if (this.sentAt) this.sentAt[this.n] = sentAt;
      this.data[this.n++] = v;
    } else this.dropped++;
  }

  /**
   * The samples at or above the `p` percentile (nearest rank, as summary()) with their send times,
   * slowest first, at most `max` of them: [sentAt, latency] pairs (empty unless send times are kept).
   */
  tail(p: number, max = 5_000): [number, number][] {
    const sentAt = this.sentAt;
    if (!sentAt || this.n === 0) return [];
    const order = Array.from({ length: this.n }, (_v, i) => i).sort((a, b) => this.data[b]! - this.data[a]!);
    const keep = Math.min(max, this.n - Math.max(0, Math.ceil((p / 100) * this.n) - 1));
    return order.slice(0, keep).map((i) => [sentAt[i]!, this.data[i]!]);
  }

  clear(): void {
    this.n = 0;
    this.dropped = 0;
  }

  copyInto(other: Samples): void {
    for (let i = 0; i < this.n; i++) other.push(this.data[i]!);
  }

  /** p in [0, 100]; nearest-rank on the sorted samples. NaN when empty. */
  summary(): { count: number; p50: number; p90: number; p99: number; p999: number; max: number; mean: number } {
    const sorted = this.data.slice(0, this.n).sort();
    const at = (p: number): number => (this.n === 0 ? NaN : sorted[Math.min(this.n - 1, Math.max(0, Math.ceil((p / 100) * this.n) - 1))]!);
    let sum = 0;
    for (const v of sorted) sum += v;
    return { count: this.n, p50: at(50), p90: at(90), p99: at(99), p999: at(99.9), max: at(100), mean: this.n ? sum / this.n : NaN };
  }
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Rounds to `digits` decimals (keeps JSON lines short and readable). */
export function round(v: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** CPU time a process used between two process.cpuUsage() readings, as % of one core over `wallMs`. */
export function cpuPercent(before: NodeJS.CpuUsage, after: NodeJS.CpuUsage, wallMs: number): number {
  const us = after.user - before.user + (after.system - before.system);
  return round((us / 1000 / wallMs) * 100, 1);
}

/** Busy CPU time of the whole host in ms (Linux /proc/stat; undefined elsewhere). */
export function hostBusyMs(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    return ((total - idle) * 1000) / 100; // USER_HZ = 100
  } catch {
    return undefined;
  }
}

/**
 * How busy the host was with work that is not ours while a benchmark window ran: the host's
 * busy CPU minus the CPU our own processes used, in % of one core. This machine is shared, so
 * every timed line carries it.
 */
export function noise(hostBefore: number | undefined, hostAfter: number | undefined, oursPct: number, wallMs: number): Record<string, number> {
  const out: Record<string, number> = { load_avg_1m: round(loadavg()[0] ?? 0, 2) };
  if (hostBefore !== undefined && hostAfter !== undefined) out.other_cpu_pct = round(Math.max(0, ((hostAfter - hostBefore) / wallMs) * 100 - oursPct), 1);
  return out;
}

/** One garbage collection of this process: start (performance.now()), pause length, and whether it was a full (mark-compact) one. */
interface GcEvent {
  readonly at: number;
  readonly ms: number;
  readonly full: boolean;
}

const GC_LOG_CAPACITY = 10_000;
const gcLog: GcEvent[] = [];
let gcObserver: PerformanceObserver | undefined;

/**
 * Starts recording this process's GC pauses (once; idempotent). The latency benchmark's sender
 * and receiver share the bench process, so its pauses are part of every latency it reads: this
 * says how much, per round.
 */
export function watchGc(): void {
  if (gcObserver) return;
  gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries() as (PerformanceEntry & { detail?: { kind?: number } })[]) {
      if (gcLog.length === GC_LOG_CAPACITY) gcLog.shift();
      // full: a mark-compact's pause or one of its incremental marking steps (not a scavenge, nor
      // the weak callbacks that may follow either)
      const kind = e.detail?.kind ?? constants.NODE_PERFORMANCE_GC_MINOR;
      gcLog.push({ at: e.startTime, ms: e.duration, full: kind === constants.NODE_PERFORMANCE_GC_MAJOR || kind === constants.NODE_PERFORMANCE_GC_INCREMENTAL });
    }
  });
  gcObserver.observe({ entryTypes: ['gc'] });
}

/**
 * This process's GC pauses that overlap [from, to] (nowMs() times, comparable across processes):
 * start (nowMs()), length, and whether it was a full one. watchGc() must have been called.
 */
export function gcEventsBetween(from: number, to: number): { at: number; ms: number; full: boolean }[] {
  const origin = performance.timeOrigin;
  const out: { at: number; ms: number; full: boolean }[] = [];
  for (const g of gcLog) {
    const at = origin + g.at;
    if (at <= to && at + g.ms >= from) out.push({ at, ms: g.ms, full: g.full });
  }
  return out;
}

/** GC pauses of this process that began in [from, to) (performance.now() times): count, total and longest ms, full ones. */
export function gcBetween(from: number, to: number): { count: number; total_ms: number; max_ms: number; full: number } {
  let count = 0;
  let total = 0;
  let max = 0;
  let full = 0;
  for (const g of gcLog) {
    if (g.at < from || g.at >= to) continue;
    count++;
    total += g.ms;
    max = Math.max(max, g.ms);
    if (g.full) full++;
  }
  return { count, total_ms: round(total, 2), max_ms: round(max, 2), full };
}
