import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminClient } from '../../core/admin/client.js';
import { AdminError } from '../../core/admin/contract.js';
import { AdminServer } from '../../core/admin/server.js';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { STATE_FILE, type PersistedState } from '../../core/contact-point/state-store.js';
import { FAST, logger, startHarness, tempDir, waitFor, type Harness } from '../helpers.js';

/**
 * Admin decisions against a real contact point (relay, peers, admin endpoint on loopback): each
 * is on disk when the call returns, they queue one behind the other, and one that cannot be
 * written fails for the caller and leaves the contact point as the file says.
 */

let h: Harness | undefined;
const extra: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of extra.splice(0).reverse()) await c();
  await h?.close();
  h = undefined;
});

/** What the contact point holds in memory, as the state file would hold it. */
function inMemory(cp: ContactPoint): PersistedState {
  return { ...cp.registrar.persisted(), ports: { ...cp.ports.policy.config } } as PersistedState;
}

/** The decisions in a state: what bookkeeping (last seen, counters, LAN address) leaves out. */
function decisions(s: PersistedState): unknown {
  return { ...s, peers: s.peers.map(({ name, publicKey, state, admittedBy, decidedAt, firstSeen }) => ({ name, publicKey, state, admittedBy, decidedAt, firstSeen })) };
}

/** The state file without the audit trail's part (test/integration/audit.test.ts checks that). */
async function onDisk(stateDir: string): Promise<PersistedState> {
  const { audit: _audit, ...rest } = JSON.parse(await readFile(join(stateDir, STATE_FILE), 'utf8')) as PersistedState;
  return rest;
}

async function adminError(p: Promise<unknown>): Promise<AdminError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof AdminError)) throw new Error(`expected an AdminError, got ${String(err)}`);
  return err;
}

describe('admin decisions are durable before they are acknowledged', () => {
  it('each decision is in the file when its call returns, also when many come at once', async () => {
    h = await startHarness();
    const { cp, stateDir } = h;
    await h.registered('printer');
    const scanner = await h.internal('scanner');
    scanner.register();
    await waitFor(() => cp.registrar.get('scanner')?.state === 'pending');
    await h.internal('badge');
    await waitFor(() => cp.registrar.get('badge') !== undefined);

    const revoked = await cp.call('peers:revoke', { name: 'printer' });
    expect(revoked.state).toBe('revoked');
    expect((await onDisk(stateDir)).peers.find((p) => p.name === 'printer')?.state).toBe('revoked');

    // Concurrent decisions of every kind: each answer is in the file as it comes, none lost.
    const answers: string[] = [];
    const note = <T>(what: string, p: Promise<T>): Promise<T> => p.then(async (v) => (answers.push(`${what}:${JSON.stringify(await onDisk(stateDir))}`), v));
    await Promise.all([
      note('approve', cp.call('peers:approve', { name: 'scanner' })),
      note('approve printer', cp.call('peers:approve', { name: 'printer' })),
      note('forget', cp.call('peers:forget', { name: 'badge' })),
      note('policy', cp.call('policy:set', { subnets: ['10.9.0.0/16'], joinCode: 'blue-door-42' })),
      note('ports', cp.call('ports:policy', { targets: ['192.168.7.0/24:80'], listen: ['tcp:8000-8100'] })),
      note('revoke', cp.call('peers:revoke', { name: 'scanner' })),
    ]);
    expect(answers).toHaveLength(6);
    const file = await onDisk(stateDir);
    expect(Object.fromEntries(file.peers.map((p) => [p.name, p.state]))).toEqual({ printer: 'registered', scanner: 'revoked' });
    expect(file.policy).toEqual({ subnets: ['10.9.0.0/16'], joinCodeHash: expect.stringMatching(/^[0-9a-f]{64}$/) as unknown });
    expect(file.ports).toEqual({ targets: ['192.168.7.0/24:80'], listen: ['tcp:8000-8100'] });
    // Equal to memory but for bookkeeping (last seen: a revoked peer's disconnect), which is written within SAVE_DELAY_MS.
    expect(decisions(file)).toEqual(decisions(inMemory(cp)));
    // In order: the revoke of scanner came after its approval, and each answer saw its own decision on disk.
    expect(answers.find((a) => a.startsWith('approve:'))).toContain('"name":"scanner","publicKey"');
    expect(answers.find((a) => a.startsWith('revoke:'))).toMatch(/"name":"scanner"[^}]*"state":"revoked"/);
  });

  it('a decision that cannot be written fails with the reason, and nothing of it happens', async () => {
    h = await startHarness();
    const { cp, stateDir } = h;
    const printer = await h.registered('printer');
    const scanner = await h.internal('scanner');
    scanner.register();
    await waitFor(() => cp.registrar.get('scanner')?.state === 'pending');
    await cp.call('ports:policy', { targets: ['192.168.7.0/24:80'], listen: [] }); // everything so far is on disk
    const before = await onDisk(stateDir);
    expect(before).toEqual(inMemory(cp));
    const events: string[] = [];
    for (const e of ['peer:changed', 'peer:removed', 'policy:changed', 'ports:policy-changed'] as const) cp.subscribe(e, () => events.push(e));

    // The state file's path becomes a folder: the rename fails, for root too.
    const path = join(stateDir, STATE_FILE);
    await rename(path, `${path}.aside`);
    await mkdir(path);

    const admin = new AdminServer({ api: cp, logger });
    await admin.start();
    extra.push(() => admin.stop());
    const client = await AdminClient.connect(admin.wsUrl, admin.token);
    extra.push(() => client.close());

    // One at a time, then several at once (those go to disk in one write, and fail together).
    const errors = [await adminError(client.call('peers:reject', { name: 'scanner' })), await adminError(client.call('peers:revoke', { name: 'printer' }))];
    errors.push(
      ...(await Promise.all([
        adminError(client.call('peers:approve', { name: 'scanner' })),
        adminError(client.call('peers:forget', { name: 'printer' })),
        adminError(client.call('policy:set', { subnets: ['10.0.0.0/8'] })),
        adminError(client.call('ports:policy', { targets: [], listen: [] })),
      ])),
    );
    for (const err of errors) {
      expect(err.code).toBe('NOT_SAVED');
      expect(err.message).toBe(`nothing changed: could not save ${path}: EISDIR: illegal operation on a directory`);
    }
    // Nothing happened: the revoked peer is still connected and registered at the relay, no events went out.
    expect(printer.connected).toBe(true);
    expect(h.relay.peersOf('acme-hq')).toEqual(['printer']);
    expect(events).toEqual([]);
    expect(inMemory(cp)).toEqual(before);
    expect({ ...(JSON.parse(await readFile(`${path}.aside`, 'utf8')) as PersistedState), audit: undefined }).toEqual({ ...before, audit: undefined });

    // A bad parameter is still INVALID_PARAMS (checked before any write), and a missing peer NOT_FOUND.
    expect((await adminError(client.call('ports:policy', { targets: ['nonsense'], listen: [] }))).code).toBe('INVALID_PARAMS');
    expect((await adminError(client.call('peers:approve', { name: 'nobody' }))).code).toBe('NOT_FOUND');

    // The file is back: the same revoke goes through, then happens (the peer is cut off).
    await rm(path, { recursive: true });
    await rename(`${path}.aside`, path);
    expect((await client.call('peers:revoke', { name: 'printer' })).state).toBe('revoked');
    expect((await onDisk(stateDir)).peers.find((p) => p.name === 'printer')?.state).toBe('revoked');
    await waitFor(() => !printer.connected, 5_000, 'printer cut off');
  });

  it('a registration policy given at start is saved at once, as if the admin had set it', async () => {
    await using dir = await tempDir('cp-durable-');
    const cp = await ContactPoint.create({ id: 'acme-hq', relayUrl: 'ws://127.0.0.1:9/v1', secret: 'x', stateDir: dir.path, logger, timing: FAST, policy: { subnets: ['10.1.0.0/16'] } });
    extra.push(() => cp.stop());
    expect((await onDisk(dir.path)).policy).toEqual({ subnets: ['10.1.0.0/16'] });
  });
});
