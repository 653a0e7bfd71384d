import { randomInt32 } from './random-pool.js';
import { fmix32 } from './hash.js';

/** Positions a table starts with, and by default keeps while it empties (a larger one is let go when empty; see keepPositions). */
const MIN_CAPACITY = 8;
/** Keys an insert may walk past in its bucket before the table is rehashed under a new seed. */
const MAX_CHAIN = 32;

/**
 * A string-keyed table for entries that come and go many times a second and live a moment each
 * (messages awaiting their ACK, by id), with a Map's get/set/has/delete, size, insertion-order
 * iteration and first().
 *
 * Why not a Map: V8 keeps a Map's entries in a hash table that it replaces when the Map grows,
 * shrinks, is cleared or has collected enough deleted entries, and links the old table to the
 * new one (so iterators still running on the old table can follow). A long-lived Map's table
 * ends up in the old generation; from then on, every later table, and every entry each of them
 * held when it was replaced, is reachable from that old table through each scavenge, though
 * nothing uses it, until the next full GC. Under traffic a Map of in-flight messages keeps
 * nearly every message alive that long: measured (a 1 KiB message, 8 in flight, 2,000 bursts a
 * second) ~1.4 MB surviving each scavenge and a mark-compact every second or two. Those
 * mark-compacts are the slowest 1% of a sender's messages (bench/tail.ts).
 *
 * Why not an object used as a dictionary (what this table was before): a property key must be
 * an internalized string, so every new message id was looked up in, and added to, V8's string
 * table, and every lookup with an id read off the wire (a new string) was hashed and looked up
 * there, on V8's slow path for keyed stores: about 1.5 µs per message put, found and deleted,
 * and 12% of an SDK sender's CPU in a closed loop (bench throughput, --cpu-prof).
 *
 * So the table is its own: entries sit in arrays by *position*, positions handed out in
 * insertion order (the tail only grows; a deleted entry leaves a hole), and a hash of the key
 * (seeded per table, so a sender cannot choose ids that collide; a long bucket rehashes under a
 * new seed) leads to its position through chained buckets. When the tail reaches the end, the
 * live entries move to the front (or to arrays twice as large when more than half are live) and
 * the buckets are built again: amortised O(1). Nothing is allocated per entry but the caller's
 * own key and value, and the arrays hold nothing once an entry is deleted. An empty table holds
 * no arrays of its own (a contact point has one per LAN peer; most have nothing in flight), or a
 * small one it keeps, having been used.
 *
 * Iteration is in insertion order; entries may be deleted, and added, while iterating (an
 * entry added is visited, as a Map's would be; one deleted before it is reached is skipped).
 */
/**
 * What a table holds while it has no positions (capacity 0): read, never written (makeRoom gives
 * a table arrays of its own before its first entry), and shared, so an idle table (a contact
 * point's LAN peer with nothing in flight) costs no arrays. Frozen: a write would throw.
 */
const NO_POSITIONS: readonly never[] = Object.freeze([]);

/**
 * `n` zeros in a plain array of exactly `n` elements. Plain arrays rather than Int32Arrays for
 * the hashes, chain and buckets: a small typed array is three objects (the array, its
 * ArrayBuffer and its elements), ~235 B at 8 positions against 80 B. A contact point keeps a
 * small table for every LAN peer it has delivered a message to: 1,239 B each with typed arrays,
 * 832 B now (heap snapshot of 1,000 tables that held one entry each). The price is twice the
 * bytes per position in large tables: a get, delete and set took about the same at 256 and
 * 2,048 entries in flight (−1 to +7 %, alternating rounds) and ~12 % longer at 20,000.
 */
function int32s(n: number): number[] {
  return new Array<number>(n).fill(0);
}

export class ChurnTable<V> {
  /** key at each position; undefined where none (a hole, or past the tail) */
  private keys: (string | undefined)[] = NO_POSITIONS as never[];
  private vals: (V | undefined)[] = NO_POSITIONS as never[];
  /** insertion number of the entry at each position: increasing with the position (iterators find their place again after a move) */
  private seqs: number[] = NO_POSITIONS as never[];
  /** hash of the key at each position (the buckets are built again from these, not from the keys) */
  private hashes: number[] | undefined;
  /** the next position in the same bucket, -1 at its end */
  private chain: number[] | undefined;
  /** each bucket's first position, -1 when empty; as many buckets as positions (a power of two) */
  private buckets: number[] | undefined;
  private capacity = 0;
  /** no live entry before this position */
  private head = 0;
  /** the next position to hand out */
  private tail = 0;
  private count = 0;
  private nextSeq = 0;
  /** changes whenever entries move (compaction, growth, clear): running iterators find their place again */
  private epoch = 0;
  private seed = randomInt32();
  private insertsSinceReseed = 0;
  /** the key hashed last and its hash: a get() and the delete() after it hash once */
  private lastKey: string | undefined;
  private lastHash = 0;
  /** times the buckets were rebuilt under a new seed after a long one (diagnostics and tests) */
  reseeds = 0;
  /** positions kept while the table empties, and never shrunk below (see the constructor) */
  private readonly keep: number;

  /**
   * @param opts.keepPositions a table whose arrays hold up to this many positions keeps them
   *   when it empties, and keeps at least that many when it shrinks (default MIN_CAPACITY, 8). For
   *   a table that empties again and again under traffic: a sender's outbox with its whole window
   *   acknowledged in one BATCH, 256 in flight, emptied and grew its arrays again from 8 to 1,024
   *   positions about 200 times a second (~80 KB of arrays each time, 16 MB/s of garbage), and
   *   its arrays went between 512 and 1,024 positions as the window's size moved about 128.
   *   Costs 48 B per position kept (6 arrays): a table per LAN peer keeps the default.
   */
  constructor(opts: { keepPositions?: number } = {}) {
    let keep = MIN_CAPACITY;
    while (keep < (opts.keepPositions ?? 0)) keep *= 2;
    this.keep = keep;
  }

  get size(): number {
    return this.count;
  }

  /** Positions the table holds arrays for (0 when it holds none; diagnostics and tests). */
  get positions(): number {
    return this.capacity;
  }

  get(key: string): V | undefined {
    if (this.count === 0) return undefined;
    const p = this.find(key, this.hash(key));
    return p < 0 ? undefined : this.vals[p];
  }

  has(key: string): boolean {
    return this.count > 0 && this.find(key, this.hash(key)) >= 0;
  }

  /** `value` must not be undefined (get() could not tell it from a missing key). */
  set(key: string, value: V): this {
    const h = this.hash(key);
    if (this.count > 0) {
      const known = this.find(key, h);
      if (known >= 0) {
        this.vals[known] = value;
        return this;
      }
    }
    if (this.tail === this.capacity) this.makeRoom();
    const p = this.tail++;
    this.hashes![p] = h;
    this.keys[p] = key;
    this.vals[p] = value;
    this.seqs[p] = this.nextSeq++;
    const b = h & (this.capacity - 1);
    const chain = this.chain!;
    const buckets = this.buckets!;
    chain[p] = buckets[b]!;
    buckets[b] = p;
    this.count++;
    this.insertsSinceReseed++;
    // A long bucket: new seed and buckets built again, at most once per `capacity` inserts (so
    // it costs O(1) per insert even when the new seed does not help).
    if (this.insertsSinceReseed >= this.capacity && this.bucketLength(b) > MAX_CHAIN) {
      this.reseed();
    }
    return this;
  }

  delete(key: string): boolean {
    if (this.count === 0) return false;
    const b = this.hash(key) & (this.capacity - 1);
    const chain = this.chain!;
    const buckets = this.buckets!;
    let prev = -1;
    for (let p = buckets[b]!; p >= 0; prev = p, p = chain[p]!) {
      if (this.keys[p] !== key) continue;
      if (prev < 0) buckets[b] = chain[p]!;
      else chain[prev] = chain[p]!;
      this.keys[p] = undefined;
      this.vals[p] = undefined;
      if (--this.count === 0) this.emptied();
      else if (p === this.head) this.advanceHead();
      return true;
    }
    return false;
  }

  clear(): void {
    this.release();
  }

  /** The oldest entry (inserted first among those left), or undefined when empty. */
  first(): [string, V] | undefined {
    if (this.count === 0) return undefined;
    return [this.keys[this.head]!, this.vals[this.head]!];
  }

  /** The values in insertion order; those deleted during the iteration and not reached yet are skipped, those added are visited. */
  *values(): IterableIterator<V> {
    let epoch = this.epoch;
    let p = this.head;
    let lastSeq = -1;
    for (;;) {
      if (this.epoch !== epoch) {
        // Entries moved (or the table was cleared): go on after the last one visited.
        epoch = this.epoch;
        p = this.positionAfter(lastSeq);
      }
      if (p >= this.tail) return;
      const v = this.vals[p];
      if (v !== undefined) {
        lastSeq = this.seqs[p]!;
        p++;
        yield v;
      } else {
        p++;
      }
    }
  }

  /** Seeded FNV-1a over the key's UTF-16 code units, finished with fmix32. */
  private hash(key: string): number {
    if (key === this.lastKey) return this.lastHash;
    let h = this.seed ^ 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    h = fmix32(h ^ key.length);
    this.lastKey = key;
    this.lastHash = h;
    return h;
  }

  /** A new seed, every key hashed again and the buckets built again. */
  private reseed(): void {
    this.seed = randomInt32();
    this.lastKey = undefined;
    this.reseeds++;
    this.insertsSinceReseed = 0;
    const hashes = this.hashes!;
    for (let p = this.head; p < this.tail; p++) {
      const key = this.keys[p];
      if (key !== undefined) hashes[p] = this.hash(key);
    }
    this.rebuildBuckets();
  }

  /** The position of `key` (whose hash is `h`), or -1. */
  private find(key: string, h: number): number {
    const chain = this.chain!;
    for (let p = this.buckets![h & (this.capacity - 1)]!; p >= 0; p = chain[p]!) if (this.keys[p] === key) return p;
    return -1;
  }

  private bucketLength(b: number): number {
    let n = 0;
    for (let p = this.buckets![b]!; p >= 0; p = this.chain![p]!) n++;
    return n;
  }

  /**
   * The tail is at the end: the live entries move to the front, in arrays that leave at least
   * three quarters of the positions free (so moving costs a third of an entry per insert, and
   * buckets hold a quarter of an entry on average): the same arrays while they do, larger ones
   * after growth (the smallest power of two that does), smaller ones after a burst once four
   * times smaller ones would do, but never fewer positions than `keep`. That slack means a window of
   * messages whose size moves about a power of two (128 then 129 in flight) keeps its arrays.
   */
  private makeRoom(): void {
    const live = this.count;
    let needed = MIN_CAPACITY;
    while (needed < live * 4) needed *= 2;
    let capacity = this.capacity;
    if (needed > capacity) capacity = needed;
    else if (needed * 4 <= capacity && capacity > this.keep) capacity = Math.max(needed, this.keep);
    const same = capacity === this.capacity;
    const keys = same ? this.keys : new Array<string | undefined>(capacity).fill(undefined);
    const vals = same ? this.vals : new Array<V | undefined>(capacity).fill(undefined);
    const seqs = same ? this.seqs : new Array<number>(capacity).fill(0);
    const hashes = same ? this.hashes! : int32s(capacity);
    let q = 0;
    for (let p = this.head; p < this.tail; p++) {
      const key = this.keys[p];
      if (key === undefined) continue;
      // q <= p: moving down within the same arrays never overwrites an entry not yet moved.
      keys[q] = key;
      vals[q] = this.vals[p];
      seqs[q] = this.seqs[p]!;
      hashes[q] = this.hashes![p]!;
      q++;
    }
    if (same) {
      for (let p = q; p < this.tail; p++) {
        keys[p] = undefined;
        vals[p] = undefined;
      }
    } else {
      this.keys = keys;
      this.vals = vals;
      this.seqs = seqs;
      this.hashes = hashes;
      this.capacity = capacity;
      this.chain = int32s(capacity);
      this.buckets = int32s(capacity);
    }
    this.head = 0;
    this.tail = q;
    this.epoch++;
    this.rebuildBuckets();
  }

  private rebuildBuckets(): void {
    const chain = this.chain!;
    const buckets = this.buckets!;
    buckets.fill(-1);
    const hashes = this.hashes!;
    const mask = this.capacity - 1;
    for (let p = this.head; p < this.tail; p++) {
      if (this.keys[p] === undefined) continue;
      const b = hashes[p]! & mask;
      chain[p] = buckets[b]!;
      buckets[b] = p;
    }
  }

  private advanceHead(): void {
    while (this.head < this.tail && this.keys[this.head] === undefined) this.head++;
  }

  /** The last entry went: a table of up to `keep` positions starts again from position 0, a larger one is let go. */
  private emptied(): void {
    if (this.capacity > this.keep) return this.release();
    // The arrays already hold nothing (each deletion cleared its position).
    this.buckets!.fill(-1);
    this.head = 0;
    this.tail = 0;
    this.epoch++;
  }

  private release(): void {
    this.keys = NO_POSITIONS as never[];
    this.vals = NO_POSITIONS as never[];
    this.seqs = NO_POSITIONS as never[];
    this.hashes = undefined;
    this.chain = undefined;
    this.buckets = undefined;
    this.capacity = 0;
    this.head = 0;
    this.tail = 0;
    this.count = 0;
    this.epoch++;
  }

  /** The first position whose entry was inserted after insertion number `seq` (the tail if none). */
  private positionAfter(seq: number): number {
    // Positions from head to tail hold increasing insertion numbers (holes keep their old ones, or 0 past a move).
    let lo = this.head;
    let hi = this.tail;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.keys[mid] === undefined) {
        // A hole: its number may be stale; step to the nearest live position at or after it.
        let m = mid;
        while (m < hi && this.keys[m] === undefined) m++;
        if (m === hi) {
          hi = mid;
          continue;
        }
        if (this.seqs[m]! > seq) hi = mid;
        else lo = m + 1;
        continue;
      }
      if (this.seqs[mid]! > seq) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}
