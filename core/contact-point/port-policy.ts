import { lookup } from 'node:dns/promises';
import { createRequire } from 'node:module';
import { isIP, isIPv4 } from 'node:net';
import type IpAddr from 'ipaddr.js';

// ipaddr.js is CommonJS: require() loads it in ~3 ms, where an ESM import first has Node scan it
// for named exports (~20 ms more CPU at every CLI start).
const ipaddr = createRequire(import.meta.url)('ipaddr.js') as typeof IpAddr;

/**
 * What the admin allows port mediation to do (seed 002, within the admin's limits), and the
 * address checks that keep "connect to this LAN address" (or "listen on this address of the
 * contact point's host") from becoming request forgery or port squatting:
 *
 * - every spelling of an address is canonicalised before the check: decimal, hex and octal
 *   IPv4 (`2130706433`, `0x7f.1`, `0177.0.0.1`), IPv4-mapped, IPv4-compatible and NAT64
 *   (64:ff9b::/96) IPv6 become the IPv4 they carry;
 * - names are resolved once, every resolved address is checked, and the connection goes to
 *   the checked address (no second lookup an attacker's DNS could answer differently);
 * - special addresses (SPECIAL below: loopback, link-local, the cloud metadata services,
 *   unspecified, multicast, broadcast, reserved, and IPv6 forms that carry a special IPv4:
 *   6to4, Teredo, IPv4-translated, the NAT64 local-use prefix) pass only a rule that names
 *   them explicitly, never a wide one like 0.0.0.0/0, as connect targets and as local binds;
 * - private ranges (RFC 1918, carrier-grade NAT, IPv6 unique-local) are the LAN: ordinary
 *   targets that any rule covering them allows.
 *
 * Which range an address is in comes from ipaddr.js's maintained table (`range()`); this file
 * only says what each of its ranges means here.
 */

type Family = 'ipv4' | 'ipv6';
type IPv4 = IpAddr.IPv4;
type IPv6 = IpAddr.IPv6;
type Addr = IPv4 | IPv6;

export interface PortRange {
  readonly from: number;
  readonly to: number;
}

export interface TargetRule {
  readonly text: string;
  readonly address: string;
  readonly prefix: number;
  readonly family: Family;
  readonly ports: readonly PortRange[];
  /** the rule lies wholly inside a special range (loopback, link-local...), so it names it explicitly */
  readonly special: boolean;
  readonly net: Addr;
}

export interface BindRule {
  readonly text: string;
  readonly proto: 'tcp' | 'udp' | 'any';
  /** canonical local address to bind, or undefined for any of this host's addresses (also 0.0.0.0, ::) */
  readonly address: string | undefined;
  readonly ports: readonly PortRange[];
}

/** A refused bind: `unsafe` when the address is special and no listen rule names it (UNSAFE_TARGET). */
export interface BindRefusal {
  readonly unsafe: boolean;
  readonly reason: string;
}

/**
 * What each of ipaddr.js's range() names means here: `lan` ordinary (a rule covering it
 * allows it), `special` (only a rule lying wholly inside the range allows it), `embedded`
 * (an IPv6 form carrying an IPv4 address: special when the IPv4 is). A name missing here (a
 * range a later ipaddr.js adds) counts as special until it is placed: closed, not open.
 */
export const RANGE_MEANING: { readonly ipv4: Readonly<Record<string, 'lan' | 'special'>>; readonly ipv6: Readonly<Record<string, 'lan' | 'special' | 'embedded'>> } = {
  ipv4: {
    unicast: 'lan',
    private: 'lan', // 10/8, 172.16/12, 192.168/16: the LAN
    carrierGradeNat: 'lan', // 100.64/10: provider and overlay networks
    as112: 'lan', // public anycast DNS sinks
    amt: 'lan', // public anycast multicast relays
    unspecified: 'special', // 0.0.0.0/8
    broadcast: 'special', // 255.255.255.255
    multicast: 'special', // 224/4
    linkLocal: 'special', // 169.254/16, with the 169.254.169.254 metadata service
    loopback: 'special', // 127/8
    reserved: 'special', // 240/4, 192.0.0/24, TEST-NETs, 198.18/15 benchmarking, 192.88.99/24
  },
  ipv6: {
    unicast: 'lan',
    uniqueLocal: 'lan', // fc00::/7: the LAN
    deprecatedSiteLocal: 'lan', // fec0::/10: the LAN of old
    amt: 'lan',
    as112v6: 'lan',
    segmentRouting: 'lan', // 5f00::/16: routed SRv6 addresses
    unspecified: 'special', // ::
    loopback: 'special', // ::1
    linkLocal: 'special', // fe80::/10
    multicast: 'special', // ff00::/8
    discard: 'special', // 100::/64
    reserved: 'special', // 2001::/23 (but Teredo), 2001:db8::/32, 3fff::/20: documentation, IETF use
    benchmarking: 'special',
    deprecatedOrchid: 'special',
    orchid2: 'special',
    droneRemoteIdProtocolEntityTags: 'special',
    ipv4Mapped: 'embedded', // ::ffff:0:0/96 (canonicalised to IPv4 before any check)
    rfc6145: 'embedded', // ::ffff:0:0:0/96, IPv4-translated
    rfc6052: 'embedded', // 64:ff9b::/96 (canonicalised to IPv4) and 64:ff9b:1::/48, NAT64
    '6to4': 'embedded', // 2002:AABB:CCDD::/48 carries AA.BB.CC.DD
    teredo: 'embedded', // 2001:0:SERVER:FLAGS:PORT:~CLIENT
  },
};

/** Cloud metadata services that sit in ranges otherwise ordinary (169.254.169.254 is link-local anyway). */
const METADATA_ADDRESSES: readonly string[] = ['169.254.169.254', 'fd00:ec2::254', '100.100.100.200'];
const metadata = new Set(METADATA_ADDRESSES.map((a) => ipaddr.parse(a).toString()));

/** Why an address is special, and the prefix length of the special block holding it. */
interface Special {
  readonly what: string;
  readonly bits: number;
}

const RANGE_WORDS: Record<string, string> = {
  unspecified: 'unspecified',
  broadcast: 'broadcast',
  multicast: 'multicast',
  linkLocal: 'link-local',
  loopback: 'loopback',
  reserved: 'reserved',
  discard: 'a discard prefix',
};

type RangeTable = Record<string, [Addr, number] | [Addr, number][]>;
/** The CIDRs behind a range() name, for the width of the block an address sits in. */
function blocksOf(addr: Addr, name: string): [Addr, number][] {
  const table = (Object.getPrototypeOf(addr) as { SpecialRanges?: RangeTable }).SpecialRanges;
  const entry = table?.[name];
  if (!entry) return [];
  return (Array.isArray(entry[0]) ? entry : [entry]) as [Addr, number][];
}

/** The special block holding `addr` (after canonicalisation), or undefined for an ordinary address. */
function specialOf(addr: Addr): Special | undefined {
  const max = addr.kind() === 'ipv4' ? 32 : 128;
  const text = addr.toString();
  if (metadata.has(text)) return { what: 'a cloud metadata service', bits: max };
  const name = addr.range();
  const meaning = addr.kind() === 'ipv4' ? RANGE_MEANING.ipv4[name] : RANGE_MEANING.ipv6[name];
  if (meaning === 'lan') return undefined;
  if (meaning === 'embedded') return embeddedSpecial(addr as IPv6, name);
  // special, or a range this code does not know yet: only a rule for exactly that block (or address) allows it.
  const block = blocksOf(addr, name).find(([net, bits]) => addr.match(net, bits));
  return { what: RANGE_WORDS[name] ?? `in the ${name} range`, bits: block?.[1] ?? max };
}

function v4At(bytes: number[], at: number[], invert = false): IPv4 {
  return new ipaddr.IPv4(at.map((i) => (invert ? ~bytes[i]! & 0xff : bytes[i]!)));
}

/**
 * An IPv6 form carrying an IPv4 address is special when that IPv4 is; its block is the IPv6
 * prefix up to the IPv4's special block, e.g. 6to4 of 127/8 is 2002:7f00::/24.
 */
function embeddedSpecial(addr: IPv6, name: string): Special | undefined {
  const b = addr.toByteArray();
  const carried: { v4: IPv4; form: string; bits: (w: number) => number }[] = [];
  if (name === '6to4') carried.push({ v4: v4At(b, [2, 3, 4, 5]), form: 'a 6to4 address', bits: (w) => 16 + w });
  else if (name === 'teredo') {
    carried.push({ v4: v4At(b, [4, 5, 6, 7]), form: 'a Teredo address (server)', bits: (w) => 32 + w });
    carried.push({ v4: v4At(b, [12, 13, 14, 15], true), form: 'a Teredo address', bits: (w) => 96 + w });
  } else if (name === 'rfc6052' && addr.parts[2] === 1) {
    // 64:ff9b:1::/48 (RFC 8215): the IPv4 sits in bytes 6-7 and 9-10, around the zero "u" byte.
    carried.push({ v4: v4At(b, [6, 7, 9, 10]), form: 'a NAT64 address', bits: (w) => (w <= 16 ? 48 + w : 56 + w) });
  } else carried.push({ v4: v4At(b, [12, 13, 14, 15]), form: name === 'rfc6145' ? 'an IPv4-translated address' : 'an IPv6 form', bits: (w) => 96 + w });
  let found: Special | undefined;
  for (const c of carried) {
    const inner = specialOf(c.v4);
    if (!inner) continue;
    const bits = Math.min(128, c.bits(inner.bits));
    if (!found || bits < found.bits) found = { what: `${c.form} carrying ${c.v4.toString()} (${inner.what})`, bits };
  }
  return found;
}

export class PolicyError extends Error {
  override readonly name = 'PolicyError';
}

function parsePorts(text: string | undefined, what: string): PortRange[] {
  if (text === undefined || text === '' || text === '*') return [{ from: 1, to: 65535 }];
  return text.split(',').map((part) => {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part.trim());
    const from = m ? Number(m[1]) : NaN;
    const to = m ? Number(m[2] ?? m[1]) : NaN;
    if (!m || from < 1 || to > 65535 || from > to) throw new PolicyError(`${what}: "${part}" is not a port or port range (1-65535)`);
    return { from, to };
  });
}

/**
 * Canonical form of an IP address literal in any spelling, or undefined if `host` is a name.
 * IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::/96) IPv6
 * become the IPv4 they carry; other IPv6 addresses come back in their short form.
 */
export function canonicalAddress(host: string): { address: string; family: Family } | undefined {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.includes('%')) return undefined; // zone ids are not accepted
  if (isIP(h) === 6) return fromV6(ipaddr.IPv6.parse(h));
  // The WHATWG URL host parser canonicalises every IPv4 spelling browsers accept (and so attackers use).
  let parsed: string;
  try {
    parsed = new URL(`http://${h}/`).hostname;
  } catch {
    return undefined;
  }
  if (isIPv4(parsed)) return { address: parsed, family: 'ipv4' };
  return undefined;
}

function fromV6(a: IPv6): { address: string; family: Family } {
  const w = a.parts;
  const isMapped = w.slice(0, 5).every((x) => x === 0) && w[5] === 0xffff;
  const isNat64 = w[0] === 0x64 && w[1] === 0xff9b && w.slice(2, 6).every((x) => x === 0);
  const isCompat = w.slice(0, 6).every((x) => x === 0) && (w[6]! !== 0 || w[7]! > 1);
  if (isMapped || isNat64 || isCompat) {
    const v4 = [w[6]! >> 8, w[6]! & 0xff, w[7]! >> 8, w[7]! & 0xff].join('.');
    return { address: v4, family: 'ipv4' };
  }
  return { address: a.toString(), family: 'ipv6' };
}

/** Why a canonical address is special ("loopback", "a 6to4 address carrying 127.0.0.1 (loopback)"), or undefined. */
export function specialReason(address: string): string | undefined {
  return specialOf(ipaddr.parse(address))?.what;
}

/** The network address of `addr`/`prefix`. */
function networkOf(addr: Addr, prefix: number): Addr {
  const bytes = addr.toByteArray().map((b, i) => {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    return b & ((0xff << (8 - keep)) & 0xff);
  });
  return ipaddr.fromByteArray(bytes);
}

/** `192.168.1.0/24:80,443`, `10.0.0.5:8000-8100`, `[fd00::/8]:22`, `127.0.0.1:631` (explicit loopback). */
export function parseTargetRule(text: string): TargetRule {
  const t = text.trim();
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::([\d,-]+|\*))?$/.exec(t);
  if (!m) throw new PolicyError(`target rule "${text}": expected ADDRESS[/PREFIX][:PORTS], e.g. 192.168.1.0/24:80,443`);
  const [addrText, prefixText] = (m[1] ?? m[2]!).split('/') as [string, string | undefined];
  const canon = canonicalAddress(addrText);
  if (!canon) throw new PolicyError(`target rule "${text}": "${addrText}" is not an IP address (list addresses or subnets, not names)`);
  const max = canon.family === 'ipv4' ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new PolicyError(`target rule "${text}": prefix must be 0-${max}`);
  const net = networkOf(ipaddr.parse(canon.address), prefix);
  // Wholly special: the network's first address is special and the rule is no wider than its special block.
  const first = specialOf(net);
  return { text: t, address: canon.address, prefix, family: canon.family, ports: parsePorts(m[3], `target rule "${text}"`), special: first !== undefined && prefix >= first.bits, net };
}

/** `8000-8100`, `tcp:8080`, `udp:5000-5010`, `192.168.1.10:tcp:8080`, `[::1]:tcp:8080`. */
export function parseBindRule(text: string): BindRule {
  const usage = `listen rule "${text}": expected [ADDRESS:][tcp|udp:]PORTS (an IPv6 ADDRESS in brackets)`;
  let rest = text.trim();
  let address: string | undefined;
  const bracketed = /^\[([^\]]*)\]:(.*)$/.exec(rest);
  if (bracketed) {
    address = bracketed[1]!;
    rest = bracketed[2]!;
  }
  const parts = rest.split(':');
  let proto: BindRule['proto'] = 'any';
  if (parts.length === 3 && address === undefined) address = parts.shift();
  if (parts.length === 2) {
    const p = parts.shift()!;
    if (p !== 'tcp' && p !== 'udp') {
      if (address !== undefined || isIP(p) === 0) throw new PolicyError(usage);
      address = p;
    } else proto = p;
  }
  if (parts.length !== 1) throw new PolicyError(usage);
  let local: string | undefined;
  if (address !== undefined) {
    const canon = isIP(address) !== 0 ? canonicalAddress(address) : undefined;
    if (!canon) throw new PolicyError(`listen rule "${text}": "${address}" is not an IP address`);
    local = isUnspecified(canon.address) ? undefined : canon.address;
  }
  return { text: text.trim(), proto, address: local, ports: parsePorts(parts[0], `listen rule "${text}"`) };
}

const isUnspecified = (canonical: string): boolean => canonical === '0.0.0.0' || canonical === '::';
const inRanges = (port: number, ranges: readonly PortRange[]): boolean => ranges.some((r) => port >= r.from && port <= r.to);
const allPorts = (ranges: readonly PortRange[]): boolean => ranges.some((p) => p.from === 1 && p.to === 65535);

/** A local address to bind, checked once: undefined `address` for any address (none given, 0.0.0.0, ::). */
type Local = { readonly address: string | undefined; readonly special: Special | undefined } | { readonly invalid: string };

function localOf(address: string | undefined): Local {
  if (address === undefined) return { address: undefined, special: undefined };
  const canon = isIP(address) !== 0 ? canonicalAddress(address) : undefined;
  if (!canon) return { invalid: `"${address}" is not an IP address` };
  if (isUnspecified(canon.address)) return { address: undefined, special: undefined };
  return { address: canon.address, special: specialOf(ipaddr.parse(canon.address)) };
}

export interface PortPolicyConfig {
  readonly targets: readonly string[];
  readonly listen: readonly string[];
}

export class PortPolicy {
  private targetRules: TargetRule[] = [];
  private bindRules: BindRule[] = [];

  constructor(config: PortPolicyConfig = { targets: [], listen: [] }) {
    this.set(config);
  }

  set(config: PortPolicyConfig): void {
    const targets = config.targets.map(parseTargetRule);
    const listen = config.listen.map(parseBindRule);
    this.targetRules = targets;
    this.bindRules = listen;
  }

  get config(): PortPolicyConfig {
    return { targets: this.targetRules.map((r) => r.text), listen: this.bindRules.map((r) => r.text) };
  }

  /** Why this canonical address:port may not be reached, or undefined when a rule allows it. */
  targetProblem(address: string, family: Family, port: number): string | undefined {
    return this.checkTarget(address, family, port)?.reason;
  }

  /**
   * A special address passes only a rule lying wholly inside its special block (so naming it);
   * `unsafe` when no rule names it on any port (UNSAFE_TARGET), else a plain PERMISSION_DENIED.
   */
  private checkTarget(address: string, family: Family, port: number): { unsafe: boolean; reason: string } | undefined {
    let addr: Addr;
    try {
      addr = ipaddr.parse(address);
    } catch {
      return { unsafe: false, reason: `"${address}" is not an IP address` };
    }
    if (addr.kind() !== family) return { unsafe: false, reason: `"${address}" is not an ${family} address` };
    const special = specialOf(addr);
    let named = false;
    for (const r of this.targetRules) {
      if (r.family !== family || !addr.match(r.net, r.prefix)) continue;
      if (special && r.prefix < special.bits) continue; // a wide rule does not reach special addresses
      named = true;
      if (inRanges(port, r.ports)) return undefined;
    }
    if (special && !named) return { unsafe: true, reason: `${address} is ${special.what}, and no rule names it explicitly` };
    return { unsafe: false, reason: `no target rule allows ${family === 'ipv6' ? `[${address}]` : address}:${port}` };
  }

  /**
   * Resolves and checks a connect target. Returns the one address to connect to, so the
   * check and the connection see the same address.
   */
  async resolveTarget(host: string, port: number): Promise<{ ok: true; address: string; family: 4 | 6 } | { ok: false; unsafe: boolean; reason: string }> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) return { ok: false, unsafe: false, reason: `port ${port} is not 1-65535` };
    const literal = canonicalAddress(host);
    let candidates: { address: string; family: Family }[];
    if (literal) {
      candidates = [literal];
    } else {
      if (!/^[a-z0-9.-]{1,253}$/i.test(host)) return { ok: false, unsafe: false, reason: `"${host}" is not a host name or address` };
      try {
        const all = await lookup(host, { all: true, verbatim: true });
        candidates = all.map((a) => canonicalAddress(a.address)).filter((a) => a !== undefined);
      } catch (err: unknown) {
        return { ok: false, unsafe: false, reason: `cannot resolve "${host}": ${(err as NodeJS.ErrnoException).code ?? 'error'}` };
      }
      if (candidates.length === 0) return { ok: false, unsafe: false, reason: `"${host}" has no addresses` };
    }
    for (const c of candidates) {
      const problem = this.checkTarget(c.address, c.family, port);
      // UNSAFE_TARGET is for special addresses no rule names; anything else is plain PERMISSION_DENIED.
      if (problem) return { ok: false, unsafe: problem.unsafe, reason: literal ? problem.reason : `"${host}" resolves to ${c.address}: ${problem.reason}` };
    }
    const first = candidates[0]!;
    return { ok: true, address: first.address, family: first.family === 'ipv4' ? 4 : 6 };
  }

  /**
   * Why binding proto/address/port is not allowed, or undefined. Port 0 (any) needs a rule
   * allowing all ports. `address` undefined, 0.0.0.0 or :: is any address; a special one
   * (loopback, multicast, broadcast...) needs a rule that names it, as for targets.
   */
  bindProblem(proto: 'tcp' | 'udp', address: string | undefined, port: number): BindRefusal | undefined {
    return this.checkBind(proto, localOf(address), port);
  }

  private checkBind(proto: 'tcp' | 'udp', local: Local, port: number): BindRefusal | undefined {
    if ('invalid' in local) return { unsafe: false, reason: local.invalid };
    let named = false;
    for (const r of this.bindRules) {
      // A rule with an address allows exactly that address; one without, any but a special one.
      if (r.address !== undefined ? r.address !== local.address : local.special !== undefined) continue;
      named = true;
      if (r.proto !== 'any' && r.proto !== proto) continue;
      if (port === 0 ? allPorts(r.ports) : inRanges(port, r.ports)) return undefined;
    }
    const a = local.address;
    if (a !== undefined && local.special && !named) {
      const example = `${a.includes(':') ? `[${a}]` : a}:${proto}:${port === 0 ? '1-65535' : port}`;
      return { unsafe: true, reason: `${a} is ${local.special.what}: only a listen rule naming it (e.g. ${example}) allows binding it` };
    }
    return { unsafe: false, reason: `no listen rule allows ${proto} port ${port === 0 ? '(any)' : port}${a !== undefined ? ' on ' + a : ''}` };
  }

  /** Ports from `start` upward that a rule allows, for `desired` opens (first free one wins). */
  *candidatePorts(proto: 'tcp' | 'udp', address: string | undefined, start: number, max = 100): Generator<number> {
    const local = localOf(address);
    let n = 0;
    for (let p = start; p <= 65535 && n < max; p++) {
      if (this.checkBind(proto, local, p) === undefined) {
        n++;
        yield p;
      }
    }
  }
}
