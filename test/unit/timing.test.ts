import { describe, expect, it } from 'vitest';
import { HELLO_TIMEOUT_MS, ID_IN_USE_RETRY_MS, PING_INTERVAL_MS, PONG_TIMEOUT_MS, RECONNECT_BASE_MS, RECONNECT_MAX_MS } from '../../core/protocol/limits.js';
import { welcomeSchema } from '../../core/protocol/frames.js';
import { DEFAULT_TIMING, resolveTiming, TIMING_RANGES, type TimingValues } from '../../core/protocol/timing.js';

const FIELDS = Object.keys(TIMING_RANGES) as (keyof TimingValues)[];

describe('timing: one object, its defaults and its checks', () => {
  it('defaults to the named constants of limits.ts', () => {
    const t = DEFAULT_TIMING;
    expect([t.pingIntervalMs, t.pongTimeoutMs, t.backoffBaseMs, t.backoffMaxMs, t.helloTimeoutMs, t.idInUseRetryMs]).toEqual([PING_INTERVAL_MS, PONG_TIMEOUT_MS, RECONNECT_BASE_MS, RECONNECT_MAX_MS, HELLO_TIMEOUT_MS, ID_IN_USE_RETRY_MS]);
    expect(Object.keys(t)).toHaveLength(6);
    expect({ ...resolveTiming({}) }).toEqual({ ...DEFAULT_TIMING });
  });

  it('keeps every value given, the smallest and largest of each range included; an undefined field takes its default', () => {
    for (const field of FIELDS) {
      const { min, max } = TIMING_RANGES[field];
      // the backoff cap may not be below its base: move the other one along
      const low = field === 'backoffMaxMs' ? { backoffBaseMs: min } : {};
      const high = field === 'backoffBaseMs' ? { backoffMaxMs: max } : {};
      expect(resolveTiming({ ...low, [field]: min })[field]).toBe(min);
      expect(resolveTiming({ ...high, [field]: max })[field]).toBe(max);
      expect(resolveTiming({ [field]: undefined })[field]).toBe(DEFAULT_TIMING[field]);
    }
  });

  it('refuses 0, negatives, fractions, non-numbers and values past the range, naming the field', () => {
    for (const field of FIELDS) {
      const { min, max } = TIMING_RANGES[field];
      for (const bad of new Set([0, -1, min - 1, max + 1, min + 0.5, Number.NaN, Number.POSITIVE_INFINITY, '1000' as unknown as number])) {
        expect(() => resolveTiming({ [field]: bad }), `${field} = ${String(bad)}`).toThrow(RangeError);
        expect(() => resolveTiming({ [field]: bad }), `${field} = ${String(bad)}`).toThrow(new RegExp(`^timing\\.${field} ${String(bad)}: expected a whole number of milliseconds from ${min} to ${max}$`));
      }
    }
  });

  it('refuses a backoff cap below its base, and a field that is not a timing option', () => {
    expect(() => resolveTiming({ backoffBaseMs: 1_000, backoffMaxMs: 500 })).toThrow(/^timing\.backoffMaxMs 500: expected at least timing\.backoffBaseMs \(1000\)$/);
    expect(() => resolveTiming({ backoffBaseMs: RECONNECT_MAX_MS + 1 })).toThrow(/timing\.backoffMaxMs/);
    expect(() => resolveTiming({ pingInterval: 1_000 } as never)).toThrow(/^timing\.pingInterval: not a timing option/);
  });

  it('is frozen, and resolving it again gives the same values', () => {
    const t = resolveTiming({ pingIntervalMs: 2_000 });
    expect(Object.isFrozen(t)).toBe(true);
    expect({ ...resolveTiming(t) }).toEqual({ ...t });
  });

  it('allows exactly the ping intervals a WELCOME may advertise (the peer port sends its own)', () => {
    const { min, max } = TIMING_RANGES.pingIntervalMs;
    const welcome = (pingIntervalMs: number): unknown => ({ version: 1, session: 's', limits: { maxMessageBytes: 1024, pingIntervalMs } });
    expect(() => welcomeSchema.parse(welcome(min))).not.toThrow();
    expect(() => welcomeSchema.parse(welcome(max))).not.toThrow();
    expect(() => welcomeSchema.parse(welcome(min - 1))).toThrow();
    expect(() => welcomeSchema.parse(welcome(max + 1))).toThrow();
  });
});
