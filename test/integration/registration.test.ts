import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { STATE_FILE } from '../../core/contact-point/state-store.js';
import { PeerIdentity } from '../../core/peer/identity.js';
import { PeerClient } from '../../core/peer/peer-client.js';
import { Status } from '../../core/protocol/status.js';
import { FAST, logger, startHarness, waitFor, type Harness } from '../helpers.js';

let h: Harness | undefined;
const extra: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of extra.splice(0).reverse()) await c();
  await h?.close();
  h = undefined;
});

describe('peer registration', () => {
  it('walks unregistered -> pending -> registered -> revoked, telling the peer and the relay each time', async () => {
    h = await startHarness();
    const seen: string[] = [];
    const p = await h.internal('printer');
    p.on('registration', (s) => seen.push(s));
    expect(p.registration).toBe('unregistered');
    expect(h.cp.registrar.get('printer')?.state).toBe('unregistered');
    p.register();
    await p.waitForRegistration('pending');
    expect(h.relay.peersOf('acme-hq')).toEqual([]);
    const view = await h.cp.call('peers:approve', { name: 'printer' });
    expect(view).toMatchObject({ state: 'registered', admittedBy: 'admin', online: true, lanAddress: '127.0.0.1' });
    await p.waitForRegistration('registered');
    await waitFor(() => h!.relay.peersOf('acme-hq').includes('printer'));
    await h.cp.call('peers:revoke', { name: 'printer' });
    await waitFor(() => !h!.relay.peersOf('acme-hq').includes('printer'));
    await waitFor(() => p.status().state === 'stopped');
    expect(seen).toEqual(['pending', 'registered', 'revoked']);
  });

  it('keeps decisions across a contact point restart, and re-announces registered peers', async () => {
    h = await startHarness();
    const id = PeerIdentity.generate();
    const printer = await h.internal('printer', { identity: id });
    printer.register();
    await waitFor(() => h!.cp.registrar.get('printer')?.state === 'pending');
    await h.cp.call('peers:approve', { name: 'printer' });
    const bad = await h.registered('badge-reader');
    await h.cp.call('peers:revoke', { name: 'badge-reader' });
    await waitFor(() => !bad.connected);
    await printer.stop();
    await h.cp.stop();

    const file = JSON.parse(await readFile(join(h.stateDir, STATE_FILE), 'utf8')) as { version: number; peers: { name: string; state: string }[] };
    expect(file.version).toBe(1);
    expect(Object.fromEntries(file.peers.map((p) => [p.name, p.state]))).toEqual({ printer: 'registered', 'badge-reader': 'revoked' });

    const cp2 = await ContactPoint.create({ id: 'acme-hq', relayUrl: h.relay.url, secret: h.cpSecret, stateDir: h.stateDir, peerHost: '127.0.0.1', logger, timing: FAST });
    await cp2.start();
    extra.push(() => cp2.stop());
    await waitFor(() => cp2.gateway.connected);
    await waitFor(() => h!.relay.peersOf('acme-hq').join() === 'printer', 5_000, 'registered peers re-announced');
    const again = new PeerClient({ role: 'peer', url: cp2.peerPortUrl, name: 'printer', identity: id, logger, timing: FAST });
    again.start();
    extra.push(() => again.stop());
    await again.ready();
    expect(again.registration).toBe('registered');
    const alice = await h.external('alice');
    await alice.send('printer@acme-hq', 'after restart');
    expect(again.stats.received).toBe(1);
  });

  it('auto-approves by subnet and by join code, and says which rule admitted the peer', async () => {
    h = await startHarness({ cp: { policy: { subnets: ['10.9.0.0/16'], joinCode: 'blue-harbour-42' } } });
    const wrong = await h.internal('guess');
    wrong.register({ joinCode: 'wrong' });
    await wrong.waitForRegistration('pending');
    const right = await h.internal('kiosk');
    right.register({ joinCode: 'blue-harbour-42' });
    await right.waitForRegistration('registered');
    expect(h.cp.registrar.get('kiosk')?.admittedBy).toBe('policy:join-code');

    await h.cp.call('policy:set', { subnets: ['127.0.0.0/8'] });
    const local = await h.internal('thermostat');
    local.register();
    await local.waitForRegistration('registered');
    expect(h.cp.registrar.get('thermostat')?.admittedBy).toBe('policy:subnet 127.0.0.0/8');

    await h.cp.stop();
    const text = await readFile(join(h.stateDir, STATE_FILE), 'utf8');
    expect(text).not.toContain('blue-harbour-42');
    expect(text).toContain('joinCodeHash');
  });

  it('rejects back to unregistered, keeps revoked sticky, and forgets a name on request', async () => {
    h = await startHarness();
    const p = await h.internal('printer');
    p.register();
    await p.waitForRegistration('pending');
    await h.cp.call('peers:reject', { name: 'printer' });
    await p.waitForRegistration('unregistered');
    await expect(h.cp.call('peers:reject', { name: 'printer' })).rejects.toMatchObject({ code: 'CONFLICT' });
    await expect(h.cp.call('peers:approve', { name: 'nobody' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(h.cp.call('peers:approve', { name: 'Bad Name' } as never)).rejects.toMatchObject({ code: 'INVALID_PARAMS' });

    const r = await h.registered('router');
    await h.cp.call('peers:revoke', { name: 'router' });
    await waitFor(() => !r.connected);
    await h.cp.call('peers:forget', { name: 'printer' });
    expect(h.cp.registrar.get('printer')).toBeUndefined();
    // Cut off with a reason, and the SDK does not knock again by itself.
    await waitFor(() => p.status().state === 'stopped');
    expect(p.status().lastErrorCode).toBe(Status.REVOKED);
    expect(r.status()).toMatchObject({ state: 'stopped', lastErrorCode: Status.REVOKED });
  });
});
