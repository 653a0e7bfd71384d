import { describe, expect, it } from 'vitest';
import { DedupeWindow } from '../../core/peer/dedupe.js';
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
