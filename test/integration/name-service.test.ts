import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PresenceBody } from '../../core/protocol/frames.js';
import { startHarness, waitFor, type Harness } from '../helpers.js';

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

describe('the relay as a name service', () => {
  it('answers lookups for connected, disconnected, unknown offices and online, offline, unregistered and hidden peers', async () => {
    const printer = await h.registered('printer');
    await h.internal('badge'); // connected, never registered
    const alice = await h.external('alice');
    await h.credentials.add('contact-point', 'branch'); // an office that never connected

    expect(await alice.lookup('printer@acme-hq')).toEqual({ address: 'printer@acme-hq', office: 'connected', peer: 'online' });
    expect(await alice.lookup('badge@acme-hq')).toEqual({ address: 'badge@acme-hq', office: 'connected', peer: 'unregistered' });
    expect(await alice.lookup('ghost@acme-hq')).toEqual({ address: 'ghost@acme-hq', office: 'connected', peer: 'unregistered' });
    expect(await alice.lookup('clerk@branch')).toEqual({ address: 'clerk@branch', office: 'disconnected' });
    expect(await alice.lookup('x@nowhere')).toEqual({ address: 'x@nowhere', office: 'unknown' });
    // External peers: the relay answers by itself.
    await h.credentials.add('external', 'bob');
    expect(await alice.lookup('bob@relay')).toEqual({ address: 'bob@relay', office: 'connected', peer: 'offline' });
    expect(await alice.lookup('alice@relay')).toEqual({ address: 'alice@relay', office: 'connected', peer: 'online' });

    await printer.stop();
    await waitFor(() => !h.cp.registrar.isOnline('printer'));
    expect(await alice.lookup('printer@acme-hq')).toEqual({ address: 'printer@acme-hq', office: 'connected', peer: 'offline' });

    // The office hides its peers from senders it does not let in: the same answer for every name.
    await h.cp.call('rules:set', { allow: ['tech@relay'] });
    const tech = await h.external('tech');
    for (const name of ['printer', 'badge', 'ghost']) {
      expect(await alice.lookup(`${name}@acme-hq`)).toEqual({ address: `${name}@acme-hq`, office: 'connected', peer: 'hidden' });
    }
    expect(await tech.lookup('printer@acme-hq')).toEqual({ address: 'printer@acme-hq', office: 'connected', peer: 'offline' });
    // A peer's own rules count for it.
    await h.cp.call('rules:set', { peer: 'printer', allow: ['*@relay'] });
    expect(await alice.lookup('printer@acme-hq')).toEqual({ address: 'printer@acme-hq', office: 'connected', peer: 'offline' });

    // The office goes away: the relay answers the office's state alone.
    await h.cp.stop();
    await waitFor(() => h.relay.status().tunnels === 0, 5_000, 'tunnel gone');
    expect(await alice.lookup('printer@acme-hq')).toEqual({ address: 'printer@acme-hq', office: 'disconnected' });
  });

  it('pushes presence changes to subscribers: online, offline, revoked, the office going away, and hides from those the rules do not let in', async () => {
    const alice = await h.external('alice');
    const tech = await h.external('tech');
    const seen: Record<string, PresenceBody[]> = { alice: [], tech: [] };
    alice.subscribePresence('printer@acme-hq', (p) => seen.alice!.push(p));
    tech.subscribePresence('printer@acme-hq', (p) => seen.tech!.push(p));
    const last = (who: string): PresenceBody | undefined => seen[who]!.at(-1);
    await waitFor(() => last('alice')?.peer === 'unregistered' && last('tech')?.peer === 'unregistered', 5_000, 'the first state');

    const printer = await h.registered('printer');
    await waitFor(() => last('alice')?.peer === 'online', 5_000, 'online');
    await printer.stop();
    await waitFor(() => last('alice')?.peer === 'offline', 5_000, 'offline');

    // Rules that let only tech in: alice's answer becomes hidden, tech's stays.
    await h.cp.call('rules:set', { allow: ['tech@relay'] });
    await waitFor(() => last('alice')?.peer === 'hidden', 5_000, 'hidden from alice');
    expect(last('tech')?.peer).toBe('offline');
    await h.cp.call('peers:revoke', { name: 'printer' });
    await waitFor(() => last('tech')?.peer === 'unregistered', 5_000, 'revoked: unregistered');

    const before = { alice: seen.alice!.length, tech: seen.tech!.length };
    expect(seen.alice!.map((p) => `${p.office}:${p.peer ?? '-'}`)).toEqual(['connected:unregistered', 'connected:online', 'connected:offline', 'connected:hidden']);
    expect(seen.tech!.map((p) => `${p.office}:${p.peer ?? '-'}`)).toEqual(['connected:unregistered', 'connected:online', 'connected:offline', 'connected:unregistered']);

    // The relay restarts: the SDK subscribes again on its new session and hears the state as it is.
    await h.restartRelay();
    await waitFor(() => h.cp.gateway.connected && alice.connected && tech.connected, 10_000, 'all back');
    await waitFor(() => seen.alice!.length > before.alice && last('alice')?.peer === 'hidden' && last('tech')?.peer === 'unregistered', 10_000, 'state after the relay came back');

    // The office goes away: an office-level change, pushed with no peer state.
    await h.cp.stop();
    await waitFor(() => last('alice')?.office === 'disconnected' && last('tech')?.office === 'disconnected', 5_000, 'office disconnected');
    expect(last('alice')).toEqual({ address: 'printer@acme-hq', office: 'disconnected' });
    for (const p of [...seen.alice!, ...seen.tech!]) expect(p.address).toBe('printer@acme-hq');
  });
});
