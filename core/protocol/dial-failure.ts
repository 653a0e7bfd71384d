import { RELAY_PATH } from './version.js';

/**
 * Plain TypeScript, no Node imports: the admin contract (and so the renderer) uses its types.
 *
 * Why a dial failed, in words that say what to change, and whether waiting can fix it
 * (issue 16, item 8). The dialer retries every kind; what differs is the wording, how fast it
 * retries, and whether `contact-point serve` gives up at startup:
 *
 * - `network`: the relay is down, busy or unreachable right now (refused, reset, timed out, a
 *   temporary DNS failure, HTTP 5xx/408/429 from a proxy in front of it). Retried with backoff,
 *   for ever: a relay that is merely down comes back.
 * - `url`: the URL itself is wrong, and only changing it helps: no such host (NXDOMAIN), a path
 *   other than the relay's, a web server or a redirect instead of a WebSocket upgrade, ws:// to a
 *   TLS port or wss:// to a plain one. `serve` exits with the message if its tunnel has never
 *   been up; once it has been, the URL was right, so it keeps retrying (slowly).
 * - `trust`: the relay's certificate is not accepted (self-signed, unknown CA, other names,
 *   expired). Retried slowly: the fix is a flag here (--ca) or a new certificate there.
 */
export type DialFailureKind = 'network' | 'url' | 'trust';

/** What kind of cause a dialer's (and a tunnel's) last error is: a DialFailureKind, or `refused`: the far side answered with a status. */
export type DialErrorKind = DialFailureKind | 'refused';

export interface DialFailure {
  readonly kind: DialFailureKind;
  /** the cause and what to change, one line */
  readonly message: string;
}

/** Certificate errors that --ca fixes (the chain ends at a CA this machine does not trust). */
const UNTRUSTED = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT']);

/** The relay's URL with the relay path, for a hint (`ws://h:1/` -> `ws://h:1/v1`). */
function withRelayPath(url: URL): string {
  const u = new URL(url.href);
  u.pathname = RELAY_PATH;
  u.search = '';
  return u.href;
}

function withScheme(url: URL, scheme: 'ws:' | 'wss:'): string {
  return `${scheme}${url.href.slice(url.protocol.length)}`;
}

/**
 * A socket or TLS error of a dial. `otherProtocol`: for a connection reset or hung up before
 * any answer, whether that port speaks the other protocol: TLS for a ws:// URL, plain HTTP for
 * a wss:// one (the dialer's probes).
 */
export function describeDialError(rawUrl: string, err: Error & { code?: string }, otherProtocol = false): DialFailure {
  const url = new URL(rawUrl);
  const code = err.code ?? '';
  const host = url.hostname;
  if (UNTRUSTED.has(code)) {
    return {
      kind: 'trust',
      message: `${err.message}: the relay's certificate is not signed by a CA this machine trusts. If that is expected (your own relay, a private CA), trust it with --ca FILE (the relay's certificate or its CA, PEM)`,
    };
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return { kind: 'trust', message: `${err.message}. Use a relay URL with a host name the certificate names, or a certificate for ${host}` };
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return { kind: 'trust', message: `${err.message}: the relay's certificate must be renewed (or the clock here is wrong); retrying` };
  if (url.protocol === 'wss:' && (otherProtocol || /wrong version number|packet length too long|unknown protocol|http request/i.test(err.message))) {
    return { kind: 'url', message: `${host}:${url.port || 443} does not speak TLS (${otherProtocol ? 'it answers plain HTTP' : code || 'TLS error'}): use ${withScheme(url, 'ws:')} for a relay without a certificate, or give the relay --tls-cert/--tls-key` };
  }
  if (code === 'ENOTFOUND') return { kind: 'url', message: `no such host: ${host} (DNS says it does not exist). Check the host in the relay URL ${rawUrl}` };
  if (code === 'EAI_AGAIN') return { kind: 'network', message: `cannot resolve ${host} right now (temporary DNS failure); retrying` };
  if (otherProtocol && url.protocol === 'ws:') {
    return { kind: 'url', message: `${host}:${url.port || 80} speaks TLS but the URL says ws://: use ${withScheme(url, 'wss:')}` };
  }
  if (code === 'ECONNREFUSED') return { kind: 'network', message: `${err.message}: no relay listens there now (down, or a wrong port); retrying` };
  // Everything else (reset, timed out, unreachable...) may pass: retried.
  return { kind: 'network', message: err.message };
}

/** A dial answered with HTTP instead of a WebSocket upgrade. */
export function describeUpgradeResponse(rawUrl: string, status: number, location: string | undefined): DialFailure {
  const url = new URL(rawUrl);
  if (status >= 500 || status === 408 || status === 429) {
    return { kind: 'network', message: `the relay answered HTTP ${status} instead of a WebSocket upgrade (busy, or down behind a proxy); retrying` };
  }
  if (status >= 300 && status < 400) {
    const to = location ?? '(no Location)';
    if (url.protocol === 'ws:' && /^https:/i.test(to)) return { kind: 'url', message: `HTTP ${status}: ${url.host} redirects to ${to} (https only): use ${withScheme(url, 'wss:')}` };
    return { kind: 'url', message: `HTTP ${status}: ${rawUrl} redirects to ${to}; a relay URL must be the relay itself` };
  }
  if (url.pathname !== RELAY_PATH) {
    return { kind: 'url', message: `HTTP ${status} for ${url.pathname}: a relay's URL ends in ${RELAY_PATH}, e.g. ${withRelayPath(url)}` };
  }
  return { kind: 'url', message: `HTTP ${status} instead of a WebSocket upgrade: no relay answers at ${rawUrl}; check the host and port` };
}
