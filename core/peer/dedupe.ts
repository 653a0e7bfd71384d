import { randomInt32 } from '../runtime/random-pool.js';
import { fmix32 } from '../runtime/hash.js';

/** Longest number part (in base 36) kept as a number: 36^10 < 2^53, so every such value is exact. */
const MAX_COUNTER_DIGITS = 10;
/** Largest window: 2^22 entries, 12 bytes each in the ring and 16 in the table. */
export const MAX_DEDUPE_CAPACITY = 2 ** 22;
/**
 * Probes an insert may take before the table is rebuilt under a new seed. At most a quarter full
 * with a well-spread hash, runs stay short; a long one means the seed is unlucky (or guessed).
 */
const MAX_PROBES = 64;

function randomSeed(): Int32Array {
  return Int32Array.of(randomInt32(), randomInt32(), randomInt32());
}

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
 *   a canonical base-36 number of at most 10 digits (what this SDK sends: a random prefix,
 *   then a keyed permutation of a counter below 2^48, see message-ids.ts; the numbers of a
 *   stream may come in any order), is kept as two numbers: the index of its *stream* (one sender and prefix,
 *   interned while any of its entries is in the window) and n. They live in typed arrays: a ring
 *   in insertion order, and an open-addressing hash table (linear probing, at most a quarter full,
 *   backward-shift deletion) that points into the ring.
 * - Any other id is kept as a string in a Set, in the same ring, so the window and its order
 *   cover both kinds.
 *
 * The table's hash is keyed per window with random seeds that enter before each mixing step, so
 * a sender cannot pick ids that collide; should a probe run still grow long, the table is rebuilt
 * under new seeds.
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
  private seed = randomSeed();
  /** times the table was rebuilt under new seeds after a long probe run */
  rebuilds = 0;
  private insertsSinceRebuild = 0;
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
  /**
   * The sender and id prefix (up to its last '.') of the last numeric split, and the stream key
   * made of them: one sender's ids share their prefix, so the key is reused, not built again.
   */
  private lastFrom: string | undefined;
  private lastPrefix = '';
  /**
   * The pair the last has() did not find, and its parse: add() of that same pair (what a
   * receiver does next, once the handler is done) neither parses it nor looks for it again.
   * Nothing but an add() of the pair itself can make it present meanwhile, and that add() takes it.
   */
  private missFrom: string | undefined;
  private missId: string | undefined;
  private missNumeric = false;
  private missStream = '';
  private missCounter = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_DEDUPE_CAPACITY) {
      throw new RangeError(`dedupe window must be a whole number of messages from 1 to ${MAX_DEDUPE_CAPACITY}, not ${capacity}`);
    }
    this.capacity = capacity;
    // At most a quarter full: linear probing's runs stay short (about 15 slots at most with 65,536 entries).
    let size = 4;
    while (size < this.capacity * 4) size *= 2;
    this.mask = size - 1;
  }

  has(from: string, id: string): boolean {
    const numeric = this.split(from, id);
    let found: boolean;
    if (!numeric) found = this.strings.has(`${from}\n${id}`);
    else {
      const stream = this.streamIndex.get(this.splitStream);
      found = stream !== undefined && this.find(stream, this.splitCounter) >= 0;
    }
    if (!found) {
      this.missFrom = from;
      this.missId = id;
      this.missNumeric = numeric;
      this.missStream = this.splitStream;
      this.missCounter = this.splitCounter;
    }
    return found;
  }

  add(from: string, id: string): void {
    let numeric: boolean;
    let streamKey: string;
    let counter: number;
    if (id === this.missId && from === this.missFrom) {
      // has() just found it absent, and parsed it.
      this.missId = undefined;
      this.missFrom = undefined;
      numeric = this.missNumeric;
      streamKey = this.missStream;
      counter = this.missCounter;
    } else {
      numeric = this.split(from, id);
      if (numeric) {
        const known = this.streamIndex.get(this.splitStream);
        if (known !== undefined && this.find(known, this.splitCounter) >= 0) return;
      } else if (this.strings.has(`${from}\n${id}`)) {
        return;
      }
      // Parse results survive eviction below (evict does not call split).
      streamKey = this.splitStream;
      counter = this.splitCounter;
    }
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

  /** The longest run of occupied table slots (diagnostics and tests: what a lookup may walk). */
  longestRun(): number {
    const table = this.table;
    if (!table) return 0;
    let longest = 0;
    let run = 0;
    // Twice round, so a run that wraps past the end is measured whole.
    for (let k = 0; k < table.length * 2; k++) {
      run = table[k & this.mask] !== 0 ? run + 1 : 0;
      if (run > longest) longest = Math.min(run, table.length);
    }
    return longest;
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
    this.splitCounter = n;
    if (from === this.lastFrom && dot + 1 === this.lastPrefix.length && id.startsWith(this.lastPrefix)) return true;
    const prefix = dot < 0 ? '' : id.slice(0, dot + 1);
    this.lastFrom = from;
    this.lastPrefix = prefix;
    this.splitStream = `${from}\n${prefix}`;
    return true;
  }

  private allocate(): void {
    this.ringStream = new Int32Array(this.capacity);
    this.ringCounter = new Float64Array(this.capacity);
    this.table = new Int32Array(this.mask + 1);
  }

  private hash(stream: number, counter: number): number {
    const seed = this.seed;
    let h = fmix32((counter >>> 0) ^ seed[0]!);
    h = fmix32(h ^ ((counter / 4294967296) >>> 0) ^ seed[1]!);
    h = fmix32(h ^ stream ^ seed[2]!);
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
      // A long run: rebuild under new seeds, at most once per `capacity` inserts (so rebuilding
      // costs O(1) per insert even if new seeds do not help); otherwise keep probing (the table
      // is at most a quarter full, so a free slot comes).
      if (probes === MAX_PROBES && this.insertsSinceRebuild >= this.capacity) {
        // The ring already holds this entry (add wrote it first), so the rebuild places it too.
        this.rebuild();
        return;
      }
      if (probes > this.mask) throw new Error('dedupe table is full: the ring and the table disagree');
      i = (i + 1) & this.mask;
    }
    table[i] = slot + 1;
    this.insertsSinceRebuild++;
  }

  /** New seeds, and every numeric entry in the ring placed again. */
  private rebuild(): void {
    this.rebuilds++;
    this.insertsSinceRebuild = 0;
    this.seed = randomSeed();
    const table = this.table!;
    table.fill(0);
    const ringStream = this.ringStream!;
    const ringCounter = this.ringCounter!;
    // The live entries are ring slots [0, count): the ring fills from 0 and then stays full.
    for (let slot = 0; slot < this.count; slot++) {
      const stream = ringStream[slot]!;
      if (stream < 0) continue;
      let i = this.hash(stream, ringCounter[slot]!);
      while (table[i] !== 0) i = (i + 1) & this.mask;
      table[i] = slot + 1;
    }
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
