import { useRef, useState, type KeyboardEvent } from 'react';
import { useShallow } from 'zustand/react/shallow';
import type { FloodView, PeerState } from '../../../core/admin/contract.js';
import { ConfirmDialog, type ConfirmRequest } from '../components/confirm-dialog';
import { useNow } from '../components/use-now';
import { formatAgo, formatCount, formatDateTime } from '../format/units';
import { askForNotifications, notificationsAskable } from '../notify/pending-notifier';
import { decidePeers } from '../store/commands';
import { openPeerPage } from '../store/session-slice';
import { PeerActions, revokedText } from './peer-actions';
import { PeerPage } from './peer-page';
import { useApp, useCtx } from '../store/context';
import { floodNotice, PEER_STATES, peerCounts, setPeerSearch, setPeerTab, visiblePeers } from '../store/peers-slice';

const TAB_LABEL: Record<PeerState, string> = { pending: 'Pending', registered: 'Registered', unregistered: 'Unregistered', revoked: 'Revoked' };
const TAB_HINT: Record<PeerState, string> = {
  pending: 'Peers that asked to be registered. Approve to let messages through, or reject.',
  registered: 'Peers that receive and send messages through the contact point.',
  unregistered: 'Peers connected to the peer port that have not asked to register. Everything addressed to them is refused.',
  revoked: 'Peers the admin cut off. Everything addressed to them is refused until approved again.',
};

/** Names the Approve all confirmation lists before "and N more". */
const APPROVE_ALL_LISTED = 12;

/** The Peers view: the table by state, or one peer's page when the admin opened it. */
export function PeersView() {
  const page = useApp((s) => s.peerPage);
  return page !== undefined ? <PeerPage name={page} /> : <PeersTable />;
}

function PeersTable() {
  const ctx = useCtx();
  const tab = useApp((s) => s.peerTab);
  const search = useApp((s) => s.peerSearch);
  const counts = useApp(useShallow((s) => peerCounts(s.peers)));
  const rows = useApp(useShallow((s) => visiblePeers(s.peers, s.peerTab, s.peerSearch)));
  const busy = useApp((s) => s.peerBusy);
  const [confirm, setConfirm] = useState<ConfirmRequest>();
  const [askable, setAskable] = useState(notificationsAskable);
  const tabRefs = useRef(new Map<PeerState, HTMLButtonElement>());
  const now = useNow(5_000);
  const flood = useApp((s) => s.flood);
  const floodText = floodNotice(flood, now);

  const onTabKey = (e: KeyboardEvent<HTMLDivElement>): void => {
    const i = PEER_STATES.indexOf(tab);
    const next = e.key === 'ArrowRight' ? i + 1 : e.key === 'ArrowLeft' ? i - 1 : e.key === 'Home' ? 0 : e.key === 'End' ? PEER_STATES.length - 1 : undefined;
    if (next === undefined) return;
    e.preventDefault();
    const t = PEER_STATES[(next + PEER_STATES.length) % PEER_STATES.length]!;
    setPeerTab(ctx.store, t);
    tabRefs.current.get(t)?.focus();
  };

  const pendingNames = tab === 'pending' ? rows.map((r) => r.name) : [];
  // Approving many at once admits devices unseen: say which, and ask (issue 16, item 11).
  const approveAll = (): void => {
    const names = [...pendingNames];
    setConfirm({
      title: `Approve ${names.length} pending peers?`,
      body: (
        <>
          <p>
            Each of these becomes a registered peer, reachable from outside as <code>name@{rows[0]?.address.split('@')[1] ?? 'this contact point'}</code>:
          </p>
          <p className="mono">
            {names.slice(0, APPROVE_ALL_LISTED).join(', ')}
            {names.length > APPROVE_ALL_LISTED ? ` and ${names.length - APPROVE_ALL_LISTED} more` : ''}
          </p>
        </>
      ),
      confirmLabel: `Approve ${names.length}`,
      onConfirm: () => void decidePeers(ctx, 'approve', names),
    });
  };

  return (
    <section aria-labelledby="peers-title" className="view">
      <header className="view-head">
        <h1 id="peers-title">Peers</h1>
        <div className="toolbar">
          <label className="search">
            <span className="visually-hidden">Search peers</span>
            <input type="search" placeholder="Search name, address, LAN IP…" value={search} onChange={(e) => setPeerSearch(ctx.store, e.target.value)} />
          </label>
          {askable ? (
            <button type="button" onClick={() => void askForNotifications().then(() => setAskable(notificationsAskable()))}>
              Enable desktop notifications
            </button>
          ) : null}
        </div>
      </header>

      {floodText ? (
        <p className="banner flood" role="status" data-testid="flood-notice" title={floodTitle(flood)}>
          {floodText}
        </p>
      ) : null}

      <div role="tablist" aria-label="Peer registration state" className="tabs" onKeyDown={onTabKey}>
        {PEER_STATES.map((s) => (
          <button
            key={s}
            ref={(el) => {
              if (el) tabRefs.current.set(s, el);
            }}
            role="tab"
            type="button"
            id={`tab-${s}`}
            aria-selected={tab === s}
            aria-controls="peers-panel"
            tabIndex={tab === s ? 0 : -1}
            className={`tab ${s}`}
            onClick={() => setPeerTab(ctx.store, s)}
          >
            {TAB_LABEL[s]} <span className={`count ${s === 'pending' && counts.pending > 0 ? 'attention' : ''}`}>{counts[s]}</span>
          </button>
        ))}
      </div>

      <div id="peers-panel" role="tabpanel" aria-labelledby={`tab-${tab}`} className="panel">
        <div className="panel-head">
          <p className="muted">{TAB_HINT[tab]}</p>
          {tab === 'pending' && pendingNames.length > 1 ? (
            <button type="button" className="primary" onClick={approveAll}>
              Approve all {pendingNames.length} pending
            </button>
          ) : null}
        </div>
        {rows.length === 0 ? (
          <p className="empty">{search ? `No ${tab} peer matches “${search}”.` : `No ${tab} peers.`}</p>
        ) : (
          <div className="table-wrap">
            <table className="peers">
              <thead>
                <tr>
                  <th scope="col">Peer</th>
                  <th scope="col">Address</th>
                  <th scope="col">LAN IP</th>
                  <th scope="col">Online</th>
                  <th scope="col">First seen</th>
                  <th scope="col">Last seen</th>
                  <th scope="col" className="num">
                    In
                  </th>
                  <th scope="col" className="num">
                    Out
                  </th>
                  {/* A revoked peer was admitted by nobody now: the column says when and how it was revoked instead. */}
                  <th scope="col">{tab === 'revoked' ? 'Revoked' : 'Admitted by'}</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {rows.map((p) => {
                  const b = busy.has(p.name);
                  return (
                    <tr key={p.name} data-peer={p.name}>
                      <th scope="row">
                        <button type="button" className="link peer-name" aria-label={`Open ${p.name}'s page`} onClick={() => openPeerPage(ctx.store, p.name)}>
                          {p.name}
                        </button>
                        <span className="fingerprint" title="SHA-256 fingerprint of the peer's key">
                          {p.keyFingerprint}
                        </span>
                      </th>
                      <td className="mono">{p.address}</td>
                      <td className="mono">{p.lanAddress ?? '—'}</td>
                      <td>
                        <span className={`dot ${p.online ? 'on' : 'off'}`} aria-hidden="true" />
                        {p.online ? 'online' : 'offline'}
                      </td>
                      <td>{formatDateTime(p.firstSeen)}</td>
                      <td title={formatDateTime(p.lastSeen)}>{p.online ? 'now' : formatAgo(p.lastSeen, now)}</td>
                      <td className="num">{formatCount(p.messagesIn)}</td>
                      <td className="num">{formatCount(p.messagesOut)}</td>
                      {tab === 'revoked' ? <td data-testid="revoked-at">{revokedText(p)}</td> : <td>{p.admittedBy ?? '—'}</td>}
                      <td>
                        <PeerActions ctx={ctx} peer={p} busy={b} confirm={setConfirm} />
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </div>
      <ConfirmDialog request={confirm} onClose={() => setConfirm(undefined)} />
    </section>
  );
}

/** The detail behind the flood line: the limits and the busiest addresses. */
function floodTitle(flood: FloodView | undefined): string | undefined {
  if (!flood) return undefined;
  const sources = flood.sources.map((x) => `${x.address}: ${x.evicted} dropped, ${x.refused} refused`).join('; ');
  return (
    `At most ${flood.limits.perAddress} requests per address and ${flood.limits.total} in all wait for you; older ones are dropped. ` +
    `An address may bring ${flood.limits.newPerMinute} new peers a minute. ${sources}${flood.otherSources > 0 ? `; and ${flood.otherSources} more addresses` : ''}`
  );
}
