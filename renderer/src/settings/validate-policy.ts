/** Checks an auto-approve subnet list as typed (one CIDR a line), naming each bad line. */

export interface PolicyCheck {
  readonly subnets: string[];
  /** line number (1-based) -> what is wrong */
  readonly errors: { readonly line: number; readonly text: string; readonly problem: string }[];
}

/** Same limits as the contract's policy:set schema (64 subnets, CIDR text). */
export const MAX_SUBNETS = 64;

function ipv4Problem(addr: string, prefix: number): string | undefined {
  const parts = addr.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return 'is not an IPv4 address';
  if (prefix > 32) return 'has a prefix over /32';
  return undefined;
}

function ipv6Problem(addr: string, prefix: number): string | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(addr) || (addr.match(/::/g)?.length ?? 0) > 1) return 'is not an IPv6 address';
  const groups = addr.split(':');
  if (groups.length < 3 || groups.length > 8 || groups.some((g) => g.length > 4 && !g.includes('.'))) return 'is not an IPv6 address';
  if (prefix > 128) return 'has a prefix over /128';
  return undefined;
}

export function checkSubnets(text: string): PolicyCheck {
  const subnets: string[] = [];
  const errors: PolicyCheck['errors'][number][] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    const m = /^([^/\s]+)\/(\d{1,3})$/.exec(line);
    let problem: string | undefined;
    if (!m) problem = 'must be a CIDR such as 192.168.1.0/24';
    else {
      const [, addr = '', pfx = ''] = m;
      problem = addr.includes(':') ? ipv6Problem(addr, Number(pfx)) : ipv4Problem(addr, Number(pfx));
    }
    if (problem) errors.push({ line: i + 1, text: line, problem });
    else subnets.push(line);
  });
  if (subnets.length > MAX_SUBNETS) errors.push({ line: 0, text: '', problem: `at most ${MAX_SUBNETS} subnets` });
  return { subnets, errors };
}
