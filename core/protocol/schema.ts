/**
 * A small schema checker for control bodies and admin calls: each schema both validates an
 * `unknown` and types the result. Failures throw one error naming the path and the rule
 * (never return undefined), so the boundary answers INVALID_BODY with something useful.
 */

export class SchemaError extends Error {
  override readonly name = 'SchemaError';
  constructor(
    readonly path: string,
    readonly rule: string,
  ) {
    super(`${path || 'value'} ${rule}`);
  }
}

export interface Schema<T> {
  readonly parse: (value: unknown, path?: string) => T;
}

/** A field that may be absent: `obj` makes its key optional in the inferred type. */
export interface OptionalSchema<T> extends Schema<T | undefined> {
  readonly optional: true;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

export function str(opts: { min?: number; max: number; pattern?: RegExp; patternText?: string }): Schema<string> {
  return {
    parse(v, path = '') {
      if (typeof v !== 'string') throw new SchemaError(path, 'must be a string');
      if (v.length < (opts.min ?? 0)) throw new SchemaError(path, `must have at least ${opts.min} characters`);
      if (v.length > opts.max) throw new SchemaError(path, `must have at most ${opts.max} characters`);
      if (opts.pattern && !opts.pattern.test(v)) throw new SchemaError(path, opts.patternText ?? `must match ${opts.pattern}`);
      return v;
    },
  };
}

export function int(opts: { min: number; max: number }): Schema<number> {
  return {
    parse(v, path = '') {
      if (typeof v !== 'number' || !Number.isInteger(v)) throw new SchemaError(path, 'must be an integer');
      if (v < opts.min || v > opts.max) throw new SchemaError(path, `must be between ${opts.min} and ${opts.max}`);
      return v;
    },
  };
}

export const bool: Schema<boolean> = {
  parse(v, path = '') {
    if (typeof v !== 'boolean') throw new SchemaError(path, 'must be true or false');
    return v;
  },
};

export function oneOf<const T extends readonly string[]>(values: T): Schema<T[number]> {
  return {
    parse(v, path = '') {
      if (typeof v !== 'string' || !values.includes(v)) throw new SchemaError(path, `must be one of ${values.join(', ')}`);
      return v as T[number];
    },
  };
}

export function list<T>(item: Schema<T>, opts: { max: number }): Schema<T[]> {
  return {
    parse(v, path = '') {
      if (!Array.isArray(v)) throw new SchemaError(path, 'must be a list');
      if (v.length > opts.max) throw new SchemaError(path, `must have at most ${opts.max} items`);
      return v.map((x, i) => item.parse(x, `${path}[${i}]`));
    },
  };
}

export function optional<T>(inner: Schema<T>): OptionalSchema<T> {
  return { parse: (v, path) => (v === undefined ? undefined : inner.parse(v, path)), optional: true };
}

/** The keys of an `obj` and each key's schema. */
export type Shape = Record<string, Schema<unknown>>;
type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends OptionalSchema<unknown> ? K : never }[keyof S];
type ObjectOf<S extends Shape> = { [K in Exclude<keyof S, OptionalKeys<S>>]: Infer<S[K]> } & {
  [K in OptionalKeys<S>]?: Exclude<Infer<S[K]>, undefined>;
};

/** An `obj` schema; `shape` is what `union` reads to check a variant's keys. */
export interface ObjectSchema<S extends Shape> extends Schema<ObjectOf<S>> {
  readonly shape: S;
}

/** A plain object with exactly these keys; unknown keys are refused so typos surface at once. */
export function obj<S extends Shape>(shape: S): ObjectSchema<S> {
  const keys = Object.keys(shape);
  return {
    shape,
    parse(v, path = '') {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SchemaError(path, 'must be an object');
      const rec = v as Record<string, unknown>;
      for (const k of Object.keys(rec)) {
        if (!Object.hasOwn(shape, k)) {
          // the key is the sender's text: named in full when short, else its start
          const named = k.length > 64 ? `${k.slice(0, 64)}…` : k;
          throw new SchemaError(path ? `${path}.${named}` : named, 'is not a known field');
        }
      }
      const out: Record<string, unknown> = {};
      for (const k of keys) {
        const parsed = shape[k]!.parse(rec[k], path ? `${path}.${k}` : k);
        if (parsed !== undefined) out[k] = parsed;
      }
      return out as ObjectOf<S>;
    },
  };
}

type Variants = Record<string, ObjectSchema<Shape>>;
/** Shows an intersection as one object type (in editors and error messages). */
type Flat<T> = { [K in keyof T]: T[K] };
/** The union's type: each variant's object plus the discriminant `K` set to its variant's name. */
export type UnionOf<K extends string, V extends Variants> = {
  [T in keyof V & string]: Flat<{ [P in K]: T } & Infer<V[T]>>;
}[keyof V & string];

export interface UnionSchema<K extends string, V extends Variants> extends Schema<UnionOf<K, V>> {
  readonly key: K;
  readonly variants: V;
}

/**
 * A discriminated union of objects: the string at `key` names the variant, and the rest of the
 * object must have exactly that variant's keys. Refused, naming the key: an unknown variant, a
 * key the variant has not (even one another variant has), a required key left out.
 */
export function union<K extends string, V extends Variants>(key: K, variants: V): UnionSchema<K, V> {
  const names = Object.keys(variants);
  return {
    key,
    variants,
    parse(v, path = '') {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SchemaError(path, 'must be an object');
      const at = (k: string): string => (path ? `${path}.${k}` : k);
      const tagKey: string = key;
      const { [tagKey]: tag, ...rest } = v as Record<string, unknown>;
      if (typeof tag !== 'string' || !Object.hasOwn(variants, tag)) throw new SchemaError(at(key), `must be one of ${names.join(', ')}`);
      const variant = variants[tag]!;
      for (const k of Object.keys(rest)) {
        if (!Object.hasOwn(variant.shape, k)) throw new SchemaError(at(k), `is not a field of ${key} ${tag}`);
      }
      for (const [k, schema] of Object.entries(variant.shape)) {
        if (rest[k] === undefined && !('optional' in schema)) throw new SchemaError(at(k), `is required for ${key} ${tag}`);
      }
      return { [key]: tag, ...variant.parse(rest, path) } as UnionOf<K, V>;
    },
  };
}

/** One handler per variant of a discriminated union `U` (keyed by `K`), each given exactly its variant. */
export type Handlers<U extends Record<K, string>, K extends string, R> = {
  readonly [T in U[K]]: (value: Extract<U, Record<K, T>>) => R;
};

/**
 * Parses `value` with `schema` and runs the handler of its variant. When the value names no
 * variant of the table, `unhandled` answers (given what it named, maybe not a string), or
 * without it the schema's refusal is thrown.
 */
export function dispatch<K extends string, V extends Variants, R>(
  schema: UnionSchema<K, V>,
  handlers: Handlers<UnionOf<K, V>, K, R>,
  value: unknown,
  unhandled?: (tag: unknown) => R,
): R {
  if (unhandled) {
    const tag = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[schema.key] : undefined;
    if (typeof tag !== 'string' || !Object.hasOwn(handlers, tag)) return unhandled(tag);
  }
  const parsed = schema.parse(value);
  // Each handler takes its own variant: TypeScript cannot follow that through the lookup by tag.
  const handler = handlers[parsed[schema.key]] as (v: UnionOf<K, V>) => R;
  return handler(parsed);
}
