import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../core/runtime/token-bucket.js';

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
});
