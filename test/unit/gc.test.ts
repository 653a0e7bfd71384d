import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { mainThreadGcPlan, youngSizeChosen } from '../../core/runtime/gc.js';
import { ROOT, requireBuild } from '../child.js';

/**
 * A fresh process that calls gcOnMainThread() twice with the given node flags, and says what it
 * did; then carries buffers through a socket pair (old-generation collections included, with the
 * flags it set) so that a flag V8 cannot take at run time would show as a crash.
 */
function run(execArgv: string[]): { what: string; again: string; parallel: boolean; carried: number; majors: number } {
  const child = `
const { gcOnMainThread } = await import(process.argv[1]);
const what = gcOnMainThread();
const again = gcOnMainThread();
const net = await import('node:net');
const { PerformanceObserver } = await import('node:perf_hooks');
let majors = 0;
new PerformanceObserver((l) => { for (const e of l.getEntries()) if (e.detail.kind === 4) majors++; }).observe({ entryTypes: ['gc'] });
const TOTAL = 64 * 2 ** 20;
let carried = 0;
const server = net.createServer((s) => { const kept = []; s.on('data', (d) => { carried += d.length; kept.push(d); if (kept.length > 64) kept.splice(0, 32); if (carried >= TOTAL) s.end(); }); });
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const c = net.connect(server.address().port, '127.0.0.1');
for (let sent = 0; sent < TOTAL; sent += 2 ** 16) if (!c.write(Buffer.alloc(2 ** 16, sent & 255))) await new Promise((r) => c.once('drain', r));
await new Promise((r) => c.on('close', r));
server.close();
globalThis.gc();
await new Promise((r) => setTimeout(r, 50)); // the observer hears of a collection a tick later
console.log(JSON.stringify({ what, again, parallel: process.execArgv.includes('--parallel-scavenge'), carried, majors }));
`;
  const out = execFileSync(process.execPath, [...execArgv, '--expose-gc', '--input-type=module', '-e', child, `${ROOT}/dist/core/runtime/gc.js`], {
    encoding: 'utf8',
  });
  return JSON.parse(out) as { what: string; again: string; parallel: boolean; carried: number; majors: number };
}

describe('gcOnMainThread (scavenges and sweeping on the main thread of a relay or contact point)', () => {
  it('leaves to the command line each flag chosen there, all of them with --single-threaded-gc, and reads nothing else as a choice', () => {
    const all = ['--no-parallel-scavenge', '--no-concurrent-sweeping', '--no-concurrent-array-buffer-sweeping'];
    expect(mainThreadGcPlan([])).toEqual({ set: all, left: [], single: false });
    expect(mainThreadGcPlan(['--max-old-space-size=512', '--expose-gc', '--cpu-prof', '--concurrent-marking', '--no-parallel-marking'])).toEqual({ set: all, left: [], single: false });
    expect(mainThreadGcPlan(['--parallel-scavenge']).left).toEqual(['parallel-scavenge']);
    expect(mainThreadGcPlan(['--no-parallel-scavenge']).set).toEqual(all.slice(1));
    expect(mainThreadGcPlan(['--concurrent-sweeping'])).toEqual({ set: [all[0], all[2]], left: ['concurrent-sweeping'], single: false });
    expect(mainThreadGcPlan(['--concurrent_array_buffer_sweeping']).left).toEqual(['concurrent-array-buffer-sweeping']);
    for (const f of ['--single-threaded-gc', '--single_threaded_gc', '--single-threaded']) {
      expect(mainThreadGcPlan([f])).toEqual({ set: [], left: ['parallel-scavenge', 'concurrent-sweeping', 'concurrent-array-buffer-sweeping'], single: true });
    }
  });

  it("sets each flag once per process, leaves to the operator what they chose on node's command line, and carries traffic with them", () => {
    requireBuild();
    const all = run([]);
    expect(all).toMatchObject({
      what: 'set --no-parallel-scavenge --no-concurrent-sweeping --no-concurrent-array-buffer-sweeping',
      again: 'already set',
      carried: 64 * 2 ** 20,
    });
    // The last full collection (gc()) at least: the run went through a mark-compact with the flags set.
    expect(all.majors).toBeGreaterThanOrEqual(1);
    expect(run(['--parallel-scavenge'])).toMatchObject({
      what: 'set --no-concurrent-sweeping --no-concurrent-array-buffer-sweeping; left to the command line: parallel-scavenge',
      parallel: true,
    });
    expect(run(['--concurrent-sweeping', '--no-parallel-scavenge', '--concurrent-array-buffer-sweeping']).what).toBe('skipped: chosen on the command line');
    expect(run(['--single-threaded-gc'])).toMatchObject({ what: 'skipped: chosen on the command line', again: 'already set' });
  });
});

/**
 * A fresh process that (with `keep`) calls keepYoungGenerationSmall() first, then loads the relay's
 * modules and allocates (some of it kept a while, so the young generation would grow), and says
 * what it did and how large its young generation (new space) ended, in MiB.
 */
function young(execArgv: string[], keep: boolean, nodeOptions = ''): { what: string; again: string; setting: string; newSpaceMiB: number } {
  const child = `
const gc = await import(process.argv[1]);
const what = ${keep ? 'gc.keepYoungGenerationSmall()' : "'not called'"};
const again = ${keep ? 'gc.keepYoungGenerationSmall()' : "'not called'"};
await import(process.argv[2]);
const { getHeapSpaceStatistics } = await import('node:v8');
const keep = [];
for (let i = 0; i < 2e6; i++) { const o = { i, a: [i] }; if (i % 2 === 0) keep.push(o); if (keep.length > 50000) keep.length = 0; }
const newSpaceMiB = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 2 ** 20;
console.log(JSON.stringify({ what, again, setting: gc.youngGenerationSetting(), newSpaceMiB }));
`;
  const out = execFileSync(process.execPath, [...execArgv, '--input-type=module', '-e', child, `${ROOT}/dist/core/runtime/gc.js`, `${ROOT}/dist/core/relay/relay.js`], {
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: nodeOptions },
  });
  return JSON.parse(out) as { what: string; again: string; setting: string; newSpaceMiB: number };
}

describe('keepYoungGenerationSmall (the young generation of a relay or contact point)', () => {
  it('recognises a young generation size chosen on the command line, and nothing else', () => {
    expect(youngSizeChosen(['--max-semi-space-size=16'])).toBe(true);
    expect(youngSizeChosen(['--max_semi_space_size=16'])).toBe(true);
    expect(youngSizeChosen(['--min-semi-space-size', '4'])).toBe(true);
    expect(youngSizeChosen(['--semi-space-growth-factor=2'])).toBe(true);
    expect(youngSizeChosen(['--max-old-space-size=512', '--parallel-scavenge'])).toBe(false);
    expect(youngSizeChosen([])).toBe(false);
  });

  it("keeps it at 1 MiB a semi-space through module loading and traffic, once per process; node's default grows it", () => {
    requireBuild();
    const kept = young([], true);
    expect(kept).toMatchObject({ what: 'young generation kept at its initial size', again: 'young generation kept at its initial size', setting: 'young generation kept at its initial size' });
    expect(kept.newSpaceMiB).toBeLessThanOrEqual(2);
    const grown = young([], false);
    expect(grown.setting).toBe('node default (not set at start)');
    expect(grown.newSpaceMiB).toBeGreaterThanOrEqual(4 * kept.newSpaceMiB);
  });

  it("leaves it to the operator who chose its size on node's command line or in NODE_OPTIONS", () => {
    requireBuild();
    const theirs = young(['--max-semi-space-size=8'], true);
    expect(theirs.what).toBe('young generation size: chosen on the command line');
    expect(theirs.newSpaceMiB).toBeGreaterThan(2);
    expect(young([], true, '--max-semi-space-size=8').what).toBe('young generation size: chosen on the command line');
  });
});
