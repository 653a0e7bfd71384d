import { describe, expect, it } from 'vitest';
import { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION } from '../../core/protocol/frames.js';
import { negotiateVersion, OFFERED_VERSIONS } from '../../core/protocol/version.js';

describe('version negotiation', () => {
  it('this build speaks version 1 only and offers exactly that', () => {
    expect(PROTOCOL_VERSION).toBe(1);
    expect(MIN_PROTOCOL_VERSION).toBe(1);
    expect(OFFERED_VERSIONS).toEqual({ min: 1, max: 1 });
  });

  it('picks the highest version both sides speak', () => {
    expect(negotiateVersion({ min: 1, max: 1 })).toBe(1);
    expect(negotiateVersion({ min: 1, max: 7 })).toBe(1);
  });

  it('finds none when the ranges do not meet', () => {
    expect(negotiateVersion({ min: 2, max: 3 })).toBeUndefined();
    expect(negotiateVersion({ min: 0, max: 0 })).toBeUndefined();
  });

  it('treats an inverted range as empty', () => {
    expect(negotiateVersion({ min: 5, max: 1 })).toBeUndefined();
  });
});
