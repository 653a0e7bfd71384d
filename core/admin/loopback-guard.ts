import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join, normalize, sep } from 'node:path';
import { pipeline } from 'node:stream';
import { contentType } from '../runtime/content-type.js';
import type { HttpLimits } from '../runtime/http-guard.js';
import type { Logger } from '../runtime/logger.js';
import { isLoopbackAddress, loopbackHostAllowed } from '../runtime/server-lifecycle.js';

/**
 * The defences every local admin endpoint shares (the contact point's admin endpoint, the
 * relay's status endpoint): Host and Origin checks so a web page elsewhere cannot reach it
 * through DNS rebinding, security headers with a CSP that allows no inline script, and the
 * static files of a built GUI. The token check is each endpoint's own (one authenticates a ws,
 * the other an HTTP request), both with safeEqual (core/runtime/secrets.ts).
 */

/** What a loopback admin endpoint (the contact point's, the relay's status endpoint) is started with. */
export interface LoopbackEndpointOptions {
  readonly logger: Logger;
  /** loopback by default: an admin endpoint is never meant for the network */
  readonly host?: string;
  readonly port?: number;
  /** a fixed token (tests); by default a fresh random one each start */
  readonly token?: string;
  /** the built renderer to serve (renderer/dist) */
  readonly staticDir?: string | undefined;
  /** timeouts and connection caps of the plain HTTP side (see core/runtime/http-guard.ts) */
  readonly http?: HttpLimits | undefined;
}

/**
 * The admin GUI's connect-src: its own ws endpoint. 'self' covers ws:// to the page's origin
 * (CSP 3), by whichever loopback name it was opened; a list of hosts cannot name [::1] (CSP has
 * no IPv6 literals: Chromium logged an error for `ws://[::1]:*` on every load) and allowed
 * every other local port too (issue 16, item 11).
 */
export const ADMIN_CONNECT_SRC = "'self'";

export class LoopbackGuard {
  private port = 0;
  private hostLabel = '';
  /**
   * Bound to an address other than loopback (the admin endpoint's --admin-listen-any): reached by
   * whatever name or address the network gives the machine, so any Host is taken, and a
   * browser's Origin must be the page's own (the same host as the request's).
   */
  private anyHost = false;
  /** Headers on every answer (the GUI's CSP: scripts only from itself, connections as `connectSrc`). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(connectSrc: string) {
    this.headers = {
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      'content-security-policy': `default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src ${connectSrc}; frame-ancestors 'none'`,
    };
  }

  /** Once listening: the bound port, the URL host form of the bound address, and the address. */
  bound(port: number, hostLabel: string, address: string): void {
    this.port = port;
    this.hostLabel = hostLabel;
    this.anyHost = !isLoopbackAddress(address);
  }

  /** Host header must name this endpoint as a loopback host: a rebinding page sends its own name. */
  hostAllowed(host: string | undefined): boolean {
    if (this.anyHost) return host !== undefined && host !== '';
    return loopbackHostAllowed(host, this.port, this.hostLabel);
  }

  /**
   * No Origin: not a browser (CLI, SDK). Else it must be this endpoint itself: on loopback by one
   * of its loopback names; bound elsewhere, the host the request names (`requestHost`).
   */
  originAllowed(origin: string | undefined, requestHost: string | undefined): boolean {
    if (origin === undefined) return true;
    try {
      const u = new URL(origin);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') return false;
      if (this.anyHost) return requestHost !== undefined && u.host === new URL(`http://${requestHost}`).host;
      return this.hostAllowed(u.host);
    } catch {
      return false;
    }
  }

  /**
   * The checks every plain request passes first: a foreign Host gets 421, a method other than
   * GET or HEAD 405. False when it answered.
   */
  admitRequest(req: IncomingMessage, res: ServerResponse, what: string): boolean {
    if (!this.hostAllowed(req.headers.host)) {
      res.writeHead(421, { 'content-type': 'text/plain', ...this.headers });
      res.end(`misdirected request: open the ${what} through 127.0.0.1 or localhost\n`);
      return false;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', ...this.headers });
      res.end();
      return false;
    }
    return true;
  }

  /** A file of the built GUI in `dir` (`index` for `/`), or 404; never a file outside `dir`. */
  async serveStatic(req: IncomingMessage, res: ServerResponse, dir: string, path: string, index: string): Promise<void> {
    const rel = normalize(path === '/' ? `/${index}` : path).replace(/^([/\\])+/, '');
    const root = normalize(dir).replace(/[/\\]+$/, '');
    const file = join(root, rel);
    if (!file.startsWith(root + sep)) {
      res.writeHead(404, this.headers);
      res.end();
      return;
    }
    try {
      const st = await stat(file);
      if (!st.isFile()) throw new Error('not a file');
      res.writeHead(200, { 'content-type': contentType(file), 'content-length': st.size, 'cache-control': 'no-cache', ...this.headers });
      if (req.method === 'HEAD') res.end();
      // pipeline, not pipe: a read error (the file went after stat) ends this response, not the
      // process, and a client that goes mid-file closes the file.
      else pipeline(createReadStream(file), res, () => undefined);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain', ...this.headers });
      res.end('not found\n');
    }
  }
}

/** The request's path, decoded, without its query; undefined when it is not valid percent-encoding. */
export function decodedRequestPath(req: IncomingMessage): string | undefined {
  try {
    return decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/');
  } catch {
    return undefined;
  }
}

