import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { gcModeChosen, youngSizeChosen } from '../../core/runtime/gc.js';
import { ROOT, requireBuild } from '../child.js';

/** A fresh process that calls serialScavenges() twice with the given node flags, and says what it did. */
function run(execArgv: string[]): { what: string; again: string; parallel: boolean } {
  const child = `
const { serialScavenges } = await import(process.argv[1]);
const what = serialScavenges();
const again = serialScavenges();
console.log(JSON.stringify({ what, again, parallel: process.execArgv.includes('--parallel-scavenge') }));
`;
  const out = execFileSync(process.execPath, [...execArgv, '--input-type=module', '-e', child, `${ROOT}/dist/core/runtime/gc.js`], {
    encoding: 'utf8',
  });
  return JSON.parse(out) as { what: string; again: string; parallel: boolean };
}

describe('serialScavenges (young-generation GC on the main thread of a relay or contact point)', () => {
  it('recognises a scavenging or GC threading choice on the command line, and nothing else', () => {
    expect(gcModeChosen(['--parallel-scavenge'])).toBe(true);
    expect(gcModeChosen(['--no-parallel-scavenge'])).toBe(true);
    expect(gcModeChosen(['--single-threaded-gc'])).toBe(true);
    expect(gcModeChosen(['--single_threaded_gc'])).toBe(true);
    expect(gcModeChosen(['--single-threaded'])).toBe(true);
    expect(gcModeChosen(['--max-old-space-size=512', '--expose-gc', '--cpu-prof'])).toBe(false);
    expect(gcModeChosen([])).toBe(false);
  });

  it("sets it once per process, and leaves it to the operator who chose on node's command line", () => {
    requireBuild();
    expect(run([])).toMatchObject({ what: 'serial scavenges', again: 'already set' });
    expect(run(['--parallel-scavenge'])).toMatchObject({ what: 'skipped: chosen on the command line', parallel: true });
    expect(run(['--single-threaded-gc'])).toMatchObject({ what: 'skipped: chosen on the command line', again: 'skipped: chosen on the command line' });
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
