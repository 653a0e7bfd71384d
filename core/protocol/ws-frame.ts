import { randomFillSync } from 'node:crypto';
import { createRequire } from 'node:module';

/**
 * RFC 6455 framing for the one kind of ws frame the Link writes itself: a final, unfragmented
 * binary frame made of a small head (our frame header) and a body taken from a bigger buffer
 * (STREAM_DATA). ws's own send() wants the message in one buffer, which costs a copy of every
 * stream byte (and on the client, masking makes a second one); writing the frame here costs none
 * on the server and one (the masking itself) on the client. The far side's ws parses it like any
 * other frame.
 */

const OPCODE_BINARY_FIN = 0x82;
const MASK_BIT = 0x80;

/** ws frame header for a payload of `length` bytes, with `maskKey` (4 bytes) on the client side. */
export function wsHeaderLength(length: number, masked: boolean): number {
  return (length < 126 ? 2 : length < 65536 ? 4 : 10) + (masked ? 4 : 0);
}

/** Writes the ws header of a final binary frame of `length` payload bytes at `out[0..]`; returns its size. */
export function writeWsHeader(out: Buffer, length: number, maskKey?: Buffer): number {
  out[0] = OPCODE_BINARY_FIN;
  let at: number;
  if (length < 126) {
    out[1] = length;
    at = 2;
  } else if (length < 65536) {
    out[1] = 126;
    out.writeUInt16BE(length, 2);
    at = 4;
  } else {
    out[1] = 127;
    // 2^53 is far above any frame we accept (MAX_FRAME_BYTES), so the high word is 0
    out.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    out.writeUInt32BE(length >>> 0, 6);
    at = 10;
  }
  if (maskKey) {
    out[1]! |= MASK_BIT;
    maskKey.copy(out, at, 0, 4);
    at += 4;
  }
  return at;
}

type MaskFn = (source: Buffer, mask: Buffer, output: Buffer, offset: number, length: number) => void;
type UnmaskFn = (buffer: Buffer, mask: Buffer) => void;

/** XORs `source` with the 4-byte `mask` (starting at mask byte 0) into `output[offset..]`. */
export function maskJs(source: Buffer, mask: Buffer, output: Buffer, offset: number, length: number): void {
  for (let i = 0; i < length; i++) output[offset + i] = source[i]! ^ mask[i & 3]!;
}

/** XORs `buffer` with the 4-byte `mask` in place (what a server does to a client's payload). */
export function unmaskJs(buffer: Buffer, mask: Buffer): void {
  for (let i = 0; i < buffer.length; i++) buffer[i]! ^= mask[i & 3]!;
}

/** Below this many bytes the JS loop beats a call into native code (ws draws the line at 24-32). */
const NATIVE_UNMASK_FROM = 32;

/**
 * bufferutil (an optional dependency, the same one ws uses) masks 8 bytes at a time in native
 * code; without it, or with WS_NO_BUFFER_UTIL set as for ws, the JS loops above.
 */
function loadMask(): { fn: MaskFn; unmask: UnmaskFn; impl: 'bufferutil' | 'js' } {
  if (!process.env.WS_NO_BUFFER_UTIL) {
    try {
      const bu = createRequire(import.meta.url)('bufferutil') as { mask?: MaskFn; unmask?: UnmaskFn };
      const native = bu.unmask;
      if (typeof bu.mask === 'function' && typeof native === 'function') {
        return { fn: bu.mask, unmask: (b, m) => (b.length < NATIVE_UNMASK_FROM ? unmaskJs(b, m) : native(b, m)), impl: 'bufferutil' };
      }
    } catch {
      // not installed: the JS loops
    }
  }
  return { fn: maskJs, unmask: unmaskJs, impl: 'js' };
}

const masker = loadMask();
export const MASK_IMPL = masker.impl;
/** Unmasks a client's payload in place (ws-server.ts). */
export const unmask: UnmaskFn = masker.unmask;

/** Masking keys come from a pool of random bytes, refilled when used up (as ws does). */
const keyPool = Buffer.alloc(8192);
let keyAt = keyPool.length;

/** The key rotated to where the body starts in the payload (filled per frame, used at once). */
const bodyKeyScratch = Buffer.alloc(4);

function nextMaskKey(): Buffer {
  if (keyAt + 4 > keyPool.length) {
    randomFillSync(keyPool);
    keyAt = 0;
  }
  const key = keyPool.subarray(keyAt, keyAt + 4);
  keyAt += 4;
  return key;
}

/**
 * One whole ws frame (a final binary one) of `length` payload bytes in one new buffer: `fill`
 * writes the payload at `out[at..]`, then it is masked in place on the client side. For a
 * payload assembled from many pieces (a BATCH): one buffer and one copy of each piece, where
 * ws's send() would take a second copy to mask it.
 */
export function wsFrame(length: number, masked: boolean, fill: (out: Buffer, at: number) => void, into?: Buffer): Buffer {
  const key = masked ? nextMaskKey() : undefined;
  const size = wsHeaderLength(length, masked) + length;
  const out = into === undefined || into.length < size ? Buffer.allocUnsafe(size) : into.length === size ? into : into.subarray(0, size);
  const at = writeWsHeader(out, length, key);
  fill(out, at);
  if (key && length > 0) masker.fn(out.subarray(at), key, out, at, length);
  return out;
}

/**
 * The buffers to write for one frame of `head` + `body[offset, offset + length)`.
 * Server side (unmasked): the ws header and `head` in one small buffer, then the body as it is.
 * Client side: one buffer with the ws header and the masked payload, masked while copying.
 */
export function framePieces(head: Buffer, body: Buffer, offset: number, length: number, masked: boolean): Buffer[] {
  const payload = head.length + length;
  const part = offset === 0 && length === body.length ? body : body.subarray(offset, offset + length);
  if (!masked) {
    const h = Buffer.allocUnsafe(wsHeaderLength(payload, false) + head.length);
    head.copy(h, writeWsHeader(h, payload));
    return [h, part];
  }
  const key = nextMaskKey();
  const out = Buffer.allocUnsafe(wsHeaderLength(payload, true) + payload);
  const at = writeWsHeader(out, payload, key);
  maskJs(head, key, out, at, head.length); // a few bytes: a native call would cost more
  // the body continues the payload at byte head.length, so its mask starts that far into the key
  const r = head.length & 3;
  for (let i = 0; i < 4; i++) bodyKeyScratch[i] = key[(r + i) & 3]!;
  const bodyKey = bodyKeyScratch;
  if (length > 0) masker.fn(part, bodyKey, out, at + head.length, length);
  return [out];
}
