import { randomBytes } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { LoopbackGuard, decodedRequestPath, type LoopbackEndpointOptions } from '../admin/loopback-guard.js';
import { RELAY_DASHBOARD_PAGE, RELAY_STATUS_PATH, type RelayStatusView } from '../admin/relay-contract.js';
import { createGuardedServer, refuseUpgrade } from '../runtime/http-guard.js';
import { RefusalTally } from '../runtime/refusal-tally.js';
import { safeEqual } from '../runtime/secrets.js';
import { closeServer, listen } from '../runtime/server-lifecycle.js';

/** Status requests with a missing or wrong token are logged (warn) at most once per this interval, with their count. */
export const RELAY_ADMIN_BAD_TOKEN_LOG_MS = 60_000;

export interface RelayAdminOptions extends LoopbackEndpointOptions {
  /** the relay (its statusSnapshot(), the one read of its state); staticDir is the renderer build, whose relay.html is the dashboard */
  readonly relay: { statusSnapshot(): RelayStatusView };
}

/** Files of the renderer build the dashboard needs; the contact point's GUI is not served here. */
function dashboardFile(path: string): boolean {
  return path === '/' || path === `/${RELAY_DASHBOARD_PAGE}` || path === '/favicon.svg' || /^\/assets\/[\w.-]+$/.test(path);
}

/**
 * The relay's status endpoint (`relay --admin-listen`): `GET /api/status` answers the relay's
 * status as JSON to a request with `Authorization: Bearer <token>`, and `/` serves the relay
 * dashboard, which polls it. Read only: nothing here changes the relay. Defended as the
 * contact point's admin endpoint is (LoopbackGuard: loopback bind, Host and Origin checks,
 * CSP), with a random token compared in constant time.
 */
export class RelayAdminServer {
  private server: Server | undefined;
  readonly token: string;
  /** the dashboard only fetches its own origin: connect-src 'self' */
  private readonly guard = new LoopbackGuard("'self'");
  private readonly badTokens: RefusalTally;
  private port = 0;
  private hostLabel = '';

  constructor(private readonly opts: RelayAdminOptions) {
    this.token = opts.token ?? randomBytes(24).toString('base64url');
    this.badTokens = new RefusalTally(RELAY_ADMIN_BAD_TOKEN_LOG_MS, (counts) => {
      for (const c of counts) opts.logger.warn('relay status request refused: bad token', { refused: c.count, reason: c.reason });
    });
  }

  /** Base URL (no token). */
  get url(): string {
    return `http://${this.hostLabel}:${this.port}`;
  }

  /** What a person opens: the dashboard, with the token in the fragment (never sent to a server). */
  get dashboardUrl(): string {
    return `${this.url}/#token=${this.token}`;
  }

  async start(): Promise<void> {
    const server = createGuardedServer({ limits: this.opts.http, onRequest: (req, res) => void this.onRequest(req, res), onUpgrade: this.onUpgrade });
    const { address, urlHost } = await listen(server, this.opts.port ?? 0, this.opts.host ?? '127.0.0.1');
    this.server = server;
    this.port = address.port;
    this.hostLabel = urlHost;
    this.guard.bound(address.port, urlHost, address.address);
  }

  async stop(): Promise<void> {
    this.badTokens.flush();
    this.badTokens.dispose();
    const server = this.server;
    this.server = undefined;
    if (server) await closeServer(server);
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.guard.admitRequest(req, res, 'relay dashboard')) return;
    const path = decodedRequestPath(req);
    if (path === RELAY_STATUS_PATH) return this.status(req, res);
    if (path === undefined || !dashboardFile(path)) {
      res.writeHead(404, { 'content-type': 'text/plain', ...this.guard.headers });
      res.end('not found\n');
    } else if (!this.opts.staticDir) {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', ...this.guard.headers });
      res.end(`Contact Point relay status endpoint. The dashboard is not built here; use \`contact-point relay status\` or GET ${RELAY_STATUS_PATH}.\n`);
    } else await this.guard.serveStatic(req, res, this.opts.staticDir, path, RELAY_DASHBOARD_PAGE);
  }

  private status(req: IncomingMessage, res: ServerResponse): void {
    if (!this.guard.originAllowed(req.headers.origin, req.headers.host)) {
      res.writeHead(403, { 'content-type': 'text/plain', ...this.guard.headers });
      res.end('forbidden: another origin\n');
      return;
    }
    const auth = req.headers.authorization;
    const presented = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined;
    if (presented === undefined || !safeEqual(presented, this.token)) {
      this.badTokens.add(401, presented === undefined ? 'no token' : 'wrong token');
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer', ...this.guard.headers });
      res.end(presented === undefined ? 'send the token: Authorization: Bearer <token>\n' : 'bad token\n');
      return;
    }
    const body = JSON.stringify(this.opts.relay.statusSnapshot());
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), ...this.guard.headers });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private readonly onUpgrade = (_req: IncomingMessage, socket: Duplex): void => refuseUpgrade(socket, 404, 'Not Found');
}
