import { describe, expect, it } from 'vitest';
import { MAX_DRAW_BYTES, randomInt32, randomText } from '../../core/runtime/random-pool.js';

describe('random pool (nonces, ids and seeds from one CSPRNG block, core/runtime/random-pool.ts)', () => {
  it('gives text of the asked length in each encoding', () => {
    expect(Buffer.from(randomText(24, 'base64'), 'base64')).toHaveLength(24);
    expect(randomText(24, 'base64')).toMatch(/^[A-Za-z0-9+/]{32}$/);
    expect(randomText(9, 'base64url')).toMatch(/^[A-Za-z0-9_-]{12}$/);
    expect(randomText(8, 'hex')).toMatch(/^[0-9a-f]{16}$/);
  });

  it('never hands out the same bytes twice, across many refills of the block', () => {
    const seen = new Set<string>();
    // 4,000 draws of 24 bytes: about 23 blocks, draws straddling every refill point.
    for (let i = 0; i < 4_000; i++) seen.add(randomText(24, 'hex'));
    expect(seen.size).toBe(4_000);
    const ints = new Set<number>();
    for (let i = 0; i < 1_000; i++) ints.add(randomInt32());
    expect(ints.size).toBeGreaterThan(990); // 32-bit birthday collisions: ~0.0001 expected
  });

  it('hands out bytes that do not overlap the draw before (an off-by-one in the block position would)', () => {
    // Consecutive draws of 24 bytes: how often one begins with the last m bytes of the one before.
    // By chance 256^-m a pair: ~8 of 2,000 for m = 1, none for m >= 4; overlapping draws, every pair.
    const overlaps = new Array<number>(24).fill(0);
    let prev = Buffer.from(randomText(24, 'hex'), 'hex');
    for (let i = 0; i < 2_000; i++) {
      const cur = Buffer.from(randomText(24, 'hex'), 'hex');
      for (let m = 1; m < 24; m++) if (prev.subarray(24 - m).equals(cur.subarray(0, m))) overlaps[m]!++;
      prev = cur;
    }
    expect(overlaps[1]).toBeLessThan(60);
    expect(overlaps[2]! + overlaps[3]!).toBeLessThan(5);
    expect(overlaps.slice(4).every((c) => c === 0)).toBe(true);
  });

  it('spreads its bits (each bit set in 35-65 % of 4,000 draws)', () => {
    const counts = new Array<number>(32).fill(0);
    for (let i = 0; i < 4_000; i++) {
      const v = randomInt32();
      for (let b = 0; b < 32; b++) if ((v >>> b) & 1) counts[b]!++;
    }
    for (const c of counts) {
      expect(c / 4_000).toBeGreaterThan(0.35);
      expect(c / 4_000).toBeLessThan(0.65);
    }
  });

  it('refuses draws it is not for', () => {
    expect(() => randomText(0, 'hex')).toThrow(RangeError);
    expect(() => randomText(MAX_DRAW_BYTES + 1, 'hex')).toThrow(/1-64/);
    expect(() => randomText(1.5, 'hex')).toThrow(RangeError);
  });
});
