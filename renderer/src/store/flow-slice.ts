import type { FlowBatch, FlowDirection, FlowEvent, FlowOutcome, FlowTotals } from '../../../core/admin/contract.js';
import type { AppStore } from './app-store';

/** Rows kept for the live list: a ring, so memory stays bounded at any message rate. */
export const FLOW_RING_SIZE = 2_000;
/** Rate samples kept for the chart (one per batch: ~4 a second, so about a minute). */
export const RATE_POINTS = 240;

export interface FlowRow extends FlowEvent {
  /** increasing number, the list's key */
  readonly seq: number;
}

export interface RatePoint {
  readonly at: number;
  readonly msgsPerSec: number;
  readonly bytesPerSec: number;
}

export interface FlowFilter {
  readonly peer: string;
  readonly outcome: FlowOutcome | 'all';
  readonly dir: FlowDirection | 'all';
}

export interface FlowSlice {
  /** newest last, at most FLOW_RING_SIZE */
  readonly flowRows: readonly FlowRow[];
  /** the rows on screen while paused; undefined when live */
  readonly flowFrozen: readonly FlowRow[] | undefined;
  readonly flowSeq: number;
  /** events the contact point counted but did not list (over its per-batch cap) */
  readonly flowOmitted: number;
  readonly flowTotals: FlowTotals | undefined;
  readonly flowTotalsAt: number;
  readonly rate: readonly RatePoint[];
  readonly flowFilter: FlowFilter;
}

export function initialFlow(): FlowSlice {
  return {
    flowRows: [],
    flowFrozen: undefined,
    flowSeq: 0,
    flowOmitted: 0,
    flowTotals: undefined,
    flowTotalsAt: 0,
    rate: [],
    flowFilter: { peer: '', outcome: 'all', dir: 'all' },
  };
}

export function loadFlowTotals(store: AppStore, totals: FlowTotals, at: number): void {
  store.setState({ flowTotals: totals, flowTotalsAt: at });
}

/** One flow:batch: rows into the ring, a rate point from the totals' delta. */
export function flowBatch(store: AppStore, batch: FlowBatch): void {
  const s = store.getState();
  let seq = s.flowSeq;
  const added: FlowRow[] = batch.events.map((e) => ({ ...e, seq: ++seq }));
  const keep = FLOW_RING_SIZE - added.length;
  const rows = keep <= 0 ? added.slice(-FLOW_RING_SIZE) : s.flowRows.length > keep ? [...s.flowRows.slice(s.flowRows.length - keep), ...added] : [...s.flowRows, ...added];
  let rate = s.rate;
  const prev = s.flowTotals;
  // Totals from a snapshot carry no server time (flowTotalsAt 0): the rate starts at the next batch.
  if (prev && s.flowTotalsAt > 0 && batch.at > s.flowTotalsAt) {
    const secs = (batch.at - s.flowTotalsAt) / 1000;
    const point: RatePoint = {
      at: batch.at,
      msgsPerSec: Math.max(0, batch.totals.messages - prev.messages) / secs,
      bytesPerSec: Math.max(0, batch.totals.bytes - prev.bytes) / secs,
    };
    rate = rate.length >= RATE_POINTS ? [...rate.slice(rate.length - RATE_POINTS + 1), point] : [...rate, point];
  }
  store.setState({
    flowRows: rows,
    flowSeq: seq,
    flowOmitted: s.flowOmitted + batch.omitted,
    flowTotals: batch.totals,
    flowTotalsAt: batch.at,
    rate,
  });
}

export function setFlowPaused(store: AppStore, paused: boolean): void {
  store.setState((s) => ({ flowFrozen: paused ? s.flowRows : undefined }));
}

export function setFlowFilter(store: AppStore, patch: Partial<FlowFilter>): void {
  store.setState((s) => ({ flowFilter: { ...s.flowFilter, ...patch } }));
}

export function clearFlow(store: AppStore): void {
  store.setState((s) => ({ flowRows: [], flowFrozen: s.flowFrozen ? [] : undefined, flowOmitted: 0 }));
}

export function filterRows(rows: readonly FlowRow[], f: FlowFilter): readonly FlowRow[] {
  const peer = f.peer.trim().toLowerCase();
  if (!peer && f.outcome === 'all' && f.dir === 'all') return rows;
  return rows.filter(
    (r) =>
      (f.outcome === 'all' || r.outcome === f.outcome) &&
      (f.dir === 'all' || r.dir === f.dir) &&
      (!peer || r.from.toLowerCase().includes(peer) || r.to.toLowerCase().includes(peer)),
  );
}
