import { describe, expect, it } from 'vitest';
import type { AdminEventName, AdminEvents, AdminMethod, AdminParams, AdminResults, FloodView, PeerView, Snapshot } from '../../../core/admin/contract.js';
import type { ConnectionStatus, GuiApi } from '../api/gui-api';
import { createAppStore } from './app-store';
import { bindApi } from './bind-api';
import { decidePeers } from './commands';
import { floodNotice, peerCounts, visiblePeers } from './peers-slice';

const peer = (name: string, state: PeerView['state'], over: Partial<PeerView> = {}): PeerView => ({
  name,
  address: `${name}@acme-hq`,
  state,
  online: true,
  lanAddress: '192.168.1.20',
  firstSeen: 1,
  lastSeen: 2,
  messagesIn: 0,
  messagesOut: 0,
  admittedBy: undefined,
  decidedAt: undefined,
  decidedVia: undefined,
  requestedAt: undefined,
  keyFingerprint: 'abcd',
  ...over,
});

/** A flood summary as the contact point sends it: `dropped` from 192.168.1.50 since `since`. */
const floodView = (dropped: number, since: number | undefined, over: Partial<FloodView> = {}): FloodView => ({
  dropped,
  evicted: dropped,
  refused: 0,
  since,
  lastAt: since,
  sources: dropped > 0 ? [{ address: '192.168.1.50', evicted: dropped, refused: 0, lastAt: since ?? 0 }] : [],
  otherSources: 0,
  limits: { perAddress: 16, total: 1000, newPerMinute: 60 },
  ...over,
});

/** A snapshot; without `flood` it is one from a contact point before the flood limits. */
const snapshot = (peers: PeerView[], flood?: FloodView): Snapshot =>
  ({
    contactPoint: { id: 'acme-hq', version: '0.1.0', startedAt: 1, embeddedRelay: false, peerPortUrl: 'ws://127.0.0.1:7901/v1/peer' },
    tunnel: { state: 'connected', stateSince: 1, everConnected: true, relayUrl: 'ws://relay', session: 's', connectedAt: 1, lastError: undefined, lastErrorAt: undefined, lastErrorKind: undefined, nextRetryAt: undefined, idInUse: undefined, reconnects: 0, rttMs: 1, bytesIn: 0, bytesOut: 0, framesIn: 0, framesOut: 0, peersServed: 0, keepaliveMs: 10_000, proxy: undefined },
    peers,
    policy: { subnets: [], joinCode: false },
    flow: { messages: 0, bytes: 0, delivered: 0, refused: 0, byDirection: { in: 0, out: 0, local: 0 }, refusals: {} },
    ports: [],
    portPolicy: { targets: [], listen: [] },
    rules: { office: {}, peers: [], check: { kind: 'none' } },
    ...(flood ? { flood } : {}),
  }) as Snapshot;

/** An in-memory AdminApi: records calls, lets the test emit events and connection changes. */
class FakeApi implements GuiApi {
  readonly calls: [string, unknown][] = [];
  readonly listeners = new Map<string, Set<(d: unknown) => void>>();
  connection: ((s: ConnectionStatus) => void) | undefined;
  constructor(public snap: Snapshot) {}
  call<M extends AdminMethod>(method: M, params: AdminParams<M>): Promise<AdminResults[M]> {
    this.calls.push([method, params]);
    if (method === 'snapshot:get') return Promise.resolve(this.snap as AdminResults[M]);
    if (method === 'peers:approve') return Promise.resolve(peer((params as { name: string }).name, 'registered', { admittedBy: 'admin' }) as AdminResults[M]);
    return Promise.reject(new Error(`${method} refused`));
  }
  subscribe<E extends AdminEventName>(event: E, listener: (data: AdminEvents[E]) => void): () => void {
    const set = this.listeners.get(event) ?? new Set();
    this.listeners.set(event, set);
    set.add(listener as (d: unknown) => void);
    return () => void set.delete(listener as (d: unknown) => void);
  }
  onConnection(listener: (s: ConnectionStatus) => void): () => void {
    this.connection = listener;
    listener({ state: 'connecting' });
    return () => (this.connection = undefined);
  }
  emit<E extends AdminEventName>(event: E, data: AdminEvents[E]): void {
    for (const fn of this.listeners.get(event) ?? []) fn(data);
  }
}

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

describe('store bound to the admin API', () => {
  it('loads a snapshot each time the connection opens and applies events to their slices', async () => {
    const store = createAppStore();
    const api = new FakeApi(snapshot([peer('printer', 'pending'), peer('nas', 'registered')]));
    const news: string[] = [];
    const unbind = bindApi(store, api, { onNewPending: (p) => news.push(p.name) });
    expect(store.getState().connection.state).toBe('connecting');
    api.connection!({ state: 'open' });
    await tick();
    expect(peerCounts(store.getState().peers)).toEqual({ pending: 1, registered: 1, unregistered: 0, revoked: 0 });

    api.emit('peer:changed', peer('camera', 'unregistered'));
    api.emit('peer:changed', peer('camera', 'pending'));
    api.emit('peer:changed', peer('camera', 'pending', { lastSeen: 9 }));
    expect(news).toEqual(['camera']); // once, and not for printer (pending before the GUI opened)
    api.emit('peer:removed', { name: 'nas' });
    expect(store.getState().peers.has('nas')).toBe(false);
    api.emit('tunnel:status', { ...api.snap.tunnel, state: 'reconnecting', lastError: 'relay gone' });
    expect(store.getState().tunnel?.state).toBe('reconnecting');
    expect(store.getState().tunnelLog.map((e) => e.state)).toEqual(['connected', 'reconnecting']);
    api.emit('ports:policy-changed', { targets: ['192.168.1.20/32:80'], listen: [] });
    expect(store.getState().portPolicy).toEqual({ targets: ['192.168.1.20/32:80'], listen: [] });

    api.connection!({ state: 'lost', detail: 'gone', retryAt: 5 });
    expect(store.getState().connection).toEqual({ state: 'lost', detail: 'gone', retryAt: 5 });
    unbind();
    expect([...api.listeners.values()].every((s) => s.size === 0)).toBe(true);
  });

  it('bulk-approves, and reports each failure by name', async () => {
    const store = createAppStore();
    const api = new FakeApi(snapshot([peer('printer', 'pending'), peer('camera', 'pending')]));
    bindApi(store, api);
    api.connection!({ state: 'open' });
    await tick();
    await decidePeers({ store, api }, 'approve', ['printer', 'camera']);
    expect(visiblePeers(store.getState().peers, 'registered', '').map((p) => p.name)).toEqual(['camera', 'printer']);
    expect(store.getState().notices.at(-1)?.text).toBe('Approved 2 peers');
    await decidePeers({ store, api }, 'reject', ['printer']);
    expect(store.getState().notices.at(-1)).toMatchObject({ kind: 'error', text: 'Could not reject printer: peers:reject refused' });
    expect(store.getState().peerBusy.size).toBe(0);
  });

  it('searches peers by name, address, LAN address and fingerprint', () => {
    const peers = new Map([peer('printer', 'registered', { lanAddress: '10.0.0.9' }), peer('nas', 'registered')].map((p) => [p.name, p]));
    expect(visiblePeers(peers, 'registered', '10.0.0').map((p) => p.name)).toEqual(['printer']);
    expect(visiblePeers(peers, 'registered', 'NAS@ACME').map((p) => p.name)).toEqual(['nas']);
    expect(visiblePeers(peers, 'pending', '')).toEqual([]);
  });

  it('keeps the flood summary from the snapshot and the peers:flood event, and raises no notification per request during a flood', async () => {
    const store = createAppStore();
    const api = new FakeApi(snapshot([peer('printer', 'pending')]));
    const news: string[] = [];
    bindApi(store, api, { onNewPending: (p) => news.push(p.name) });
    api.connection!({ state: 'open' });
    await tick();
    expect(store.getState().flood).toBeUndefined(); // an older contact point: no summary, no notice
    expect(floodNotice(store.getState().flood, 0)).toBeUndefined();

    const since = 1_000_000;
    api.emit('peers:flood', floodView(984, since));
    expect(floodNotice(store.getState().flood, since + 3 * 60_000 - 1)).toBe('984 registration requests from 192.168.1.50 were dropped in the last 3 minutes (flood limit)');
    for (let i = 0; i < 50; i++) api.emit('peer:changed', peer(`flood-${i}`, 'pending'));
    expect(news).toEqual([]);
    expect(peerCounts(store.getState().peers).pending).toBe(51); // the list and the badge still count them

    // A refresh (reconnect) takes the summary from the snapshot; the flood over, notifications come back.
    api.snap = snapshot([...store.getState().peers.values()], floodView(1, since, { sources: [], otherSources: 0 }));
    api.connection!({ state: 'open' });
    await tick();
    expect(floodNotice(store.getState().flood, since)).toBe('1 registration request from unknown was dropped in the last minute (flood limit)');
    api.emit('peers:flood', floodView(0, undefined));
    expect(floodNotice(store.getState().flood, since)).toBeUndefined();
    api.emit('peer:changed', peer('camera', 'pending'));
    expect(news).toEqual(['camera']);
  });

  it('says how many addresses a flood came from, in one line', () => {
    const f = floodView(1500, 0, {
      sources: [
        { address: '192.168.1.50', evicted: 1000, refused: 200, lastAt: 5 },
        { address: '192.168.1.51', evicted: 300, refused: 0, lastAt: 5 },
      ],
      otherSources: 3,
    });
    expect(floodNotice(f, 60_001)).toBe('1500 registration requests from 192.168.1.50 and 4 other addresses were dropped in the last 2 minutes (flood limit)');
    expect(floodNotice(floodView(2, 0, { sources: [{ address: 'a', evicted: 1, refused: 0, lastAt: 0 }, { address: 'b', evicted: 1, refused: 0, lastAt: 0 }] }), 0)).toBe(
      '2 registration requests from a and 1 other address were dropped in the last minute (flood limit)',
    );
  });
});
