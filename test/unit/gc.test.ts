import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { gcModeChosen } from '../../core/runtime/gc.js';
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
