/**
 * The client side of the admin ws protocol, shared by the Node client (core/admin/client.ts)
 * and the browser's (renderer/src/api/ws-admin-client.ts): request ids, the calls waiting for
 * their result (each with a timeout), event listeners, and the reading of server messages.
 * No I/O and no Node imports (the renderer imports it): the client owns the socket, hands in
 * what it receives and gets back what to send.
 */
import type {
  AdminClientMessage,
  AdminErrorCode,
  AdminEventName,
  AdminEvents,
  AdminMethod,
  AdminParams,
  AdminResults,
  AdminServerMessage,
} from './contract.js';

/** A call with no answer in this long fails with UNAVAILABLE (the endpoint answers at once when healthy). */
export const ADMIN_CALL_TIMEOUT_MS = 15_000;

export interface AdminClientProtocolOptions {
  /** the error a failed call rejects with (each side has its own error class) */
  readonly makeError: (code: AdminErrorCode, message: string) => Error;
  /** default ADMIN_CALL_TIMEOUT_MS */
  readonly callTimeoutMs?: number;
}

interface PendingCall {
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

export class AdminClientProtocol {
  private nextId = 1;
  private readonly calls = new Map<number, PendingCall>();
  private readonly listeners = new Map<AdminEventName, Set<(d: unknown) => void>>();
  private readonly makeError: AdminClientProtocolOptions['makeError'];
  readonly callTimeoutMs: number;

  constructor(opts: AdminClientProtocolOptions) {
    this.makeError = opts.makeError;
    this.callTimeoutMs = opts.callTimeoutMs ?? ADMIN_CALL_TIMEOUT_MS;
    if (!Number.isSafeInteger(this.callTimeoutMs) || this.callTimeoutMs < 1) throw new RangeError(`callTimeoutMs must be a positive integer, got ${this.callTimeoutMs}`);
  }

  /** Calls waiting for their result. */
  get pending(): number {
    return this.calls.size;
  }

  /** Sends one call through `send` (the text of one ws message) and waits for its result or the timeout. */
  call<M extends AdminMethod>(method: M, params: AdminParams<M>, send: (text: string) => void): Promise<AdminResults[M]> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.calls.delete(id);
        reject(this.makeError('UNAVAILABLE', `${method}: no answer within ${this.callTimeoutMs / 1000} s`));
      }, this.callTimeoutMs);
      this.calls.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      const message: AdminClientMessage = { type: 'call', id, method, params };
      try {
        send(JSON.stringify(message));
      } catch (err: unknown) {
        this.settle(id)?.reject(this.makeError('UNAVAILABLE', `${method}: cannot send: ${err instanceof Error ? err.message : String(err)}`));
      }
    });
  }

  subscribe<E extends AdminEventName>(event: E, listener: (data: AdminEvents[E]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    const fn = listener as (d: unknown) => void;
    set.add(fn);
    return () => void set.delete(fn);
  }

  /**
   * One text message from the endpoint: a result settles its call, an event goes to its
   * listeners. Returns what it read, for the client to handle `ready` and `malformed`; never
   * throws on what the endpoint sent.
   */
  receive(text: string): ReceivedMessage {
    const msg = readServerMessage(text);
    if (msg.type === 'result') {
      const c = this.settle(msg.id);
      if (msg.ok) c?.resolve(msg.value);
      else c?.reject(this.makeError(msg.error.code, msg.error.message));
    } else if (msg.type === 'event') {
      for (const fn of this.listeners.get(msg.name) ?? []) fn(msg.data);
    }
    return msg;
  }

  /** Fails every waiting call (connection closed or dropped). */
  failAll(code: AdminErrorCode, message: string): void {
    const calls = [...this.calls.values()];
    this.calls.clear();
    for (const c of calls) {
      clearTimeout(c.timer);
      c.reject(this.makeError(code, message));
    }
  }

  private settle(id: number): PendingCall | undefined {
    const c = this.calls.get(id);
    if (!c) return undefined;
    this.calls.delete(id);
    clearTimeout(c.timer);
    return c;
  }
}

/**
 * A server message as read: one of the protocol's, `other` for a well-formed message of a type
 * this client does not know (a newer endpoint; ignored), or `malformed` with what is wrong.
 */
export type ReceivedMessage = AdminServerMessage | { readonly type: 'other' } | { readonly type: 'malformed'; readonly problem: string };

/** Reads one server message (a ws text message); never throws. */
export function readServerMessage(text: string): ReceivedMessage {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return malformed('not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return malformed('not a JSON object');
  const m = v as Record<string, unknown>;
  const ok = m as unknown as AdminServerMessage;
  switch (m.type) {
    case 'ready':
      return typeof m.snapshot === 'object' && m.snapshot !== null ? ok : malformed('ready without a snapshot');
    case 'result': {
      if (typeof m.id !== 'number' || typeof m.ok !== 'boolean') return malformed('result without a numeric id and ok flag');
      if (m.ok) return ok;
      const e = m.error as Record<string, unknown> | null | undefined;
      return typeof e === 'object' && e !== null && typeof e.code === 'string' && typeof e.message === 'string' ? ok : malformed('failed result without an error code and message');
    }
    case 'event':
      return typeof m.name === 'string' ? ok : malformed('event without a name');
    default:
      return typeof m.type === 'string' ? { type: 'other' } : malformed('no message type');
  }
}

function malformed(problem: string): ReceivedMessage {
  return { type: 'malformed', problem };
}
