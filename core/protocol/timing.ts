import { HELLO_TIMEOUT_MS, ID_IN_USE_RETRY_MS, PING_INTERVAL_MS, PONG_TIMEOUT_MS, RECONNECT_BASE_MS, RECONNECT_MAX_MS } from './limits.js';

/**
 * The timers of a client end (the contact point's tunnel, the peer SDK) and of the contact
 * point's peer port: one object, resolved and checked once at the top (resolveTiming) and
 * handed whole to every layer under it (contact point -> gateway -> dialer -> link; peer
 * client -> dialer -> link), so no layer picks fields out and none drops one.
 */
export interface TimingValues {
  /**
   * keepalive ping interval P; the peer port also advertises it in WELCOME.limits.pingIntervalMs.
   * The adaptive keepalive and its heartbeat derive their idle timers from it (PROTOCOL.md 12.1,
   * 12.2; adaptiveTimers() in link.ts), with the relay's WELCOME value when that is shorter: on
   * a heartbeat tunnel with the defaults, a dead relay is noticed within 29.5 s idle.
   */
  readonly pingIntervalMs: number;
  /** a link with no pong (or other traffic) this long after a ping is dead (adaptive: at most 2.5 s while ACKs wait or a heartbeat is overdue) */
  readonly pongTimeoutMs: number;
  /** reconnect backoff: first delay and cap (full jitter, see core/runtime/backoff.ts) */
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  /** hello deadline: the dialer's wait for WELCOME (and for the ws upgrade); the peer port's wait for a peer's hello */
  readonly helloTimeoutMs: number;
  /** after ID_IN_USE, the dialer waits a random time between this and twice this */
  readonly idInUseRetryMs: number;
}

declare const resolved: unique symbol;
/** TimingValues that came out of resolveTiming: complete and within TIMING_RANGES. */
export type Timing = TimingValues & { readonly [resolved]: true };

/** What callers give: any subset; the rest take their defaults. */
export type TimingOptions = Partial<TimingValues>;

/**
 * Accepted values of each field, in whole milliseconds. 0 is refused everywhere: no timer here
 * has a meaningful "off" (0 would be a busy keepalive, an instant death, a reconnect storm or a
 * hello nobody can meet), and before this module a 0 was silently replaced by the default.
 */
export const TIMING_RANGES: { readonly [K in keyof TimingValues]: { readonly min: number; readonly max: number } } = {
  /** the range WELCOME.limits.pingIntervalMs allows (frames.ts), since the peer port advertises it */
  pingIntervalMs: { min: 1_000, max: 600_000 },
  /** the link checks every min(ping, pong) / 2: below 100 ms that check would spin */
  pongTimeoutMs: { min: 100, max: 600_000 },
  backoffBaseMs: { min: 1, max: 3_600_000 },
  /** and at least backoffBaseMs */
  backoffMaxMs: { min: 1, max: 3_600_000 },
  helloTimeoutMs: { min: 1, max: 600_000 },
  /** 1 h: the delay drawn is up to twice it */
  idInUseRetryMs: { min: 1, max: 3_600_000 },
};

const DEFAULTS: TimingValues = {
  pingIntervalMs: PING_INTERVAL_MS,
  pongTimeoutMs: PONG_TIMEOUT_MS,
  backoffBaseMs: RECONNECT_BASE_MS,
  backoffMaxMs: RECONNECT_MAX_MS,
  helloTimeoutMs: HELLO_TIMEOUT_MS,
  idInUseRetryMs: ID_IN_USE_RETRY_MS,
};

const FIELDS = Object.keys(TIMING_RANGES) as (keyof TimingValues)[];

/**
 * Complete timing from `options` (an absent or undefined field takes its default from
 * limits.ts). A value out of its range, a field that is not a timing option, or a backoff cap
 * below its base throws a RangeError naming the field: a programmer's or operator's error,
 * refused before anything starts.
 */
export function resolveTiming(options: TimingOptions = {}): Timing {
  for (const key of Object.keys(options)) {
    if (!(key in TIMING_RANGES)) throw new RangeError(`timing.${key}: not a timing option (expected one of ${FIELDS.join(', ')})`);
  }
  const t: Record<keyof TimingValues, number> = { ...DEFAULTS };
  for (const field of FIELDS) {
    const v = options[field];
    if (v === undefined) continue;
    const { min, max } = TIMING_RANGES[field];
    if (!(Number.isInteger(v) && v >= min && v <= max)) {
      throw new RangeError(`timing.${field} ${String(v)}: expected a whole number of milliseconds from ${min} to ${max}`);
    }
    t[field] = v;
  }
  if (t.backoffMaxMs < t.backoffBaseMs) {
    throw new RangeError(`timing.backoffMaxMs ${t.backoffMaxMs}: expected at least timing.backoffBaseMs (${t.backoffBaseMs})`);
  }
  return Object.freeze(t) as Timing;
}

/** The defaults of limits.ts, as one Timing. */
export const DEFAULT_TIMING: Timing = resolveTiming();
