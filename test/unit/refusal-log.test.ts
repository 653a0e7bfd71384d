import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Status } from '../../core/protocol/status.js';
import { RECENT_REFUSALS, REFUSAL_LOG_BURST, REFUSAL_LOG_PER_SECOND, REFUSAL_SUMMARY_MS, RefusalLog } from '../../core/relay/refusals.js';
import { createLogger } from '../../core/runtime/logger.js';
import { TokenBucket } from '../../core/runtime/token-bucket.js';

describe('RefusalLog: each refusal logged once, a flood summed, the last ones kept', () => {
  let lines: string[];
  let clock: number;
  let log: RefusalLog;
  beforeEach(() => {
    vi.useFakeTimers();
    lines = [];
    clock = 0;
    log = new RefusalLog(createLogger({ level: 'info', write: (l) => lines.push(l) }), () => 1_000_000 + clock, new TokenBucket(REFUSAL_LOG_PER_SECOND, REFUSAL_LOG_BURST, () => clock));
  });
  afterEach(() => {
    log.stop();
    vi.useRealTimers();
  });

  it('logs one line per refusal with code name and number, who and address; bad credentials at warn', () => {
    log.record({ kind: 'message', code: Status.UNKNOWN_PEER, who: 'external alice', address: '203.0.113.9:5000', reason: 'unknown peer', fields: { to: 'bob@relay' } });
    log.record({ kind: 'hello', code: Status.BAD_CREDENTIALS, who: 'contact-point acme-hq', address: '198.51.100.2:4000', reason: 'no valid credential' });
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/ info {2}relay refused kind=message code=UNKNOWN_PEER status=20 who="external alice" remote=203\.0\.113\.9:5000 reason="unknown peer" to=bob@relay$/);
    expect(lines[1]).toMatch(/ warn {2}relay refused kind=hello code=BAD_CREDENTIALS status=104 who="contact-point acme-hq" /);
    expect(log.recent().map((r) => r.code)).toEqual([Status.BAD_CREDENTIALS, Status.UNKNOWN_PEER]);
    expect(log.recent()[0]).toEqual({ at: 1_000_000, kind: 'hello', code: 104, name: 'BAD_CREDENTIALS', who: 'contact-point acme-hq', address: '198.51.100.2:4000', reason: 'no valid credential', count: 1 });
  });

  it('past the burst, sums the rest per code in one line a second, and refills at the rate', () => {
    const flood = 1_000;
    for (let i = 0; i < flood; i++) log.record({ kind: 'message', code: Status.RATE_LIMITED, who: `external bot${i}`, reason: 'rate limited' });
    expect(lines.filter((l) => l.includes('relay refused '))).toHaveLength(REFUSAL_LOG_BURST);
    const summaries = (): string[] => lines.filter((l) => l.includes('over the log rate'));
    expect(summaries()).toHaveLength(1); // the first one over the rate, at once
    vi.advanceTimersByTime(REFUSAL_SUMMARY_MS);
    expect(summaries()).toHaveLength(2);
    expect(summaries()[1]).toMatch(/code=RATE_LIMITED status=15 refused=949 lastReason="external bot999: rate limited"$/);
    expect(log.notLogged).toBe(flood - REFUSAL_LOG_BURST);
    expect(log.total).toBe(flood);
    // One second later the bucket holds REFUSAL_LOG_PER_SECOND lines again.
    clock += 1_000;
    for (let i = 0; i < REFUSAL_LOG_PER_SECOND + 1; i++) log.record({ kind: 'hello', code: Status.HELLO_TIMEOUT, who: '-', reason: 'no hello' });
    expect(lines.filter((l) => l.includes('code=HELLO_TIMEOUT') && l.includes('relay refused '))).toHaveLength(REFUSAL_LOG_PER_SECOND);
  });

  it(`keeps the last ${RECENT_REFUSALS}, newest first; a counted entry adds its count`, () => {
    for (let i = 0; i < RECENT_REFUSALS + 7; i++) log.record({ kind: 'port', code: Status.UNKNOWN_PORT, who: `operator op${i}`, reason: 'no such port' });
    const recent = log.recent();
    expect(recent).toHaveLength(RECENT_REFUSALS);
    expect(recent[0]!.who).toBe(`operator op${RECENT_REFUSALS + 6}`);
    expect(recent.at(-1)!.who).toBe('operator op7');
    log.record({ kind: 'exposure', code: Status.STREAM_LIMIT, who: 'operator tech', reason: 'limit', count: 12 });
    expect(log.recent()[0]).toMatchObject({ kind: 'exposure', count: 12 });
    expect(log.total).toBe(RECENT_REFUSALS + 7 + 12);
  });
});
