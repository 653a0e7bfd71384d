import { useShallow } from 'zustand/react/shallow';
import type { PeerView } from '../../../core/admin/contract.js';
import { formatBytes, formatClock } from '../format/units';
import { useApp } from '../store/context';
import type { FlowRow } from '../store/flow-slice';

/** Live flow rows the peer page lists. */
const PEER_FLOW_ROWS = 20;

/** The live flow rows to or from `address`, newest first. */
function peerRows(rows: readonly FlowRow[], address: string): FlowRow[] {
  const out: FlowRow[] = [];
  for (let i = rows.length - 1; i >= 0 && out.length < PEER_FLOW_ROWS; i--) {
    const r = rows[i]!;
    if (r.from === address || r.to === address) out.push(r);
  }
  return out;
}

/**
 * THE SLOT FOR THE PEER'S MESSAGE HISTORY on its page (issue 16 item 3): its traffic over time
 * (a small chart) and its recent messages and refusals. Those come from the persistent history
 * (issue 16 item 1), which replaces the body of this component; the page passes the peer and
 * owns nothing else of it. Until then it shows the live flow rows of this peer that this window
 * has seen since it opened.
 */
export function PeerTraffic({ peer }: { peer: PeerView }) {
  const rows = useApp(useShallow((s) => peerRows(s.flowRows, peer.address)));
  return (
    <section aria-labelledby="peer-traffic-title" className="peer-section" data-testid="peer-traffic">
      <h2 id="peer-traffic-title">Recent messages</h2>
      <p className="muted">
        {peer.messagesIn} in, {peer.messagesOut} out in all. Below: what this window has seen since it opened (the live flow).
      </p>
      {rows.length === 0 ? (
        <p className="empty">No messages to or from {peer.address} since this window opened.</p>
      ) : (
        <table className="peer-flow">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">From</th>
              <th scope="col">To</th>
              <th scope="col" className="num">
                Size
              </th>
              <th scope="col">Outcome</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.seq} data-outcome={r.outcome}>
                <td className="mono muted">{formatClock(r.at)}</td>
                <td className="mono">{r.from}</td>
                <td className="mono">{r.to}</td>
                <td className="num">{formatBytes(r.size)}</td>
                <td>
                  <span className={`outcome ${r.outcome}`}>{r.outcome}</span>
                  {r.reason ? <span className="reason"> {r.reason}</span> : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
