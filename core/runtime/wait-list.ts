/**
 * Who waits for which domain to come back (REACHABLE, PROTOCOL.md 9.5): per domain, the senders
 * that were refused CONTACT_POINT_OFFLINE, in the order they were last refused. Bounded three
 * ways: `perDomain` entries per domain (the oldest is forgotten first), `maxTotal` in all (past
 * that, expired entries are dropped and, if none were, a newcomer is not remembered) and
 * `ttlMs` (older entries are not told: by then their sender gave up or retried on its own).
 * A sender that is not remembered loses nothing: it retries on its own backoff.
 */
export class WaitList {
  private readonly byDomain = new Map<string, Map<string, number>>();
  private total = 0;

  constructor(
    private readonly perDomain: number,
    private readonly maxTotal: number,
    private readonly ttlMs: number,
  ) {}

  /** Entries held (expired ones included until they are pruned). */
  get size(): number {
    return this.total;
  }

  /** Remember that `who` waits for `domain`; false when the list is full. */
  add(domain: string, who: string, now = Date.now()): boolean {
    let waiting = this.byDomain.get(domain);
    if (waiting?.has(who)) {
      // Refresh: move to the back, so order stays oldest-first.
      waiting.delete(who);
      waiting.set(who, now);
      return true;
    }
    if (this.total >= this.maxTotal) {
      this.prune(now);
      if (this.total >= this.maxTotal) return false;
      waiting = this.byDomain.get(domain);
    }
    if (!waiting) {
      waiting = new Map();
      this.byDomain.set(domain, waiting);
    } else if (waiting.size >= this.perDomain) {
      const oldest = waiting.keys().next().value;
      if (oldest !== undefined) {
        waiting.delete(oldest);
        this.total--;
      }
    }
    waiting.set(who, now);
    this.total++;
    return true;
  }

  /** Everyone still waiting for `domain` (not expired); they are forgotten. */
  take(domain: string, now = Date.now()): string[] {
    const waiting = this.byDomain.get(domain);
    if (!waiting) return [];
    this.byDomain.delete(domain);
    this.total -= waiting.size;
    const out: string[] = [];
    for (const [who, at] of waiting) if (now - at <= this.ttlMs) out.push(who);
    return out;
  }

  /** Every domain anyone waits for. */
  domains(): string[] {
    return [...this.byDomain.keys()];
  }

  /** Drops expired entries. */
  prune(now = Date.now()): void {
    for (const [domain, waiting] of this.byDomain) {
      // Oldest first: stop at the first one still fresh.
      for (const [who, at] of waiting) {
        if (now - at <= this.ttlMs) break;
        waiting.delete(who);
        this.total--;
      }
      if (waiting.size === 0) this.byDomain.delete(domain);
    }
  }
}
