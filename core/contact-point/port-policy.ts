import { lookup } from 'node:dns/promises';
import { BlockList, isIP, isIPv4 } from 'node:net';

/**
 * What the admin allows port mediation to do (seed 002, within the admin's limits), and the
 * address checks that keep "connect to this LAN address" from becoming request forgery:
 *
 * - every spelling of an address is canonicalised before the check: decimal, hex and octal
 *   IPv4 (`2130706433`, `0x7f.1`, `0177.0.0.1`), IPv4-mapped and NAT64 IPv6, `0.0.0.0`;
 * - names are resolved once, every resolved address is checked, and the connection goes to
 *   the checked address (no second lookup an attacker's DNS could answer differently);
 * - loopback, link-local (incl. the 169.254.169.254 metadata service), unspecified, multicast
 *   and broadcast addresses pass only a rule that names them explicitly, never a wide one
 *   like 0.0.0.0/0.
 */

export interface PortRange {
  readonly from: number;
  readonly to: number;
}

export interface TargetRule {
  readonly text: string;
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
  readonly ports: readonly PortRange[];
  /** the rule lies wholly inside a special range (loopback, link-local...), so it names it explicitly */
  readonly special: boolean;
}

export interface BindRule {
  readonly text: string;
  readonly proto: 'tcp' | 'udp' | 'any';
  /** local address to bind, or undefined for any of this host's addresses */
  readonly address: string | undefined;
  readonly ports: readonly PortRange[];
}

/** Ranges an address may reach only through an explicit rule. */
const SPECIAL_V4: [string, number][] = [
  ['0.0.0.0', 8],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
];
const SPECIAL_V6: [string, number][] = [
  ['::', 128],
  ['::1', 128],
  ['fe80::', 10],
  ['ff00::', 8],
];
const special = new BlockList();
for (const [a, p] of SPECIAL_V4) special.addSubnet(a, p, 'ipv4');
for (const [a, p] of SPECIAL_V6) special.addSubnet(a, p, 'ipv6');

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
 * IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::/96) IPv6 become the IPv4 they carry.
 */
export function canonicalAddress(host: string): { address: string; family: 'ipv4' | 'ipv6' } | undefined {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.includes('%')) return undefined; // zone ids are not accepted
  if (isIP(h) === 6) return fromV6(h);
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

function fromV6(h: string): { address: string; family: 'ipv4' | 'ipv6' } {
  const words = expandV6(h);
  const isMapped = words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff;
  const isNat64 = words[0] === 0x64 && words[1] === 0xff9b && words.slice(2, 6).every((w) => w === 0);
  const isCompat = words.slice(0, 6).every((w) => w === 0) && (words[6]! !== 0 || words[7]! > 1);
  if (isMapped || isNat64 || isCompat) {
    const v4 = [words[6]! >> 8, words[6]! & 0xff, words[7]! >> 8, words[7]! & 0xff].join('.');
    return { address: v4, family: 'ipv4' };
  }
  return { address: h, family: 'ipv6' };
}

/** The eight 16-bit words of an IPv6 address (accepts an embedded dotted IPv4 tail). */
function expandV6(h: string): number[] {
  let text = h;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const a = head ? head.split(':') : [];
  const b = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const fill = tail !== undefined ? new Array<string>(8 - a.length - b.length).fill('0') : [];
  return [...a, ...fill, ...b].map((w) => parseInt(w, 16));
}

export function isSpecialAddress(address: string, family: 'ipv4' | 'ipv6'): boolean {
  return special.check(address, family);
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
  const net = new BlockList();
  net.addSubnet(canon.address, prefix, canon.family);
  // Wholly special: the network's first address is special and the rule is no wider than that range.
  const specials = canon.family === 'ipv4' ? SPECIAL_V4 : SPECIAL_V6;
  const isSpecial = specials.some(([a, p]) => prefix >= p && subnetContains(a, p, canon.address, canon.family));
  return { text: t, address: canon.address, prefix, family: canon.family, ports: parsePorts(m[3], `target rule "${text}"`), special: isSpecial };
}

function subnetContains(net: string, prefix: number, address: string, family: 'ipv4' | 'ipv6'): boolean {
  const b = new BlockList();
  b.addSubnet(net, prefix, family);
  return b.check(address, family);
}

/** `8000-8100`, `tcp:8080`, `udp:5000-5010`, `192.168.1.10:tcp:8080`. */
export function parseBindRule(text: string): BindRule {
  const parts = text.trim().split(':');
  let address: string | undefined;
  let proto: BindRule['proto'] = 'any';
  if (parts.length === 3) address = parts.shift();
  if (parts.length === 2) {
    const p = parts.shift()!;
    if (p !== 'tcp' && p !== 'udp') {
      if (address !== undefined || isIP(p) === 0) throw new PolicyError(`listen rule "${text}": expected [ADDRESS:][tcp|udp:]PORTS`);
      address = p;
    } else proto = p;
  }
  if (parts.length !== 1) throw new PolicyError(`listen rule "${text}": expected [ADDRESS:][tcp|udp:]PORTS`);
  if (address !== undefined && isIP(address) === 0) throw new PolicyError(`listen rule "${text}": "${address}" is not an IP address`);
  return { text: text.trim(), proto, address, ports: parsePorts(parts[0], `listen rule "${text}"`) };
}

const inRanges = (port: number, ranges: readonly PortRange[]): boolean => ranges.some((r) => port >= r.from && port <= r.to);

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
  targetProblem(address: string, family: 'ipv4' | 'ipv6', port: number): string | undefined {
    const isSpecial = isSpecialAddress(address, family);
    for (const r of this.targetRules) {
      if (r.family !== family || !inRanges(port, r.ports) || !subnetContains(r.address, r.prefix, address, family)) continue;
      if (isSpecial && !r.special) continue;
      return undefined;
    }
    if (isSpecial && !this.namesExplicitly(address, family)) return `${address} is loopback, link-local or otherwise special, and no rule names it explicitly`;
    return `no target rule allows ${family === 'ipv6' ? `[${address}]` : address}:${port}`;
  }

  /** A rule lying wholly inside a special range names this (special) address, on some port. */
  private namesExplicitly(address: string, family: 'ipv4' | 'ipv6'): boolean {
    return this.targetRules.some((r) => r.special && r.family === family && subnetContains(r.address, r.prefix, address, family));
  }

  /**
   * Resolves and checks a connect target. Returns the one address to connect to, so the
   * check and the connection see the same address.
   */
  async resolveTarget(host: string, port: number): Promise<{ ok: true; address: string; family: 4 | 6 } | { ok: false; unsafe: boolean; reason: string }> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) return { ok: false, unsafe: false, reason: `port ${port} is not 1-65535` };
    const literal = canonicalAddress(host);
    let candidates: { address: string; family: 'ipv4' | 'ipv6' }[];
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
      const problem = this.targetProblem(c.address, c.family, port);
      // UNSAFE_TARGET is for special addresses no rule names; anything else is plain PERMISSION_DENIED.
      const unsafe = isSpecialAddress(c.address, c.family) && !this.namesExplicitly(c.address, c.family);
      if (problem) return { ok: false, unsafe, reason: literal ? problem : `"${host}" resolves to ${c.address}: ${problem}` };
    }
    const first = candidates[0]!;
    return { ok: true, address: first.address, family: first.family === 'ipv4' ? 4 : 6 };
  }

  /** Why binding proto/address/port is not allowed, or undefined. Port 0 (any) needs a rule allowing all ports. */
  bindProblem(proto: 'tcp' | 'udp', address: string | undefined, port: number): string | undefined {
    for (const r of this.bindRules) {
      if (r.proto !== 'any' && r.proto !== proto) continue;
      if (r.address !== undefined && r.address !== address) continue;
      if (port === 0 ? r.ports.some((p) => p.from === 1 && p.to === 65535) : inRanges(port, r.ports)) return undefined;
    }
    return `no listen rule allows ${proto} port ${port === 0 ? '(any)' : port}${address ? ' on ' + address : ''}`;
  }

  /** Ports from `start` upward that a rule allows, for `desired` opens (first free one wins). */
  *candidatePorts(proto: 'tcp' | 'udp', address: string | undefined, start: number, max = 100): Generator<number> {
    let n = 0;
    for (let p = start; p <= 65535 && n < max; p++) {
      if (this.bindProblem(proto, address, p) === undefined) {
        n++;
        yield p;
      }
    }
  }
}
