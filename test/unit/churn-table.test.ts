import { describe, expect, it } from 'vitest';
import { ChurnTable } from '../../core/runtime/churn-table.js';

describe('ChurnTable (string-keyed entries that come and go, core/runtime/churn-table.ts)', () => {
  it('gets, sets, replaces and deletes like a Map, counting each key once', () => {
    const t = new ChurnTable<number>();
    expect(t.size).toBe(0);
    expect(t.get('a.1')).toBeUndefined();
    t.set('a.1', 1).set('a.2', 2);
    t.set('a.1', 10); // replaced, not counted twice
    expect(t.size).toBe(2);
    expect(t.get('a.1')).toBe(10);
    expect(t.has('a.2')).toBe(true);
    expect(t.delete('a.2')).toBe(true);
    expect(t.delete('a.2')).toBe(false);
    expect(t.has('a.2')).toBe(false);
    expect(t.size).toBe(1);
    t.clear();
    expect(t.size).toBe(0);
    expect(t.get('a.1')).toBeUndefined();
  });

  it('keeps keys that name Object.prototype members as plain keys', () => {
    const t = new ChurnTable<string>();
    for (const k of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      expect(t.get(k), k).toBeUndefined();
      t.set(k, k.toUpperCase());
    }
    expect(t.size).toBe(4);
    expect(t.get('__proto__')).toBe('__PROTO__');
    expect([...t.values()]).toEqual(['__PROTO__', 'CONSTRUCTOR', 'TOSTRING', 'HASOWNPROPERTY']);
  });

  it('iterates in insertion order, skips what is deleted during the iteration, and gives the oldest first', () => {
    const t = new ChurnTable<number>();
    for (let i = 0; i < 1_000; i++) t.set(`m.${i}`, i);
    for (let i = 0; i < 1_000; i += 2) t.delete(`m.${i}`);
    expect(t.first()).toEqual(['m.1', 1]);
    const seen: number[] = [];
    for (const v of t.values()) {
      seen.push(v);
      t.delete(`m.${v + 2}`); // the next odd one: skipped
    }
    expect(seen).toEqual(Array.from({ length: 250 }, (_, i) => 1 + 4 * i));
    expect(t.size).toBe(250);
    t.clear();
    expect(t.first()).toBeUndefined();
  });

  it('stays correct through a long churn of a few entries at a time (the in-flight pattern)', () => {
    const t = new ChurnTable<{ id: string }>();
    const live = new Map<string, { id: string }>();
    let n = 0;
    for (let round = 0; round < 5_000; round++) {
      const burst = 1 + (round % 17);
      for (let k = 0; k < burst; k++) {
        const v = { id: `x.${n++}` };
        t.set(v.id, v);
        live.set(v.id, v);
      }
      for (const id of [...live.keys()].slice(0, burst - (round % 3))) {
        expect(t.get(id)).toBe(live.get(id));
        t.delete(id);
        live.delete(id);
      }
      expect(t.size).toBe(live.size);
    }
    expect([...t.values()]).toEqual([...live.values()]);
  });
});
