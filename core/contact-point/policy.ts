import { BlockList, isIP } from 'node:net';
import { hashSecret, secretMatches } from '../runtime/secrets.js';

/** Parses `10.0.0.0/24` or `fd00::/8`; throws with the reason when it is not a CIDR. */
export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text.trim());
  const family = m ? isIP(m[1]!) : 0;
  if (!m || family === 0) throw new Error(`"${text}" is not a CIDR such as 192.168.1.0/24`);
  const prefix = Number(m[2]);
  if (prefix > (family === 4 ? 32 : 128)) throw new Error(`"${text}": prefix /${prefix} is too long for IPv${family}`);
  return { address: m[1]!, prefix, family: family === 4 ? 'ipv4' : 'ipv6' };
}

/** An IPv4-mapped IPv6 address (`::ffff:10.0.0.5`) is the IPv4 address it carries. */
export function canonicalIp(address: string): { address: string; family: 'ipv4' | 'ipv6' } {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return { address: mapped[1]!, family: 'ipv4' };
  return { address, family: isIP(address) === 6 ? 'ipv6' : 'ipv4' };
}

/** A dotted-quad IPv4 address as an unsigned 32-bit number; undefined for anything else. */
export function ipv4Number(address: string): number | undefined {
  let n = 0;
  let octet = -1;
  let dots = 0;
  for (let i = 0; i < address.length; i++) {
    const c = address.charCodeAt(i);
    if (c === 46) {
      if (octet < 0 || ++dots > 3) return undefined;
      n = n * 256 + octet;
      octet = -1;
    } else if (c >= 48 && c <= 57) {
      // No leading zeros ("010" is octal to some parsers) and nothing past 255.
      if (octet === 0) return undefined;
      octet = (octet < 0 ? 0 : octet * 10) + (c - 48);
      if (octet > 255) return undefined;
    } else return undefined;
  }
  if (dots !== 3 || octet < 0) return undefined;
  return n * 256 + octet;
}

/**
 * Optional auto-approval: peers connecting from listed subnets, or presenting the join code,
 * are registered without waiting for the admin, and the record says which rule let them in.
 * The join code is kept only as a hash.
 */
export class RegistrationPolicy {
  private blocks = new BlockList();
  private subnetList: string[] = [];
  /** each subnet with a BlockList of its own, built once: which rule admitted a peer is said in its record */
  /** each subnet rule, with the admittedBy text of the peers it admits (one string per rule, not per peer) */
  private rules: { readonly text: string; readonly admittedBy: string; readonly block: BlockList }[] = [];
  /**
   * The same rules as numbers when every one is IPv4 (a LAN's usual list): an IPv4 remote is
   * then matched with two integer operations a rule, where BlockList.check builds a
   * SocketAddress per call (~10 us; twice a hello, twice a REGISTER). Undefined otherwise.
   */
  private v4: { readonly net: number; readonly mask: number; readonly admittedBy: string }[] | undefined;
  private joinCodeHash: string | undefined;

  constructor(init: { subnets: readonly string[]; joinCodeHash?: string | undefined }) {
    this.setSubnets(init.subnets);
    this.joinCodeHash = init.joinCodeHash;
  }

  get subnets(): readonly string[] {
    return this.subnetList;
  }

  get hasJoinCode(): boolean {
    return this.joinCodeHash !== undefined;
  }

  get storedJoinCodeHash(): string | undefined {
    return this.joinCodeHash;
  }

  setSubnets(subnets: readonly string[]): void {
    const blocks = new BlockList();
    const parsed = subnets.map(parseCidr);
    for (const c of parsed) blocks.addSubnet(c.address, c.prefix, c.family);
    this.blocks = blocks;
    this.subnetList = subnets.map((s) => s.trim());
    this.rules = parsed.map((c, i) => {
      const block = new BlockList();
      block.addSubnet(c.address, c.prefix, c.family);
      return { text: this.subnetList[i]!, admittedBy: `policy:subnet ${this.subnetList[i]!}`, block };
    });
    // Every rule an IPv4 net this parser reads as BlockList does (isIP refuses what it refuses); else BlockList for all.
    const nets = parsed.map((c) => (c.family === 'ipv4' ? ipv4Number(c.address) : undefined));
    this.v4 = nets.every((n) => n !== undefined)
      ? parsed.map((c, i) => {
          const mask = c.prefix === 0 ? 0 : (~0 << (32 - c.prefix)) >>> 0;
          return { net: (nets[i]! & mask) >>> 0, mask, admittedBy: this.rules[i]!.admittedBy };
        })
      : undefined;
  }

  /** "" clears the code. */
  setJoinCode(code: string): void {
    this.joinCodeHash = code === '' ? undefined : hashSecret(code);
  }

  /** The code as stored (its hash), or undefined for none. */
  setJoinCodeHash(hash: string | undefined): void {
    this.joinCodeHash = hash;
  }

  /** Which rule admits a peer from `remote` presenting `joinCode`, or undefined. */
  admits(remote: string | undefined, joinCode: string | undefined): string | undefined {
    if (joinCode !== undefined && this.joinCodeHash !== undefined && secretMatches(joinCode, this.joinCodeHash)) {
      return 'policy:join-code';
    }
    if (remote && this.subnetList.length > 0) {
      const ip = canonicalIp(remote);
      const n = this.v4 && ip.family === 'ipv4' ? ipv4Number(ip.address) : undefined;
      if (n !== undefined) {
        for (const r of this.v4!) if (((n & r.mask) >>> 0) === r.net) return r.admittedBy;
        return undefined;
      }
      if (this.blocks.check(ip.address, ip.family)) {
        const hit = this.rules.find((r) => r.block.check(ip.address, ip.family));
        return hit?.admittedBy ?? 'policy:subnet ?';
      }
    }
    return undefined;
  }
}
