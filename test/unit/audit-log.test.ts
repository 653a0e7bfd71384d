import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AUDIT_FILE, AuditLog, MAX_AUDIT_TAIL, type AuditRecord } from '../../core/contact-point/audit-log.js';
import { silentLogger } from '../../core/runtime/logger.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cp-unit-audit-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const rec = (target: string, at = 1): AuditRecord => ({ at, surface: 'cli', action: 'peer:approve', target, before: { state: 'pending' }, after: { state: 'registered' } });

/** What a decision's write does: stamp (state file), then append. */
async function decide(log: AuditLog, ...targets: string[]): Promise<void> {
  log.stamp(targets.map((t) => rec(t)));
  await log.flushAppends();
}

describe('audit log', () => {
  it('rotates by size and keeps a bounded number of files; listing pages across them, newest first', async () => {
    const log = await AuditLog.open(dir, undefined, silentLogger, { fileBytes: 400, rotatedFiles: 2 });
    for (let i = 1; i <= 40; i++) await decide(log, `p${i}`);
    const files = (await readdir(dir)).sort();
    expect(files).toEqual(['audit.1.jsonl', 'audit.2.jsonl', AUDIT_FILE]);
    const all = await log.list({ limit: 1_000 });
    // Only what the kept files hold: the newest, without gaps, newest first.
    const seqs = all.entries.map((e) => e.seq);
    expect(seqs[0]).toBe(40);
    expect(seqs.length).toBeLessThan(40);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => 40 - i));
    expect(await log.list({ limit: 3, beforeSeq: 38 })).toEqual({ more: true, entries: [expect.objectContaining({ seq: 37 }), expect.objectContaining({ seq: 36 }), expect.objectContaining({ seq: 35 })] });
    expect((await log.list({ limit: 10, target: 'p39' })).entries.map((e) => e.seq)).toEqual([39]);
  });

  it('cuts a partial last line (a crash mid-append) and appends the entries the state file holds past the file', async () => {
    const log = await AuditLog.open(dir, undefined, silentLogger);
    await decide(log, 'a', 'b');
    const state = (() => {
      log.stamp([rec('c')]); // written into the state file...
      return log.state();
    })();
    // ...and the process died halfway through the append.
    const path = join(dir, AUDIT_FILE);
    await writeFile(path, (await readFile(path, 'utf8')) + '{"seq":3,"at":1,"surf');
    const reopened = await AuditLog.open(dir, state, silentLogger);
    expect((await reopened.list({ limit: 10 })).entries.map((e) => [e.seq, e.target])).toEqual([
      [3, 'c'],
      [2, 'b'],
      [1, 'a'],
    ]);
    expect((await readFile(path, 'utf8')).split('\n').filter(Boolean)).toHaveLength(3);
    expect(reopened.state()).toEqual({ seq: 3, tail: [] });
  });

  it('gives back the numbers of a write that failed', async () => {
    const log = await AuditLog.open(dir, undefined, silentLogger);
    await decide(log, 'a');
    const lost = log.stamp([rec('b')]);
    log.unstamp(lost);
    await decide(log, 'c');
    expect((await log.list({ limit: 10 })).entries.map((e) => [e.seq, e.target])).toEqual([
      [2, 'c'],
      [1, 'a'],
    ]);
  });

  it('refuses a decision when too many entries wait for an audit file that cannot be written', async () => {
    const log = await AuditLog.open(join(dir, 'missing', 'deeper'), undefined, silentLogger);
    for (let i = 0; i < MAX_AUDIT_TAIL; i++) log.stamp([rec(`p${i}`)]);
    await log.flushAppends(); // fails: the folder does not exist; the entries stay in the state part
    expect(log.state().tail).toHaveLength(MAX_AUDIT_TAIL);
    expect(() => log.stamp([rec('one-more')])).toThrow(/cannot be written/);
  });

  it('keeps a bounded trail in memory without a state folder', async () => {
    const log = await AuditLog.open(undefined, undefined, silentLogger);
    await decide(log, 'a', 'b');
    expect((await log.list({ limit: 10 })).entries.map((e) => e.target)).toEqual(['b', 'a']);
  });
});
