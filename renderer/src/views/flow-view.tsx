import { useMemo } from 'react';
import type { FlowDirection, FlowOutcome } from '../../../core/admin/contract.js';
import { RateChart } from '../components/rate-chart';
import { VirtualList } from '../components/virtual-list';
import { formatBytes, formatClock, formatCount } from '../format/units';
import { useApp, useCtx } from '../store/context';
import { clearFlow, filterRows, FLOW_RING_SIZE, setFlowFilter, setFlowPaused, type FlowRow } from '../store/flow-slice';

/** Height of one row of the live list (px); the virtual list needs it fixed. */
const ROW_HEIGHT = 30;
const DIR_LABEL: Record<FlowDirection, string> = { in: 'in', out: 'out', local: 'local' };
const DIR_TITLE: Record<FlowDirection, string> = { in: 'from outside, through the tunnel', out: 'to outside, through the tunnel', local: 'between two LAN peers' };

function Row({ r }: { r: FlowRow }) {
  return (
    <>
      <span role="cell" className="mono muted">
        {formatClock(r.at)}
      </span>
      <span role="cell" title={DIR_TITLE[r.dir]}>
        <span className={`dir ${r.dir}`}>{DIR_LABEL[r.dir]}</span>
      </span>
      <span role="cell" className="mono ellipsis" title={r.from}>
        {r.from}
      </span>
      <span role="cell" className="mono ellipsis" title={r.to}>
        {r.to}
      </span>
      <span role="cell" className="num">
        {formatBytes(r.size)}
      </span>
      <span role="cell" className="ellipsis" title={r.reason || r.outcome}>
        <span className={`outcome ${r.outcome}`}>{r.outcome}</span>
        {r.reason ? <span className="reason"> {r.reason}</span> : null}
      </span>
    </>
  );
}

export function FlowView() {
  const ctx = useCtx();
  const live = useApp((s) => s.flowRows);
  const frozen = useApp((s) => s.flowFrozen);
  const filter = useApp((s) => s.flowFilter);
  const totals = useApp((s) => s.flowTotals);
  const omitted = useApp((s) => s.flowOmitted);
  const rate = useApp((s) => s.rate);
  const seq = useApp((s) => s.flowSeq);
  const paused = frozen !== undefined;
  const source = frozen ?? live;
  const rows = useMemo(() => filterRows(source, filter), [source, filter]);
  const newSincePause = paused ? seq - (frozen.at(-1)?.seq ?? seq) : 0;

  return (
    <section aria-labelledby="flow-title" className="view flow-view">
      <header className="view-head">
        <h1 id="flow-title">Live flow</h1>
        <dl className="totals" aria-label="Totals since the contact point started">
          <div>
            <dt>Messages</dt>
            <dd data-testid="total-messages">{formatCount(totals?.messages ?? 0)}</dd>
          </div>
          <div>
            <dt>Delivered</dt>
            <dd className={totals?.delivered ? 'ok' : ''}>{formatCount(totals?.delivered ?? 0)}</dd>
          </div>
          <div>
            <dt>Refused</dt>
            <dd className={totals?.refused ? 'bad' : ''} data-testid="total-refused">
              {formatCount(totals?.refused ?? 0)}
            </dd>
          </div>
          <div>
            <dt>Bytes</dt>
            <dd>{formatBytes(totals?.bytes ?? 0)}</dd>
          </div>
        </dl>
      </header>
      <RateChart points={rate} />
      {totals && Object.keys(totals.refusals).length > 0 ? (
        <p className="refusals" aria-label="Refusals by reason">
          {Object.entries(totals.refusals).map(([name, n]) => (
            <span key={name} className="chip">
              {name.toLowerCase().replaceAll('_', ' ')} <strong>{formatCount(n)}</strong>
            </span>
          ))}
        </p>
      ) : null}

      <div className="toolbar flow-controls" role="group" aria-label="Live flow controls">
        <button type="button" aria-pressed={paused} className={paused ? 'primary' : ''} onClick={() => setFlowPaused(ctx.store, !paused)}>
          {paused ? 'Resume' : 'Pause'}
        </button>
        <label>
          Peer
          <input type="search" placeholder="name or address" value={filter.peer} onChange={(e) => setFlowFilter(ctx.store, { peer: e.target.value })} />
        </label>
        <label>
          Outcome
          <select value={filter.outcome} onChange={(e) => setFlowFilter(ctx.store, { outcome: e.target.value as FlowOutcome | 'all' })}>
            <option value="all">all</option>
            <option value="delivered">delivered</option>
            <option value="refused">refused</option>
            <option value="forwarded">forwarded</option>
          </select>
        </label>
        <label>
          Direction
          <select value={filter.dir} onChange={(e) => setFlowFilter(ctx.store, { dir: e.target.value as FlowDirection | 'all' })}>
            <option value="all">all</option>
            <option value="in">in</option>
            <option value="out">out</option>
            <option value="local">local</option>
          </select>
        </label>
        <button type="button" onClick={() => clearFlow(ctx.store)}>
          Clear
        </button>
        <span className="muted flow-status" aria-live="polite">
          {paused ? `Paused — ${formatCount(newSincePause)} new since. ` : ''}
          {formatCount(rows.length)} of the last {formatCount(FLOW_RING_SIZE)} shown
          {omitted > 0 ? `; ${formatCount(omitted)} counted but not listed (busy)` : ''}
        </span>
      </div>

      <VirtualList
        items={rows}
        rowHeight={ROW_HEIGHT}
        itemKey={(r) => r.seq}
        followTail={!paused}
        label="Messages"
        header={
          <div role="row" aria-rowindex={1} className="vrow vhead">
            <span role="columnheader">Time</span>
            <span role="columnheader">Dir</span>
            <span role="columnheader">From</span>
            <span role="columnheader">To</span>
            <span role="columnheader" className="num">
              Size
            </span>
            <span role="columnheader">Outcome</span>
          </div>
        }
        empty={<p className="empty">No messages yet. They appear here as they pass through the contact point.</p>}
        renderRow={(r) => <Row r={r} />}
      />
    </section>
  );
}
