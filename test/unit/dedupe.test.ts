import { describe, expect, it } from 'vitest';
import { DedupeWindow, MAX_DEDUPE_CAPACITY } from '../../core/peer/dedupe.js';
import { DEDUPE_WINDOW } from '../../core/protocol/limits.js';

describe('receiver dedupe window', () => {
  it('remembers (sender, id) pairs', () => {
    const d = new DedupeWindow(10);
    expect(d.has('alice@relay', 'm1')).toBe(false);
    d.add('alice@relay', 'm1');
    expect(d.has('alice@relay', 'm1')).toBe(true);
    expect(d.has('bob@relay', 'm1')).toBe(false);
    expect(d.has('alice@relay', 'm2')).toBe(false);
  });

  it('forgets the oldest entry first when full', () => {
    const d = new DedupeWindow(3);
    for (const id of ['a', 'b', 'c']) d.add('s@x', id);
    d.add('s@x', 'd');
    expect(d.size).toBe(3);
    expect(d.has('s@x', 'a')).toBe(false);
    expect(['b', 'c', 'd'].map((id) => d.has('s@x', id))).toEqual([true, true, true]);
  });

  it('adding a pair it already has changes nothing', () => {
    const d = new DedupeWindow(2);
    d.add('s@x', 'a');
    d.add('s@x', 'b');
    d.add('s@x', 'a');
    expect(d.size).toBe(2);
    d.add('s@x', 'c');
    expect(d.has('s@x', 'a')).toBe(false);
    expect(d.has('s@x', 'b')).toBe(true);
  });

  it('stays bounded under a long stream', () => {
    const d = new DedupeWindow(1_000);
    for (let i = 0; i < 50_000; i++) d.add(`p${i % 7}@x`, `m${i}`);
    expect(d.size).toBe(1_000);
    expect(d.has('p5@x', 'm49999')).toBe(true); // 49999 % 7 = 5
    expect(d.has('p6@x', 'm49999')).toBe(false);
    expect(d.has('p0@x', 'm49000')).toBe(true); // 49000 is within the last 1,000
    expect(d.has('p6@x', 'm48999')).toBe(false); // 48999 is not
    expect(d.has('p0@x', 'm0')).toBe(false);
  });

  it('defaults to a window of 65,536 messages', () => {
    expect(DEDUPE_WINDOW).toBe(65_536);
  });
});

/** The obvious implementation, to compare against: a Set and a queue of keys. */
class ModelWindow {
  private readonly seen = new Set<string>();
  private readonly order: string[] = [];
  constructor(private readonly capacity: number) {}
  has(from: string, id: string): boolean {
    return this.seen.has(`${from}\n${id}`);
  }
  get size(): number {
    return this.order.length;
  }
  add(from: string, id: string): void {
    const key = `${from}\n${id}`;
    if (this.seen.has(key)) return;
    if (this.order.length === this.capacity) this.seen.delete(this.order.shift()!);
    this.order.push(key);
    this.seen.add(key);
  }
}

/** Small deterministic PRNG so a failure reproduces. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return s / 4294967296;
  };
}

describe('receiver dedupe window, compact form', () => {
  it('keeps SDK-style ids (prefix, then a base-36 counter) as numbers: one stream per sender and prefix', () => {
    const d = new DedupeWindow(65_536);
    for (let i = 0; i < 100_000; i++) d.add('alice@relay', `AbC-_123.${i.toString(36)}`);
    expect(d.size).toBe(65_536);
    expect(d.streams).toBe(1);
    expect(d.has('alice@relay', `AbC-_123.${(99_999).toString(36)}`)).toBe(true);
    expect(d.has('alice@relay', `AbC-_123.${(100_000 - 65_536).toString(36)}`)).toBe(true);
    expect(d.has('alice@relay', `AbC-_123.${(100_000 - 65_537).toString(36)}`)).toBe(false);
    expect(d.has('alice@relay', `AbC-_124.${(99_999).toString(36)}`)).toBe(false);
    expect(d.has('bob@relay', `AbC-_123.${(99_999).toString(36)}`)).toBe(false);
  });

  it('never confuses distinct ids that spell the same number', () => {
    const d = new DedupeWindow(100);
    d.add('s@x', 'p.1');
    for (const id of ['p.01', 'p.001', 'p1', '1', 'p..1', 'P.1', 'p.1 ', 'q.1']) expect(d.has('s@x', id), id).toBe(false);
    d.add('s@x', '7');
    expect(d.has('s@x', '7')).toBe(true);
    expect(d.has('s@x', '07')).toBe(false);
    expect(d.has('s@x', '.7')).toBe(false);
    // counters past 10 base-36 digits, upper case, and other characters take the string path, exactly
    for (const id of ['p.zzzzzzzzzzz', 'p.ZZ', 'p.1-2', 'p.', 'x']) {
      expect(d.has('s@x', id)).toBe(false);
      d.add('s@x', id);
      expect(d.has('s@x', id)).toBe(true);
    }
    expect(d.has('s@x', 'p.zzzzzzzzzz')).toBe(false);
  });

  it('frees a stream once none of its entries is left in the window', () => {
    const d = new DedupeWindow(4);
    for (let s = 0; s < 50; s++) d.add(`peer${s}@x`, `k.${s}`);
    expect(d.streams).toBe(4);
    for (let i = 0; i < 4; i++) d.add('one@x', `k.${i}`);
    expect(d.streams).toBe(1);
    expect(d.has('peer49@x', 'k.49')).toBe(false);
  });

  it('agrees with a plain Set-and-queue window over random mixed traffic', () => {
    for (const capacity of [1, 2, 3, 17, 256, 4096]) {
      const rand = prng(capacity);
      const d = new DedupeWindow(capacity);
      const model = new ModelWindow(capacity);
      const senders = ['a@x', 'b@x', 'c@y', 'd@z'];
      const prefixes = ['', 'AAAA.', 'BBBB.', 'x.y.', 'p.'];
      const counters = [0, 0, 0, 0, 0];
      for (let op = 0; op < 60_000; op++) {
        const from = senders[Math.floor(rand() * senders.length)]!;
        const r = rand();
        let id: string;
        if (r < 0.7) {
          const p = Math.floor(rand() * prefixes.length);
          // mostly fresh counters, some repeats of recent and old ones (retries)
          const back = rand() < 0.3 ? Math.floor(rand() * capacity * 2) : 0;
          counters[p]! += back === 0 ? 1 : 0;
          id = prefixes[p]! + Math.max(0, counters[p]! - back).toString(36);
        } else if (r < 0.85) {
          id = `m${Math.floor(rand() * capacity * 3)}`;
        } else {
          id = `p.0${Math.floor(rand() * 50)}`;
        }
        if (rand() < 0.5) {
          expect(d.has(from, id)).toBe(model.has(from, id));
        } else {
          d.add(from, id);
          model.add(from, id);
        }
      }
      // and every pair the model holds, the window holds, and nothing else among the recent ones
      for (const from of senders) {
        for (let i = 0; i < 200; i++) {
          for (const id of [`AAAA.${i.toString(36)}`, `m${i}`, `p.0${i % 50}`, i.toString(36)]) expect(d.has(from, id)).toBe(model.has(from, id));
        }
      }
    }
  });

  it('refuses a window size that is not a whole number from 1 to MAX_DEDUPE_CAPACITY', () => {
    for (const bad of [0, -1, 1.5, NaN, Infinity, MAX_DEDUPE_CAPACITY + 1]) {
      expect(() => new DedupeWindow(bad), String(bad)).toThrow(RangeError);
    }
    expect(new DedupeWindow(1).size).toBe(0);
  });

  it('keeps probe runs short for ids a sender crafts to collide under an unkeyed hash', () => {
    // Ids whose counters share (low 32 bits) ^ imul(high 32 bits, C): all one slot for a hash
    // that mixes them before its seed. Keyed mixing spreads them like any others.
    const d = new DedupeWindow(65_536);
    for (let hi = 1; hi <= 65_536; hi++) {
      const lo = (12_345 ^ Math.imul(hi, 0x27d4eb2f)) >>> 0;
      d.add('mallory@relay', `m.${(hi * 4294967296 + lo).toString(36)}`);
    }
    expect(d.size).toBe(65_536);
    expect(d.longestRun()).toBeLessThan(64);
    expect(d.rebuilds).toBe(0);
    expect(d.has('mallory@relay', `m.${(65_536 * 4294967296 + ((12_345 ^ Math.imul(65_536, 0x27d4eb2f)) >>> 0)).toString(36)}`)).toBe(true);
  });

  it('adds what has() just missed without looking for it again, and stays exact whatever comes between', () => {
    const d = new DedupeWindow(4);
    const model = new ModelWindow(4);
    const ids = ['p.1', 'p.2', 'other-form', 'p.3', 'p.4', 'p.5'];
    // has() then add() of the same pair (what a receiver does), with other adds and repeats between.
    for (const [i, id] of ids.entries()) {
      expect(d.has('s@x', id)).toBe(model.has('s@x', id));
      if (i % 2 === 1) {
        d.add('t@x', id); // another sender's pair in between
        model.add('t@x', id);
      }
      d.add('s@x', id);
      model.add('s@x', id);
      d.add('s@x', id); // again: present, changes nothing
      model.add('s@x', id);
      expect(d.size).toBe(model.size);
    }
    // A miss, then the pair added by a different string with the same text: still one entry.
    expect(d.has('s@x', 'p.9')).toBe(false);
    d.add(`s@${'x'}`, ['p', '9'].join('.'));
    model.add('s@x', 'p.9');
    expect(d.size).toBe(model.size);
    for (const from of ['s@x', 't@x']) for (const id of [...ids, 'p.9']) expect(d.has(from, id), `${from} ${id}`).toBe(model.has(from, id));
  });

  it('stays exact across a rebuild under new seeds', () => {
    const d = new DedupeWindow(1_000);
    const model = new ModelWindow(1_000);
    for (let i = 0; i < 1_500; i++) {
      d.add('s@x', `k.${i.toString(36)}`);
      model.add('s@x', `k.${i.toString(36)}`);
      if (i === 1_200) (d as unknown as { rebuild(): void }).rebuild(); // what a long probe run triggers
    }
    expect(d.rebuilds).toBe(1);
    for (let i = 0; i < 1_500; i++) expect(d.has('s@x', `k.${i.toString(36)}`)).toBe(model.has('s@x', `k.${i.toString(36)}`));
  });
});
