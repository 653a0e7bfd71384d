import { useEffect, useState } from 'react';
import { useShallow } from 'zustand/react/shallow';
import type { AuditEntry } from '../../../core/admin/contract.js';
import { errorText } from '../api/admin-call-error';
import { ConfirmDialog, type ConfirmRequest } from '../components/confirm-dialog';
import { useNow } from '../components/use-now';
import { formatAgo, formatCount, formatDateTime, formatTimestamp } from '../format/units';
import { mergeAudit } from '../store/audit-slice';
import { peerAuditEntries } from '../store/commands';
import { useApp, useCtx } from '../store/context';
import { peerHistory } from '../store/peer-history';
import { openPeerPage } from '../store/session-slice';
import { decidedText, PeerActions } from './peer-actions';
import { PeerTraffic } from './peer-traffic';
import { PeerRules } from './rules-forms';


/**
 * One peer's page: who it is (address, key fingerprint, LAN IP, first and last seen), its state
 * history (from its record and the audit trail), the actions, and its traffic (PeerTraffic).
 */
export function PeerPage({ name }: { name: string }) {
  const ctx = useCtx();
  const peer = useApp((s) => s.peers.get(name));
  const busy = useApp((s) => s.peerBusy.has(name));
  const live = useApp(useShallow((s) => s.audit.filter((e) => e.target === name)));
  const [fetched, setFetched] = useState<readonly AuditEntry[]>([]);
  const [fetchError, setFetchError] = useState<string>();
  const [confirm, setConfirm] = useState<ConfirmRequest>();
  const now = useNow(5_000);

  useEffect(() => {
    let current = true;
    peerAuditEntries(ctx, name).then(
      (entries) => {
        if (current) setFetched(entries);
      },
      (err: unknown) => {
        if (current) setFetchError(errorText(err));
      },
    );
    return () => {
      current = false;
    };
  }, [ctx, name]);

  const history = peerHistory(peer, mergeAudit(fetched, live));
  const back = (
    <button type="button" className="link back" onClick={() => openPeerPage(ctx.store, undefined)}>
      ← All peers
    </button>
  );

  return (
    <section aria-labelledby="peer-title" className="view peer-page" data-testid="peer-page">
      <header className="view-head">
        <div>
          {back}
          <h1 id="peer-title">
            {name} {peer ? <span className={`state-badge ${peer.state}`}>{peer.state}</span> : null}
          </h1>
        </div>
        {peer ? <PeerActions ctx={ctx} peer={peer} busy={busy} confirm={setConfirm} /> : null}
      </header>

      {peer ? (
        <dl className="peer-facts">
          <dt>Address</dt>
          <dd className="mono">{peer.address}</dd>
          <dt>Key fingerprint</dt>
          <dd className="mono" title="SHA-256 of the peer's public key (first 16 hex digits)">
            {peer.keyFingerprint}
          </dd>
          <dt>LAN IP</dt>
          <dd className="mono">{peer.lanAddress?.replace(/^::ffff:/, '') ?? '—'}</dd>
          <dt>Online</dt>
          <dd>
            <span className={`dot ${peer.online ? 'on' : 'off'}`} aria-hidden="true" />
            {peer.online ? 'online' : 'offline'}
          </dd>
          <dt>First seen</dt>
          <dd>{formatDateTime(peer.firstSeen)}</dd>
          <dt>Last seen</dt>
          <dd title={formatDateTime(peer.lastSeen)}>{peer.online ? 'now' : formatAgo(peer.lastSeen, now)}</dd>
          <dt>Messages</dt>
          <dd>
            {formatCount(peer.messagesIn)} in, {formatCount(peer.messagesOut)} out
          </dd>
          <dt>Admitted by</dt>
          <dd>{peer.admittedBy ?? '—'}</dd>
          <dt>Last decision</dt>
          <dd data-testid="peer-decided">
            {decidedText(peer)}
          </dd>
        </dl>
      ) : (
        <p className="banner info" role="status">
          {name} is no longer known to the contact point (forgotten, or dropped by the flood limits). Its history is below.
        </p>
      )}

      <section aria-labelledby="peer-history-title" className="peer-section">
        <h2 id="peer-history-title">State history</h2>
        {fetchError ? <p className="muted">Could not load the audit trail: {fetchError}</p> : null}
        <ol className="history" data-testid="peer-history">
          {history.map((h, i) => (
            <li key={`${h.kind}-${h.at}-${i}`} data-kind={h.kind}>
              <time dateTime={new Date(h.at).toISOString()} className="muted">
                {formatTimestamp(h.at)}
              </time>{' '}
              <span className="history-text">{h.text}</span>
              {h.detail ? <span className="muted"> — {h.detail}</span> : null}
            </li>
          ))}
        </ol>
      </section>

      {peer ? <PeerRules name={name} /> : null}
      {peer ? <PeerTraffic peer={peer} /> : null}
      <ConfirmDialog request={confirm} onClose={() => setConfirm(undefined)} />
    </section>
  );
}
