import { createCipheriv, randomBytes, type Cipher } from 'node:crypto';
import { randomText } from '../runtime/random-pool.js';

/**
 * Bits of an id's number part. 2^48 < 36^10, so every value prints in at most 10 base-36 digits
 * and the receiver's dedupe keeps it as a number (see dedupe.ts).
 */
export const ID_NUMBER_BITS = 48;
const HALF_BITS = ID_NUMBER_BITS / 2;
const HALF_MASK = 2 ** HALF_BITS - 1;
const HALF_SPAN = 2 ** HALF_BITS;
/** Feistel rounds: as many as NIST FF1 uses, well past the 4 a strong pseudo-random permutation needs. */
const ROUNDS = 10;
/** Ids computed per refill: one AES call per round covers a whole batch. */
const BATCH = 256;
/** 36^5: the low five base-36 digits, printed apart so both parts are small integers. */
const LOW_DIGITS = 36 ** 5;

/**
 * `n.toString(36)` for 0 <= n < 2^48. V8 prints a number above 2^31 in another radix on a slow
 * path (about 2 µs); two small integers take a tenth of that.
 */
export function base36(n: number): string {
  const high = Math.floor(n / LOW_DIGITS);
  const low = n - high * LOW_DIGITS;
  return high === 0 ? low.toString(36) : high.toString(36) + low.toString(36).padStart(5, '0');
}

/**
 * Message ids a sender cannot be made to reveal the next of: `<prefix>.<n>` where the prefix is
 * 6 random bytes (base64url) and n is a keyed pseudo-random permutation of a counter over
 * [0, 2^48), printed in canonical base 36.
 *
 * Anyone who received one message from this sender knows its prefix; with a plain counter it
 * could also name the sender's next ids. The permutation is a balanced Feistel network on two
 * 24-bit halves whose round function is AES-128 under a random per-sender key (round number and
 * half in one block, the first 24 bits of the ciphertext as output). So:
 * - ids stay unique within a prefix (a permutation of distinct counters), for 2^48 messages,
 *   after which the prefix and key are replaced;
 * - earlier ids say nothing useful about later ones: guessing the next one is a 1 in ~2^48 shot;
 * - receivers still keep them as (prefix, number) in the dedupe's numeric form.
 *
 * Ids are made BATCH at a time so the cost per message is a fraction of one AES block per round.
 */
export class MessageIds {
  private prefix = '';
  private counter = 0;
  /**
   * The key and the batch buffers (~8 KB), made with the first id: a client that never sends
   * (most LAN peers most of the time; thousands of clients in one process in the benches)
   * carries none of it.
   */
  private work: Work | undefined;
  private pos = BATCH;

  constructor() {
    this.prefix = newPrefix();
  }

  /** The current prefix, with its trailing '.' (it changes only after 2^48 ids). */
  get currentPrefix(): string {
    return this.prefix;
  }

  next(): string {
    if (this.pos === BATCH) this.refill();
    return this.prefix + base36(this.work!.batch[this.pos++]!);
  }

  /** The permutation itself, for tests: the number part of the id for counter value `n`. */
  permute(n: number): number {
    if (!Number.isInteger(n) || n < 0 || n >= 2 ** ID_NUMBER_BITS) throw new RangeError(`counter ${n} outside [0, 2^${ID_NUMBER_BITS})`);
    const w = (this.work ??= newWork());
    w.left[0] = Math.floor(n / HALF_SPAN);
    w.right[0] = n & HALF_MASK;
    rounds(w, 1);
    return w.left[0] * HALF_SPAN + w.right[0];
  }

  /** A new prefix and key, after 2^48 ids. */
  private rekey(): void {
    this.prefix = newPrefix();
    this.work = newWork();
    this.counter = 0;
    this.pos = BATCH;
  }

  private refill(): void {
    if (this.counter + BATCH > 2 ** ID_NUMBER_BITS) this.rekey();
    const w = (this.work ??= newWork());
    for (let i = 0; i < BATCH; i++) {
      const n = this.counter + i;
      w.left[i] = Math.floor(n / HALF_SPAN);
      w.right[i] = n & HALF_MASK;
    }
    this.counter += BATCH;
    rounds(w, BATCH);
    for (let i = 0; i < BATCH; i++) w.batch[i] = w.left[i]! * HALF_SPAN + w.right[i]!;
    this.pos = 0;
  }
}

interface Work {
  readonly cipher: Cipher;
  readonly batch: Float64Array;
  readonly left: Int32Array;
  readonly right: Int32Array;
  readonly block: Buffer;
}

/** 6 random bytes, base64url, and the '.': public with the first message, so drawn from the pool. */
function newPrefix(): string {
  return randomText(6, 'base64url') + '.';
}

/** A fresh AES key (from crypto's randomBytes, never the shared pool: it is a key) and the batch buffers. */
function newWork(): Work {
  const cipher = createCipheriv('aes-128-ecb', randomBytes(16), null);
  cipher.setAutoPadding(false);
  return { cipher, batch: new Float64Array(BATCH), left: new Int32Array(BATCH), right: new Int32Array(BATCH), block: Buffer.alloc(BATCH * 16) };
}

/** ROUNDS Feistel rounds over the first `count` (left, right) pairs: L, R -> R, L xor F_r(R). */
function rounds(w: Work, count: number): void {
  const { block, left, right, cipher } = w;
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < count; i++) {
      const o = i * 16;
      const x = right[i]!;
      block[o] = r;
      block[o + 1] = x >>> 16;
      block[o + 2] = (x >>> 8) & 0xff;
      block[o + 3] = x & 0xff;
    }
    const out = cipher.update(block.subarray(0, count * 16));
    for (let i = 0; i < count; i++) {
      const o = i * 16;
      const f = (out[o]! << 16) | (out[o + 1]! << 8) | out[o + 2]!;
      const l = left[i]!;
      left[i] = right[i]!;
      right[i] = (l ^ f) & HALF_MASK;
    }
  }
}
