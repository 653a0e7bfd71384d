import { randomFillSync } from 'node:crypto';

/**
 * Random bytes for values that are public once made or live only in this process: nonces,
 * session ids, hash-table seeds. Each `randomBytes(n)` call of a few bytes costs a native call
 * and a fresh buffer (~10-20 us on the bench host, three of them per peer hello); this draws
 * them from one 4 KiB block of the same CSPRNG, refilled when used up, and uses each byte
 * once. Not for keys: a key's bytes should not sit in a long-lived block beside others
 * (use crypto's randomBytes / generateKey for those).
 */
const BLOCK_BYTES = 4096;
/** The largest draw: anything bigger is not what this is for. */
export const MAX_DRAW_BYTES = 64;

const block = Buffer.allocUnsafeSlow(BLOCK_BYTES);
let at = BLOCK_BYTES;

function draw(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > MAX_DRAW_BYTES) throw new RangeError(`random draw of ${n} bytes (1-${MAX_DRAW_BYTES})`);
  if (at + n > BLOCK_BYTES) {
    randomFillSync(block);
    at = 0;
  }
  const start = at;
  at += n;
  return start;
}

/** `n` random bytes as text (base64 for nonces, base64url for ids, hex). */
export function randomText(n: number, encoding: 'base64' | 'base64url' | 'hex'): string {
  const start = draw(n);
  return block.toString(encoding, start, start + n);
}

/** A random 32-bit integer (signed, as Int32Array holds it). */
export function randomInt32(): number {
  return block.readInt32LE(draw(4));
}

