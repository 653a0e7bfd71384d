/**
 * Which HTTP CONNECT proxy to use for a ws/wss URL, from the usual environment variables
 * (the curl conventions: lower case wins, NO_PROXY lists hosts or domain suffixes, `*` for all).
 */
export function proxyFor(url: string, env: NodeJS.ProcessEnv): string | undefined {
  const u = new URL(url);
  const secure = u.protocol === 'wss:' || u.protocol === 'https:';
  const pick = (...names: string[]): string | undefined => names.map((n) => env[n]).find((v) => v !== undefined && v !== '');
  const proxy = secure ? pick('https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY') : pick('http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY');
  if (!proxy) return undefined;
  const host = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = u.port || (secure ? '443' : '80');
  const noProxy = (pick('no_proxy', 'NO_PROXY') ?? '').split(/[\s,]+/).filter(Boolean);
  for (const entry of noProxy) {
    if (entry === '*') return undefined;
    const [h, p] = splitHostPort(entry.toLowerCase());
    if (p && p !== port) continue;
    const bare = (h ?? '').replace(/^\*?\./, '');
    if (host === bare || host.endsWith('.' + bare)) return undefined;
  }
  return proxy;
}

/** `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address (which has no port part). */
function splitHostPort(entry: string): [string, string | undefined] {
  const bracketed = /^\[([^\]]*)\](?::(\d+))?$/.exec(entry);
  if (bracketed) return [bracketed[1] ?? '', bracketed[2]];
  if (entry.indexOf(':') !== entry.lastIndexOf(':')) return [entry, undefined];
  const [h, p] = entry.split(/:(?=\d+$)/);
  return [h ?? '', p];
}
