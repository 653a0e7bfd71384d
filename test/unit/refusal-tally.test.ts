import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RefusalTally, type RefusalCount } from '../../core/runtime/refusal-tally.js';

describe('RefusalTally: refusals reported at most once per interval, with their counts', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('reports the first at once, then one report per code for what came within the interval', () => {
    const reports: (readonly RefusalCount[])[] = [];
    const t = new RefusalTally(1_000, (c) => reports.push(c));
    t.add(38, 'limit');
    expect(reports).toEqual([[{ code: 38, count: 1, reason: 'limit' }]]);
    for (let i = 0; i < 500; i++) t.add(38, `limit ${i}`);
    t.add(33, 'connect failed');
    expect(reports).toHaveLength(1);
    vi.advanceTimersByTime(999);
    expect(reports).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(reports[1]).toEqual([
      { code: 38, count: 500, reason: 'limit 499' },
      { code: 33, count: 1, reason: 'connect failed' },
    ]);
    expect(t.total).toBe(502);
    // Quiet for an interval: the next one is reported at once again.
    vi.advanceTimersByTime(1_000);
    t.add(38, 'again');
    expect(reports).toHaveLength(3);
  });

  it('flush reports what is pending; after dispose it only counts', () => {
    const reports: (readonly RefusalCount[])[] = [];
    const t = new RefusalTally(1_000, (c) => reports.push(c));
    t.add(38, 'a');
    t.add(38, 'b');
    t.flush();
    expect(reports).toEqual([[{ code: 38, count: 1, reason: 'a' }], [{ code: 38, count: 1, reason: 'b' }]]);
    t.dispose();
    t.add(38, 'c');
    vi.advanceTimersByTime(5_000);
    expect(reports).toHaveLength(2);
    expect(t.total).toBe(3);
    expect(vi.getTimerCount()).toBe(0);
  });
});
