import { describe, expect, it } from 'vitest';
import { formatAddress, isValidName, nameProblem, parseAddress } from '../../core/protocol/address.js';

describe('names', () => {
  it('accepts lower-case names of 1-63 characters starting with a letter or digit', () => {
    for (const n of ['a', '0', 'printer', 'scanner-2', 'a.b_c-d', 'x'.repeat(63), '9lives', 'a.']) expect(isValidName(n), n).toBe(true);
  });

  it('refuses everything else', () => {
    for (const n of ['', 'x'.repeat(64), 'Printer', '-a', '.a', '_a', 'a..b', 'a b', 'a@b', 'ä', 'a/b', 'a\n']) expect(isValidName(n), JSON.stringify(n)).toBe(false);
  });

  it('says why a name is refused', () => {
    expect(nameProblem('printer')).toBeUndefined();
    expect(nameProblem('')).toBe('is empty');
    expect(nameProblem('x'.repeat(64))).toBe('is longer than 63 characters');
    expect(nameProblem('Printer')).toBe('may use only lower-case letters, digits, ".", "_" and "-", starting with a letter or digit, and no ".."');
  });
});

describe('addresses', () => {
  it('parses name@domain', () => {
    expect(parseAddress('printer@acme-hq')).toEqual({ name: 'printer', domain: 'acme-hq' });
    expect(parseAddress('alice@relay')).toEqual({ name: 'alice', domain: 'relay' });
  });

  it('refuses anything that is not exactly one valid name, "@", one valid name', () => {
    for (const a of ['printer', '@acme-hq', 'printer@', 'a@b@c', 'Printer@acme-hq', 'printer@Acme', 'a..b@c', ' printer@acme-hq', 'printer@acme hq', '']) {
      expect(parseAddress(a), JSON.stringify(a)).toBeUndefined();
    }
  });

  it('formats what it parses', () => {
    expect(formatAddress('printer', 'acme-hq')).toBe('printer@acme-hq');
    const a = parseAddress(formatAddress('x'.repeat(63), 'y'.repeat(63)))!;
    expect(a.name).toHaveLength(63);
    expect(a.domain).toHaveLength(63);
  });
});
