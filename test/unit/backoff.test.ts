import { describe, expect, it } from 'vitest';
import { Backoff } from '../../core/runtime/backoff.js';
import { RECONNECT_BASE_MS, RECONNECT_FACTOR, RECONNECT_MAX_MS } from '../../core/protocol/limits.js';

const draws = (b: Backoff, n: number): number[] => Array.from({ length: n }, () => b.next());

describe('reconnect backoff with full jitter', () => {
  it('with random() = 1 the delay is the ceiling: base * 2^attempt, capped', () => {
    expect(draws(new Backoff(100, 1_000, () => 1), 7)).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000]);
  });

  it('with random() = 0 the delay is the floor, half the base', () => {
    expect(draws(new Backoff(100, 1_000, () => 0), 4)).toEqual([50, 50, 50, 50]);
  });

  it('scales the ceiling by random(), rounded, never under the floor', () => {
    expect(draws(new Backoff(100, 10_000, () => 0.25), 5)).toEqual([50, 50, 100, 200, 400]);
  });

  it('stays within [base/2, min(max, base * 2^attempt)] for any random value', () => {
    let seed = 7;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const b = new Backoff(250, 30_000, rand);
    for (let attempt = 0; attempt < 2_000; attempt++) {
      const d = b.next();
      expect(Number.isFinite(d)).toBe(true);
      expect(d).toBeGreaterThanOrEqual(125);
      expect(d).toBeLessThanOrEqual(Math.min(30_000, 250 * 2 ** attempt));
    }
    expect(b.attempts).toBe(2_000);
  });

  it('reset() starts over from the base', () => {
    const b = new Backoff(100, 1_000, () => 1);
    draws(b, 5);
    expect(b.attempts).toBe(5);
    b.reset();
    expect(b.attempts).toBe(0);
    expect(b.next()).toBe(100);
    expect(b.next()).toBe(200);
  });

  it('defaults to the protocol limits', () => {
    expect([RECONNECT_BASE_MS, RECONNECT_MAX_MS, RECONNECT_FACTOR]).toEqual([250, 30_000, 2]);
    const b = new Backoff(undefined, undefined, () => 1);
    expect(draws(b, 9)).toEqual([250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
  });
});
