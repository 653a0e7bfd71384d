import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { RulesView } from '../../core/admin/contract.js';
import { cliSuite, operatorSetup } from './cli-process.js';

const CHECK = fileURLToPath(new URL('../fixtures/content-check.mjs', import.meta.url));

const suite = cliSuite();
const { cli, start } = suite;

describe('contact-point peer lookup', () => {
  it('says whether the office is connected and the peer online, hides it from a sender the rules do not let in, and --watch prints every change', async () => {
    const { cpState, asTech } = await operatorSetup(suite, { targets: [] });
    const state = ['--state', cpState];
    const status = await cli(['status', '--json', ...state]);
    const peerPort = (JSON.parse(status.stdout) as { contactPoint: { peerPortUrl: string } }).contactPoint.peerPortUrl;

    const before = await cli(['peer', 'lookup', 'printer@acme-hq', ...asTech]);
    expect(before.code, before.stderr).toBe(0);
    expect(before.stdout.trim()).toBe('printer@acme-hq: office connected; peer unregistered');
    const unknown = await cli(['peer', 'lookup', 'printer@nowhere', '--json', ...asTech]);
    expect(JSON.parse(unknown.stdout)).toEqual({ event: 'lookup', address: 'printer@nowhere', office: 'unknown' });

    const watch = await start(['peer', 'lookup', 'printer@acme-hq', '--watch', '--json', ...asTech]);
    await watch.waitForEvent((e) => e.event === 'presence' && e.peer === 'unregistered', 'the first state');
    const printer = await start(['peer', 'join', '--cp', peerPort, '--name', 'printer', '--register', '--json', '--state', join(suite.home, 'peer')]);
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'pending', 'pending state');
    expect((await cli(['peers', 'approve', 'printer', ...state])).code).toBe(0);
    await watch.waitForEvent((e) => e.event === 'presence' && e.peer === 'online', 'online');
    expect((await cli(['rules', 'set', '--allow', 'alice@relay', ...state])).code).toBe(0);
    await watch.waitForEvent((e) => e.event === 'presence' && e.peer === 'hidden', 'hidden');
    const hidden = await cli(['peer', 'lookup', 'printer@acme-hq', ...asTech]);
    expect(hidden.stdout.trim()).toBe('printer@acme-hq: office connected; peer hidden');
    expect(await watch.stop('SIGTERM')).toBe(0);

    const bad = await cli(['peer', 'lookup', 'not-an-address', ...asTech]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('expected NAME@DOMAIN');
  });
});

describe('contact-point rules', () => {
  it('sets who may message a peer, its limits and the content check; the sender sees the refusal, rules refusals lists it', async () => {
    const { cpState, asTech } = await operatorSetup(suite, { targets: [] });
    const state = ['--state', cpState];
    const status = await cli(['status', '--json', ...state]);
    const peerPort = (JSON.parse(status.stdout) as { contactPoint: { peerPortUrl: string } }).contactPoint.peerPortUrl;
    const printer = await start(['peer', 'join', '--cp', peerPort, '--name', 'printer', '--register', '--json', '--state', join(suite.home, 'peer')]);
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'pending', 'pending state');
    expect((await cli(['peers', 'approve', 'printer', ...state])).code).toBe(0);
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'registered', 'registered state');

    const empty = await cli(['rules', ...state]);
    expect(empty.code, empty.stderr).toBe(0);
    expect(empty.stdout).toContain('office default  none (anyone may message a peer without rules of its own)');

    const set = await cli(['rules', 'set', '--peer', 'printer', '--allow', 'alice@relay', '--allow', '*@branch', '--max-bytes', '100', ...state]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout.trim()).toBe('printer: allow alice@relay *@branch; at most 100 bytes');

    const send = (text: string): Promise<{ code: number | null; stderr: string; stdout: string }> => cli(['peer', 'send', ...asTech, '--seal', 'off', '--to', 'printer@acme-hq', text]); // plain: the content check reads the payload
    const notAllowed = await send('hello');
    expect(notAllowed.code).toBe(3);
    expect(notAllowed.stderr).toContain('refused: NOT_ALLOWED (24): tech@relay may not message printer@acme-hq');

    expect((await cli(['rules', 'set', '--peer', 'printer', '--allow', '*@relay', ...state])).code).toBe(0);
    const check = await cli(['rules', 'check', 'command', '--timeout-ms', '3000', '--fail', 'closed', '--concurrency', '2', ...state, '--', process.execPath, CHECK]);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout.trim()).toBe(`content check: command ${process.execPath} ${CHECK} (3000 ms a message, fail-closed, 2 at once)`);
    const refused = await send('bad idea');
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('refused: CONTENT_REFUSED (25): no bad words here (tech@relay to printer@acme-hq)');
    const ok = await send('fine');
    expect(ok.code, ok.stderr).toBe(0);

    const shown = await cli(['rules', '--json', ...state]);
    expect(JSON.parse(shown.stdout) as RulesView).toEqual({
      office: {},
      peers: [{ name: 'printer', allow: ['*@relay'] }],
      check: { kind: 'command', argv: [process.execPath, CHECK], timeoutMs: 3000, failure: 'closed', concurrency: 2 },
    });
    const refusals = await cli(['rules', 'refusals', 'printer', ...state]);
    expect(refusals.code, refusals.stderr).toBe(0);
    expect(refusals.stdout).toMatch(/^printer: 1 NOT_ALLOWED, 1 CONTENT_REFUSED$/m);
    expect(refusals.stdout).toMatch(/Z\s+tech@relay\s+no bad words here/);

    // Bad input: a clear error, exit 2, nothing changed.
    for (const args of [['rules', 'set', '--allow', 'no-at-sign'], ['rules', 'check', 'json-depth'], ['rules', 'check', 'command'], ['rules', 'check', 'none', '--depth', '3']]) {
      const bad = await cli([...args, ...state]);
      expect(bad.code, args.join(' ')).toBe(2);
    }
    const audit = await cli(['audit', '--json', ...state]);
    const actions = audit.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { action: string; surface: string }).action);
    expect(actions.slice(0, 3)).toEqual(['rules:check', 'rules:set', 'rules:set']);
  });
});
