import { auditChange, SURFACE_LABEL } from '../../../core/admin/audit-text.js';
import type { AuditEntry, PeerView } from '../../../core/admin/contract.js';

/** One line of a peer's state history. */
export interface HistoryItem {
  readonly at: number;
  /** `requested`, `approve`, `revoke`... (a CSS hook and a test hook) */
  readonly kind: string;
  readonly text: string;
  /** the surface and the change, for audited decisions */
  readonly detail?: string;
}

const DECISION_TEXT: Readonly<Record<string, string>> = {
  'peer:approve': 'Approved',
  'peer:reject': 'Rejected',
  'peer:revoke': 'Revoked',
  'peer:forget': 'Forgotten',
};

/**
 * A peer's state history, newest first: first seen and the last registration request (from
 * its record), an admission by the policy, and every admin decision the audit trail holds about
 * it (which surface, when, before → after).
 */
export function peerHistory(peer: PeerView | undefined, entries: readonly AuditEntry[]): HistoryItem[] {
  const items: HistoryItem[] = [];
  if (peer) {
    items.push({ at: peer.firstSeen, kind: 'first-seen', text: 'First seen: connected to the peer port with this key' });
    if (peer.requestedAt !== undefined) items.push({ at: peer.requestedAt, kind: 'requested', text: 'Asked to be registered' });
    if (peer.state === 'registered' && peer.admittedBy?.startsWith('policy:') && peer.decidedAt !== undefined) {
      items.push({ at: peer.decidedAt, kind: 'policy', text: `Registered by the policy (${peer.admittedBy.slice('policy:'.length)})` });
    }
  }
  for (const e of entries) {
    const text = DECISION_TEXT[e.action];
    if (!text) continue;
    items.push({ at: e.at, kind: e.action.slice('peer:'.length), text: `${text} via ${SURFACE_LABEL[e.surface]}`, detail: auditChange(e.before, e.after) });
  }
  // Newest first; at the same millisecond a decision comes after what led to it.
  return items.map((x, i) => ({ x, i })).sort((a, b) => b.x.at - a.x.at || b.i - a.i).map(({ x }) => x);
}
