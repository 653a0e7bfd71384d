import type { FlowDirection, FlowEvent, HistoryEntry } from '../../../core/admin/contract.js';
import { formatBytes } from '../format/units';

/** Height of one row of the flow and history lists (px); the virtual list needs it fixed. */
export const FLOW_ROW_HEIGHT = 30;
const DIR_TITLE: Record<FlowDirection, string> = { in: 'from outside, through the tunnel', out: 'to outside, through the tunnel', local: 'between two LAN peers' };

/** The cells of one message (live flow) or history entry: time, direction, from, to, size, outcome and reason. */
export function FlowRowCells({ r, time }: { r: FlowEvent | HistoryEntry; time: (at: number) => string }) {
  return (
    <>
      <span role="cell" className="mono muted" title={new Date(r.at).toISOString()}>
        {time(r.at)}
      </span>
      <span role="cell" title={DIR_TITLE[r.dir]}>
        <span className={`dir ${r.dir}`}>{r.dir}</span>
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
        <Outcome r={r} />
      </span>
    </>
  );
}

/** An outcome badge and its reason, as every message list shows them. */
export function Outcome({ r }: { r: { readonly outcome: string; readonly reason?: string | undefined } }) {
  return (
    <>
      <span className={`outcome ${r.outcome}`}>{r.outcome}</span>
      {r.reason ? <span className="reason"> {r.reason}</span> : null}
    </>
  );
}

/** The header row of those cells. */
export function FlowHeaderRow() {
  return (
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
  );
}
