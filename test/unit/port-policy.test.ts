import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { parseBindRule, parseTargetRule, PortPolicy, RANGE_MEANING } from '../../core/contact-point/port-policy.js';

describe('PortPolicy.resolveTarget: which refusal is which', () => {
  const policy = new PortPolicy({ targets: ['192.168.1.0/24:80', '127.0.0.1/32:631'], listen: [] });

  it('allows what a rule names, special addresses only through an explicit rule', async () => {
    await expect(policy.resolveTarget('192.168.1.20', 80)).resolves.toMatchObject({ ok: true, address: '192.168.1.20' });
    await expect(policy.resolveTarget('0x7f.1', 631)).resolves.toMatchObject({ ok: true, address: '127.0.0.1' });
  });

  it('calls an ordinary address or port the rules do not cover not allowed (PERMISSION_DENIED), not unsafe', async () => {
    await expect(policy.resolveTarget('192.168.1.20', 81)).resolves.toMatchObject({ ok: false, unsafe: false, reason: 'no target rule allows 192.168.1.20:81' });
    await expect(policy.resolveTarget('10.0.0.1', 80)).resolves.toMatchObject({ ok: false, unsafe: false });
    // Loopback named by a rule, on another port: the admin chose to allow it, so it is a plain refusal.
    await expect(policy.resolveTarget('127.0.0.1', 80)).resolves.toMatchObject({ ok: false, unsafe: false, reason: 'no target rule allows 127.0.0.1:80' });
  });

  it('calls special addresses no rule names unsafe (UNSAFE_TARGET)', async () => {
    for (const host of ['127.0.0.2', '169.254.169.254', '::1', '0.0.0.0']) {
      await expect(policy.resolveTarget(host, 80), host).resolves.toMatchObject({ ok: false, unsafe: true });
    }
  });
});

/** A target's outcome: `ok <address connected to>`, `unsafe` (UNSAFE_TARGET) or `denied` (PERMISSION_DENIED). */
async function outcome(policy: PortPolicy, host: string, port = 80): Promise<string> {
  const r = await policy.resolveTarget(host, port);
  return r.ok ? `ok ${r.address}` : r.unsafe ? 'unsafe' : 'denied';
}

describe('PortPolicy targets: special addresses in every spelling, under wide rules', () => {
  // The widest rules an admin can write: every address of both families, every port.
  const wide = new PortPolicy({ targets: ['0.0.0.0/0', '[::/0]'], listen: [] });

  it('allows ordinary and private (LAN) addresses, IPv4 and IPv6', async () => {
    for (const host of ['192.168.1.20', '10.1.2.3', '172.16.0.1', '100.64.0.1', '8.8.8.8', 'fd12:3456::1', 'fec0::1', '2a00:1450:4001::200e']) {
      expect(await outcome(wide, host), host).toMatch(/^ok /);
    }
    // IPv4-mapped spellings of a LAN address are that IPv4 address.
    expect(await outcome(wide, '::ffff:192.168.1.20')).toBe('ok 192.168.1.20');
    expect(await outcome(wide, '[::ffff:c0a8:114]')).toBe('ok 192.168.1.20');
  });

  it('refuses special IPv4 addresses in every spelling: loopback, unspecified, link-local, metadata, multicast, broadcast, reserved', async () => {
    const hosts = [
      '127.0.0.1', '127.1', '2130706433', '0x7f000001', '0x7f.1', '0177.0.0.1', '127.255.255.254',
      '0.0.0.0', '0', '0.1.2.3',
      '169.254.1.1', '169.254.169.254', '0xa9fea9fe', '100.100.100.200',
      '224.0.0.1', '239.255.255.250',
      '255.255.255.255', '240.0.0.1', '192.0.2.1', '198.18.0.1',
    ];
    for (const host of hosts) expect(await outcome(wide, host), host).toBe('unsafe');
  });

  it('refuses special IPv6 addresses: loopback, unspecified, link-local, multicast, discard, documentation, metadata', async () => {
    for (const host of ['::1', '[::1]', '0:0:0:0:0:0:0:1', '::', 'fe80::1', 'ff02::1', 'ff05::c', '100::1', '2001:db8::1', 'fd00:ec2::254']) {
      expect(await outcome(wide, host), host).toBe('unsafe');
    }
  });

  it('refuses IPv6 forms that are, or carry, a special IPv4 address: mapped, compatible, NAT64, 6to4, Teredo, IPv4-translated', async () => {
    const hosts = [
      '::ffff:127.0.0.1', '[::ffff:7f00:1]', '::ffff:169.254.169.254', '::127.0.0.1', '64:ff9b::7f00:1', '64:ff9b::a9fe:a9fe', // canonicalised to IPv4
      '2002:7f00:1::', '2002:7f00:1:5::99', '2002:a9fe:a9fe::', '2002:e000:1::', '2002:ffff:ffff::', '2002::', // 6to4
      '2001:0:4136:e378:8000:63bf:80ff:fffe', // Teredo: client = NOT 80ff:fffe = 127.0.0.1
      '2001:0:7f00:1:0:0:3f57:feeb', // Teredo: server 127.0.0.1 (client 192.168.1.20)
      '2001:0:4136:e378:8000:63bf:5601:5601', // Teredo: client NOT 5601:5601 = 169.254.169.254 (metadata)
      '64:ff9b:1:7f00:0:100::', // NAT64 local-use prefix (RFC 8215): 127.0.0.1 around the zero u byte
      '::ffff:0:7f00:1', // IPv4-translated (RFC 6145)
    ];
    for (const host of hosts) expect(await outcome(wide, host), host).toBe('unsafe');
    const r = await wide.resolveTarget('2002:7f00:1::', 80);
    expect(r).toMatchObject({ ok: false, reason: '2002:7f00:1:: is a 6to4 address carrying 127.0.0.1 (loopback), and no rule names it explicitly' });
    expect(await wide.resolveTarget('2001:0:4136:e378:8000:63bf:80ff:fffe', 80)).toMatchObject({ reason: expect.stringContaining('a Teredo address carrying 127.0.0.1 (loopback)') as unknown });
  });

  it('lets IPv6 forms through that carry an ordinary or private (LAN) IPv4 address', async () => {
    for (const host of ['2002:c0a8:114::', '2002:808:808::1', '2001:0:4136:e378:8000:63bf:3f57:feeb', '64:ff9b:1:c0a8:1:1400::']) {
      expect(await outcome(wide, host), host).toMatch(/^ok /);
    }
  });

  it('allows a special address through a rule that names it (or lies wholly inside its block), not through a wider one', async () => {
    const p = new PortPolicy({
      targets: ['[2002:7f00:1::]:80', '[2002:7f00::/24]:81', '[2002::/16]:82', '169.254.0.0/16:80', '169.254.169.254:443', '[2001:0:4136:e378:8000:63bf:80ff:fffe]:80', '[::1]:631'],
      listen: [],
    });
    expect(await outcome(p, '2002:7f00:1::', 80)).toBe('ok 2002:7f00:1::');
    expect(await outcome(p, '2002:7f00:1::', 81)).toBe('ok 2002:7f00:1::');
    expect(await outcome(p, '2002:7f00:2::', 81)).toBe('ok 2002:7f00:2::');
    expect(await outcome(p, '2002:7f00:2::', 82)).toBe('denied'); // named by the /24 on another port
    expect(await outcome(p, '2002:a9fe:a9fe::', 82)).toBe('unsafe'); // 2002::/16 is wide: names nothing special
    expect(await outcome(p, '2002:c0a8:114::', 82)).toBe('ok 2002:c0a8:114::');
    expect(await outcome(p, '169.254.1.1', 80)).toBe('ok 169.254.1.1');
    // The metadata service needs a rule naming exactly it: the link-local /16 does not reach it.
    expect(await outcome(p, '169.254.169.254', 80)).toBe('denied');
    expect(await outcome(p, '169.254.169.254', 443)).toBe('ok 169.254.169.254');
    expect(await outcome(p, '2001:0:4136:e378:8000:63bf:80ff:fffe', 80)).toMatch(/^ok /);
    expect(await outcome(p, '0:0::1', 631)).toBe('ok ::1');
  });

  it('marks rules that name special addresses, and only those', () => {
    const special = (t: string): boolean => parseTargetRule(t).special;
    for (const t of ['127.0.0.1/32:631', '127.0.0.0/8', '169.254.169.254', '[::1]', '[2002:7f00::/24]', '[2002:7f00:1::/48]', '224.0.0.251:5353', '255.255.255.255', '[fd00:ec2::254]']) expect(special(t), t).toBe(true);
    for (const t of ['0.0.0.0/0', '[::/0]', '192.168.1.0/24', '[fd00::/8]:22', '[2002::/16]', '[2001::/32]', '100.64.0.0/10']) expect(special(t), t).toBe(false);
  });

  it('knows what every range of ipaddr.js means (a range it adds later counts as special until placed)', () => {
    const names = (cls: { prototype: unknown }): string[] => Object.keys((cls.prototype as { SpecialRanges: object }).SpecialRanges);
    for (const n of names(ipaddr.IPv4)) expect(RANGE_MEANING.ipv4, `ipv4 ${n}`).toHaveProperty([n]);
    for (const n of names(ipaddr.IPv6)) expect(RANGE_MEANING.ipv6, `ipv6 ${n}`).toHaveProperty([n]);
  });
});

describe('PortPolicy listen binds: the same special-address rules as targets', () => {
  const anyAddress = new PortPolicy({ targets: [], listen: ['tcp:1-65535', 'udp:1-65535'] });
  const SPECIAL_LOCAL = ['127.0.0.1', '127.0.0.2', '::1', '::ffff:127.0.0.1', '224.0.0.1', '239.255.255.250', '255.255.255.255', '169.254.1.1', 'fe80::1', 'ff02::1', '0.0.0.1', '2002:7f00:1::'];

  it('allows any address, 0.0.0.0, :: and ordinary LAN addresses under an address-less rule', () => {
    for (const proto of ['tcp', 'udp'] as const) {
      for (const a of [undefined, '0.0.0.0', '::', '192.168.1.10', 'fd00::10', '::ffff:192.168.1.10']) expect(anyAddress.bindProblem(proto, a, 8080), `${proto} ${a}`).toBeUndefined();
    }
  });

  it('refuses loopback, multicast, broadcast and other special local addresses under an address-less rule (unsafe)', () => {
    for (const proto of ['tcp', 'udp'] as const) {
      for (const a of SPECIAL_LOCAL) {
        expect(anyAddress.bindProblem(proto, a, 8080), `${proto} ${a}`).toMatchObject({ unsafe: true });
        expect(anyAddress.bindProblem(proto, a, 0), `${proto} ${a} any port`).toMatchObject({ unsafe: true });
        expect([...anyAddress.candidatePorts(proto, a, 8080)], `${proto} ${a} desired`).toEqual([]);
      }
    }
    expect(anyAddress.bindProblem('tcp', '::ffff:127.0.0.1', 631)).toEqual({
      unsafe: true,
      reason: '127.0.0.1 is loopback: only a listen rule naming it (e.g. 127.0.0.1:tcp:631) allows binding it',
    });
  });

  it('allows a special local address that a rule names, in any spelling, on that rule ports and protocol only', () => {
    const p = new PortPolicy({ targets: [], listen: ['127.0.0.1:tcp:631', '[::1]:tcp:8080', '[::ffff:127.0.0.1]:udp:5353', '224.0.0.251:udp:5353', '255.255.255.255:udp:67'] });
    expect(p.bindProblem('tcp', '127.0.0.1', 631)).toBeUndefined();
    expect(p.bindProblem('tcp', '::ffff:127.0.0.1', 631)).toBeUndefined();
    expect(p.bindProblem('udp', '127.0.0.1', 5353)).toBeUndefined();
    expect(p.bindProblem('tcp', '0:0::1', 8080)).toBeUndefined();
    expect(p.bindProblem('udp', '224.0.0.251', 5353)).toBeUndefined();
    expect(p.bindProblem('udp', '255.255.255.255', 67)).toBeUndefined();
    // Named, but not on this port or protocol: a plain refusal.
    expect(p.bindProblem('tcp', '127.0.0.1', 632)).toMatchObject({ unsafe: false });
    expect(p.bindProblem('tcp', '224.0.0.251', 5353)).toMatchObject({ unsafe: false });
    // Not named: another loopback address, and the wildcard still needs an address-less rule.
    expect(p.bindProblem('tcp', '127.0.0.2', 631)).toMatchObject({ unsafe: true });
    expect(p.bindProblem('tcp', undefined, 631)).toMatchObject({ unsafe: false, reason: 'no listen rule allows tcp port 631' });
  });

  it('parses listen rules with bracketed IPv6 addresses, canonicalised; 0.0.0.0 and :: mean any address', () => {
    expect(parseBindRule('[::1]:tcp:8080')).toMatchObject({ address: '::1', proto: 'tcp' });
    expect(parseBindRule('[::ffff:127.0.0.1]:udp:5353')).toMatchObject({ address: '127.0.0.1', proto: 'udp' });
    expect(parseBindRule('[fd00::10]:8080')).toMatchObject({ address: 'fd00::10', proto: 'any' });
    expect(parseBindRule('192.168.1.10:tcp:8080')).toMatchObject({ address: '192.168.1.10', proto: 'tcp' });
    expect(parseBindRule('0.0.0.0:tcp:80')).toMatchObject({ address: undefined });
    expect(parseBindRule('[::]:tcp:80')).toMatchObject({ address: undefined });
    for (const bad of ['[::1]tcp:80', '[printer]:80', '::1:tcp:80', '2130706433:tcp:80', '[fe80::1%eth0]:80']) expect(() => parseBindRule(bad), bad).toThrow(/listen rule/);
  });

  it('refuses a zone id or a non-literal as a bind address', () => {
    expect(anyAddress.bindProblem('tcp', 'fe80::1%eth0', 80)).toMatchObject({ unsafe: false, reason: '"fe80::1%eth0" is not an IP address' });
    expect(anyAddress.bindProblem('tcp', '2130706433', 80)).toMatchObject({ unsafe: false });
  });
});
