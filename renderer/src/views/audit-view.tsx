import { auditChange, auditWhat, SURFACE_LABEL } from '../../../core/admin/audit-text.js';
import { formatTimestamp } from '../format/units';
import { loadAuditPage } from '../store/commands';
import { useApp, useCtx } from '../store/context';
import { openPeerPage } from '../store/session-slice';

/**
 * The audit trail: every admin decision, port close and settings change, newest first, with
 * when, through which surface (GUI, CLI, API) and what changed. New entries arrive live; older
 * ones a page at a time.
 */
export function AuditView() {
  const ctx = useCtx();
  const entries = useApp((s) => s.audit);
  const more = useApp((s) => s.auditMore);
  const loading = useApp((s) => s.auditLoading);
  const peers = useApp((s) => s.peers);
  return (
    <section aria-labelledby="audit-title" className="view audit-view">
      <header className="view-head">
        <h1 id="audit-title">Audit</h1>
        <p className="muted">
          Every approve, reject, revoke, forget, policy and port policy change, port close and settings change: when, from which admin surface,
          and before → after. Kept with the contact point's state; <span className="mono">contact-point audit</span> shows the same.
        </p>
      </header>
      {entries.length === 0 ? (
        <p className="empty">No decisions recorded yet.</p>
      ) : (
        <div className="table-wrap">
          <table className="audit" data-testid="audit-table">
            <thead>
              <tr>
                <th scope="col" className="num">
                  #
                </th>
                <th scope="col">When</th>
                <th scope="col">Via</th>
                <th scope="col">What</th>
                <th scope="col">Change</th>
              </tr>
            </thead>
            <tbody>
              {entries.map((e) => (
                <tr key={e.seq} data-seq={e.seq} data-action={e.action} data-surface={e.surface}>
                  <td className="num muted">{e.seq}</td>
                  <td className="mono">{formatTimestamp(e.at)}</td>
                  <td>
                    <span className={`surface ${e.surface}`}>{SURFACE_LABEL[e.surface]}</span>
                  </td>
                  <td>
                    {e.action.startsWith('peer:') && peers.has(e.target) ? (
                      <button type="button" className="link" onClick={() => openPeerPage(ctx.store, e.target)}>
                        {auditWhat(e)}
                      </button>
                    ) : (
                      auditWhat(e)
                    )}
                  </td>
                  <td className="change">{auditChange(e.before, e.after)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {more ? (
        <button type="button" disabled={loading} onClick={() => void loadAuditPage(ctx, true)}>
          {loading ? 'Loading…' : 'Load older entries'}
        </button>
      ) : null}
    </section>
  );
}
