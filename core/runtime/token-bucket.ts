/**
 * The one rate-limit primitive: a token bucket, `rate` tokens a second, bursts up to `burst`.
 * It starts full. The clock is injected (milliseconds, monotonic by default) so tests and the
 * registrar can drive it. A refused take() costs nothing: the tokens keep refilling.
 */
/** The default clock, one function for every bucket (a bound `performance.now` each was ~100 B per LAN peer). */
const monotonicMs = (): number => performance.now();

export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number = rate * 2,
    private readonly now: () => number = monotonicMs,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** `n` a minute, bursts up to `n`: the shape of every per-minute limit. */
  static perMinute(n: number, now?: () => number): TokenBucket {
    return new TokenBucket(n / 60, n, now);
  }

  /** Takes `n` tokens if they are there (true), else takes nothing (false). */
  take(n = 1): boolean {
    if (!this.has(n)) return false;
    this.tokens -= n;
    return true;
  }

  /** Whether `n` tokens are there, without taking them. */
  has(n = 1): boolean {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
    // The epsilon absorbs float error in the refill (10/60 a second for 6 s is 0.999...).
    return this.tokens >= n - 1e-9;
  }
}

export interface KeyedBucketsOptions {
  /** tokens a second per key */
  readonly rate: number;
  /** bucket size per key */
  readonly burst: number;
  /** keys tracked at once; past that the least recently used one is forgotten */
  readonly maxKeys: number;
  readonly now?: () => number;
}

/**
 * One token bucket per key (a source address), for per-address limits that must not grow
 * with an attacker's address space: at most `maxKeys` buckets; a new key past that forgets
 * the least recently used one (which then starts full again if it comes back).
 */
export class KeyedBuckets {
  private readonly buckets = new Map<string, TokenBucket>();
  constructor(private readonly o: KeyedBucketsOptions) {
    if (!(Number.isInteger(o.maxKeys) && o.maxKeys >= 1)) throw new RangeError(`maxKeys ${o.maxKeys}: expected a positive integer`);
  }

  /** Per-minute buckets: `n` a minute per key, bursts up to `n`. */
  static perMinute(n: number, maxKeys: number, now?: () => number): KeyedBuckets {
    return new KeyedBuckets({ rate: n / 60, burst: n, maxKeys, ...(now ? { now } : {}) });
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Takes `n` tokens from `key`'s bucket if they are there (true), else takes nothing (false). */
  take(key: string, n = 1): boolean {
    let bucket = this.buckets.get(key);
    if (bucket) this.buckets.delete(key); // re-inserted below: most recently used last
    else {
      if (this.buckets.size >= this.o.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
      bucket = new TokenBucket(this.o.rate, this.o.burst, this.o.now);
    }
    this.buckets.set(key, bucket);
    return bucket.take(n);
  }

  /** Whether `key` has `n` tokens, without taking them (an unknown key has a full bucket). */
  has(key: string, n = 1): boolean {
    return this.buckets.get(key)?.has(n) ?? n <= this.o.burst;
  }
}
