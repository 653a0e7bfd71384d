import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import type { Writable } from 'node:stream';
import { MAX_FRAME_BYTES } from '../../core/protocol/limits.js';
import { framePieces, maskJs, wsHeaderLength, writeWsHeader } from '../../core/protocol/ws-frame.js';

/** ws's frame parser (exported by ws, not declared by @types/ws). */
const { Receiver } = createRequire(import.meta.url)('ws') as {
  Receiver: new (opts: { isServer: boolean; maxPayload: number; binaryType: 'nodebuffer' }) => Writable;
};

/** Parses `pieces` with ws's own Receiver, as the far side of a tunnel does; returns the messages. */
function parse(pieces: Buffer[], isServer: boolean, split: number): Buffer[] {
  const got: Buffer[] = [];
  const errors: Error[] = [];
  const r = new Receiver({ isServer, maxPayload: MAX_FRAME_BYTES, binaryType: 'nodebuffer' });
  r.on('message', (data: Buffer) => got.push(Buffer.from(data)));
  r.on('error', (e: Error) => errors.push(e));
  // delivered in pieces of `split` bytes, as socket reads would cut it
  const all = Buffer.concat(pieces);
  for (let at = 0; at < all.length; at += split) r.write(all.subarray(at, at + split));
  if (errors[0]) throw errors[0];
  return got;
}

describe('ws frames written by the Link itself (STREAM_DATA without a copy)', () => {
  const head = Buffer.from([0x20, 0, 0, 0, 0, 7]);
  const lengths = [0, 1, 119, 120, 125, 126, 1000, 65529, 65530, 65535, 65536, 70_000, 256 * 1024];

  for (const role of ['server', 'client'] as const) {
    it(`${role} side: ws's Receiver reads head + body back for every length class`, () => {
      const body = randomBytes(256 * 1024 + 100);
      for (const length of lengths) {
        for (const offset of [0, 3, 100]) {
          if (offset + length > body.length) continue;
          const pieces = framePieces(head, body, offset, length, role === 'client');
          // a client's frames are read by a server-side Receiver, which requires the mask, and vice versa
          const [msg, ...rest] = parse(pieces, role === 'client', 7_001);
          expect(rest).toEqual([]);
          expect(msg!.equals(Buffer.concat([head, body.subarray(offset, offset + length)])), `length ${length} offset ${offset}`).toBe(true);
        }
      }
    });
  }

  it('server side does not copy the body; client side masks it, leaving the source untouched', () => {
    const body = randomBytes(64 * 1024);
    const before = Buffer.from(body);
    const server = framePieces(head, body, 0, body.length, false);
    expect(server).toHaveLength(2);
    expect(server[1]!.buffer).toBe(body.buffer);
    const client = framePieces(head, body, 0, body.length, true);
    expect(client).toHaveLength(1);
    expect(body.equals(before)).toBe(true);
    // masked: the payload on the wire is not the plain bytes
    expect(client[0]!.subarray(client[0]!.length - body.length).equals(body)).toBe(false);
  });

  it('masking keys differ from frame to frame', () => {
    const keys = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const [f] = framePieces(head, Buffer.alloc(10), 0, 10, true);
      keys.add(f!.subarray(2, 6).toString('hex'));
    }
    expect(keys.size).toBeGreaterThan(95);
  });

  it('header sizes match RFC 6455 length classes, and the rare 64-bit length is written whole', () => {
    expect([0, 125, 126, 65535, 65536].map((n) => wsHeaderLength(n, false))).toEqual([2, 2, 4, 4, 10]);
    expect(wsHeaderLength(126, true)).toBe(8);
    const h = Buffer.alloc(14);
    expect(writeWsHeader(h, 2 ** 32 + 5, Buffer.from([1, 2, 3, 4]))).toBe(14);
    expect(h.subarray(0, 14).toString('hex')).toBe('82ff' + '0000000100000005' + '01020304');
  });

  it('the JS masking fallback (no bufferutil) XORs with the key from byte 0', () => {
    const src = randomBytes(37);
    const key = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
    const out = Buffer.alloc(40);
    maskJs(src, key, out, 3, src.length);
    for (let i = 0; i < src.length; i++) expect(out[3 + i]).toBe(src[i]! ^ key[i % 4]!);
  });
});
