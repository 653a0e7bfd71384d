import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { onGlibc, primeAllocator } from '../../core/runtime/allocator.js';
import { ROOT, requireBuild } from '../child.js';

/**
 * A child process (fresh allocator) that frees 16 MiB of 64 KiB buffers between passes, the way
 * a bulk stream's buffers die together at a GC, and counts the minor page faults of each pass.
 * Pass 1 touches fresh memory; when glibc keeps freed memory (primed), later passes fault ~0.
 */
const CHILD = `
import { readFileSync } from 'node:fs';
const { primeAllocator } = await import(process.argv[1]);
const what = process.argv[2] === 'prime' ? primeAllocator({}) : 'not primed';
const settle = async () => { for (let i = 0; i < 2; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 30)); } };
await settle();
const minflt = () => Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[7]);
const faults = [];
for (let pass = 0; pass < 6; pass++) {
  const f0 = minflt();
  let held = [];
  for (let i = 0; i < 256; i++) held.push(Buffer.allocUnsafeSlow(64 * 1024).fill(i));
  held = undefined;
  faults.push(minflt() - f0);
  await settle();
}
console.log(JSON.stringify({ what, faults }));
`;

function run(mode: 'prime' | 'plain'): { what: string; faults: number[] } {
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', CHILD, `${ROOT}/dist/core/runtime/allocator.js`, mode], { encoding: 'utf8', env: {} });
  return JSON.parse(out) as { what: string; faults: number[] };
}

describe('primeAllocator (glibc keeps freed buffer memory instead of faulting it in again)', () => {
  it('does nothing when the operator set MALLOC_* variables, and primes once per process', () => {
    expect(primeAllocator({ MALLOC_TRIM_THRESHOLD_: '1000000' })).toBe('skipped: MALLOC_* set');
    const first = primeAllocator({});
    expect(first).toBe(onGlibc() ? 'primed' : 'skipped: not glibc');
    if (first === 'primed') expect(primeAllocator({})).toBe('already primed');
  });

  it.runIf(onGlibc())('(glibc only, skipped elsewhere) after priming, buffers freed at a GC are reused without new page faults', () => {
    requireBuild();
    const primed = run('prime');
    const plain = run('plain');
    // Not asserted (glibc's own heuristics decide, and some runs keep the memory anyway); shown
    // so a reader sees what priming prevents: about 4,000 faults (16 MiB) again on every pass.
    console.log(`page faults per pass of 16 MiB: primed ${JSON.stringify(primed.faults)}, not primed ${JSON.stringify(plain.faults)}`);
    expect(primed.what).toBe('primed');
    // the first pass faults the 16 MiB in (~4,096 pages): proof that the child really touched memory
    expect(primed.faults[0]).toBeGreaterThan(3_000);
    // later passes reuse it: a handful of faults each, against ~4,096 when the memory was given back
    const later = primed.faults.slice(1);
    expect(Math.max(...later)).toBeLessThan(400);
  });
});

/** A child process (fresh allocator state): armed at start, as the relay and contact point do; primed by its first stream only. */
const ARMED_CHILD = `
const { allocatorPrimed, primeAllocatorOnBulk } = await import(process.argv[1]);
const { StreamMux } = await import(process.argv[2]);
const out = { chosen: primeAllocatorOnBulk({ MALLOC_TOP_PAD_: '0' }), armed: primeAllocatorOnBulk({}), before: allocatorPrimed() };
// A tunnel's mux that carries no stream (most of a relay's offices) leaves the allocator alone.
const sent = [];
const mux = new StreamMux({ send: (f) => sent.push(f) > 0, sendParts: () => true, copiesBodies: true, bufferedAmount: 0, whenWritable: (fn) => fn() });
out.idleMux = allocatorPrimed();
mux.open(2);
out.afterStream = allocatorPrimed();
console.log(JSON.stringify(out));
`;

describe('primeAllocatorOnBulk (priming waits for the first bulk stream)', () => {
  it.runIf(onGlibc())('(glibc only, skipped elsewhere) skips when MALLOC_* is set; else arms at start, primes when the process opens its first stream, not before', () => {
    requireBuild();
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', ARMED_CHILD, `${ROOT}/dist/core/runtime/allocator.js`, `${ROOT}/dist/core/protocol/stream-mux.js`], { encoding: 'utf8', env: {} });
    expect(JSON.parse(out)).toEqual({ chosen: 'skipped: MALLOC_* set', armed: 'armed: primes at the first stream', before: false, idleMux: false, afterStream: true });
  });
});
