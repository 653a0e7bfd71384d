import { WebSocket, type RawData } from 'ws';
import { AdminClientProtocol, readServerMessage } from './client-protocol.js';
import { ADMIN_PROTOCOL, AdminError, type AdminApi, type AdminEventName, type AdminEvents, type AdminMethod, type AdminParams, type AdminResults, type AdminSurface, type Snapshot } from './contract.js';

export interface AdminClientOptions {
  /** time to connect, authenticate and get the snapshot (default 5 s) */
  readonly connectTimeoutMs?: number;
  /** a call with no answer this long fails with UNAVAILABLE (default ADMIN_CALL_TIMEOUT_MS, 15 s) */
  readonly callTimeoutMs?: number;
  /** which admin surface this client is, for the audit trail (default `api`; the CLI says `cli`) */
  readonly surface?: AdminSurface;
}

/** ws close code for a message that is not of the admin protocol (RFC 6455 protocol error). */
const CLOSE_PROTOCOL_ERROR = 1002;

/**
 * The admin contract over the loopback ws endpoint, for Node (the CLI, tests, benchmarks).
 * Errors come back as AdminError with the server's code. A message from the endpoint that is
 * not of the protocol fails the waiting calls with INTERNAL and closes the connection.
 */
export class AdminClient implements AdminApi {
  private readonly protocol: AdminClientProtocol;
  private closed = false;

  private constructor(
    private readonly ws: WebSocket,
    readonly initial: Snapshot,
    callTimeoutMs: number | undefined,
  ) {
    this.protocol = new AdminClientProtocol({ makeError: (code, message) => new AdminError(code, message), ...(callTimeoutMs !== undefined ? { callTimeoutMs } : {}) });
    ws.on('message', (data) => this.onMessage(rawText(data)));
    ws.on('close', (code, reason) => {
      this.closed = true;
      this.protocol.failAll('UNAVAILABLE', `admin connection closed (${code}${reason.length ? ' ' + reason.toString() : ''})`);
    });
  }

  static connect(wsUrl: string, token: string, opts: AdminClientOptions = {}): Promise<AdminClient> {
    const timeoutMs = opts.connectTimeoutMs ?? 5_000;
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
      ws.once('open', () => ws.send(JSON.stringify({ type: 'auth', token, surface: opts.surface ?? 'api' })));
      ws.once('message', (data) => {
        clearTimeout(timer);
        const msg = readServerMessage(rawText(data));
        if (msg.type !== 'ready') {
          ws.terminate();
          const what = msg.type === 'malformed' ? `a malformed first message (${msg.problem})` : `unexpected first message ${msg.type}`;
          reject(new AdminError('INTERNAL', `the admin endpoint ${wsUrl} sent ${what}`));
          return;
        }
        ws.removeAllListeners('close');
        ws.removeAllListeners('error');
        ws.on('error', () => undefined);
        resolve(new AdminClient(ws, msg.snapshot, opts.callTimeoutMs));
      });
    });
  }

  /** how long a call waits for its result */
  get callTimeoutMs(): number {
    return this.protocol.callTimeoutMs;
  }

  call<M extends AdminMethod>(method: M, params: AdminParams<M>): Promise<AdminResults[M]> {
    if (this.closed) return Promise.reject(new AdminError('UNAVAILABLE', 'admin connection is closed'));
    return this.protocol.call(method, params, (text) => this.ws.send(text));
  }

  subscribe<E extends AdminEventName>(event: E, listener: (data: AdminEvents[E]) => void): () => void {
    return this.protocol.subscribe(event, listener);
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close(1000);
    });
  }

  private onMessage(text: string): void {
    if (this.closed) return;
    const msg = this.protocol.receive(text);
    if (msg.type !== 'malformed') return;
    this.closed = true;
    this.protocol.failAll('INTERNAL', `the admin endpoint sent a malformed message (${msg.problem}); connection closed`);
    this.ws.close(CLOSE_PROTOCOL_ERROR, 'malformed admin message');
  }
}

function rawText(data: RawData): string {
  return (Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)).toString('utf8');
}
