import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  HTTP_HEADERS_TIMEOUT_MS,
  HTTP_KEEPALIVE_TIMEOUT_MS,
  HTTP_REQUEST_TIMEOUT_MS,
  MAX_HTTP_CONNECTIONS,
  MAX_HTTP_CONNECTIONS_PER_ADDRESS,
  PRESSURE_TIMEOUT_MS,
} from '../protocol/limits.js';
import { FairSlots, sourceKey, type Slot } from './fair-slots.js';

/** Limits of a server's plain HTTP side; each defaults to the constant of the same name in limits.ts. */
export interface HttpLimits {
  readonly headersTimeoutMs?: number;
  readonly requestTimeoutMs?: number;
  readonly keepAliveTimeoutMs?: number;
  readonly maxConnections?: number;
  readonly maxConnectionsPerAddress?: number;
  readonly pressureTimeoutMs?: number;
}

export interface GuardedServerOptions {
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer } | undefined;
  readonly limits?: HttpLimits | undefined;
  /** Plain requests. The answer always closes the connection; the body is never read. */
  readonly onRequest: (req: IncomingMessage, res: ServerResponse) => void;
  /** Upgrade requests: from here the socket is the handler's (refuse with refuseUpgrade). */
  readonly onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
}

/** Checks limits and fills in the defaults; a bad value is a RangeError naming it. */
export function httpLimits(l: HttpLimits = {}): Required<HttpLimits> {
  const r: Required<HttpLimits> = {
    headersTimeoutMs: l.headersTimeoutMs ?? HTTP_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: l.requestTimeoutMs ?? HTTP_REQUEST_TIMEOUT_MS,
    keepAliveTimeoutMs: l.keepAliveTimeoutMs ?? HTTP_KEEPALIVE_TIMEOUT_MS,
    maxConnections: l.maxConnections ?? MAX_HTTP_CONNECTIONS,
    maxConnectionsPerAddress: l.maxConnectionsPerAddress ?? MAX_HTTP_CONNECTIONS_PER_ADDRESS,
    pressureTimeoutMs: l.pressureTimeoutMs ?? PRESSURE_TIMEOUT_MS,
  };
  for (const [name, v] of Object.entries(r)) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`HTTP limit ${name} must be a positive integer, got ${String(v)}`);
  }
  if (r.headersTimeoutMs > r.requestTimeoutMs) {
    throw new RangeError(`HTTP limit headersTimeoutMs (${r.headersTimeoutMs}) must not exceed requestTimeoutMs (${r.requestTimeoutMs})`);
  }
  if (r.maxConnectionsPerAddress > r.maxConnections) {
    throw new RangeError(`HTTP limit maxConnectionsPerAddress (${r.maxConnectionsPerAddress}) must not exceed maxConnections (${r.maxConnections})`);
  }
  return r;
}

interface Tracked {
  readonly slot: Slot;
  readonly since: number;
  timer: NodeJS.Timeout;
  /** its socket's close listener, removed at the upgrade: an upgraded socket keeps nothing of this table */
  onClose?: () => void;
}

/**
 * An HTTP(S) server for an endpoint whose real business is WebSocket upgrades (relay, peer
 * port, admin endpoint), hardened the same way for all three:
 *
 * - every plain answer carries `Connection: close` and the socket is destroyed once the answer
 *   is flushed, so a request body (however large it claims to be) is never read; no
 *   `100 Continue` is sent, so well-behaved clients do not even send it;
 * - a connection must deliver its request head within `headersTimeoutMs` of connecting (TLS
 *   handshake included; Node's own headersTimeout does not cover a connection that sends
 *   nothing) and finish within `requestTimeoutMs`, else it is destroyed;
 * - connections not (yet) upgraded are capped per source and in total, fairly (FairSlots):
 *   a source over its cap is closed at once, and a full table sheds the largest holder's
 *   oldest. An upgraded socket leaves this table (its owner caps it, e.g. pending hellos).
 */
export function createGuardedServer(o: GuardedServerOptions): Server {
  const l = httpLimits(o.limits);
  const slots = new FairSlots({ max: l.maxConnections, maxPerKey: l.maxConnectionsPerAddress, pressureAgeMs: l.pressureTimeoutMs, label: 'HTTP connections' });
  /** un-upgraded connections by `address|port` (the same for a TLS socket and the TCP socket under it) */
  const tracked = new Map<string, Tracked>();
  const idOf = (s: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string => `${s.remoteAddress ?? ''}|${s.remotePort ?? ''}`;

  const nodeOptions: ServerOptions = {
    headersTimeout: l.headersTimeoutMs,
    requestTimeout: l.requestTimeoutMs,
    keepAliveTimeout: l.keepAliveTimeoutMs,
    // how often Node checks its own header/request timers (30 s by default, so they overshoot)
    connectionsCheckingInterval: Math.min(1_000, l.headersTimeoutMs),
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const t = tracked.get(idOf(req.socket));
    if (t) {
      // The head arrived: what is left of requestTimeoutMs bounds the answer.
      clearTimeout(t.timer);
      t.timer = expire(req.socket, l.requestTimeoutMs - (Date.now() - t.since));
    }
    res.shouldKeepAlive = false;
    res.setHeader('connection', 'close');
    res.once('finish', () => req.socket.destroy());
    o.onRequest(req, res);
  };
  const server = o.tls
    ? createHttpsServer({ ...nodeOptions, cert: o.tls.cert, key: o.tls.key, handshakeTimeout: l.headersTimeoutMs }, onRequest)
    : createHttpServer(nodeOptions, onRequest);
  server.keepAliveTimeout = l.keepAliveTimeoutMs;
  // Without this listener Node answers `Expect: 100-continue` itself, inviting the body.
  server.on('checkContinue', onRequest);
  server.on('clientError', (_err, socket: Duplex) => socket.destroy());
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined || socket.remotePort === undefined) return void socket.destroy();
    const slot = slots.take(sourceKey(address), () => socket.destroy());
    if (!slot) return void socket.destroy();
    const id = idOf(socket);
    const t: Tracked = { slot, since: Date.now(), timer: expire(socket, l.headersTimeoutMs) };
    tracked.set(id, t);
    t.onClose = () => {
      clearTimeout(t.timer);
      slot.release();
      if (tracked.get(id) === t) tracked.delete(id);
    };
    socket.once('close', t.onClose);
  });
  server.prependListener('upgrade', (_req: IncomingMessage, socket: Duplex) => {
    const id = idOf(socket as Socket);
    const t = tracked.get(id);
    if (!t) return;
    clearTimeout(t.timer);
    t.slot.release();
    tracked.delete(id);
    if (t.onClose) socket.off('close', t.onClose);
  });
  server.on('upgrade', o.onUpgrade);
  return server;
}

function expire(socket: Duplex, ms: number): NodeJS.Timeout {
  const timer = setTimeout(() => socket.destroy(), Math.max(0, ms));
  timer.unref();
  return timer;
}

function destroyQuietly(this: Duplex): void {
  this.destroy();
}

/**
 * Answers an upgrade request with a plain HTTP status and closes once it is flushed; `headers`
 * are more header lines, each ending in CRLF.
 */
export function refuseUpgrade(socket: Duplex, status: number, text: string, headers = ''): void {
  // Node took its own 'error' listener off the socket before 'upgrade': a reset now would otherwise end the process.
  socket.on('error', destroyQuietly);
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\n${headers}Content-Length: 0\r\n\r\n`, () => socket.destroy());
}
