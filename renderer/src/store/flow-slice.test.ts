import { describe, expect, it } from 'vitest';
import type { FlowBatch, FlowEvent, FlowTotals } from '../../../core/admin/contract.js';
import { createAppStore } from './app-store';
import { filterRows, FLOW_RING_SIZE, flowBatch, loadFlowTotals, setFlowPaused } from './flow-slice';

const totals = (messages: number, bytes: number): FlowTotals => ({ messages, bytes, delivered: messages, refused: 0, byDirection: { in: messages, out: 0, local: 0 }, refusals: {} });
const event = (i: number, over: Partial<FlowEvent> = {}): FlowEvent => ({
  at: 1_000 + i,
  id: `m${i}`,
  dir: 'in',
  from: 'alice@relay',
  to: 'printer@acme-hq',
  size: 10,
  outcome: 'delivered',
  code: 0,
  reason: '',
  ...over,
});
const batch = (at: number, events: FlowEvent[], t: FlowTotals, omitted = 0): FlowBatch => ({ at, events, omitted, intervalMs: 250, totals: t });

describe('flow slice', () => {
  it('keeps at most FLOW_RING_SIZE rows, newest last, with increasing keys', () => {
    const store = createAppStore();
    let n = 0;
    for (let b = 0; b < 15; b++) {
      const events = Array.from({ length: 200 }, () => event(n++));
      flowBatch(store, batch(1_000 + b * 250, events, totals(n, n * 10)));
    }
    const rows = store.getState().flowRows;
    expect(rows).toHaveLength(FLOW_RING_SIZE);
    expect(rows.at(-1)!.id).toBe(`m${n - 1}`);
    expect(rows[0]!.id).toBe(`m${n - FLOW_RING_SIZE}`);
    expect(rows.every((r, i) => i === 0 || r.seq === rows[i - 1]!.seq + 1)).toBe(true);
  });

  it('derives msgs/s and bytes/s from the totals between batches, not from the listed events', () => {
    const store = createAppStore();
    loadFlowTotals(store, totals(100, 1_000), 0);
    flowBatch(store, batch(10_000, [], totals(100, 1_000)));
    expect(store.getState().rate).toEqual([]); // snapshot totals have no server time
    flowBatch(store, batch(10_250, [event(1)], totals(5_100, 51_000), 4_999));
    expect(store.getState().rate).toEqual([{ at: 10_250, msgsPerSec: 20_000, bytesPerSec: 200_000 }]);
    expect(store.getState().flowOmitted).toBe(4_999);
  });

  it('freezes the rows on pause while the ring and totals go on; resume shows the live ring', () => {
    const store = createAppStore();
    flowBatch(store, batch(1_000, [event(1)], totals(1, 10)));
    setFlowPaused(store, true);
    flowBatch(store, batch(1_250, [event(2), event(3)], totals(3, 30)));
    expect(store.getState().flowFrozen?.map((r) => r.id)).toEqual(['m1']);
    expect(store.getState().flowRows.map((r) => r.id)).toEqual(['m1', 'm2', 'm3']);
    setFlowPaused(store, false);
    expect(store.getState().flowFrozen).toBeUndefined();
  });

  it('filters by peer (from or to), outcome and direction', () => {
    const store = createAppStore();
    flowBatch(
      store,
      batch(1_000, [event(1), event(2, { outcome: 'refused', code: 12, reason: 'peer is revoked', to: 'nas@acme-hq' }), event(3, { dir: 'out', from: 'nas@acme-hq', to: 'bob@relay' })], totals(3, 30)),
    );
    const rows = store.getState().flowRows;
    expect(filterRows(rows, { peer: 'nas', outcome: 'all', dir: 'all' }).map((r) => r.id)).toEqual(['m2', 'm3']);
    expect(filterRows(rows, { peer: '', outcome: 'refused', dir: 'all' }).map((r) => r.id)).toEqual(['m2']);
    expect(filterRows(rows, { peer: 'NAS', outcome: 'all', dir: 'out' }).map((r) => r.id)).toEqual(['m3']);
    expect(filterRows(rows, { peer: '', outcome: 'all', dir: 'all' })).toBe(rows);
  });
});
