/**
 * Slots for connections that have not proven anything yet (un-upgraded HTTP connections,
 * pending hellos), shared fairly between sources so a flood from some cannot lock out others:
 *
 * - a source (an IPv4 address or an IPv6 /64, see sourceKey) holds at most `maxPerKey`; its
 *   next connection is refused (it only competes with itself);
 * - under pressure (more than half of `max` taken), a newcomer first evicts every entry older
 *   than `pressureAgeMs`, oldest first: the short deadline for idle holders;
 * - when all `max` are taken, a newcomer evicts the oldest entry of the source holding the
 *   most (ties: the source whose oldest entry is oldest) instead of being refused.
 *
 * So a newcomer from a source holding fewer than the largest holder always gets a slot, and
 * loses it again only after every larger holder has been cut down to its size. The table costs
 * O(1) per take and release, plus a scan of the sources holding slots (at most `max`) only
 * when it is full.
 */

export type EvictReason = 'expired' | 'evicted';

export interface Slot {
  readonly key: string;
  /** Gives the slot back (idempotent; an evicted slot is already free). */
  release(): void;
}

export interface FairSlotsOptions {
  readonly max: number;
  readonly maxPerKey: number;
  readonly pressureAgeMs: number;
  /** what the slots are for, in error messages */
  readonly label?: string;
  readonly now?: () => number;
}

interface Entry extends Slot {
  readonly at: number;
  readonly evict: (why: EvictReason) => void;
  live: boolean;
}

export class FairSlots {
  /** every live entry, oldest first (Set keeps insertion order) */
  private readonly all = new Set<Entry>();
  private readonly byKey = new Map<string, Set<Entry>>();
  private readonly now: () => number;
  /** entries evicted so far, by reason (for logs and tests) */
  readonly evictions = { expired: 0, evicted: 0 };

  constructor(private readonly opts: FairSlotsOptions) {
    for (const [name, v] of [['max', opts.max], ['maxPerKey', opts.maxPerKey], ['pressureAgeMs', opts.pressureAgeMs]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${opts.label ?? 'slots'}: ${name} must be a positive integer, got ${String(v)}`);
    }
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.all.size;
  }

  countOf(key: string): number {
    return this.byKey.get(key)?.size ?? 0;
  }

  /**
   * A slot for `key`, or undefined when that source already holds `maxPerKey`. May evict other
   * entries first: their `evict` is called (after they are freed) with the reason.
   */
  take(key: string, evict: (why: EvictReason) => void): Slot | undefined {
    if (this.countOf(key) >= this.opts.maxPerKey) return undefined;
    const victims: [Entry, EvictReason][] = [];
    if (this.all.size > this.opts.max / 2) {
      const cutoff = this.now() - this.opts.pressureAgeMs;
      for (const e of this.all) {
        if (e.at > cutoff) break;
        this.drop(e);
        victims.push([e, 'expired']);
      }
    }
    if (this.all.size >= this.opts.max) {
      const e = this.largestHoldersOldest();
      if (e) {
        this.drop(e);
        victims.push([e, 'evicted']);
      }
    }
    const entry: Entry = {
      key,
      at: this.now(),
      evict,
      live: true,
      release: () => this.drop(entry),
    };
    this.all.add(entry);
    let own = this.byKey.get(key);
    if (!own) this.byKey.set(key, (own = new Set()));
    own.add(entry);
    for (const [e, why] of victims) {
      this.evictions[why]++;
      e.evict(why);
    }
    return entry;
  }

  private largestHoldersOldest(): Entry | undefined {
    let best: Entry | undefined;
    let bestCount = 0;
    for (const set of this.byKey.values()) {
      const oldest = set.values().next().value;
      if (!oldest) continue;
      if (set.size > bestCount || (set.size === bestCount && best && oldest.at < best.at)) {
        best = oldest;
        bestCount = set.size;
      }
    }
    return best;
  }

  private drop(e: Entry): void {
    if (!e.live) return;
    e.live = false;
    this.all.delete(e);
    const own = this.byKey.get(e.key);
    own?.delete(e);
    if (own?.size === 0) this.byKey.delete(e.key);
  }
}

/**
 * The source a connection counts against: an IPv4 address (IPv4-mapped IPv6 included), or the
 * /64 prefix of an IPv6 address, since one host or site usually holds a whole /64.
 */
export function sourceKey(address: string): string {
  const a = address.split('%')[0] ?? address;
  if (!a.includes(':')) return a;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (mapped?.[1]) return mapped[1];
  const [head = '', tail] = a.split('::');
  const part = (s: string): string[] => (s === '' ? [] : s.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])));
  const h = part(head);
  const t = tail === undefined ? [] : part(tail);
  const groups = tail === undefined ? h : [...h, ...new Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => (Number.parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}

/**
 * Releases `slot` when the socket closes (also when a ws handshake fails), unless the returned
 * function releases it first (the hello ended); either way the listener then goes, so nothing of
 * the hello stays attached to the socket of a connection that lives on.
 */
export function releaseOnClose(socket: { once(e: 'close', f: () => void): unknown; off(e: 'close', f: () => void): unknown }, slot: Slot): () => void {
  const release = (): void => {
    socket.off('close', release);
    slot.release();
  };
  socket.once('close', release);
  return release;
}
