import { describe, expect, it } from 'vitest';
import { FairSlots, sourceKey, type EvictReason } from '../../core/runtime/fair-slots.js';

describe('FairSlots', () => {
  function table(max: number, maxPerKey: number, pressureAgeMs = 1_000): { slots: FairSlots; clock: { t: number }; evicted: string[] } {
    const clock = { t: 0 };
    return { slots: new FairSlots({ max, maxPerKey, pressureAgeMs, now: () => clock.t }), clock, evicted: [] };
  }
  const take = (s: FairSlots, key: string, label: string, log: string[]): ReturnType<FairSlots['take']> =>
    s.take(key, (why: EvictReason) => log.push(`${label}:${why}`));

  it('refuses a source at its own cap, and frees on release', () => {
    const { slots, evicted } = table(10, 2);
    const a1 = take(slots, 'a', 'a1', evicted);
    expect(take(slots, 'a', 'a2', evicted)).toBeDefined();
    expect(take(slots, 'a', 'a3', evicted)).toBeUndefined();
    a1?.release();
    a1?.release(); // idempotent
    expect(slots.countOf('a')).toBe(1);
    expect(take(slots, 'a', 'a4', evicted)).toBeDefined();
    expect(evicted).toEqual([]);
  });

  it('when full, evicts the oldest entry of the source holding the most, never a smaller holder', () => {
    const { slots, clock, evicted } = table(6, 4, 60_000);
    for (let i = 0; i < 4; i++) {
      clock.t++;
      take(slots, 'big', `big${i}`, evicted);
    }
    clock.t++;
    take(slots, 'small', 'small0', evicted);
    clock.t++;
    take(slots, 'other', 'other0', evicted);
    expect(slots.size).toBe(6);
    clock.t++;
    expect(take(slots, 'new', 'new0', evicted)).toBeDefined();
    expect(evicted).toEqual(['big0:evicted']);
    clock.t++;
    take(slots, 'new', 'new1', evicted);
    expect(evicted).toEqual(['big0:evicted', 'big1:evicted']);
    // big and new now hold 2 each, small and other 1: the tie goes to the source whose oldest is oldest.
    clock.t++;
    take(slots, 'late', 'late0', evicted);
    expect(evicted.at(-1)).toBe('big2:evicted');
    expect(slots.countOf('small')).toBe(1);
    expect(slots.size).toBe(6);
  });

  it('under pressure, a newcomer closes every entry older than the pressure age first', () => {
    const { slots, clock, evicted } = table(8, 8, 1_000);
    for (let i = 0; i < 5; i++) take(slots, 'a', `a${i}`, evicted); // t = 0
    clock.t = 500;
    take(slots, 'b', 'b0', evicted); // more than half full, but nothing is old yet
    expect(evicted).toEqual([]);
    clock.t = 1_200;
    take(slots, 'c', 'c0', evicted);
    expect(evicted).toEqual(['a0:expired', 'a1:expired', 'a2:expired', 'a3:expired', 'a4:expired']);
    expect(slots.size).toBe(2);
    expect(slots.evictions).toEqual({ expired: 5, evicted: 0 });
  });

  it('validates its limits', () => {
    expect(() => new FairSlots({ max: 0, maxPerKey: 1, pressureAgeMs: 1 })).toThrow(/slots: max must be a positive integer, got 0/);
  });
});

describe('sourceKey', () => {
  it('is the IPv4 address, or the IPv6 /64', () => {
    expect(sourceKey('127.0.0.2')).toBe('127.0.0.2');
    expect(sourceKey('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(sourceKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(sourceKey('::1')).toBe('0:0:0:0::/64');
    expect(sourceKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(sourceKey('2001:DB8:0001:0002::')).toBe('2001:db8:1:2::/64');
  });
});
