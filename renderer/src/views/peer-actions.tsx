import type { PeerView } from '../../../core/admin/contract.js';
import { SURFACE_LABEL } from '../../../core/admin/audit-text.js';
import { formatDateTime } from '../format/units';
import type { ConfirmRequest } from '../components/confirm-dialog';
import { decidePeers, type Ctx } from '../store/commands';

/**
 * What the admin can do with one peer, in its state: the same buttons (and the same
 * confirmations for revoke and forget) in the peers table and on the peer's page.
 */
export function PeerActions({ ctx, peer: p, busy, confirm }: { ctx: Ctx; peer: PeerView; busy: boolean; confirm: (r: ConfirmRequest) => void }) {
  return (
    <div className="actions">
      {p.state === 'pending' || p.state === 'unregistered' ? (
        <button type="button" className="primary" disabled={busy} aria-label={`Approve ${p.name}`} onClick={() => void decidePeers(ctx, 'approve', [p.name])}>
          Approve
        </button>
      ) : null}
      {p.state === 'pending' ? (
        <button type="button" disabled={busy} aria-label={`Reject ${p.name}`} onClick={() => void decidePeers(ctx, 'reject', [p.name])}>
          Reject
        </button>
      ) : null}
      {p.state === 'registered' ? (
        <button type="button" className="danger" disabled={busy} aria-label={`Revoke ${p.name}`} onClick={() => confirm(revokeRequest(ctx, p))}>
          Revoke
        </button>
      ) : null}
      {p.state === 'revoked' ? (
        <>
          <button type="button" disabled={busy} aria-label={`Approve ${p.name} again`} onClick={() => void decidePeers(ctx, 'approve', [p.name])}>
            Approve again
          </button>
          <button type="button" className="danger" disabled={busy} aria-label={`Forget ${p.name}`} onClick={() => confirm(forgetRequest(ctx, p))}>
            Forget
          </button>
        </>
      ) : null}
    </div>
  );
}

/**
 * The revoke confirmation. What it promises is what a sender gets (docs/PROTOCOL.md, "What a
 * sender learns"): the same refusal as for a peer that was never registered, naming the address.
 */
export function revokeRequest(ctx: Ctx, p: PeerView): ConfirmRequest {
  return {
    title: `Revoke ${p.name}?`,
    body: (
      <p>
        <strong>{p.address}</strong> is disconnected at once and stops receiving messages. Senders are refused with “peer {p.address} is not
        registered” (PEER_NOT_REGISTERED), the same answer as for a peer that never registered: they are not told it was revoked. It stays
        revoked until you approve it again.
      </p>
    ),
    confirmLabel: 'Revoke',
    danger: true,
    onConfirm: () => void decidePeers(ctx, 'revoke', [p.name]),
  };
}

export function forgetRequest(ctx: Ctx, p: PeerView): ConfirmRequest {
  return {
    title: `Forget ${p.name}?`,
    body: <p>The record and its key binding are removed. The name can then be taken by another device.</p>,
    confirmLabel: 'Forget',
    danger: true,
    onConfirm: () => void decidePeers(ctx, 'forget', [p.name]),
  };
}

/** When the admin last decided on a peer and through which surface: `2026-12-02 01:58 via GUI` ('—' when never). */
export function decidedText(p: PeerView): string {
  if (p.decidedAt === undefined) return '—';
  return `${formatDateTime(p.decidedAt)}${p.decidedVia ? ` via ${SURFACE_LABEL[p.decidedVia]}` : ''}`;
}

/** When a revoked peer was revoked and through which surface (decidedText of a revoked peer). */
export function revokedText(p: PeerView): string {
  return p.state === 'revoked' ? decidedText(p) : '—';
}
