/**
 * Keeps glibc's malloc from handing freed buffer memory back to the kernel after every garbage
 * collection, which costs a bulk-forwarding relay or contact point a page fault (and a zeroed
 * page) for most of the bytes it moves.
 *
 * Why: a stream moving hundreds of MB/s allocates a 64 KiB buffer per socket read and per frame.
 * V8 frees those backing stores in batches at each GC, tens of MiB at a time; glibc then finds
 * more than M_TRIM_THRESHOLD (128 KiB by default) free at the top of its heap and gives it back
 * (brk shrink), and the next batch of buffers faults it in again. Measured on the bulk benchmark
 * (bench/mediation.ts, fields `faults_per_mb` and `cpu_ms_per_mb`): up to ~300 page faults per
 * MB moved in the relay, relay CPU per MB up to 2x, and throughput swinging between runs with it.
 *
 * How: glibc's documented dynamic threshold (mallopt(3), M_MMAP_THRESHOLD): when a block that was
 * allocated with mmap is freed, the mmap threshold rises to that block's size and the trim
 * threshold to twice that. So one 32 MiB block (the largest size the rule applies to on 64-bit)
 * allocated and freed at startup raises the trim threshold to 64 MiB, the same as starting the
 * process with MALLOC_TRIM_THRESHOLD_=67108864 MALLOC_MMAP_THRESHOLD_=33554432, which a
 * process cannot set for itself once running. Cost: after a burst of traffic up to 64 MiB of
 * freed heap stays resident (reused by the next burst) instead of going back to the kernel.
 *
 * Elsewhere (musl, macOS, Windows) it is a 32 MiB allocation that is never touched: harmless. It
 * does nothing when the operator set any MALLOC_*_ variable (their choice wins; glibc also turns
 * the dynamic rule off then), and nothing the second time.
 *
 * The block is freed when V8 collects it: at the first garbage collection, which any traffic
 * brings within moments.
 *
 * When: with the process's first bulk stream (primeAllocatorOnBulk, then bulkStarted), not at
 * startup. Kept freed memory is a cost too, and a relay or contact point that carries messages and
 * idle tunnels does not move the buffers priming is for: primed at startup, a relay holding 1,000
 * offices' tunnels (`--only footprint`) grew 9.0-12.1 KB RSS per office, against 5.8-8.2 KB
 * unprimed (heap 5.9 KB either way), the difference being attach-time buffers glibc kept; a
 * contact point's LAN peers likewise. Paced acked messages cost the same CPU either way.
 */
export const PRIME_BLOCK_BYTES = 32 * 1024 * 1024 - 64 * 1024;

let primed = false;

/** Whether this process runs on glibc (the only allocator the priming is for). */
export function onGlibc(): boolean {
  if (process.platform !== 'linux') return false;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return typeof header?.glibcVersionRuntime === 'string';
}

/** Why priming does not apply to this process, if it does not: the operator chose, or not glibc. */
function skipReason(env: NodeJS.ProcessEnv): 'skipped: not glibc' | 'skipped: MALLOC_* set' | undefined {
  if (Object.keys(env).some((k) => k.startsWith('MALLOC_') && k.endsWith('_'))) return 'skipped: MALLOC_* set';
  if (!onGlibc()) return 'skipped: not glibc';
  return undefined;
}

function prime(): void {
  primed = true;
  // allocUnsafeSlow: its own malloc'd backing store (above the 128 KiB default mmap threshold, so
  // glibc maps it), never written, so no page of it is ever touched. Dropped at once.
  Buffer.allocUnsafeSlow(PRIME_BLOCK_BYTES);
}

/**
 * Primes now, in a process that forwards bulk traffic from its start (the bench's harness roles).
 * Returns what it did, for the process's startup log.
 */
export function primeAllocator(env: NodeJS.ProcessEnv = process.env): 'primed' | 'already primed' | 'skipped: not glibc' | 'skipped: MALLOC_* set' {
  if (primed) return 'already primed';
  const skip = skipReason(env);
  if (skip) return skip;
  prime();
  return 'primed';
}

/** set by primeAllocatorOnBulk: bulkStarted primes */
let armed = false;

/**
 * Call once at the start of a relay or contact point: priming then happens at the process's first
 * bulk stream (bulkStarted), not now. Returns what it did, for the startup log.
 */
export function primeAllocatorOnBulk(env: NodeJS.ProcessEnv = process.env): 'armed: primes at the first stream' | 'already primed' | 'skipped: not glibc' | 'skipped: MALLOC_* set' {
  if (primed) return 'already primed';
  const skip = skipReason(env);
  if (skip) return skip;
  armed = true;
  return 'armed: primes at the first stream';
}

/**
 * A bulk stream (port mediation: a connect, an exposure's connection) starts in this process:
 * primes the allocator if primeAllocatorOnBulk armed it; nothing otherwise (an application using
 * the SDK is never primed by it). Cheap enough to call for every stream.
 */
export function bulkStarted(): void {
  if (!armed) return;
  armed = false;
  if (!primed) prime();
}

/** Whether this process's allocator has been primed (for tests and the startup log). */
export function allocatorPrimed(): boolean {
  return primed;
}
