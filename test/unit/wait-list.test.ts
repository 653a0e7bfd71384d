import { describe, expect, it } from 'vitest';
import { WaitList } from '../../core/runtime/wait-list.js';

describe('REACHABLE wait list', () => {
  it('hands back who waits for a domain once, and forgets them', () => {
    const w = new WaitList(10, 100, 1_000);
    w.add('acme-hq', 'e:alice', 0);
    w.add('acme-hq', 'e:bob', 0);
    w.add('acme-hq', 'e:alice', 5); // again: remembered once
    w.add('other', 'c:branch', 0);
    expect(w.size).toBe(3);
    expect(w.take('acme-hq', 10).sort()).toEqual(['e:alice', 'e:bob']);
    expect(w.take('acme-hq', 10)).toEqual([]);
    expect(w.domains()).toEqual(['other']);
    expect(w.size).toBe(1);
  });

  it('keeps at most perDomain per domain (oldest forgotten) and maxTotal in all', () => {
    const w = new WaitList(3, 5, 1_000);
    for (let i = 0; i < 10; i++) w.add('a', `e:${i}`, i);
    expect(w.size).toBe(3);
    expect(w.add('b', 'e:x', 20)).toBe(true);
    expect(w.add('b', 'e:y', 20)).toBe(true);
    expect(w.add('c', 'e:z', 20)).toBe(false); // full, and nothing has expired
    expect(w.size).toBe(5);
    expect(w.take('a', 20)).toEqual(['e:7', 'e:8', 'e:9']);
    // Once entries expire they make room.
    expect(w.add('c', 'e:z', 2_000)).toBe(true);
  });

  it('does not hand back entries older than ttl', () => {
    const w = new WaitList(10, 100, 1_000);
    w.add('a', 'e:old', 0);
    w.add('a', 'e:new', 900);
    expect(w.take('a', 1_500)).toEqual(['e:new']);
    w.add('b', 'e:old', 0);
    w.prune(5_000);
    expect(w.size).toBe(0);
    expect(w.domains()).toEqual([]);
  });
});
