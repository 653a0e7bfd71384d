import { randomBytes } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { answerHealth, isHealthRequest, type Readiness } from '../runtime/health.js';
import { createGuardedServer, refuseUpgrade } from '../runtime/http-guard.js';
import { closeServer, listen } from '../runtime/server-lifecycle.js';
import { RefusalTally } from '../runtime/refusal-tally.js';
import { safeEqual } from '../runtime/secrets.js';
import { ADMIN_CONNECT_SRC, LoopbackGuard, decodedRequestPath, type LoopbackEndpointOptions } from './loopback-guard.js';
import {
  ADMIN_EVENTS,
  ADMIN_PATH,
  ADMIN_PROTOCOL,
  AdminError,
  ADMIN_SURFACES,
  isAdminMethod,
  unknownMethodMessage,
  type AdminHostApi,
  type AdminSurface,
  type AdminServerMessage,
  type Snapshot,
} from './contract.js';

/** Authenticated admin clients at once (GUI tabs, CLI calls). */
export const MAX_ADMIN_CLIENTS = 16;
/**
 * Connections that have not sent their token yet, at most this many: a new one closes the
 * oldest. They never take an authenticated client's place, so a local process that opens
 * connections and sends nothing cannot lock the admin out (a real client sends its token as
 * soon as the socket opens, within a round trip).
 */
export const MAX_PENDING_ADMIN_CLIENTS = 8;
/** An admin connection must authenticate this fast. */
export const ADMIN_AUTH_TIMEOUT_MS = 5_000;
/** Wrong tokens are logged at most once this often, with their count (as the relay's status endpoint does). */
export const ADMIN_BAD_TOKEN_LOG_MS = 60_000;
/** Largest admin request. */
export const MAX_ADMIN_MESSAGE_BYTES = 64 * 1024;
/** A watcher that has this much unsent is skipped for flow batches (samples), and closed at 8x. */
export const ADMIN_SLOW_BYTES = 1024 * 1024;

export interface AdminServerOptions extends LoopbackEndpointOptions {
  /** the admin contract (each call with the surface it came from), and readiness for /readyz */
  readonly api: AdminHostApi & { snapshot(): Snapshot; readiness(): Readiness };
}

/**
 * The admin endpoint for headless mode, browsers and the CLI: the admin contract over a local
 * ws (JSON messages), plus the GUI's static files. Defences: loopback bind, a random token
 * compared in constant time, and Host/Origin checks so a web page elsewhere cannot reach it
 * through DNS rebinding (the token travels in the URL fragment, never to a server).
 */
export class AdminServer {
  private server: Server | undefined;
  private readonly wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_ADMIN_MESSAGE_BYTES,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(ADMIN_PROTOCOL) ? ADMIN_PROTOCOL : false),
  });
  /** authenticated connections */
  private readonly clients = new Set<WebSocket>();
  /** connections still to send their token, oldest first */
  private readonly pending = new Set<WebSocket>();
  private readonly badTokens: RefusalTally;
  readonly token: string;
  private port = 0;
  private hostLabel = '';
  /** Host/Origin checks, security headers, static files (shared with the relay's status endpoint) */
  private readonly guard = new LoopbackGuard(ADMIN_CONNECT_SRC);

  constructor(private readonly opts: AdminServerOptions) {
    this.token = opts.token ?? randomBytes(24).toString('base64url');
    this.badTokens = new RefusalTally(ADMIN_BAD_TOKEN_LOG_MS, (counts) => {
      for (const c of counts) opts.logger.warn('admin connection refused: bad token', { refused: c.count });
    });
  }

  /** Base URL (no token). */
  get url(): string {
    return `http://${this.hostLabel}:${this.port}`;
  }

  /** What a person opens: the GUI with the token in the fragment. */
  get guiUrl(): string {
    return `${this.url}/#token=${this.token}`;
  }

  get wsUrl(): string {
    return `ws://${this.hostLabel}:${this.port}${ADMIN_PATH}`;
  }

  async start(): Promise<void> {
    const server = createGuardedServer({ limits: this.opts.http, onRequest: (req, res) => void this.onRequest(req, res), onUpgrade: this.onUpgrade });
    const host = this.opts.host ?? '127.0.0.1';
    const { address, urlHost } = await listen(server, this.opts.port ?? 0, host);
    this.server = server;
    this.port = address.port;
    // Bound to every address (--admin-listen-any 0.0.0.0): the URL printed for this machine's own browser.
    this.hostLabel = urlHost === '0.0.0.0' ? '127.0.0.1' : urlHost === '[::]' ? '[::1]' : urlHost;
    this.guard.bound(address.port, urlHost, address.address);
  }

  async stop(): Promise<void> {
    this.badTokens.flush();
    this.badTokens.dispose();
    for (const ws of this.pending) ws.terminate();
    for (const ws of this.clients) ws.close(1001, 'contact point stopping');
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await closeServer(server);
    for (const ws of this.clients) ws.terminate();
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Health first, tokenless and whatever the Host header: a probe (systemd, a container
    // HEALTHCHECK, a Kubernetes httpGet on --admin-listen-any) sends no token and may name the
    // host by any address. The answer is the tunnel's state and why; no peer, no secret.
    if (isHealthRequest(req)) {
      answerHealth(req, res, { readiness: () => this.opts.api.readiness() });
      return;
    }
    if (!this.guard.admitRequest(req, res, 'admin GUI')) return;
    const path = decodedRequestPath(req);
    const dir = this.opts.staticDir;
    if (path === undefined) {
      res.writeHead(400, { 'content-type': 'text/plain', ...this.guard.headers });
      res.end('bad path\n');
    } else if (!dir) {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', ...this.guard.headers });
      res.end('Contact Point admin endpoint. The GUI is not built here; use `contact-point peers ...` or connect to ' + ADMIN_PATH + '.\n');
    } else await this.guard.serveStatic(req, res, dir, path, 'index.html');
  }

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const deny = (status: number, text: string): void => refuseUpgrade(socket, status, text);
    if ((req.url ?? '').split('?')[0] !== ADMIN_PATH) return deny(404, 'Not Found');
    if (!this.guard.hostAllowed(req.headers.host) || !this.guard.originAllowed(req.headers.origin, req.headers.host)) return deny(403, 'Forbidden');
    if (this.clients.size >= MAX_ADMIN_CLIENTS) return deny(503, 'Service Unavailable');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws));
  };

  private onConnection(ws: WebSocket): void {
    if (this.pending.size >= MAX_PENDING_ADMIN_CLIENTS) {
      const oldest = this.pending.values().next().value!;
      this.pending.delete(oldest);
      oldest.terminate();
    }
    this.pending.add(ws);
    const unsubs: (() => void)[] = [];
    let authed = false;
    /** which admin surface this connection is (its auth message says; `api` when it does not) */
    let surface: AdminSurface = 'api';
    const send = (m: AdminServerMessage): void => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(m));
    };
    const timer = setTimeout(() => ws.close(4401, 'authenticate first'), ADMIN_AUTH_TIMEOUT_MS);
    timer.unref();
    ws.on('close', () => {
      clearTimeout(timer);
      this.pending.delete(ws);
      this.clients.delete(ws);
      for (const u of unsubs) u();
    });
    ws.on('error', () => ws.terminate());
    const onMessage = (data: RawData, isBinary: boolean): void => {
      let msg: { type?: unknown; token?: unknown; surface?: unknown; id?: unknown; method?: unknown; params?: unknown };
      try {
        if (isBinary) throw new Error('binary');
        msg = JSON.parse((Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer)).toString('utf8')) as typeof msg;
        if (typeof msg !== 'object' || msg === null) throw new Error('not an object');
      } catch {
        ws.close(4400, 'admin messages are JSON objects');
        return;
      }
      if (!authed) {
        if (msg.type !== 'auth' || typeof msg.token !== 'string' || !safeEqual(msg.token, this.token)) {
          this.badTokens.add(4401, 'bad token');
          ws.close(4401, 'bad token');
          return;
        }
        if (msg.surface !== undefined && !(ADMIN_SURFACES as readonly unknown[]).includes(msg.surface)) {
          ws.close(4400, `surface must be one of ${ADMIN_SURFACES.join(', ')}`);
          return;
        }
        this.pending.delete(ws);
        clearTimeout(timer);
        if (this.clients.size >= MAX_ADMIN_CLIENTS) {
          ws.close(1013, `at most ${MAX_ADMIN_CLIENTS} admin clients at once`);
          return;
        }
        this.clients.add(ws);
        authed = true;
        surface = (msg.surface as AdminSurface | undefined) ?? 'api';
        for (const name of ADMIN_EVENTS) {
          unsubs.push(
            this.opts.api.subscribe(name, (eventData) => {
              const buffered = ws.bufferedAmount;
              if (buffered > 8 * ADMIN_SLOW_BYTES) return ws.terminate();
              if (name === 'flow:batch' && buffered > ADMIN_SLOW_BYTES) return; // samples; the next one carries the totals
              send({ type: 'event', name, data: eventData });
            }),
          );
        }
        send({ type: 'ready', snapshot: this.opts.api.snapshot() });
        return;
      }
      if (msg.type !== 'call' || typeof msg.id !== 'number') {
        ws.close(4400, 'expected {type:"call", id, method, params}');
        return;
      }
      const id = msg.id;
      const method = msg.method;
      if (!isAdminMethod(method)) {
        send({ type: 'result', id, ok: false, error: { code: 'UNKNOWN_METHOD', message: unknownMethodMessage(method) } });
        return;
      }
      this.opts.api.call(method, msg.params as never, surface).then(
        (value) => send({ type: 'result', id, ok: true, value }),
        (err: unknown) => {
          const e = err instanceof AdminError ? err : new AdminError('INTERNAL', 'internal error');
          if (!(err instanceof AdminError)) this.opts.logger.error('admin call failed', { method, error: String(err) });
          send({ type: 'result', id, ok: false, error: { code: e.code, message: e.message } });
        },
      );
    };
    ws.on('message', (data, isBinary) => {
      // Whatever goes wrong with one message ends this connection, never the process.
      try {
        onMessage(data, isBinary);
      } catch (err: unknown) {
        this.opts.logger.error('admin message failed', { error: err instanceof Error ? err.message : String(err) });
        ws.close(1011, 'internal error');
      }
    });
  }
}
