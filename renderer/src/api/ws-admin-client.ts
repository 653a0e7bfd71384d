import { AdminClientProtocol } from '../../../core/admin/client-protocol.js';
import type { ADMIN_PATH, ADMIN_PROTOCOL, AdminEventName, AdminEvents, AdminMethod, AdminParams, AdminResults } from '../../../core/admin/contract.js';
import { AdminCallError } from './admin-call-error';
import type { ConnectionStatus, GuiApi } from './gui-api';

// The contract's constants, typed from it: a rename there fails the type check here.
const PROTOCOL: typeof ADMIN_PROTOCOL = 'contact-point-admin.v1';
const PATH: typeof ADMIN_PATH = '/admin';

/** First reconnect delay, and its cap (doubling, with jitter). */
export const RECONNECT_BASE_MS = 500;
export const RECONNECT_MAX_MS = 5_000;
/** Close code of the admin endpoint for a bad or missing token. */
const CLOSE_UNAUTHORIZED = 4401;

/**
 * The admin contract over the admin endpoint's ws transport, for a browser: the standard
 * WebSocket API, the token sent in the first message (never in the URL the server sees), and
 * reconnection with backoff while the endpoint is away (e.g. `contact-point serve` restarting).
 * Ids, waiting calls, the call timeout and events are the shared AdminClientProtocol's; a
 * message that is not of the protocol is ignored.
 */
export class WsAdminClient implements GuiApi {
  private ws: WebSocket | undefined;
  private attempt = 0;
  private stopped = false;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private status: ConnectionStatus = { state: 'connecting' };
  private readonly protocol = new AdminClientProtocol({ makeError: (code, message) => new AdminCallError(code, message) });
  private readonly connectionListeners = new Set<(s: ConnectionStatus) => void>();

  constructor(
    private readonly url: string,
    private readonly token: string,
  ) {}

  /** The endpoint of the page's own origin: `ws://<host>/admin`. */
  static sameOrigin(location: Location, token: string): WsAdminClient {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return new WsAdminClient(`${scheme}//${location.host}${PATH}`, token);
  }

  start(): this {
    this.stopped = false;
    this.open();
    return this;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    this.ws?.close(1000);
    this.ws = undefined;
    this.failAll('the admin connection was closed');
  }

  call<M extends AdminMethod>(method: M, params: AdminParams<M>): Promise<AdminResults[M]> {
    const ws = this.ws;
    if (!ws || this.status.state !== 'open') {
      return Promise.reject(new AdminCallError('UNAVAILABLE', 'not connected to the contact point; retrying'));
    }
    return this.protocol.call(method, params, (text) => ws.send(text));
  }

  subscribe<E extends AdminEventName>(event: E, listener: (data: AdminEvents[E]) => void): () => void {
    return this.protocol.subscribe(event, listener);
  }

  onConnection(listener: (status: ConnectionStatus) => void): () => void {
    this.connectionListeners.add(listener);
    listener(this.status);
    return () => void this.connectionListeners.delete(listener);
  }

  private setStatus(s: ConnectionStatus): void {
    this.status = s;
    for (const l of this.connectionListeners) l(s);
  }

  private open(): void {
    if (this.stopped) return;
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url, PROTOCOL);
    } catch (err: unknown) {
      this.setStatus({ state: 'unauthorized', detail: `cannot open ${this.url}: ${String(err)}` });
      return;
    }
    this.ws = ws;
    let ready = false;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token: this.token, surface: 'gui' }));
    ws.onmessage = (ev: MessageEvent) => {
      if (typeof ev.data !== 'string') return;
      if (this.protocol.receive(ev.data).type === 'ready') {
        ready = true;
        this.attempt = 0;
        this.setStatus({ state: 'open' });
      }
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.failAll('the admin connection dropped');
      if (this.stopped) return;
      if (ev.code === CLOSE_UNAUTHORIZED) {
        this.setStatus({
          state: 'unauthorized',
          detail: 'The contact point refused the admin token in this address: it is from an earlier run, or mistyped.',
        });
        return;
      }
      const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
      this.setStatus({
        state: ready || this.status.state !== 'connecting' ? 'lost' : 'connecting',
        detail: ev.reason || 'the contact point is not answering on its admin endpoint',
        retryAt: Date.now() + delay,
      });
      this.retry = setTimeout(() => this.open(), delay);
    };
  }

  private failAll(reason: string): void {
    this.protocol.failAll('UNAVAILABLE', reason);
  }
}
