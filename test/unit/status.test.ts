import { describe, expect, it } from 'vitest';
import {
  closeCodeFor,
  describeStatus,
  isKnownStatus,
  isRetryable,
  Status,
  statusFromCloseCode,
  statusName,
  type StatusCode,
} from '../../core/protocol/status.js';

const entries = Object.entries(Status) as [keyof typeof Status, StatusCode][];

describe('status codes', () => {
  it('has unique names and unique numbers', () => {
    const names = entries.map(([n]) => n);
    const codes = entries.map(([, c]) => c);
    expect(new Set(names).size).toBe(names.length);
    expect(new Set(codes).size).toBe(codes.length);
    for (const [name, code] of entries) expect(statusName(code)).toBe(name);
  });

  it('keeps delivery outcomes and port results below 100, connection faults at 100-199', () => {
    const delivery = ['OK', 'UNKNOWN_CONTACT_POINT', 'CONTACT_POINT_OFFLINE', 'PEER_NOT_REGISTERED', 'PEER_OFFLINE', 'TOO_LARGE', 'RATE_LIMITED', 'UNAUTHORIZED', 'QUEUE_FULL', 'TIMEOUT', 'BAD_ADDRESS', 'UNKNOWN_PEER', 'RECEIVER_FAILED'];
    for (const [name, code] of entries) {
      if (delivery.includes(name)) expect(code, name).toBeLessThan(30);
      expect(code, name).toBeLessThan(200);
      // Every fault maps into the application close-code range 4100-4199.
      if (code >= 100) expect(closeCodeFor(code)).toBeGreaterThanOrEqual(4100);
    }
  });

  it('pins the numbers (they are on the wire: codes may be added, never renumbered)', () => {
    expect(Status).toMatchObject({
      OK: 0,
      UNKNOWN_CONTACT_POINT: 10,
      CONTACT_POINT_OFFLINE: 11,
      PEER_NOT_REGISTERED: 12,
      PEER_OFFLINE: 13,
      TOO_LARGE: 14,
      RATE_LIMITED: 15,
      UNAUTHORIZED: 16,
      QUEUE_FULL: 17,
      TIMEOUT: 18,
      BAD_ADDRESS: 19,
      UNKNOWN_PEER: 20,
      RECEIVER_FAILED: 21,
      MALFORMED_FRAME: 100,
      UNKNOWN_FRAME_TYPE: 101,
      FRAME_TOO_LARGE: 102,
      VERSION_MISMATCH: 103,
      BAD_CREDENTIALS: 104,
      HELLO_TIMEOUT: 105,
      PROTOCOL_VIOLATION: 106,
      IDENTITY_MISMATCH: 107,
      RESOURCE_LIMIT: 108,
      REPLACED: 109,
      SHUTTING_DOWN: 110,
      SLOW_CONSUMER: 111,
      INVALID_BODY: 112,
      REVOKED: 113,
      ID_IN_USE: 114,
      SESSION_LIMIT: 115,
      INTERNAL: 199,
    });
  });

  it('retries exactly the transient refusals', () => {
    const retryable = entries.filter(([, c]) => isRetryable(c)).map(([n]) => n).sort();
    expect(retryable).toEqual(['CONTACT_POINT_OFFLINE', 'PEER_OFFLINE', 'QUEUE_FULL', 'RATE_LIMITED', 'TIMEOUT']);
    expect(isRetryable(Status.OK)).toBe(false);
    expect(isRetryable(9999)).toBe(false);
  });

  it('maps connection faults to ws close codes 4000 + status and back', () => {
    expect(closeCodeFor(Status.MALFORMED_FRAME)).toBe(4100);
    expect(closeCodeFor(Status.UNKNOWN_FRAME_TYPE)).toBe(4101);
    expect(closeCodeFor(Status.REVOKED)).toBe(4113);
    expect(closeCodeFor(Status.INTERNAL)).toBe(4199);
    for (const [, code] of entries) expect(statusFromCloseCode(closeCodeFor(code))).toBe(code);
    expect(statusFromCloseCode(1000)).toBeUndefined();
    expect(statusFromCloseCode(1006)).toBeUndefined();
    expect(statusFromCloseCode(3999)).toBeUndefined();
    expect(statusFromCloseCode(5000)).toBeUndefined();
    expect(statusFromCloseCode(4999)).toBe(999);
  });

  it('names and describes unknown codes without throwing', () => {
    expect(statusName(42)).toBe('STATUS_42');
    expect(describeStatus(42)).toBe('status 42');
    expect(isKnownStatus(42)).toBe(false);
    expect(isKnownStatus(Status.REPLACED)).toBe(true);
  });

  it('has a distinct human description for every code', () => {
    const texts = entries.map(([, c]) => describeStatus(c));
    for (const t of texts) expect(t.length).toBeGreaterThan(3);
    expect(new Set(texts).size).toBe(texts.length);
    expect(describeStatus(Status.PEER_NOT_REGISTERED)).toBe('peer not registered');
  });
});
