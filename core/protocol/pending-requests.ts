import { describeStatus, Status } from './status.js';
import type { PortResultBody } from './frames.js';

/**
 * Port requests waiting for their PORT_RESULT, by request id. Every wait ends: with the
 * answer, with TIMEOUT, or with the reason the path went away. Never rejects.
 */
export class PendingRequests {
  /** made with the first request and let go when none waits: most tunnels never carry one, and an empty Map is ~180 bytes */
  private waiting: Map<number, { resolve: (r: PortResultBody) => void; timer: NodeJS.Timeout }> | undefined;
  private next = 1;

  get size(): number {
    return this.waiting?.size ?? 0;
  }

  /** A fresh request id (1 .. 2^31-1, wrapping). */
  id(): number {
    const id = this.next;
    this.next = this.next >= 0x7fffffff ? 1 : this.next + 1;
    return id;
  }

  /** Waits for the answer to `req`; `send` puts the request on the wire. */
  wait(req: number, timeoutMs: number, send: () => void): Promise<PortResultBody> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.forget(req);
        resolve({ req, ok: false, code: Status.TIMEOUT, reason: `no answer within ${timeoutMs} ms` });
      }, timeoutMs);
      timer.unref();
      (this.waiting ??= new Map()).set(req, { resolve, timer });
      send();
    });
  }

  /** An answer arrived; a late or unknown one is ignored. */
  settle(result: PortResultBody): void {
    const w = this.waiting?.get(result.req);
    if (!w) return;
    clearTimeout(w.timer);
    this.forget(result.req);
    w.resolve(result);
  }

  private forget(req: number): void {
    if (this.waiting?.delete(req) && this.waiting.size === 0) this.waiting = undefined;
  }

  /** The path went away: every waiter gets `code` with `reason`. */
  failAll(code: number, reason = describeStatus(code)): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting) for (const [req, w] of waiting) {
      clearTimeout(w.timer);
      w.resolve({ req, ok: false, code, reason });
    }
  }
}
