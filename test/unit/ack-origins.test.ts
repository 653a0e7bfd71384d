import { describe, expect, it } from 'vitest';
import { AckOrigins } from '../../core/relay/ack-origins.js';
import { MAX_REMOTE_ACK_ROUTES } from '../../core/protocol/limits.js';

describe('AckOrigins (where a forwarded message ACK goes, core/relay/ack-origins.ts)', () => {
  it('tells each noted message its node once, and forgets empty senders', () => {
    const o = new AckOrigins(10);
    o.note('alice', 'a.1', 'r1');
    o.note('alice', 'a.2', 'r2');
    o.note('bob', 'b.1', 'r1');
    expect(o.size).toBe(3);
    expect(o.senders).toBe(2);
    expect(o.take('alice', 'a.2')).toBe('r2');
    expect(o.take('alice', 'a.2')).toBeUndefined();
    expect(o.take('bob', 'a.1')).toBeUndefined(); // another sender's id
    expect(o.take('bob', 'b.1')).toBe('r1');
    expect(o.senders).toBe(1);
    // Noted again (a retry that came through another node): the newer node, counted once.
    o.note('alice', 'a.1', 'r3');
    expect(o.size).toBe(1);
    expect(o.take('alice', 'a.1')).toBe('r3');
    expect(o.size).toBe(0);
    expect(o.senders).toBe(0);
  });

  it('past its cap forgets the oldest entry of the sender noted first, one for one', () => {
    const o = new AckOrigins(4);
    o.note('alice', 'a.1', 'r1');
    o.note('bob', 'b.1', 'r1');
    o.note('alice', 'a.2', 'r1');
    o.note('bob', 'b.2', 'r1');
    o.note('carol', 'c.1', 'r2'); // the fifth: alice's oldest (a.1) goes
    expect(o.size).toBe(4);
    expect(o.take('alice', 'a.1')).toBeUndefined();
    expect(o.take('carol', 'c.1')).toBe('r2');
    o.note('carol', 'c.2', 'r2');
    o.note('dave', 'd.1', 'r2'); // full again: alice's a.2 goes, and alice with it
    expect(o.senders).toBe(3);
    expect(o.take('alice', 'a.2')).toBeUndefined();
    // Then bob's, oldest first.
    o.note('dave', 'd.2', 'r2');
    expect(o.take('bob', 'b.1')).toBeUndefined();
    expect(o.take('bob', 'b.2')).toBe('r1');
    expect(o.size).toBe(3);
  });

  it('stays at MAX_REMOTE_ACK_ROUTES under a flood of ids never acknowledged, and still routes the newest', () => {
    const o = new AckOrigins(MAX_REMOTE_ACK_ROUTES);
    const senders = 50;
    const total = MAX_REMOTE_ACK_ROUTES + 20_000;
    for (let i = 0; i < total; i++) o.note(`s${i % senders}`, `m.${i}`, `r${i % 3}`);
    expect(o.size).toBe(MAX_REMOTE_ACK_ROUTES);
    expect(o.senders).toBeLessThanOrEqual(senders);
    // The newest are held; the very first are gone.
    expect(o.take(`s${(total - 1) % senders}`, `m.${total - 1}`)).toBe(`r${(total - 1) % 3}`);
    expect(o.take('s0', 'm.0')).toBeUndefined();
    expect(o.size).toBe(MAX_REMOTE_ACK_ROUTES - 1);
  });

  it('refuses a cap that holds nothing', () => {
    expect(() => new AckOrigins(0)).toThrow(RangeError);
  });
});
