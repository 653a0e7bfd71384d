import { describe, expect, it } from 'vitest';
import { BlockList } from 'node:net';
import { canonicalIp, ipv4Number, parseCidr, RegistrationPolicy } from '../../core/contact-point/policy.js';
import { hashSecret } from '../../core/runtime/secrets.js';

describe('CIDR parsing', () => {
  it('reads IPv4 and IPv6 CIDRs', () => {
    expect(parseCidr('10.0.0.0/8')).toEqual({ address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    expect(parseCidr(' 192.168.1.0/24 ')).toEqual({ address: '192.168.1.0', prefix: 24, family: 'ipv4' });
    expect(parseCidr('fd00::/8')).toEqual({ address: 'fd00::', prefix: 8, family: 'ipv6' });
    expect(parseCidr('::/0')).toEqual({ address: '::', prefix: 0, family: 'ipv6' });
  });

  it('names the problem with a bad CIDR', () => {
    expect(() => parseCidr('10.0.0.0')).toThrow('"10.0.0.0" is not a CIDR such as 192.168.1.0/24');
    expect(() => parseCidr('lan/24')).toThrow(/is not a CIDR/);
    expect(() => parseCidr('300.0.0.0/8')).toThrow(/is not a CIDR/);
    expect(() => parseCidr('10.0.0.0/')).toThrow(/is not a CIDR/);
    expect(() => parseCidr('10.0.0.0/33')).toThrow('"10.0.0.0/33": prefix /33 is too long for IPv4');
    expect(() => parseCidr('fd00::/129')).toThrow('"fd00::/129": prefix /129 is too long for IPv6');
  });

  it('reads an IPv4-mapped IPv6 address as the IPv4 address it carries', () => {
    expect(canonicalIp('::ffff:10.0.0.5')).toEqual({ address: '10.0.0.5', family: 'ipv4' });
    expect(canonicalIp('::FFFF:10.0.0.5')).toEqual({ address: '10.0.0.5', family: 'ipv4' });
    expect(canonicalIp('10.0.0.5')).toEqual({ address: '10.0.0.5', family: 'ipv4' });
    expect(canonicalIp('fd00::5')).toEqual({ address: 'fd00::5', family: 'ipv6' });
  });
});

describe('auto-approval policy', () => {
  it('admits nothing by default', () => {
    const p = new RegistrationPolicy({ subnets: [] });
    expect(p.admits('10.0.0.5', undefined)).toBeUndefined();
    expect(p.admits('10.0.0.5', 'any code')).toBeUndefined();
    expect(p.hasJoinCode).toBe(false);
  });

  it('admits peers from listed subnets and says which one', () => {
    const p = new RegistrationPolicy({ subnets: ['10.0.0.0/24', 'fd00::/8', '192.168.0.0/16'] });
    expect(p.admits('10.0.0.200', undefined)).toBe('policy:subnet 10.0.0.0/24');
    expect(p.admits('192.168.7.1', undefined)).toBe('policy:subnet 192.168.0.0/16');
    expect(p.admits('fd12::1', undefined)).toBe('policy:subnet fd00::/8');
    expect(p.admits('10.0.1.1', undefined)).toBeUndefined();
    expect(p.admits('fe80::1', undefined)).toBeUndefined();
    expect(p.admits(undefined, undefined)).toBeUndefined();
  });

  it('matches IPv4-mapped IPv6 remotes (dual-stack sockets) against IPv4 subnets', () => {
    const p = new RegistrationPolicy({ subnets: ['10.0.0.0/24'] });
    expect(p.admits('::ffff:10.0.0.9', undefined)).toBe('policy:subnet 10.0.0.0/24');
    expect(p.admits('::ffff:10.0.9.9', undefined)).toBeUndefined();
  });

  it('keeps the join code only as a SHA-256 hash and admits whoever presents it', () => {
    const p = new RegistrationPolicy({ subnets: [] });
    p.setJoinCode('blue-door-42');
    expect(p.hasJoinCode).toBe(true);
    expect(p.storedJoinCodeHash).toBe(hashSecret('blue-door-42'));
    expect(p.storedJoinCodeHash).not.toContain('blue');
    expect(p.admits(undefined, 'blue-door-42')).toBe('policy:join-code');
    expect(p.admits(undefined, 'blue-door-43')).toBeUndefined();
    expect(p.admits(undefined, undefined)).toBeUndefined();
    p.setJoinCode('');
    expect(p.hasJoinCode).toBe(false);
    expect(p.admits(undefined, 'blue-door-42')).toBeUndefined();
  });

  it('restores a stored join code hash', () => {
    const p = new RegistrationPolicy({ subnets: [], joinCodeHash: hashSecret('s3cret-code') });
    expect(p.admits(undefined, 's3cret-code')).toBe('policy:join-code');
  });

  it('prefers the join code when both rules match', () => {
    const p = new RegistrationPolicy({ subnets: ['10.0.0.0/8'], joinCodeHash: hashSecret('code') });
    expect(p.admits('10.1.2.3', 'code')).toBe('policy:join-code');
    expect(p.admits('10.1.2.3', 'wrong')).toBe('policy:subnet 10.0.0.0/8');
  });

  it('refuses a bad CIDR and keeps the previous list', () => {
    expect(() => new RegistrationPolicy({ subnets: ['10.0.0.0/8', 'nope'] })).toThrow(/"nope" is not a CIDR/);
    const p = new RegistrationPolicy({ subnets: [' 10.0.0.0/8 '] });
    expect(p.subnets).toEqual(['10.0.0.0/8']);
    expect(() => p.setSubnets(['192.168.0.0/16', '192.168.0.0/40'])).toThrow(/too long/);
    expect(p.subnets).toEqual(['10.0.0.0/8']);
    expect(p.admits('10.9.9.9', undefined)).toBe('policy:subnet 10.0.0.0/8');
    expect(p.admits('192.168.1.1', undefined)).toBeUndefined();
  });

  it('reads dotted-quad IPv4 as a number and nothing else', () => {
    expect(ipv4Number('0.0.0.0')).toBe(0);
    expect(ipv4Number('255.255.255.255')).toBe(0xffffffff);
    expect(ipv4Number('10.1.2.3')).toBe(0x0a010203);
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '1.2.3.256', '01.2.3.4', '1..3.4', '1.2.3.', '.1.2.3', 'a.b.c.d', '::1', '1.2.3.4 ']) expect(ipv4Number(bad), bad).toBeUndefined();
  });

  it('matches IPv4 remotes by number exactly as BlockList does, first listed rule first (random model check)', () => {
    let seed = 7;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
    const quad = (): string => `${rnd(4) === 0 ? 10 : rnd(256)}.${rnd(4)}.${rnd(256)}.${rnd(256)}`;
    for (let round = 0; round < 20; round++) {
      const subnets = Array.from({ length: 1 + rnd(4) }, () => `${quad()}/${rnd(33)}`);
      const p = new RegistrationPolicy({ subnets });
      const blocks = subnets.map((t) => {
        const b = new BlockList();
        const c = parseCidr(t);
        b.addSubnet(c.address, c.prefix, 'ipv4');
        return { b, by: `policy:subnet ${t}` };
      });
      for (let i = 0; i < 200; i++) {
        const a = quad();
        expect(p.admits(a, undefined), `${a} against ${subnets.join(' ')}`).toBe(blocks.find((x) => x.b.check(a, 'ipv4'))?.by);
        expect(p.admits(`::ffff:${a}`, undefined)).toBe(blocks.find((x) => x.b.check(a, 'ipv4'))?.by);
      }
    }
    // A list with an IPv6 rule goes through BlockList for every remote, with the same answers.
    const mixed = new RegistrationPolicy({ subnets: ['10.0.0.0/8', 'fd00::/8'] });
    expect(mixed.admits('10.2.3.4', undefined)).toBe('policy:subnet 10.0.0.0/8');
    expect(mixed.admits('11.2.3.4', undefined)).toBeUndefined();
    expect(mixed.admits('fd00::5', undefined)).toBe('policy:subnet fd00::/8');
  });
});
