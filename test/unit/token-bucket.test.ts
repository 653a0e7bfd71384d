import { describe, expect, it } from 'vitest';
import { KeyedBuckets, TokenBucket } from '../../core/runtime/token-bucket.js';

function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

const takes = (b: TokenBucket, n: number): number => {
  let ok = 0;
  for (let i = 0; i < n; i++) if (b.take()) ok++;
  return ok;
};

describe('token bucket', () => {
  it('starts full: a burst passes, then it refuses', () => {
    const c = clock();
    const b = new TokenBucket(10, 5, c.now);
    expect(takes(b, 8)).toBe(5);
    expect(b.take()).toBe(false);
  });

  it('refills at `rate` tokens a second', () => {
    const c = clock();
    const b = new TokenBucket(10, 5, c.now);
    takes(b, 5);
    c.advance(99);
    expect(b.take()).toBe(false);
    c.advance(1); // 100 ms since empty: one token (the refused take did not reset the clock)
    expect(b.take()).toBe(true);
    expect(b.take()).toBe(false);
    c.advance(300);
    expect(takes(b, 10)).toBe(3);
  });

  it('never holds more than the burst', () => {
    const c = clock();
    const b = new TokenBucket(10, 5, c.now);
    c.advance(60_000);
    expect(takes(b, 100)).toBe(5);
  });

  it('take(n) succeeds only when n tokens are there, and takes nothing otherwise', () => {
    const c = clock();
    const b = new TokenBucket(10, 5, c.now);
    expect(b.take(4)).toBe(true);
    expect(b.take(2)).toBe(false);
    expect(b.take(1)).toBe(true);
    expect(b.take(1)).toBe(false);
  });

  it('defaults the burst to two seconds worth', () => {
    const c = clock();
    const b = new TokenBucket(50, undefined, c.now);
    expect(takes(b, 1_000)).toBe(100);
  });

  it('has(n) looks without taking', () => {
    const c = clock();
    const b = new TokenBucket(10, 2, c.now);
    expect(b.has(2)).toBe(true);
    expect(b.has(3)).toBe(false);
    expect(takes(b, 5)).toBe(2);
    expect(b.has()).toBe(false);
    c.advance(100);
    expect(b.has()).toBe(true);
    expect(b.has()).toBe(true); // looking twice takes nothing
    expect(b.take()).toBe(true);
  });

  it('perMinute(n): a burst of n, then one every 60/n seconds', () => {
    const c = clock();
    const b = TokenBucket.perMinute(10, c.now);
    expect(takes(b, 30)).toBe(10);
    c.advance(5_999);
    expect(b.take()).toBe(false);
    c.advance(1);
    expect(b.take()).toBe(true);
    c.advance(60_000);
    expect(takes(b, 30)).toBe(10);
  });
});

describe('keyed token buckets', () => {
  it('keeps one bucket per key', () => {
    const c = clock();
    const k = KeyedBuckets.perMinute(3, 10, c.now);
    expect(Array.from({ length: 5 }, () => k.take('10.0.0.1')).filter(Boolean)).toHaveLength(3);
    expect(k.has('10.0.0.1')).toBe(false);
    expect(k.take('10.0.0.2')).toBe(true);
    c.advance(20_000);
    expect(k.has('10.0.0.1')).toBe(true);
    expect(k.take('10.0.0.1')).toBe(true);
    expect(k.take('10.0.0.1')).toBe(false);
  });

  it('an unknown key has a full bucket, and looking at it creates nothing', () => {
    const k = KeyedBuckets.perMinute(3, 10, clock().now);
    expect(k.has('a', 3)).toBe(true);
    expect(k.has('a', 4)).toBe(false);
    expect(k.size).toBe(0);
  });

  it('holds at most maxKeys buckets, forgetting the least recently used', () => {
    const c = clock();
    const k = new KeyedBuckets({ rate: 1, burst: 1, maxKeys: 2, now: c.now });
    expect(k.take('a')).toBe(true);
    expect(k.take('b')).toBe(true);
    expect(k.take('a')).toBe(false); // a is now the most recently used
    expect(k.take('c')).toBe(true); // forgets b
    expect(k.size).toBe(2);
    expect(k.has('a')).toBe(false);
    expect(k.has('b')).toBe(true); // forgotten: full again
    expect(k.has('c')).toBe(false);
  });

  it('refuses a maxKeys that cannot bound anything', () => {
    expect(() => new KeyedBuckets({ rate: 1, burst: 1, maxKeys: 0 })).toThrow(RangeError);
  });
});
