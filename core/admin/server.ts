import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { join, normalize, sep } from 'node:path';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from '../runtime/logger.js';
import { contentType } from '../runtime/content-type.js';
import { answerHealth, isHealthRequest, type Readiness } from '../runtime/health.js';
import { createGuardedServer, refuseUpgrade, type HttpLimits } from '../runtime/http-guard.js';
import { closeServer, listen } from '../runtime/server-lifecycle.js';
import { safeEqual } from '../runtime/secrets.js';
import {
  ADMIN_EVENTS,
  ADMIN_PATH,
  ADMIN_PROTOCOL,
  AdminError,
  isAdminMethod,
  type AdminApi,
  type AdminServerMessage,
  type Snapshot,
} from './contract.js';

/** Admin clients at once (GUI tabs, CLI calls). */
export const MAX_ADMIN_CLIENTS = 16;
/** An admin connection must authenticate this fast. */
export const ADMIN_AUTH_TIMEOUT_MS = 5_000;
/** Largest admin request. */
export const MAX_ADMIN_MESSAGE_BYTES = 64 * 1024;
/** A watcher that has this much unsent is skipped for flow batches (samples), and closed at 8x. */
export const ADMIN_SLOW_BYTES = 1024 * 1024;

export interface AdminServerOptions {
  /** the admin contract, and readiness for /readyz */
  readonly api: AdminApi & { snapshot(): Snapshot; readiness(): Readiness };
  readonly logger: Logger;
  /** loopback by default: the admin endpoint is never meant for the LAN */
  readonly host?: string;
  readonly port?: number;
  /** a fixed token (tests); by default a fresh random one each start */
  readonly token?: string;
  /** built admin GUI to serve at / (the renderer build) */
  readonly staticDir?: string | undefined;
  /** timeouts and connection caps of the plain HTTP side (see core/runtime/http-guard.ts) */
  readonly http?: HttpLimits | undefined;
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
  private readonly clients = new Set<WebSocket>();
  readonly token: string;
  private port = 0;
  private hostLabel = '';

  constructor(private readonly opts: AdminServerOptions) {
    this.token = opts.token ?? randomBytes(24).toString('base64url');
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
    this.hostLabel = urlHost;
  }

  async stop(): Promise<void> {
    for (const ws of this.clients) ws.close(1001, 'contact point stopping');
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await closeServer(server);
    for (const ws of this.clients) ws.terminate();
  }

  /** Host header must name this endpoint as a loopback host: a rebinding page sends its own name. */
  private hostAllowed(host: string | undefined): boolean {
    if (!host) return false;
    const allowed = [`127.0.0.1:${this.port}`, `localhost:${this.port}`, `[::1]:${this.port}`, `${this.hostLabel}:${this.port}`];
    return allowed.includes(host.toLowerCase());
  }

  private originAllowed(origin: string | undefined): boolean {
    if (origin === undefined) return true; // not a browser (CLI, SDK)
    try {
      const u = new URL(origin);
      return (u.protocol === 'http:' || u.protocol === 'https:') && this.hostAllowed(u.host);
    } catch {
      return false;
    }
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const security = {
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      'content-security-policy':
        // connect-src 'self' covers the page's own ws:// endpoint (CSP 3), whichever loopback name
        // it was opened by; a list of hosts cannot name [::1] (no IPv6 literals in CSP sources:
        // Chromium logged an error for it on every load) and would allow other local ports.
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
    };
    // Health first, tokenless and whatever the Host header: a probe (systemd, a container
    // HEALTHCHECK, a Kubernetes httpGet on --admin-listen-any) sends no token and may name the
    // host by any address. The answer is the tunnel's state and why; no peer, no secret.
    if (isHealthRequest(req)) {
      answerHealth(req, res, { readiness: () => this.opts.api.readiness() });
      return;
    }
    if (!this.hostAllowed(req.headers.host)) {
      res.writeHead(421, { 'content-type': 'text/plain', ...security });
      res.end('misdirected request: open the admin GUI through 127.0.0.1 or localhost\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', ...security });
      res.end();
      return;
    }
    const path = decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/');
    const dir = this.opts.staticDir;
    if (!dir) {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', ...security });
      res.end('Contact Point admin endpoint. The GUI is not built here; use `contact-point peers ...` or connect to ' + ADMIN_PATH + '.\n');
      return;
    }
    const rel = normalize(path === '/' ? '/index.html' : path).replace(/^([/\\])+/, '');
    const root = normalize(dir).replace(/[/\\]+$/, '');
    const file = join(root, rel);
    if (!file.startsWith(root + sep)) {
      res.writeHead(404, security);
      res.end();
      return;
    }
    try {
      const st = await stat(file);
      if (!st.isFile()) throw new Error('not a file');
      res.writeHead(200, { 'content-type': contentType(file), 'content-length': st.size, 'cache-control': 'no-cache', ...security });
      if (req.method === 'HEAD') res.end();
      else createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain', ...security });
      res.end('not found\n');
    }
  }

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const deny = (status: number, text: string): void => refuseUpgrade(socket, status, text);
    if ((req.url ?? '').split('?')[0] !== ADMIN_PATH) return deny(404, 'Not Found');
    if (!this.hostAllowed(req.headers.host) || !this.originAllowed(req.headers.origin)) return deny(403, 'Forbidden');
    if (this.clients.size >= MAX_ADMIN_CLIENTS) return deny(503, 'Service Unavailable');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws));
  };

  private onConnection(ws: WebSocket): void {
    this.clients.add(ws);
    const unsubs: (() => void)[] = [];
    let authed = false;
    const send = (m: AdminServerMessage): void => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(m));
    };
    const timer = setTimeout(() => ws.close(4401, 'authenticate first'), ADMIN_AUTH_TIMEOUT_MS);
    timer.unref();
    ws.on('close', () => {
      clearTimeout(timer);
      this.clients.delete(ws);
      for (const u of unsubs) u();
    });
    ws.on('error', () => ws.terminate());
    ws.on('message', (data, isBinary) => {
      let msg: { type?: unknown; token?: unknown; id?: unknown; method?: unknown; params?: unknown };
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
          this.opts.logger.warn('admin connection refused: bad token');
          ws.close(4401, 'bad token');
          return;
        }
        authed = true;
        clearTimeout(timer);
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
        send({ type: 'result', id, ok: false, error: { code: 'UNKNOWN_METHOD', message: `no admin call named ${String(method)}` } });
        return;
      }
      this.opts.api.call(method, msg.params as never).then(
        (value) => send({ type: 'result', id, ok: true, value }),
        (err: unknown) => {
          const e = err instanceof AdminError ? err : new AdminError('INTERNAL', 'internal error');
          if (!(err instanceof AdminError)) this.opts.logger.error('admin call failed', { method, error: String(err) });
          send({ type: 'result', id, ok: false, error: { code: e.code, message: e.message } });
        },
      );
    });
  }
}
