import { describe, expect, it } from 'vitest';
import { validateConnection } from './validate-connection';
import { checkSubnets } from './validate-policy';

describe('settings checks', () => {
  it('names every bad connection field at once', () => {
    const r = validateConnection({ relayUrl: 'http://relay.example.com', id: 'Bad Name!', peerPort: '70000', credential: 'has space' }, false);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(Object.keys(r.errors).sort()).toEqual(['credential', 'id', 'peerPort', 'relayUrl']);
    expect(r.errors.relayUrl).toMatch(/ws:\/\/ or wss:\/\//);
  });

  it('needs a credential for a relay unless one is stored; empty relay means the demo relay', () => {
    expect(validateConnection({ relayUrl: 'wss://r.example/v1', id: 'acme-hq', peerPort: '7901', credential: '' }, false)).toMatchObject({ ok: false, errors: { credential: expect.stringMatching(/Required/) as unknown } });
    expect(validateConnection({ relayUrl: 'wss://r.example/v1', id: 'acme-hq', peerPort: '7901', credential: '' }, true)).toEqual({ ok: true, value: { relayUrl: 'wss://r.example/v1', id: 'acme-hq', peerPort: 7901 } });
    expect(validateConnection({ relayUrl: '', id: 'demo', peerPort: '0', credential: '' }, false)).toEqual({ ok: true, value: { relayUrl: '', id: 'demo', peerPort: 0 } });
  });

  it('checks CIDRs line by line, IPv4 and IPv6', () => {
    const r = checkSubnets('192.168.1.0/24\n\n 10.0.0.0/8 \nfd00::/8\n300.1.1.1/8\n10.0.0.0/33\nprinter\nfd00::/129');
    expect(r.subnets).toEqual(['192.168.1.0/24', '10.0.0.0/8', 'fd00::/8']);
    expect(r.errors.map((e) => [e.line, e.problem])).toEqual([
      [5, 'is not an IPv4 address'],
      [6, 'has a prefix over /32'],
      [7, 'must be a CIDR such as 192.168.1.0/24'],
      [8, 'has a prefix over /128'],
    ]);
  });
});
