import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hashSecret, newSecret, safeEqual, secretMatches } from '../../core/runtime/secrets.js';

describe('bearer secrets', () => {
  it('are "<prefix>_" and 256 random bits in base64url', () => {
    const s = newSecret('cpk');
    expect(s).toMatch(/^cpk_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(s.slice(4), 'base64url')).toHaveLength(32);
    expect(newSecret('epk')).toMatch(/^epk_/);
    const many = new Set(Array.from({ length: 100 }, () => newSecret('x')));
    expect(many.size).toBe(100);
  });

  it('are stored as the SHA-256 of their UTF-8 text, in hex', () => {
    expect(hashSecret('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const s = newSecret('cpk');
    expect(hashSecret(s)).toBe(createHash('sha256').update(s).digest('hex'));
    expect(hashSecret(s)).not.toContain(s.slice(4, 12));
  });

  it('match only their own hash', () => {
    const s = newSecret('cpk');
    const h = hashSecret(s);
    expect(secretMatches(s, h)).toBe(true);
    expect(secretMatches(s + 'x', h)).toBe(false);
    expect(secretMatches('', h)).toBe(false);
    expect(secretMatches(s, hashSecret('other'))).toBe(false);
  });

  it('treat a malformed stored hash as a mismatch, not an error', () => {
    const s = newSecret('cpk');
    expect(secretMatches(s, '')).toBe(false);
    expect(secretMatches(s, 'abcd')).toBe(false);
    expect(secretMatches(s, 'zz'.repeat(32))).toBe(false);
  });

  it('safeEqual compares strings of any length', () => {
    expect(safeEqual('token', 'token')).toBe(true);
    expect(safeEqual('token', 'token2')).toBe(false);
    expect(safeEqual('', '')).toBe(true);
    expect(safeEqual('a'.repeat(1_000), 'a'.repeat(999) + 'b')).toBe(false);
  });
});
