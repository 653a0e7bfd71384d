import { describe, expect, it } from 'vitest';
import { helloSchema, peersSchema, welcomeSchema } from '../../core/protocol/frames.js';
import { bool, int, list, obj, oneOf, optional, SchemaError, str } from '../../core/protocol/schema.js';

/** The SchemaError a parse throws (fails the test if it does not throw one). */
function failure(fn: () => unknown): SchemaError {
  try {
    fn();
  } catch (err: unknown) {
    if (err instanceof SchemaError) return err;
    throw err;
  }
  throw new Error('expected a SchemaError');
}

describe('schema primitives', () => {
  it('str: type, length bounds (inclusive) and pattern', () => {
    const s = str({ min: 2, max: 4, pattern: /^[a-z]+$/, patternText: 'must be lower-case letters' });
    expect(s.parse('ab')).toBe('ab');
    expect(s.parse('abcd')).toBe('abcd');
    expect(failure(() => s.parse('a')).rule).toBe('must have at least 2 characters');
    expect(failure(() => s.parse('abcde')).rule).toBe('must have at most 4 characters');
    expect(failure(() => s.parse('aB')).rule).toBe('must be lower-case letters');
    expect(failure(() => s.parse(12)).rule).toBe('must be a string');
  });

  it('int: integers within bounds only', () => {
    const i = int({ min: 1, max: 255 });
    expect(i.parse(1)).toBe(1);
    expect(i.parse(255)).toBe(255);
    expect(failure(() => i.parse(0)).rule).toBe('must be between 1 and 255');
    expect(failure(() => i.parse(256)).rule).toBe('must be between 1 and 255');
    expect(failure(() => i.parse(1.5)).rule).toBe('must be an integer');
    expect(failure(() => i.parse('1')).rule).toBe('must be an integer');
    expect(failure(() => i.parse(Number.NaN)).rule).toBe('must be an integer');
  });

  it('bool and oneOf', () => {
    expect(bool.parse(false)).toBe(false);
    expect(failure(() => bool.parse(0)).rule).toBe('must be true or false');
    const o = oneOf(['add', 'remove'] as const);
    expect(o.parse('remove')).toBe('remove');
    expect(failure(() => o.parse('Add')).rule).toBe('must be one of add, remove');
  });

  it('list: size cap and the index of a bad item in the path', () => {
    const l = list(str({ max: 3 }), { max: 2 });
    expect(l.parse(['a', 'b'])).toEqual(['a', 'b']);
    expect(failure(() => l.parse(['a', 'b', 'c'])).rule).toBe('must have at most 2 items');
    expect(failure(() => l.parse(['a', 'long'])).path).toBe('[1]');
    expect(failure(() => l.parse({ length: 1 })).rule).toBe('must be a list');
  });

  it('optional accepts absence, but not null', () => {
    const o = optional(int({ min: 0, max: 9 }));
    expect(o.parse(undefined)).toBeUndefined();
    expect(o.parse(3)).toBe(3);
    expect(failure(() => o.parse(null)).rule).toBe('must be an integer');
  });

  it('obj: exact keys, absent optionals left out, nested paths in errors', () => {
    const o = obj({ a: int({ min: 0, max: 9 }), b: optional(str({ max: 5 })), c: optional(obj({ d: list(bool, { max: 3 }) })) });
    expect(o.parse({ a: 1 })).toEqual({ a: 1 });
    expect(Object.keys(o.parse({ a: 1, b: undefined }))).toEqual(['a']);
    expect(o.parse({ c: { d: [true] }, a: 2 })).toEqual({ a: 2, c: { d: [true] } });
    const unknown = failure(() => o.parse({ a: 1, z: 0 }));
    expect([unknown.path, unknown.rule]).toEqual(['z', 'is not a known field']);
    expect(failure(() => o.parse({ a: 1, c: { d: [true, 'x'] } })).path).toBe('c.d[1]');
    expect(failure(() => o.parse({ a: 1, c: { d: [], e: 1 } })).message).toBe('c.e is not a known field');
    expect(failure(() => o.parse({})).message).toBe('a must be an integer');
    expect(failure(() => o.parse([])).message).toBe('value must be an object');
    expect(failure(() => o.parse(null)).message).toBe('value must be an object');
  });

  it('obj: a "__proto__" key from JSON is an unknown field, not a prototype change', () => {
    const o = obj({ a: int({ min: 0, max: 9 }) });
    const input = JSON.parse('{"a":1,"__proto__":{"polluted":true}}') as unknown;
    expect(failure(() => o.parse(input)).path).toBe('__proto__');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('frame body schemas', () => {
  const hello = { versions: { min: 1, max: 1 }, role: 'external', id: 'alice' };

  it('HELLO: the minimal body passes; names follow the address grammar', () => {
    expect(helloSchema.parse(hello)).toEqual(hello);
    expect(helloSchema.parse({ ...hello, id: 'a'.repeat(63) }).id).toHaveLength(63);
    for (const id of ['', 'a'.repeat(64), 'Alice', '-alice', '.alice', 'al ice', 'a..b', 'alice@relay']) {
      expect(() => helloSchema.parse({ ...hello, id }), id).toThrow(SchemaError);
    }
  });

  it('HELLO: secret 16-256 characters, publicKey base64 of at most 128', () => {
    expect(() => helloSchema.parse({ ...hello, secret: 'short' })).toThrow(/secret must have at least 16/);
    expect(helloSchema.parse({ ...hello, secret: 'x'.repeat(16) }).secret).toHaveLength(16);
    expect(() => helloSchema.parse({ ...hello, publicKey: 'not base64!' })).toThrow(/publicKey must be base64/);
    expect(() => helloSchema.parse({ ...hello, publicKey: 'A'.repeat(129) })).toThrow(/publicKey must have at most 128/);
    expect(() => helloSchema.parse({ ...hello, env: { addresses: Array.from({ length: 33 }, () => 'x') } })).toThrow(/env.addresses must have at most 32/);
  });

  it('WELCOME: limits are required and bounded', () => {
    const w = { version: 1, session: 's', limits: { maxMessageBytes: 1024, pingIntervalMs: 1000 } };
    expect(welcomeSchema.parse(w)).toEqual(w);
    expect(() => welcomeSchema.parse({ ...w, limits: { maxMessageBytes: 1024, pingIntervalMs: 999 } })).toThrow(/limits.pingIntervalMs/);
    expect(() => welcomeSchema.parse({ ...w, limits: { maxMessageBytes: 1024 * 1024 + 1, pingIntervalMs: 1000 } })).toThrow(/limits.maxMessageBytes/);
    expect(() => welcomeSchema.parse({ ...w, state: 'approved' })).toThrow(/state must be one of/);
  });

  it('PEERS: at most 512 valid names per frame', () => {
    const names = Array.from({ length: 512 }, (_, i) => `p${i}`);
    expect(peersSchema.parse({ op: 'add', names }).names).toHaveLength(512);
    expect(() => peersSchema.parse({ op: 'add', names: [...names, 'one-more'] })).toThrow(/names must have at most 512/);
    expect(() => peersSchema.parse({ op: 'add', names: ['ok', 'Not-Ok'] })).toThrow(/names\[1\]/);
  });
});
