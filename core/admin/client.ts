import { WebSocket, type RawData } from 'ws';
import {
  ADMIN_PROTOCOL,
  AdminError,
  type AdminApi,
  type AdminErrorCode,
  type AdminEventName,
  type AdminEvents,
  type AdminMethod,
  type AdminParams,
  type AdminResults,
  type AdminServerMessage,
  type Snapshot,
} from './contract.js';

/**
 * The admin contract over the loopback ws endpoint, for Node (the CLI, tests, benchmarks).
 * Errors come back as AdminError with the server's code.
 */
export class AdminClient implements AdminApi {
  private nextId = 1;
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly listeners = new Map<string, Set<(d: unknown) => void>>();
  private closed = false;

  private constructor(
    private readonly ws: WebSocket,
    readonly initial: Snapshot,
  ) {
    ws.on('message', (data) => this.onMessage(rawText(data)));
    ws.on('close', (code, reason) => {
      this.closed = true;
      const err = new AdminError('UNAVAILABLE', `admin connection closed (${code}${reason.length ? ' ' + reason.toString() : ''})`);
      for (const c of this.calls.values()) c.reject(err);
      this.calls.clear();
    });
  }

  static connect(wsUrl: string, token: string, timeoutMs = 5_000): Promise<AdminClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl, ADMIN_PROTOCOL, { handshakeTimeout: timeoutMs, perMessageDeflate: false, rejectUnauthorized: true });
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new AdminError('UNAVAILABLE', `no answer from ${wsUrl} within ${timeoutMs} ms`));
      }, timeoutMs);
      ws.once('error', (err) => {
        clearTimeout(timer);
        reject(new AdminError('UNAVAILABLE', `cannot reach the admin endpoint ${wsUrl}: ${err.message}`));
      });
      ws.once('close', (code, reason) => {
        clearTimeout(timer);
        reject(new AdminError(code === 4401 ? 'UNAUTHORIZED' : 'UNAVAILABLE', `admin endpoint closed the connection: ${reason.toString() || code}`));
      });
      ws.once('open', () => ws.send(JSON.stringify({ type: 'auth', token })));
      ws.once('message', (data) => {
        clearTimeout(timer);
        const msg = JSON.parse(rawText(data)) as AdminServerMessage;
        if (msg.type !== 'ready') {
          ws.terminate();
          reject(new AdminError('INTERNAL', `unexpected first message ${msg.type}`));
          return;
        }
        ws.removeAllListeners('close');
        ws.removeAllListeners('error');
        ws.on('error', () => undefined);
        resolve(new AdminClient(ws, msg.snapshot));
      });
    });
  }

  call<M extends AdminMethod>(method: M, params: AdminParams<M>): Promise<AdminResults[M]> {
    if (this.closed) return Promise.reject(new AdminError('UNAVAILABLE', 'admin connection is closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.ws.send(JSON.stringify({ type: 'call', id, method, params }));
    });
  }

  subscribe<E extends AdminEventName>(event: E, listener: (data: AdminEvents[E]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    const fn = listener as (d: unknown) => void;
    set.add(fn);
    return () => void set.delete(fn);
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close(1000);
    });
  }

  private onMessage(text: string): void {
    const msg = JSON.parse(text) as AdminServerMessage;
    if (msg.type === 'result') {
      const c = this.calls.get(msg.id);
      if (!c) return;
      this.calls.delete(msg.id);
      if (msg.ok) c.resolve(msg.value);
      else c.reject(new AdminError(msg.error.code as AdminErrorCode, msg.error.message));
    } else if (msg.type === 'event') {
      for (const fn of this.listeners.get(msg.name) ?? []) fn(msg.data);
    }
  }
}

function rawText(data: RawData): string {
  return (Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)).toString('utf8');
}
