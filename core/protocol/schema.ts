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

type Shape = Record<string, Schema<unknown>>;
type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends OptionalSchema<unknown> ? K : never }[keyof S];
type ObjectOf<S extends Shape> = { [K in Exclude<keyof S, OptionalKeys<S>>]: Infer<S[K]> } & {
  [K in OptionalKeys<S>]?: Exclude<Infer<S[K]>, undefined>;
};

/** A plain object with exactly these keys; unknown keys are refused so typos surface at once. */
export function obj<S extends Shape>(shape: S): Schema<ObjectOf<S>> {
  const keys = Object.keys(shape);
  return {
    parse(v, path = '') {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SchemaError(path, 'must be an object');
      const rec = v as Record<string, unknown>;
      for (const k of Object.keys(rec)) {
        if (!Object.hasOwn(shape, k)) throw new SchemaError(path ? `${path}.${k}` : k, 'is not a known field');
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
