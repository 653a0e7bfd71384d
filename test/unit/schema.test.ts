import { describe, expect, it } from 'vitest';
import { helloSchema, peersSchema, welcomeSchema } from '../../core/protocol/frames.js';
import { bool, dispatch, int, list, obj, oneOf, optional, SchemaError, str, union, type Handlers, type Infer } from '../../core/protocol/schema.js';

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

describe('union: a discriminated union of objects', () => {
  const shape = union('kind', {
    circle: obj({ r: int({ min: 1, max: 9 }) }),
    rect: obj({ w: int({ min: 1, max: 9 }), h: int({ min: 1, max: 9 }), label: optional(str({ max: 5 })) }),
  });
  type Shape = Infer<typeof shape>;

  it('parses each variant to exactly its keys, the discriminant first', () => {
    expect(shape.parse({ r: 2, kind: 'circle' })).toEqual({ kind: 'circle', r: 2 });
    expect(Object.keys(shape.parse({ h: 1, w: 2, kind: 'rect' }))).toEqual(['kind', 'w', 'h']);
    expect(shape.parse({ kind: 'rect', w: 1, h: 1, label: 'door' })).toEqual({ kind: 'rect', w: 1, h: 1, label: 'door' });
    // The type follows the discriminant: a rect has w, and a circle has no w at all.
    const s: Shape = shape.parse({ kind: 'rect', w: 3, h: 4 });
    expect(s.kind === 'rect' ? s.w * s.h : s.r).toBe(12);
  });

  it('refuses an unknown or missing discriminant, naming the variants', () => {
    for (const kind of ['square', undefined, 3, 'toString', '__proto__']) {
      const e = failure(() => shape.parse({ kind, r: 1 }));
      expect([e.path, e.rule], String(kind)).toEqual(['kind', 'must be one of circle, rect']);
    }
    expect(failure(() => shape.parse(null)).message).toBe('value must be an object');
    expect(failure(() => shape.parse([{ kind: 'circle', r: 1 }])).message).toBe('value must be an object');
  });

  it('refuses a required key left out, naming the key and the variant', () => {
    expect(failure(() => shape.parse({ kind: 'rect', w: 1 })).message).toBe('h is required for kind rect');
    // undefined is absence, as for obj; null is a value, and not a valid one
    expect(failure(() => shape.parse({ kind: 'circle', r: undefined })).message).toBe('r is required for kind circle');
    expect(failure(() => shape.parse({ kind: 'circle', r: null })).message).toBe('r must be an integer');
  });

  it('refuses an extra key, even one another variant has', () => {
    expect(failure(() => shape.parse({ kind: 'circle', r: 1, w: 2 })).message).toBe('w is not a field of kind circle');
    expect(failure(() => shape.parse({ kind: 'circle', r: 1, colour: 'red' })).message).toBe('colour is not a field of kind circle');
    const input = JSON.parse('{"kind":"circle","r":1,"__proto__":{"polluted":true}}') as unknown;
    expect(failure(() => shape.parse(input)).path).toBe('__proto__');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('checks each value with its variant\'s schema, with the path inside a parent', () => {
    expect(failure(() => shape.parse({ kind: 'circle', r: 10 })).message).toBe('r must be between 1 and 9');
    const nested = obj({ s: shape });
    expect(failure(() => nested.parse({ s: { kind: 'oval' } })).path).toBe('s.kind');
    expect(failure(() => nested.parse({ s: { kind: 'rect', w: 1 } })).path).toBe('s.h');
    expect(failure(() => nested.parse({ s: { kind: 'rect', w: 1, h: 'x' } })).path).toBe('s.h');
  });
});

describe('dispatch: one handler per variant, from a table', () => {
  const shape = union('kind', {
    circle: obj({ r: int({ min: 1, max: 9 }) }),
    rect: obj({ w: int({ min: 1, max: 9 }), h: int({ min: 1, max: 9 }) }),
  });
  const area: Handlers<Infer<typeof shape>, 'kind', number> = {
    circle: (c) => 3 * c.r * c.r,
    rect: (r) => r.w * r.h,
  };

  it('runs the handler of the variant with the parsed value', () => {
    expect(dispatch(shape, area, { kind: 'rect', w: 2, h: 3 })).toBe(6);
    expect(dispatch(shape, area, { kind: 'circle', r: 2 })).toBe(12);
  });

  it('an op not in the table: `unhandled` answers, and no handler runs', () => {
    const seen: unknown[] = [];
    const unhandled = (tag: unknown): number => (seen.push(tag), -1);
    expect(dispatch(shape, area, { kind: 'square', side: 2 }, unhandled)).toBe(-1);
    expect(dispatch(shape, area, { r: 2 }, unhandled)).toBe(-1);
    expect(dispatch(shape, area, 'circle', unhandled)).toBe(-1);
    expect(seen).toEqual(['square', undefined, undefined]);
    // A table that lacks a variant the schema has (a cast away from its type): unhandled, not a crash.
    const partial = { rect: area.rect } as unknown as typeof area;
    expect(dispatch(shape, partial, { kind: 'circle', r: 1 }, unhandled)).toBe(-1);
  });

  it('without `unhandled`, the schema refuses; a known op with bad fields never reaches its handler', () => {
    expect(failure(() => dispatch(shape, area, { kind: 'square' })).message).toBe('kind must be one of circle, rect');
    let ran = false;
    const watched: typeof area = { ...area, rect: () => ((ran = true), 0) };
    expect(failure(() => dispatch(shape, watched, { kind: 'rect', w: 1 }, () => -1)).message).toBe('h is required for kind rect');
    expect(failure(() => dispatch(shape, watched, { kind: 'rect', w: 1, h: 1, r: 1 })).message).toBe('r is not a field of kind rect');
    expect(ran).toBe(false);
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

describe('schema errors quote at most 64 characters of an unknown key', () => {
  it('names a short unknown key in full and a long one by its start', () => {
    const s = obj({ a: int({ min: 0, max: 9 }) });
    expect(() => s.parse({ a: 1, typo: 2 })).toThrow('typo is not a known field');
    const long = 'k'.repeat(100_000);
    try {
      s.parse({ a: 1, [long]: 2 });
      expect.unreachable('an unknown key is refused');
    } catch (err) {
      expect(err).toBeInstanceOf(SchemaError);
      const message = (err as SchemaError).message;
      expect(message.length).toBeLessThan(120);
      expect(message).toContain(`${'k'.repeat(64)}… is not a known field`);
    }
  });
});
