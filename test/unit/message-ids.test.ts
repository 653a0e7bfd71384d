import { describe, expect, it } from 'vitest';
import { DedupeWindow } from '../../core/peer/dedupe.js';
import { base36, ID_NUMBER_BITS, MessageIds } from '../../core/peer/message-ids.js';

function numberPart(id: string): number {
  return parseInt(id.slice(id.lastIndexOf('.') + 1), 36);
}

describe('message ids (a keyed permutation of a counter)', () => {
  it('have one random prefix and a canonical base-36 number of at most 10 digits', () => {
    const ids = new MessageIds();
    const prefix = ids.currentPrefix;
    expect(prefix).toMatch(/^[A-Za-z0-9_-]{8}\.$/);
    for (let i = 0; i < 5_000; i++) {
      const id = ids.next();
      expect(id.startsWith(prefix)).toBe(true);
      expect(id.slice(prefix.length)).toMatch(/^(0|[1-9a-z][0-9a-z]{0,9})$/);
    }
  });

  it('never repeat, and the next is not a small step from the previous one', () => {
    const ids = new MessageIds();
    const seen = new Set<number>();
    let prev = numberPart(ids.next());
    seen.add(prev);
    let nearby = 0;
    let outOfRange = 0;
    for (let i = 1; i < 100_000; i++) {
      const n = numberPart(ids.next());
      if (!(n >= 0 && n < 2 ** ID_NUMBER_BITS)) outOfRange++;
      if (Math.abs(n - prev) < 2 ** 32) nearby++;
      seen.add(n);
      prev = n;
    }
    expect(outOfRange).toBe(0);
    expect(seen.size).toBe(100_000);
    // For uniformly spread values, |next - prev| < 2^32 has probability ~2^-15 each time.
    expect(nearby).toBeLessThan(20);
  });

  it('makes its key with the first id or permute(), and changes prefix and key after 2^48 ids', () => {
    // permute() before any next(): the same key then serves next() (counter 0 is permute(0)).
    const ids = new MessageIds();
    const first = ids.permute(0);
    expect(numberPart(ids.next())).toBe(first);
    // Near the end of the counter: the batch that would pass 2^48 starts under a new prefix and key.
    const old = ids.currentPrefix;
    (ids as unknown as { counter: number; pos: number }).counter = 2 ** ID_NUMBER_BITS - 256;
    (ids as unknown as { pos: number }).pos = 256;
    const last = ids.next(); // the last batch of the old key still fits
    expect(last.startsWith(old)).toBe(true);
    (ids as unknown as { pos: number }).pos = 256;
    const next = ids.next();
    expect(ids.currentPrefix).not.toBe(old);
    expect(next.startsWith(ids.currentPrefix)).toBe(true);
    expect(numberPart(next)).toBe(ids.permute(0)); // counter back at 0, under the new key
  });

  it('is a permutation (distinct counters give distinct numbers) keyed per sender', () => {
    const a = new MessageIds();
    const b = new MessageIds();
    const outs = new Set<number>();
    for (const n of [0, 1, 2, 3, 2 ** 24 - 1, 2 ** 24, 2 ** 47, 2 ** 48 - 1]) outs.add(a.permute(n));
    expect(outs.size).toBe(8);
    expect(a.permute(12_345)).toBe(a.permute(12_345));
    // Two senders' sequences have nothing in common but the form.
    expect([0, 1, 2].map((n) => a.permute(n))).not.toEqual([0, 1, 2].map((n) => b.permute(n)));
    expect(a.currentPrefix).not.toBe(b.currentPrefix);
    expect(() => a.permute(2 ** 48)).toThrow(RangeError);
  });

  it('keep the receiver dedupe on its numeric path: one stream per sender, duplicates caught, nothing confused', () => {
    const ids = new MessageIds();
    const d = new DedupeWindow(1_000);
    const sent: string[] = [];
    for (let i = 0; i < 3_000; i++) {
      const id = ids.next();
      sent.push(id);
      expect(d.has('alice@relay', id)).toBe(false);
      d.add('alice@relay', id);
      expect(d.has('alice@relay', id)).toBe(true);
    }
    expect(d.streams).toBe(1);
    expect(d.size).toBe(1_000);
    expect(sent.slice(-1_000).every((id) => d.has('alice@relay', id))).toBe(true);
    expect(sent.slice(0, 2_000).some((id) => d.has('alice@relay', id))).toBe(false);
    expect(d.has('bob@relay', sent.at(-1)!)).toBe(false);
  });
});

describe('base36', () => {
  it('prints like Number.prototype.toString(36) below 2^48', () => {
    const samples = [0, 1, 35, 36, 36 ** 5 - 1, 36 ** 5, 36 ** 5 + 1, 36 ** 9, 2 ** 31, 2 ** 32 + 7, 2 ** 48 - 1];
    for (let i = 0; i < 2_000; i++) samples.push(Math.floor(Math.random() * 2 ** 48));
    for (const n of samples) expect(base36(n), String(n)).toBe(n.toString(36));
  });
});
