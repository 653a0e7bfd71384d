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

describe('ChurnTable, its own hash table (positions in insertion order, seeded buckets)', () => {
  it('visits every entry once, in order, when entries move during the iteration (compaction and growth)', () => {
    const t = new ChurnTable<number>();
    for (let i = 0; i < 6; i++) t.set(`m.${i}`, i);
    t.delete('m.0');
    const seen: number[] = [];
    let next = 6;
    for (const v of t.values()) {
      seen.push(v);
      // Each visit deletes what it saw and adds two: the tail reaches the end again and again,
      // so the live entries move to the front (and to larger arrays) while this loop runs.
      t.delete(`m.${v}`);
      if (next < 200) {
        t.set(`m.${next}`, next++);
        t.set(`m.${next}`, next++);
      }
    }
    expect(seen).toEqual(Array.from({ length: 199 }, (_, i) => i + 1));
    expect(t.size).toBe(0);
  });

  it('lets a large table go once empty, keeps a small one, and shrinks after a burst', () => {
    const t = new ChurnTable<number>();
    expect(t.positions).toBe(0); // nothing allocated until the first entry
    t.set('a.1', 1);
    expect(t.positions).toBe(8);
    t.delete('a.1');
    expect(t.positions).toBe(8); // kept: a paced flow of one message at a time allocates nothing
    for (let i = 0; i < 10_000; i++) t.set(`b.${i}`, i);
    expect(t.positions).toBeGreaterThanOrEqual(20_000); // grown, with room to spare
    for (let i = 0; i < 9_990; i++) t.delete(`b.${i}`);
    // The next moves (as the tail reaches the end) size the arrays to what is live.
    for (let i = 0; i < 100_000; i++) {
      t.set(`c.${i}`, i);
      t.delete(`c.${i}`);
    }
    expect(t.positions).toBe(64);
    expect([...t.values()]).toEqual(Array.from({ length: 10 }, (_, i) => 9_990 + i));
    for (let i = 9_990; i < 10_000; i++) t.delete(`b.${i}`);
    expect(t.positions).toBe(0);
    expect(t.first()).toBeUndefined();
  });

  it('keeps its arrays while a window of entries moves about a power of two (no reallocation at each move)', () => {
    const t = new ChurnTable<number>();
    const seen = new Set<number>();
    let next = 0;
    let oldest = 0;
    // A sender's window of messages awaiting their ACKs, 120 in flight for a while, then 140, and
    // so on: each moves the tail through the arrays' end several times.
    for (let round = 0; round < 40; round++) {
      const size = round % 2 === 0 ? 140 : 120;
      for (let i = 0; i < 3_000; i++) {
        t.set(`m.${next}`, next++);
        while (next - oldest > size) t.delete(`m.${oldest++}`);
      }
      if (round >= 2) seen.add(t.positions);
    }
    expect([...seen]).toEqual([1024]);
  });

  it('keepPositions: a table that empties again and again keeps its arrays, and still shrinks to them after a burst', () => {
    const t = new ChurnTable<number>({ keepPositions: 1000 }); // rounded up to 1,024
    const seen = new Set<number>();
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 256; i++) t.set(`r${round}.${i}`, i); // a window of 256 sent
      if (round >= 2) seen.add(t.positions);
      for (let i = 0; i < 256; i++) t.delete(`r${round}.${i}`); // and acknowledged in one BATCH
      if (round >= 2) seen.add(t.positions);
      expect(t.size).toBe(0);
    }
    expect([...seen]).toEqual([512]); // grown once (8, 32, 128, 512), kept through every emptying
    t.set('x', 1);
    expect([...t.values()]).toEqual([1]);
    expect(t.first()).toEqual(['x', 1]);
    t.delete('x');
    for (let i = 0; i < 10_000; i++) t.set(`b.${i}`, i);
    expect(t.positions).toBeGreaterThanOrEqual(32_768);
    for (let i = 0; i < 9_990; i++) t.delete(`b.${i}`);
    for (let i = 0; i < 100_000; i++) {
      t.set(`c.${i}`, i);
      t.delete(`c.${i}`);
    }
    expect(t.positions).toBe(1024); // not below what it keeps
    expect([...t.values()]).toEqual(Array.from({ length: 10 }, (_, i) => 9_990 + i));
    for (let i = 9_990; i < 10_000; i++) t.delete(`b.${i}`);
    expect(t.positions).toBe(1024);
  });

  it('rehashes under a new seed when keys pile up in one bucket, and still finds every key', () => {
    const t = new ChurnTable<number>();
    const internals = t as unknown as { seed: number; hash(k: string): number };
    internals.seed = 0;
    // 41 keys in one bucket of 256 (and so of every smaller power of two) under seed 0: what a
    // sender who knew the seed could send.
    const colliding: string[] = [];
    for (let i = 0; colliding.length < 41; i++) {
      const k = `x.${i}`;
      if ((internals.hash(k) & 255) === 0) colliding.push(k);
    }
    for (const k of colliding.slice(0, 40)) t.set(k, 1);
    // Other keys come and go (none in that bucket), so that more keys were put than the table has positions.
    for (let i = 0, n = 0; n < 300; i++) {
      const k = `f.${i}`;
      if ((internals.hash(k) & 127) === 0) continue;
      t.set(k, 2);
      t.delete(k);
      n++;
    }
    expect(t.positions).toBe(256);
    expect(t.reseeds).toBe(0);
    t.set(colliding[40]!, 1); // the bucket now holds 41 (over 32), after more inserts than positions
    expect(t.reseeds).toBe(1);
    expect(internals.seed).not.toBe(0);
    for (const k of colliding) expect(t.get(k), k).toBe(1);
    expect(t.size).toBe(41);
  });

  it('agrees with a Map through a random mix of sets, replacements, deletes, clears and iterations', () => {
    const t = new ChurnTable<number>();
    const m = new Map<string, number>();
    let x = 12345;
    const rand = (n: number): number => {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      return x % n;
    };
    for (let step = 0; step < 50_000; step++) {
      const k = `k.${rand(600)}`;
      const op = rand(100);
      if (op < 50) {
        t.set(k, step);
        m.set(k, step);
      } else if (op < 95) {
        expect(t.delete(k)).toBe(m.delete(k));
      } else if (op < 99) {
        expect([...t.values()]).toEqual([...m.values()]);
      } else if (rand(20) === 0) {
        t.clear();
        m.clear();
      }
      expect(t.get(k)).toBe(m.get(k));
      expect(t.size).toBe(m.size);
    }
    expect(t.first()).toEqual([...m.entries()][0]);
  });
});
