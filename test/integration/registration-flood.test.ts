import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { FloodView, PeerView } from '../../core/admin/contract.js';
import { STATE_FILE } from '../../core/contact-point/state-store.js';
import { Status } from '../../core/protocol/status.js';
import { createLogger } from '../../core/runtime/logger.js';
import { closeFloodSockets, flood, rawPeer } from '../flood-client.js';
import { startHarness, waitFor, type Harness } from '../helpers.js';

let h: Harness | undefined;
afterEach(async () => {
  closeFloodSockets();
  await h?.close();
  h = undefined;
});

/** Requests from `address` the admin has not decided on: pending, or unregistered and never rejected. */
function undecidedFrom(hh: Harness, address: string): number {
  const undecided = (p: PeerView): boolean => p.state === 'pending' || (p.state === 'unregistered' && p.decidedAt === undefined);
  return hh.cp.registrar.views().filter((p) => undecided(p) && p.lanAddress === address).length;
}

describe('registration flood', () => {
  it('caps undecided requests per source address, evicting the oldest, and a legitimate newcomer still registers', async () => {
    const perAddress = 16;
    // The defaults: 16 undecided requests per address, 60 new identities per address a minute.
    const lines: string[] = [];
    h = await startHarness({ cp: { logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) } });
    const hh = h;
    // Decided peers on the flooding address itself (the harness's peers come from 127.0.0.1): untouched.
    const keep = await hh.registered('keep-registered');
    const gone = await hh.registered('keep-revoked');
    await hh.cp.call('peers:revoke', { name: 'keep-revoked' });
    await waitFor(() => !gone.connected);
    const rejected = await hh.internal('keep-rejected');
    rejected.register();
    await waitFor(() => hh.cp.registrar.get('keep-rejected')?.state === 'pending');
    await hh.cp.call('peers:reject', { name: 'keep-rejected' });
    // A request from another host, made before the flood, waits for the admin: the flood must not push it out.
    const earlier = await rawPeer(hh.cp.peerPortUrl, 'earlier', '127.0.0.3');
    expect(earlier.state).toBe('pending');

    const N = 48;
    const started = Date.now();
    const logged = lines.length;
    const outcomes = await flood(hh.cp.peerPortUrl, '127.0.0.1', 'flood', N);
    // Every flooding hello got in (the oldest made room); none was turned away with RESOURCE_LIMIT.
    expect(outcomes.filter((o) => o.refused !== undefined)).toEqual([]);
    expect(outcomes.every((o) => o.state === 'pending')).toBe(true);
    expect(undecidedFrom(hh, '127.0.0.1')).toBe(perAddress);
    // The newest are kept, the oldest are gone.
    expect(hh.cp.registrar.get(`flood-${N - 1}`)?.state).toBe('pending');
    expect(hh.cp.registrar.get('flood-0')).toBeUndefined();
    // Evicted sessions are closed, with a reason that says why.
    await waitFor(() => outcomes.filter((o) => o.ws.readyState === WebSocket.CLOSED).length === N - perAddress, 5_000, 'evicted sessions closed');
    const evicted = outcomes.find((o) => o.name === 'flood-0')!;
    expect(evicted.seen.at(-1)).toMatch(new RegExp(`^${Status.RESOURCE_LIMIT} registration request dropped: .*127\\.0\\.0\\.1.*flood limit`));
    // Nothing is kept of an evicted request: the presence the relay was last told of stayed per
    // name for good (a flood's every identity, 60 a minute per address).
    const presenceSent = (hh.cp as unknown as { presenceSent: Map<string, number> }).presenceSent;
    expect([...presenceSent.keys()].filter((n) => n.startsWith('flood-'))).toHaveLength(perAddress);

    // The log: one warning for the flood, and no line per request once it is known.
    const during = lines.slice(logged);
    expect(during.filter((l) => / warn /.test(l))).toEqual([expect.stringMatching(/registration flood: .* from=127\.0\.0\.1/)]);
    expect(during.length).toBeLessThanOrEqual(2 * perAddress + 4); // the 16 requests before the flood: new, then pending

    // A legitimate new peer on another address registers and is approved.
    const newcomer = await rawPeer(hh.cp.peerPortUrl, 'newcomer', '127.0.0.2');
    expect(newcomer.state).toBe('pending');
    await hh.cp.call('peers:approve', { name: 'newcomer' });
    await waitFor(() => newcomer.seen.includes('registered'), 5_000, 'newcomer registered');
    await waitFor(() => hh.relay.peersOf('acme-hq').includes('newcomer'), 5_000, 'newcomer announced');

    // Decided peers and the earlier request are untouched.
    expect(hh.cp.registrar.get('keep-registered')?.state).toBe('registered');
    expect(keep.connected).toBe(true);
    expect(hh.cp.registrar.get('keep-revoked')?.state).toBe('revoked');
    expect(hh.cp.registrar.get('keep-rejected')?.state).toBe('unregistered');
    expect(hh.cp.registrar.get('earlier')?.state).toBe('pending');
    expect(earlier.ws.readyState).toBe(WebSocket.OPEN);

    // The admin sees one summary of the flood.
    const snap = await hh.cp.call('snapshot:get', {});
    expect(snap.flood).toMatchObject({ dropped: N - perAddress, evicted: N - perAddress, refused: 0, otherSources: 0 });
    expect(snap.flood.sources).toEqual([expect.objectContaining({ address: '127.0.0.1', evicted: N - perAddress, refused: 0 })]);
    expect(snap.flood.since).toBeGreaterThanOrEqual(started);

    // Evictions are saved: after a stop the state file holds the 16 kept requests, not 60.
    await hh.cp.stop();
    const file = JSON.parse(await readFile(join(hh.stateDir, STATE_FILE), 'utf8')) as { peers: { name: string; state: string }[] };
    expect(file.peers.filter((p) => p.name.startsWith('flood-'))).toHaveLength(perAddress);
  }, 60_000);

  it('a flood from many addresses is held at the total cap by evicting from the busiest address first, and locks nobody out', async () => {
    const total = 40;
    h = await startHarness({ cp: { maxUndecidedPeers: total } });
    const hh = h;
    const events: FloodView[] = [];
    hh.cp.subscribe('peers:flood', (f) => void events.push(f));
    const lone = await rawPeer(hh.cp.peerPortUrl, 'lone', '127.0.0.9');
    expect(lone.state).toBe('pending');

    const sources = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
    const outcomes = (await Promise.all(sources.map((from, i) => flood(hh.cp.peerPortUrl, from, `many${i}`, 20, 4)))).flat();
    expect(outcomes.filter((o) => o.refused !== undefined)).toEqual([]);
    expect(hh.cp.registrar.undecidedCount()).toBe(total);
    for (const from of sources) expect(undecidedFrom(hh, from)).toBeLessThanOrEqual(16);
    // The lone request from a quiet address survived the flood from the busy ones.
    expect(hh.cp.registrar.get('lone')?.state).toBe('pending');
    // Newcomers are still let in.
    const newcomer = await rawPeer(hh.cp.peerPortUrl, 'newcomer', '127.0.0.10');
    expect(newcomer.state).toBe('pending');
    expect(hh.cp.registrar.undecidedCount()).toBe(total);

    const snap = await hh.cp.call('snapshot:get', {});
    const dropped = 4 * 20 + 2 - total;
    expect(snap.flood).toMatchObject({ dropped, evicted: dropped, refused: 0, limits: { total, perAddress: 16 } });
    expect(snap.flood.sources.map((x) => x.address).sort()).toEqual(sources);
    // The GUIs got one event when the flood began, not one per request.
    expect(events.length).toBeGreaterThanOrEqual(1);
    expect(events.length).toBeLessThan(5);
    expect(events[0]!.dropped).toBeGreaterThan(0);
  }, 60_000);

  it('refuses new identities over the per-address rate with RATE_LIMITED and a reason, except from an auto-approve subnet', async () => {
    h = await startHarness({ cp: { newPeersPerAddressPerMinute: 20, policy: { subnets: ['127.0.0.4/32'] } } });
    const hh = h;
    const outcomes = await flood(hh.cp.peerPortUrl, '127.0.0.2', 'fast', 30, 4);
    const refused = outcomes.filter((o) => o.refused !== undefined);
    expect(refused).toHaveLength(10);
    for (const o of refused) {
      expect(o.refused).toBe(Status.RATE_LIMITED);
      expect(o.reason).toBe('more than 20 new peers from 127.0.0.2 within a minute (flood limit); try again later');
      await waitFor(() => o.ws.readyState === WebSocket.CLOSED, 5_000, 'refused hello closed');
    }
    // Another address is not affected, nor is a known peer saying hello again from the busy one.
    expect((await rawPeer(hh.cp.peerPortUrl, 'other', '127.0.0.3')).state).toBe('pending');
    const known = outcomes.filter((o) => o.state === 'pending').at(-1)!;
    known.ws.close();
    expect((await rawPeer(hh.cp.peerPortUrl, known.name, '127.0.0.2', known.identity)).state).toBe('pending');
    // The admin's subnet is trusted: its peers are registered at once, however many.
    const trusted = await flood(hh.cp.peerPortUrl, '127.0.0.4', 'trusted', 30, 4);
    expect(trusted.every((o) => o.state === 'registered')).toBe(true);

    const snap = await hh.cp.call('snapshot:get', {});
    expect(snap.flood).toMatchObject({ refused: 10, sources: [expect.objectContaining({ address: '127.0.0.2', refused: 10 })] });
  }, 60_000);
});

describe('what the contact point notes of a peer goes with its record', () => {
  it('a forgotten sealing peer leaves no seal-reader flag behind (the table is bounded: a flood filled it for good)', async () => {
    h = await startHarness();
    const hh = h;
    const peer = await hh.registered('scanner');
    const flags = (hh.cp as unknown as { seal: { readerFlags: Map<string, number> } }).seal.readerFlags;
    expect(flags.has('scanner@acme-hq')).toBe(true);
    await peer.stop();
    await hh.cp.call('peers:forget', { name: 'scanner' });
    expect(flags.has('scanner@acme-hq')).toBe(false);
  });
});
