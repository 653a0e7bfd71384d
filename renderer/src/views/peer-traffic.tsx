import { useEffect, useState } from 'react';
import { useShallow } from 'zustand/react/shallow';
import type { HistoryEntry, HistoryPage, HistoryTraffic, PeerView } from '../../../core/admin/contract.js';
import { errorText } from '../api/admin-call-error';
import { Outcome } from '../components/flow-row';
import { TrafficChart } from '../components/traffic-chart';
import { useNow } from '../components/use-now';
import { formatBytes, formatClock, formatTimestamp } from '../format/units';
import { useApp, useCtx } from '../store/context';
import type { FlowRow } from '../store/flow-slice';

/** Messages and refusals the peer page lists from the history. */
const PEER_RECENT = 20;
const PEER_REFUSALS = 10;
/** How often the page asks the history again while open (new messages arrive all the time). */
const PEER_TRAFFIC_REFRESH_MS = 5_000;

/** The chart's spans: how far back, in how many bars. */
const RANGES = {
  hour: { label: 'last hour', ms: 3_600_000, buckets: 60 },
  day: { label: 'last 24 hours', ms: 86_400_000, buckets: 48 },
  week: { label: 'last 7 days', ms: 7 * 86_400_000, buckets: 56 },
} as const;
type Range = keyof typeof RANGES;

/** The live flow rows to or from `address`, newest first (a contact point without a history). */
function liveRows(rows: readonly FlowRow[], address: string): FlowRow[] {
  const out: FlowRow[] = [];
  for (let i = rows.length - 1; i >= 0 && out.length < PEER_RECENT; i--) {
    const r = rows[i]!;
    if (r.from === address || r.to === address) out.push(r);
  }
  return out;
}

function MessageTable({ rows, label, time }: { rows: readonly (FlowRow | HistoryEntry)[]; label: string; time: (at: number) => string }) {
  return (
    <table className="peer-flow" aria-label={label}>
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
            <td className="mono muted">{time(r.at)}</td>
            <td className="mono">{r.from}</td>
            <td className="mono">{r.to}</td>
            <td className="num">{formatBytes(r.size)}</td>
            <td>
              <Outcome r={r} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

interface Loaded {
  readonly traffic: HistoryTraffic;
  readonly recent: HistoryPage;
  readonly refusals: readonly HistoryEntry[];
}

/**
 * A peer's traffic on its page (issue 16 item 3), from the persistent history: messages over
 * time (a bar chart, history:traffic) and its recent messages and refusals (history:query with
 * the peer's address), refreshed every few seconds. A contact point that keeps no history
 * shows the live flow rows of this peer that this window has seen instead.
 */
export function PeerTraffic({ peer }: { peer: PeerView }) {
  const ctx = useCtx();
  const [range, setRange] = useState<Range>('hour');
  const [loaded, setLoaded] = useState<Loaded>();
  const [error, setError] = useState<string>();
  const tick = useNow(PEER_TRAFFIC_REFRESH_MS);
  const live = useApp(useShallow((s) => liveRows(s.flowRows, peer.address)));

  useEffect(() => {
    let current = true;
    const r = RANGES[range];
    const now = Date.now();
    Promise.all([
      ctx.api.call('history:traffic', { peer: peer.address, since: now - r.ms, until: now, buckets: r.buckets }),
      ctx.api.call('history:query', { peer: peer.address, limit: PEER_RECENT }),
      ctx.api.call('history:query', { peer: peer.address, outcome: 'refused', limit: PEER_REFUSALS }),
    ]).then(
      ([traffic, recent, refusals]) => {
        if (!current) return;
        setLoaded({ traffic, recent, refusals: refusals.entries });
        setError(undefined);
      },
      (err: unknown) => {
        if (current) setError(errorText(err));
      },
    );
    return () => {
      current = false;
    };
  }, [ctx, peer.address, peer.messagesIn, peer.messagesOut, range, tick]);

  const head = (
    <div className="peer-traffic-head">
      <h2 id="peer-traffic-title">Traffic</h2>
      {loaded?.recent.enabled !== false ? (
        <label>
          Chart{' '}
          <select value={range} onChange={(e) => setRange(e.target.value as Range)}>
            {Object.entries(RANGES).map(([k, v]) => (
              <option key={k} value={k}>
                {v.label}
              </option>
            ))}
          </select>
        </label>
      ) : null}
    </div>
  );

  return (
    <section aria-labelledby="peer-traffic-title" className="peer-section" data-testid="peer-traffic">
      {head}
      {error ? (
        <p className="error" role="alert">
          Could not load this peer's history: {error}
        </p>
      ) : null}
      {loaded && !loaded.recent.enabled ? (
        <>
          <p className="muted">
            This contact point keeps no history (it runs without a state folder). {peer.messagesIn} in, {peer.messagesOut} out in all; below: what this window has
            seen since it opened.
          </p>
          {live.length > 0 ? <MessageTable rows={live} label="Recent messages" time={formatClock} /> : <p className="empty">No messages to or from {peer.address} since this window opened.</p>}
        </>
      ) : loaded ? (
        <>
          <TrafficChart traffic={loaded.traffic} title={`Messages to and from ${peer.name}, ${RANGES[range].label}`} />
          <h3>Recent messages</h3>
          {loaded.recent.entries.length > 0 ? (
            <>
              <p className="muted">
                The newest {loaded.recent.entries.length} of {loaded.recent.matched} stored ({loaded.recent.counts.delivered} delivered, {loaded.recent.counts.refused}{' '}
                refused).
              </p>
              <MessageTable rows={loaded.recent.entries} label="Recent messages" time={formatTimestamp} />
            </>
          ) : (
            <p className="empty">No stored messages to or from {peer.address}.</p>
          )}
          <h3>Recent refusals</h3>
          {loaded.refusals.length > 0 ? (
            <MessageTable rows={loaded.refusals} label="Recent refusals" time={formatTimestamp} />
          ) : (
            <p className="empty">No stored refusals to or from {peer.address}.</p>
          )}
        </>
      ) : (
        <p className="muted">Loading…</p>
      )}
    </section>
  );
}
