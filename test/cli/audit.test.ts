import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AuditEntry } from '../../core/admin/contract.js';
import { cliSuite, relayForServe } from './cli-process.js';

/**
 * `contact-point audit` against a real `serve`: decisions made with the CLI are recorded as
 * CLI, with before/after, and are still there after kill -9 and a restart.
 */

const suite = cliSuite();
const { cli, start } = suite;

describe('contact-point audit', () => {
  it('lists CLI decisions (text and JSON lines, one peer), and they survive kill -9', async () => {
    const { serveArgs, cpState } = await relayForServe(suite);
    const serve = await start(serveArgs);

    const empty = await cli(['audit', '--state', cpState]);
    expect(empty.code, empty.stderr).toBe(0);
    expect(empty.stderr).toContain('no audit entries yet');

    const printer = await start(['peer', 'join', '--cp', String(serve.ready.peerPortUrl), '--name', 'printer', '--register', '--json', '--state', join(suite.home, 'peer')]);
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'pending', 'pending state');
    for (const args of [['peers', 'approve', 'printer'], ['peers', 'revoke', 'printer'], ['ports', 'policy', 'set', '--target', '192.168.1.20/32:80']]) {
      const r = await cli([...args, '--state', cpState]);
      expect(r.code, r.stderr).toBe(0);
    }
    // Straight after the last decision returned: kill -9, start again.
    expect(await serve.stop('SIGKILL')).toBeNull();
    await start(serveArgs);

    const text = await cli(['audit', '--state', cpState]);
    expect(text.code, text.stderr).toBe(0);
    const lines = text.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^#\s+WHEN \(UTC\)\s+VIA\s+WHAT\s+CHANGE$/);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^3\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+CLI\s+set the port policy\s+targets: none → 192\.168\.1\.20\/32:80$/),
      expect.stringMatching(/^2\s+.+Z\s+CLI\s+revoked printer\s+state: registered → revoked; admittedBy: admin → -$/),
      expect.stringMatching(/^1\s+.+Z\s+CLI\s+approved printer\s+state: pending → registered; admittedBy: - → admin$/),
    ]);

    const json = await cli(['audit', '--json', '--peer', 'printer', '--state', cpState]);
    expect(json.code, json.stderr).toBe(0);
    const entries = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as AuditEntry);
    expect(entries.map((e) => [e.seq, e.action, e.surface, e.before?.state, e.after?.state])).toEqual([
      [2, 'peer:revoke', 'cli', 'registered', 'revoked'],
      [1, 'peer:approve', 'cli', 'pending', 'registered'],
    ]);

    const bad = await cli(['audit', '--limit', '0', '--state', cpState]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--limit/);
  });

  it('audits a serve flag change once, as CLI, and a restart with the same flags adds nothing (ports, history retention)', async () => {
    const { serveArgs, cpState } = await relayForServe(suite);
    const flags = ['--allow-target', '192.168.1.20/32:80', '--history-entries', '5000'];
    const first = await start([...serveArgs, ...flags]);
    expect(await first.stop('SIGTERM')).toBe(0);
    await start([...serveArgs, ...flags]); // running while `audit` asks it
    const json = await cli(['audit', '--json', '--state', cpState]);
    expect(json.code, json.stderr).toBe(0);
    const entries = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as AuditEntry);
    expect(entries.map((e) => [e.action, e.surface]).sort()).toEqual([
      ['history:retention', 'cli'],
      ['ports:policy', 'cli'],
    ]);
  });
});
