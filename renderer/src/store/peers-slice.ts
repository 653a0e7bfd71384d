import type { FloodView, PeerState, PeerView } from '../../../core/admin/contract.js';
import type { AppStore } from './app-store';

export const PEER_STATES: readonly PeerState[] = ['pending', 'registered', 'unregistered', 'revoked'];

export interface PeersSlice {
  /** by name; a new Map on every change so selectors see it */
  readonly peers: ReadonlyMap<string, PeerView>;
  readonly peerTab: PeerState;
  readonly peerSearch: string;
  /** names with an admin call in flight (their buttons are disabled) */
  readonly peerBusy: ReadonlySet<string>;
  /** pending peers the admin has been told about (badge, notification) */
  readonly notifiedPending: ReadonlySet<string>;
  /** what the registration flood limits dropped lately; undefined or `dropped` 0: no flood */
  readonly flood: FloodView | undefined;
}

export function initialPeers(): PeersSlice {
  return { peers: new Map(), peerTab: 'pending', peerSearch: '', peerBusy: new Set(), notifiedPending: new Set(), flood: undefined };
}

export function setFlood(store: AppStore, flood: FloodView | undefined): void {
  store.setState({ flood });
}

/** Whether a registration flood is going on (new pending peers then raise no desktop notification each). */
export function floodActive(flood: FloodView | undefined): boolean {
  return flood !== undefined && flood.dropped > 0;
}

/** The one line the Peers view shows for a registration flood (`contact-point peers` prints the same). */
export { floodNotice } from '../../../core/admin/flood-notice.js';

export function loadPeers(store: AppStore, peers: readonly PeerView[]): void {
  // Peers already pending when the GUI opens are not news: no notification for them.
  const pending = peers.filter((p) => p.state === 'pending').map((p) => p.name);
  store.setState((s) => ({
    peers: new Map(peers.map((p) => [p.name, p])),
    notifiedPending: new Set([...s.notifiedPending, ...pending]),
  }));
}

/** Applies a change; returns true when the peer just became pending (news for the admin). */
export function peerChanged(store: AppStore, peer: PeerView): boolean {
  const s = store.getState();
  const becamePending = peer.state === 'pending' && !s.notifiedPending.has(peer.name);
  const notified = new Set(s.notifiedPending);
  if (becamePending) notified.add(peer.name);
  if (peer.state !== 'pending') notified.delete(peer.name);
  store.setState({ peers: new Map(s.peers).set(peer.name, peer), notifiedPending: notified });
  return becamePending;
}

export function peerRemoved(store: AppStore, name: string): void {
  store.setState((s) => {
    const peers = new Map(s.peers);
    peers.delete(name);
    const notified = new Set(s.notifiedPending);
    notified.delete(name);
    return { peers, notifiedPending: notified };
  });
}

export function setPeerTab(store: AppStore, tab: PeerState): void {
  store.setState({ peerTab: tab });
}

export function setPeerSearch(store: AppStore, text: string): void {
  store.setState({ peerSearch: text });
}

export function setPeerBusy(store: AppStore, names: readonly string[], busy: boolean): void {
  store.setState((s) => {
    const next = new Set(s.peerBusy);
    for (const n of names) {
      if (busy) next.add(n);
      else next.delete(n);
    }
    return { peerBusy: next };
  });
}

export function peerCounts(peers: ReadonlyMap<string, PeerView>): Record<PeerState, number> {
  const counts: Record<PeerState, number> = { pending: 0, registered: 0, unregistered: 0, revoked: 0 };
  for (const p of peers.values()) counts[p.state]++;
  return counts;
}

/** Peers of a tab matching a search (name, address, LAN address, fingerprint), by name. */
export function visiblePeers(peers: ReadonlyMap<string, PeerView>, tab: PeerState, search: string): PeerView[] {
  const q = search.trim().toLowerCase();
  const out: PeerView[] = [];
  for (const p of peers.values()) {
    if (p.state !== tab) continue;
    if (q && !`${p.name} ${p.address} ${p.lanAddress ?? ''} ${p.keyFingerprint}`.toLowerCase().includes(q)) continue;
    out.push(p);
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}
