import type { PeerView, Snapshot } from '../../../core/admin/contract.js';
import { errorText } from '../api/admin-call-error';
import type { GuiApi } from '../api/gui-api';
import type { AppStore } from './app-store';
import { AUDIT_PAGE, auditEntry, loadAudit } from './audit-slice';
import { flowBatch, loadFlowTotals } from './flow-slice';
import { floodActive, loadPeers, peerChanged, peerRemoved, setFlood } from './peers-slice';
import { setPortPolicy, setPorts } from './ports-slice';
import { setSeal } from './seal-slice';
import { setRules } from './rules-slice';
import { notify, setConnection, setContactPoint, setHostSettings, setPolicy } from './session-slice';
import { directStatus, tunnelStatus } from './tunnel-slice';

export interface BindOptions {
  /** a peer just asked to be registered (desktop notification); not called during a registration flood */
  readonly onNewPending?: (peer: PeerView) => void;
}

export function loadSnapshot(store: AppStore, snap: Snapshot): void {
  setContactPoint(store, snap.contactPoint);
  setPolicy(store, snap.policy);
  tunnelStatus(store, snap.tunnel);
  directStatus(store, snap.direct);
  loadPeers(store, snap.peers);
  // Contact points from before the flood limits have no summary.
  setFlood(store, snap.flood);
  loadFlowTotals(store, snap.flow, 0);
  // Older contact points (before port mediation) have neither.
  setPorts(store, snap.ports ?? []);
  if (snap.portPolicy) setPortPolicy(store, snap.portPolicy);
  // Contact points from before sealing have no key of their own.
  if (snap.seal) setSeal(store, snap.seal);
  // Older contact points (before the access rules) have none.
  if (snap.rules) setRules(store, snap.rules);
}

/**
 * Feeds the store from the admin API: every event to its slice's action, and a fresh snapshot
 * each time the connection (re)opens. Returns the unsubscribe for all of it.
 */
export function bindApi(store: AppStore, api: GuiApi, opts: BindOptions = {}): () => void {
  let live = true;
  const unsubs = [
    api.subscribe('peer:changed', (p) => {
      // During a flood the Peers view's one-line notice speaks for the requests: no notification each.
      if (peerChanged(store, p) && !floodActive(store.getState().flood)) opts.onNewPending?.(p);
    }),
    api.subscribe('peers:flood', (f) => setFlood(store, f)),
    api.subscribe('peer:removed', ({ name }) => peerRemoved(store, name)),
    api.subscribe('tunnel:status', (t) => tunnelStatus(store, t)),
    api.subscribe('direct:status', (d) => directStatus(store, d)),
    api.subscribe('flow:batch', (b) => flowBatch(store, b)),
    api.subscribe('policy:changed', (p) => setPolicy(store, p)),
    api.subscribe('ports:changed', (ports) => setPorts(store, ports)),
    api.subscribe('ports:policy-changed', (p) => setPortPolicy(store, p)),
    api.subscribe('audit:entry', (e) => auditEntry(store, e)),
    api.subscribe('seal:changed', (v) => setSeal(store, v)),
    api.subscribe('rules:changed', (r) => setRules(store, r)),
  ];
  const refresh = (): void => {
    api.call('snapshot:get', {}).then(
      (snap) => {
        if (live) loadSnapshot(store, snap);
      },
      (err: unknown) => {
        if (live) notify(store, 'error', `Could not load the contact point's state: ${errorText(err)}`);
      },
    );
    // The newest page of the audit trail (the Audit view loads older ones on demand).
    api.call('audit:list', { limit: AUDIT_PAGE }).then(
      (page) => {
        if (live) loadAudit(store, page.entries, page.more, false);
      },
      () => undefined, // a contact point from before the audit trail: the Audit view says so
    );
    if (api.settings) {
      api.settings.get().then(
        (v) => {
          if (live) setHostSettings(store, v);
        },
        (err: unknown) => {
          if (live) notify(store, 'error', `Could not load the settings: ${errorText(err)}`);
        },
      );
    }
  };
  if (api.onConnection) {
    unsubs.push(
      api.onConnection((status) => {
        setConnection(store, status);
        if (status.state === 'open') refresh();
      }),
    );
  } else {
    setConnection(store, { state: 'open' });
    refresh();
  }
  return () => {
    live = false;
    for (const u of unsubs) u();
  };
}
