import { useMemo, useState } from 'react';
import type { FlowDirection, FlowOutcome } from '../../../core/admin/contract.js';
import { FLOW_ROW_HEIGHT, FlowHeaderRow, FlowRowCells } from '../components/flow-row';
import { RateChart } from '../components/rate-chart';
import { VirtualList } from '../components/virtual-list';
import { formatBytes, formatClock, formatCount } from '../format/units';
import { useApp, useCtx } from '../store/context';
import { clearFlow, filterRows, FLOW_RING_SIZE, setFlowFilter, setFlowPaused } from '../store/flow-slice';
import { HistoryPanel } from './history-view';

type FlowTab = 'live' | 'history';
const TABS: readonly { readonly tab: FlowTab; readonly label: string }[] = [
  { tab: 'live', label: 'Live' },
  { tab: 'history', label: 'History' },
];


/** The Flow view: the live flow since the contact point started, and the stored history (issue 16). */
export function FlowView() {
  const [tab, setTab] = useState<FlowTab>('live');
  return (
    <section aria-labelledby="flow-title" className="view flow-view">
      <header className="view-head">
        <h1 id="flow-title">{tab === 'live' ? 'Live flow' : 'History'}</h1>
        {tab === 'live' ? <LiveTotals /> : null}
      </header>
      <div role="tablist" aria-label="Live flow or stored history" className="tabs">
        {TABS.map((t) => (
          <button key={t.tab} type="button" role="tab" className="tab" aria-selected={tab === t.tab} onClick={() => setTab(t.tab)}>
            {t.label}
          </button>
        ))}
      </div>
      {tab === 'live' ? <LiveFlow /> : <HistoryPanel />}
    </section>
  );
}

function LiveTotals() {
  const totals = useApp((s) => s.flowTotals);
  return (
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
  );
}

function LiveFlow() {
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
    <>
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
        rowHeight={FLOW_ROW_HEIGHT}
        itemKey={(r) => r.seq}
        followTail={!paused}
        label="Messages"
        header={<FlowHeaderRow />}
        empty={<p className="empty">No messages since this page opened. They appear here as they pass; earlier ones are in History.</p>}
        renderRow={(r) => <FlowRowCells r={r} time={formatClock} />}
      />
    </>
  );
}
