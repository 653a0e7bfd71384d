import { mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AdminError } from '../../core/admin/contract.js';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { STATE_FILE, type PersistedState } from '../../core/contact-point/state-store.js';
import type { InboundMessage } from '../../core/peer/peer-client.js';
import { PeerClient } from '../../core/peer/peer-client.js';
import { PeerIdentity } from '../../core/peer/identity.js';
import { Status } from '../../core/protocol/status.js';
import { FAST, logger, refusal, startHarness, waitFor, type Harness } from '../helpers.js';

/**
 * Senders here send plain: the rules' size limits and the content check are about payload bytes
 * the contact point can read, and a sealed payload is opaque to it (PROTOCOL.md 9.6, 19).
 */
const PLAIN = { seal: 'off' } as const;

const CHECK = fileURLToPath(new URL('../fixtures/content-check.mjs', import.meta.url));

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

async function adminError(p: Promise<unknown>): Promise<AdminError> {
  try {
    await p;
  } catch (err: unknown) {
    if (err instanceof AdminError) return err;
    throw err;
  }
  throw new Error('the call succeeded');
}

describe('access rules: who may reach whom', () => {
  it('lets through only the senders on the peer list or the office default: external addresses and patterns, other offices, LAN peers', async () => {
    const got: string[] = [];
    await h.registered('printer', (m) => void got.push(`${m.from}: ${m.payload.toString()}`));
    const scanner = await h.registered('scanner');
    const badge = await h.registered('badge');
    const tech = await h.external('tech');
    const alice = await h.external('alice');
    // Another office with a LAN peer of its own, through the same relay.
    const branch = await h.contactPoint('branch');
    const clerk = new PeerClient({ role: 'peer', url: branch.peerPortUrl, name: 'clerk', identity: PeerIdentity.generate(), logger, timing: FAST, ackTimeoutMs: 500 });
    clerk.start();
    await clerk.ready();
    clerk.register();
    await waitFor(() => branch.registrar.get('clerk')?.state === 'pending');
    await branch.call('peers:approve', { name: 'clerk' });
    await clerk.waitForRegistration('registered');

    try {
      // Before any rule, everyone may.
      await alice.send('printer@acme-hq', 'open door');
      await h.cp.call('rules:set', { allow: ['tech@relay', '*@branch', 'scanner@acme-hq'] });

      await tech.send('printer@acme-hq', 'from tech');
      await clerk.send('printer@acme-hq', 'from the branch');
      await scanner.send('printer@acme-hq', 'from scanner');
      const refused = [await refusal(alice.send('printer@acme-hq', 'x')), await refusal(badge.send('printer@acme-hq', 'x'))];
      expect(refused.map((e) => [e.code, e.reason])).toEqual([
        [Status.NOT_ALLOWED, 'alice@relay may not message printer@acme-hq'],
        [Status.NOT_ALLOWED, 'badge@acme-hq may not message printer@acme-hq'],
      ]);
      // A sender the office does not let in learns nothing of the peer list: the same answer for a name that does not exist.
      const ghost = await refusal(alice.send('ghost@acme-hq', 'x'));
      expect([ghost.code, ghost.reason]).toEqual([Status.NOT_ALLOWED, 'alice@relay may not message ghost@acme-hq']);

      // The peer's own list replaces the office default for it: every external peer, no one else.
      await h.cp.call('rules:set', { peer: 'printer', allow: ['*@relay'] });
      await alice.send('printer@acme-hq', 'now alice may');
      expect((await refusal(scanner.send('printer@acme-hq', 'x'))).code).toBe(Status.NOT_ALLOWED);
      expect(got).toEqual(['alice@relay: open door', 'tech@relay: from tech', 'clerk@branch: from the branch', 'scanner@acme-hq: from scanner', 'alice@relay: now alice may']);

      // The refusals the rules caused: per peer, and in the flow and the history with the admin's detail.
      const r = await h.cp.call('rules:refusals', { peer: 'printer' });
      expect(r.counts).toEqual({ NOT_ALLOWED: 3 });
      expect(r.recent.map((x) => x.from)).toEqual(['scanner@acme-hq', 'badge@acme-hq', 'alice@relay']);
      await h.cp.history!.flush();
      const page = await h.cp.call('history:query', { reason: 'NOT_ALLOWED' });
      expect(page.entries.map((e) => [e.from, e.to, e.reason])).toEqual([
        ['scanner@acme-hq', 'printer@acme-hq', "scanner@acme-hq may not message printer@acme-hq (not on the peer's allow list)"],
        ['alice@relay', 'ghost@acme-hq', "alice@relay may not message ghost@acme-hq (not on the office's allow list)"],
        ['badge@acme-hq', 'printer@acme-hq', "badge@acme-hq may not message printer@acme-hq (not on the office's allow list)"],
        ['alice@relay', 'printer@acme-hq', "alice@relay may not message printer@acme-hq (not on the office's allow list)"],
      ]);
    } finally {
      await clerk.stop();
    }
  });

  it('limits size and rate per peer, its own or the office default', async () => {
    await h.registered('printer');
    await h.registered('scanner');
    const alice = await h.external('alice', PLAIN);
    await h.cp.call('rules:set', { maxBytes: 8 });
    await h.cp.call('rules:set', { peer: 'printer', maxBytes: 4, perMinute: 2 });

    const big = await refusal(alice.send('printer@acme-hq', 'hello'));
    expect([big.code, big.reason]).toEqual([Status.TOO_LARGE, '5 bytes; printer@acme-hq takes at most 4']);
    await alice.send('scanner@acme-hq', 'hello'); // the office default: 8
    expect((await refusal(alice.send('scanner@acme-hq', 'hello world'))).reason).toBe('11 bytes; scanner@acme-hq takes at most 8');

    await alice.send('printer@acme-hq', 'a');
    await alice.send('printer@acme-hq', 'b');
    const rate = await refusal(alice.send('printer@acme-hq', 'c', { deadlineMs: 300 }));
    expect(rate.code).toBe(Status.RATE_LIMITED);
    expect(rate.reason).toMatch(/^printer@acme-hq takes at most 2 messages a minute \(gave up after \d+ attempts\)$/);
    await alice.send('scanner@acme-hq', 'still'); // its own bucket (none: no rate set)
    expect((await h.cp.call('rules:refusals', { peer: 'printer' })).counts).toMatchObject({ TOO_LARGE: 1 });
    expect((await h.cp.call('rules:refusals', { peer: 'printer' })).counts.RATE_LIMITED).toBeGreaterThanOrEqual(1);

    // `{peer}` alone clears the peer's own rules: the office default applies again.
    const view = await h.cp.call('rules:set', { peer: 'printer' });
    expect(view).toMatchObject({ office: { maxBytes: 8 }, peers: [] });
    await alice.send('printer@acme-hq', 'hello');
  });

  it('keeps the rules on disk and audited before the call returns; a failed write is NOT_SAVED and changes nothing', async () => {
    await h.cp.call('rules:set', { peer: 'printer', allow: ['tech@relay'], perMinute: 30 }, 'cli');
    await h.cp.call('rules:check', { check: { kind: 'json-depth', depth: 16 } }, 'gui');
    const file = JSON.parse(await readFile(join(h.stateDir, STATE_FILE), 'utf8')) as PersistedState;
    expect(file.access).toEqual({ office: {}, peers: [{ name: 'printer', allow: ['tech@relay'], perMinute: 30 }], check: { kind: 'json-depth', depth: 16 } });
    const audit = await h.cp.call('audit:list', {});
    expect(audit.entries.slice(0, 2).map((e) => [e.action, e.surface, e.target, e.after])).toEqual([
      ['rules:check', 'gui', 'content check', { kind: 'json-depth', depth: 16 }],
      ['rules:set', 'cli', 'printer', { name: 'printer', allow: ['tech@relay'], perMinute: 30 }],
    ]);

    // A bad pattern is INVALID_PARAMS (the schema names it).
    expect((await adminError(h.cp.call('rules:set', { allow: ['no at sign'] }))).code).toBe('INVALID_PARAMS');

    // The state file's path becomes a folder: the write fails, for root too.
    const path = join(h.stateDir, STATE_FILE);
    await rename(path, `${path}.aside`);
    await mkdir(path);
    const err = await adminError(h.cp.call('rules:set', { allow: [] }));
    expect(err.code).toBe('NOT_SAVED');
    expect(h.cp.rules.view().office).toEqual({});
    expect((await adminError(h.cp.call('rules:check', { check: { kind: 'none' } }))).code).toBe('NOT_SAVED');
    expect(h.cp.rules.view().check).toEqual({ kind: 'json-depth', depth: 16 });
  });

  it('reads the rules back at start', async () => {
    await h.cp.call('rules:set', { allow: ['*@relay'], maxBytes: 100 });
    await h.cp.call('rules:set', { peer: 'printer', allow: ['tech@relay'] });
    const again = await ContactPoint.create({ id: 'other', relayUrl: h.relay.url, secret: 'x', stateDir: h.stateDir, logger });
    try {
      expect(again.rules.view()).toEqual({ office: { allow: ['*@relay'], maxBytes: 100 }, peers: [{ name: 'printer', allow: ['tech@relay'] }], check: { kind: 'none' } });
      expect(again.snapshot().rules).toEqual(again.rules.view());
    } finally {
      await again.stop();
    }
  });
});

describe('the content check', () => {
  it('passes each answer on to the sender: allow, refuse with the reason, time out, crash (fail-closed)', async () => {
    const got: string[] = [];
    await h.registered('printer', (m: InboundMessage) => void got.push(m.payload.toString()));
    const alice = await h.external('alice', { ackTimeoutMs: 5_000, ...PLAIN }); // one copy of each message at the check
    await h.cp.call('rules:check', { check: { kind: 'command', argv: [process.execPath, CHECK], timeoutMs: 1_000, failure: 'closed', concurrency: 4 } });

    await alice.send('printer@acme-hq', 'ok 1');
    const bad = await refusal(alice.send('printer@acme-hq', 'bad word'));
    expect([bad.code, bad.reason]).toEqual([Status.CONTENT_REFUSED, 'no bad words here (alice@relay to printer@acme-hq)']);
    const slow = await refusal(alice.send('printer@acme-hq', 'slow one'));
    expect([slow.code, slow.reason]).toEqual([Status.CONTENT_REFUSED, 'check timed out']);
    const crash = await refusal(alice.send('printer@acme-hq', 'crash now'));
    expect([crash.code, crash.reason]).toEqual([Status.CONTENT_REFUSED, 'check failed: the check command exited (code 3)']);
    // It is started again (at most once a second) and answers as before.
    await new Promise((r) => setTimeout(r, 1_500));
    await alice.send('printer@acme-hq', 'ok 2');
    expect(got).toEqual(['ok 1', 'ok 2']);
    expect((await h.cp.call('rules:refusals', { peer: 'printer' })).counts).toEqual({ CONTENT_REFUSED: 3 });
  });

  it('delivers when the check times out or crashes if the admin chose fail-open; its own refusals still refuse', async () => {
    const got: string[] = [];
    await h.registered('printer', (m: InboundMessage) => void got.push(m.payload.toString()));
    const alice = await h.external('alice', { ackTimeoutMs: 5_000, ...PLAIN }); // one copy of each message at the check
    await h.cp.call('rules:check', { check: { kind: 'command', argv: [process.execPath, CHECK], timeoutMs: 1_000, failure: 'open', concurrency: 4 } });
    await alice.send('printer@acme-hq', 'slow but delivered');
    await alice.send('printer@acme-hq', 'crash but delivered');
    await new Promise((r) => setTimeout(r, 1_500)); // CHECK_RESTART_MS: meanwhile every message is a failed check, delivered
    expect((await refusal(alice.send('printer@acme-hq', 'bad anyway'))).code).toBe(Status.CONTENT_REFUSED);
    expect(got).toEqual(['slow but delivered', 'crash but delivered']);
  });

  it('refuses a check command that cannot run with check failed (fail-closed)', async () => {
    await h.registered('printer');
    const alice = await h.external('alice', { ackTimeoutMs: 5_000, ...PLAIN }); // one copy of each message at the check
    await h.cp.call('rules:check', { check: { kind: 'command', argv: [join(h.stateDir, 'no-such-program')], timeoutMs: 1_000, failure: 'closed', concurrency: 1 } });
    const err = await refusal(alice.send('printer@acme-hq', 'x'));
    expect(err.code).toBe(Status.CONTENT_REFUSED);
    expect(err.reason).toMatch(/^check failed: .*ENOENT/);
  });

  it('ships a built-in check: maximum JSON depth, also for LAN-to-LAN messages', async () => {
    const got: string[] = [];
    await h.registered('printer', (m: InboundMessage) => void got.push(m.payload.toString()));
    const scanner = await h.registered('scanner', undefined, PLAIN);
    await h.cp.call('rules:check', { check: { kind: 'json-depth', depth: 3 } });
    await scanner.send('printer@acme-hq', '{"a":[{"b":"[[[[[[ in a string"}]}');
    const deep = await refusal(scanner.send('printer@acme-hq', '[[[[1]]]]'));
    expect([deep.code, deep.reason]).toEqual([Status.CONTENT_REFUSED, 'JSON nested deeper than 3 levels']);
    await h.cp.call('rules:check', { check: { kind: 'none' } });
    await scanner.send('printer@acme-hq', '[[[[1]]]]');
    expect(got).toEqual(['{"a":[{"b":"[[[[[[ in a string"}]}', '[[[[1]]]]']);
  });

  it('does not stall messages to other peers while one peer\'s checks hang', async () => {
    await h.registered('printer');
    const got: string[] = [];
    await h.registered('scanner', (m: InboundMessage) => void got.push(m.payload.toString()));
    // No retransmissions while the checks hang: each message is at the check once.
    const alice = await h.external('alice', { ackTimeoutMs: 10_000, ...PLAIN });
    await h.cp.call('rules:check', { check: { kind: 'command', argv: [process.execPath, CHECK], timeoutMs: 1_000, failure: 'closed', concurrency: 4 } });
    // Printer's hanging messages hold all the check slots one peer may take (half), more of them queued behind.
    const stuck = Array.from({ length: 4 }, (_, i) => refusal(alice.send('printer@acme-hq', `slow ${i}`, { deadlineMs: 10_000 })));
    await waitFor(() => h.cp.gate.pending === 4, 5_000, 'printer messages at the check');
    await alice.send('scanner@acme-hq', 'through');
    expect(got).toEqual(['through']);
    expect(h.cp.gate.pending).toBeGreaterThan(0); // printer's were still waiting when scanner's went through
    const errors = await Promise.all(stuck);
    expect(errors.map((e) => [e.code, e.reason])).toEqual(Array.from({ length: 4 }, () => [Status.CONTENT_REFUSED, 'check timed out']));
  });
});
