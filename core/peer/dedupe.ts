import { randomBytes } from 'node:crypto';

/** Longest counter (in base 36) kept as a number: 36^10 < 2^53, so every such value is exact. */
const MAX_COUNTER_DIGITS = 10;

/**
 * The (sender, message id) pairs a receiver has delivered, so at-least-once retries reach the
 * application once. Bounded: it remembers the last `capacity` pairs, the oldest go first. Exact:
 * a pair it never saw is never reported as seen.
 *
 * Memory is laid out so that remembering a message creates no long-lived object. A window of
 * 65,536 strings (one per message, each living for 65,536 messages) is what a generational GC
 * handles worst: every one survives the young generation, is copied twice and promoted, and
 * the old generation then grows until a full mark-compact, several milliseconds that stall the
 * receiver's event loop and show as latency clusters. So:
 *
 * - An id of the form `<prefix><n>`, where the prefix is empty or ends in its last '.', and n is
 *   a canonical base-36 counter of at most 10 digits (what this SDK sends: a random prefix,
 *   then a counter), is kept as two numbers: the index of its *stream* (one sender and prefix,
 *   interned while any of its entries is in the window) and n. They live in typed arrays: a ring
 *   in insertion order, and an open-addressing hash table (linear probing, at most half full,
 *   backward-shift deletion) that points into the ring.
 * - Any other id is kept as a string in a Set, in the same ring, so the window and its order
 *   cover both kinds.
 *
 * The table's hash is seeded per window at random, so a sender cannot pick ids that collide.
 */
export class DedupeWindow {
  private readonly capacity: number;
  /** ring, in insertion order: stream index of each entry, or -1 for a string entry */
  private ringStream: Int32Array | undefined;
  /** ring: the counter of each numeric entry */
  private ringCounter: Float64Array | undefined;
  /** ring: the key of each string entry (a sparse array: only other-format ids land here) */
  private readonly ringKey: (string | undefined)[] = [];
  /** hash table slots: ring index + 1, 0 when empty */
  private table: Int32Array | undefined;
  private readonly mask: number;
  private readonly seed = randomBytes(4).readInt32LE(0);
  /** entries in the ring */
  private count = 0;
  /** next ring slot to write (the oldest entry once the ring is full) */
  private next = 0;
  private readonly strings = new Set<string>();
  private readonly streamIndex = new Map<string, number>();
  private readonly streamKeys: (string | undefined)[] = [];
  private readonly streamRefs: number[] = [];
  private readonly freeStreams: number[] = [];
  /** parse results of the last `split` (no object per call) */
  private splitStream = '';
  private splitCounter = 0;

  constructor(capacity: number) {
    this.capacity = Math.max(1, Math.floor(capacity));
    let size = 2;
    while (size < this.capacity * 2) size *= 2;
    this.mask = size - 1;
  }

  has(from: string, id: string): boolean {
    if (!this.split(from, id)) return this.strings.has(`${from}\n${id}`);
    const stream = this.streamIndex.get(this.splitStream);
    return stream !== undefined && this.find(stream, this.splitCounter) >= 0;
  }

  add(from: string, id: string): void {
    const numeric = this.split(from, id);
    if (numeric) {
      const known = this.streamIndex.get(this.splitStream);
      if (known !== undefined && this.find(known, this.splitCounter) >= 0) return;
    } else if (this.strings.has(`${from}\n${id}`)) {
      return;
    }
    // Parse results survive eviction below (evict does not call split).
    const streamKey = this.splitStream;
    const counter = this.splitCounter;
    if (!this.ringStream) this.allocate();
    if (this.count === this.capacity) this.evict(this.next);
    else this.count++;
    const slot = this.next;
    this.next = (this.next + 1) % this.capacity;
    if (numeric) {
      const stream = this.intern(streamKey);
      this.ringStream![slot] = stream;
      this.ringCounter![slot] = counter;
      this.ringKey[slot] = undefined;
      this.insert(slot, stream, counter);
    } else {
      const key = `${from}\n${id}`;
      this.ringStream![slot] = -1;
      this.ringKey[slot] = key;
      this.strings.add(key);
    }
  }

  get size(): number {
    return this.count;
  }

  /** Senders (with prefix) the window holds numeric entries for. */
  get streams(): number {
    return this.streamIndex.size;
  }

  /**
   * Splits `id` into stream key and counter when it has the numeric form; sets splitStream and
   * splitCounter and returns true. Canonical digits only ("01" is not 1), so distinct ids never
   * share a (stream, counter) pair.
   */
  private split(from: string, id: string): boolean {
    const dot = id.lastIndexOf('.');
    const digits = id.length - dot - 1;
    if (digits < 1 || digits > MAX_COUNTER_DIGITS) return false;
    if (digits > 1 && id.charCodeAt(dot + 1) === 48) return false;
    let n = 0;
    for (let i = dot + 1; i < id.length; i++) {
      const c = id.charCodeAt(i);
      let d: number;
      if (c >= 48 && c <= 57) d = c - 48;
      else if (c >= 97 && c <= 122) d = c - 87;
      else return false;
      n = n * 36 + d;
    }
    this.splitStream = dot < 0 ? `${from}\n` : `${from}\n${id.slice(0, dot + 1)}`;
    this.splitCounter = n;
    return true;
  }

  private allocate(): void {
    this.ringStream = new Int32Array(this.capacity);
    this.ringCounter = new Float64Array(this.capacity);
    this.table = new Int32Array(this.mask + 1);
  }

  private hash(stream: number, counter: number): number {
    let h = (counter >>> 0) ^ Math.imul((counter / 4294967296) >>> 0, 0x27d4eb2f) ^ Math.imul(stream + 1, 0x165667b1) ^ this.seed;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h & this.mask;
  }

  /** The table position holding (stream, counter), or -1. */
  private find(stream: number, counter: number): number {
    const table = this.table;
    if (!table) return -1;
    const ringStream = this.ringStream!;
    const ringCounter = this.ringCounter!;
    for (let i = this.hash(stream, counter); ; i = (i + 1) & this.mask) {
      const s = table[i]!;
      if (s === 0) return -1;
      if (ringStream[s - 1] === stream && ringCounter[s - 1] === counter) return i;
    }
  }

  private insert(slot: number, stream: number, counter: number): void {
    const table = this.table!;
    let i = this.hash(stream, counter);
    for (let probes = 0; table[i] !== 0; probes++) {
      // At most half full, so a free slot is always found; this guards the invariant.
      if (probes > this.mask) throw new Error('dedupe table is full: the ring and the table disagree');
      i = (i + 1) & this.mask;
    }
    table[i] = slot + 1;
  }

  /** Forgets the entry in ring slot `slot`. */
  private evict(slot: number): void {
    const stream = this.ringStream![slot]!;
    if (stream < 0) {
      this.strings.delete(this.ringKey[slot]!);
      this.ringKey[slot] = undefined;
      return;
    }
    const position = this.find(stream, this.ringCounter![slot]!);
    if (position < 0) throw new Error('dedupe ring entry missing from its table');
    this.remove(position);
    if (--this.streamRefs[stream]! === 0) {
      this.streamIndex.delete(this.streamKeys[stream]!);
      this.streamKeys[stream] = undefined;
      this.freeStreams.push(stream);
    }
  }

  /** Backward-shift deletion: later entries of the probe run move up so no lookup stops early. */
  private remove(position: number): void {
    const table = this.table!;
    const mask = this.mask;
    let hole = position;
    for (let j = (hole + 1) & mask; table[j] !== 0; j = (j + 1) & mask) {
      const s = table[j]! - 1;
      const home = this.hash(this.ringStream![s]!, this.ringCounter![s]!);
      // The entry at j may move to the hole unless its home lies cyclically in (hole, j].
      const stays = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (stays) continue;
      table[hole] = table[j]!;
      hole = j;
    }
    table[hole] = 0;
  }

  private intern(key: string): number {
    let stream = this.streamIndex.get(key);
    if (stream === undefined) {
      stream = this.freeStreams.pop() ?? this.streamKeys.length;
      this.streamKeys[stream] = key;
      this.streamRefs[stream] = 0;
      this.streamIndex.set(key, stream);
    }
    this.streamRefs[stream]!++;
    return stream;
  }
}
