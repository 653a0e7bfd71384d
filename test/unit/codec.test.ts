import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  decodeAck,
  decodeControl,
  decodeFrame,
  decodeMsg,
  encodeAck,
  encodeControl,
  encodeMsg,
  HEADER_BYTES,
  msgHeaderLength,
  writeMsgHeader,
  type Frame,
} from '../../core/protocol/codec.js';
import { ProtocolError } from '../../core/protocol/errors.js';
import { FrameType, isControlType } from '../../core/protocol/frames.js';
import { MAX_CONTROL_BYTES } from '../../core/protocol/limits.js';
import { isKnownStatus, Status, statusName } from '../../core/protocol/status.js';

interface ValidVector {
  name: string;
  decode: 'control' | 'msg' | 'ack';
  hex: string;
  canonical?: false;
  type: number;
  typeName: string;
  flags: number;
  channel: number;
  body?: unknown;
  msg?: { id: string; to: string; from: string; payloadHex: string };
  ack?: { id: string; to: string; from: string; status: number; reason: string };
}
interface InvalidVector {
  name: string;
  decode: 'frame' | 'control' | 'msg' | 'ack';
  hex: string;
  code: number;
  codeName: string;
}
const vectors = JSON.parse(readFileSync(new URL('../vectors/frames.json', import.meta.url), 'utf8')) as { valid: ValidVector[]; invalid: InvalidVector[] };

function runDecoder(decode: InvalidVector['decode'], bytes: Buffer): unknown {
  const frame = decodeFrame(bytes);
  if (decode === 'control') return decodeControl(frame);
  if (decode === 'msg') return decodeMsg(frame);
  if (decode === 'ack') return decodeAck(frame);
  return frame;
}

function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err: unknown) {
    return err;
  }
  return undefined;
}

describe('frame vectors (test/vectors/frames.json)', () => {
  it('covers every frame the protocol defines and every failure the brief lists', () => {
    const names = new Set(vectors.valid.map((v) => v.typeName));
    for (const t of ['HELLO', 'WELCOME', 'CHALLENGE', 'PROOF', 'ERROR', 'GOAWAY', 'PEERS', 'REGISTER', 'PEER_STATE', 'MSG', 'ACK', 'REACHABLE']) expect(names).toContain(t);
    const codes = new Set(vectors.invalid.map((v) => v.code));
    for (const c of [Status.MALFORMED_FRAME, Status.UNKNOWN_FRAME_TYPE, Status.FRAME_TOO_LARGE, Status.INVALID_BODY, Status.PROTOCOL_VIOLATION]) expect(codes).toContain(c);
    expect(vectors.valid.length).toBeGreaterThanOrEqual(20);
    expect(vectors.invalid.length).toBeGreaterThanOrEqual(25);
  });

  describe.each(vectors.valid.map((v) => [v.name, v] as const))('valid: %s', (_name, v) => {
    const bytes = Buffer.from(v.hex, 'hex');

    it('decodes the header', () => {
      const frame = decodeFrame(bytes);
      expect(frame.type).toBe(v.type);
      expect(frame.flags).toBe(v.flags);
      expect(frame.channel).toBe(v.channel);
      expect(frame.body.length).toBe(bytes.length - HEADER_BYTES);
      expect(frame.raw).toBe(bytes);
    });

    it('decodes the body to the expected values', () => {
      const frame = decodeFrame(bytes);
      if (v.decode === 'control') {
        expect(decodeControl(frame)).toEqual(v.body);
      } else if (v.decode === 'msg') {
        const m = decodeMsg(frame);
        expect({ id: m.id, to: m.to, from: m.from, payloadHex: m.payload.toString('hex') }).toEqual(v.msg);
        expect(m.flags).toBe(v.flags);
      } else {
        expect(decodeAck(frame)).toEqual(v.ack);
      }
    });

    // A non-canonical vector (reordered keys, spaces) has other bytes than our encoder makes:
    // for it, encoding what it decodes to must decode back to the same values.
    it(v.canonical === false ? 'encoding the decoded values round-trips to the same values' : 'encoding the expected values reproduces the exact bytes', () => {
      let encoded: Buffer;
      if (v.decode === 'control') {
        if (!isControlType(v.type)) throw new Error(`${v.typeName} is not a control type`);
        encoded = encodeControl(v.type, v.body as never);
      } else if (v.decode === 'msg') {
        const m = v.msg!;
        encoded = encodeMsg({ id: m.id, to: m.to, from: m.from, payload: Buffer.from(m.payloadHex, 'hex') }, v.flags);
      } else {
        encoded = encodeAck(v.ack!);
      }
      if (v.canonical === false) {
        expect(encoded.toString('hex')).not.toBe(v.hex);
        expect(decodeFrame(encoded).type).toBe(v.type);
        if (v.decode === 'control') expect(decodeControl(decodeFrame(encoded))).toEqual(decodeControl(decodeFrame(bytes)));
        return;
      }
      expect(encoded.toString('hex')).toBe(v.hex);
    });
  });

  describe.each(vectors.invalid.map((v) => [v.name, v] as const))('invalid: %s', (_name, v) => {
    it(`fails with ${v.codeName} (${v.code})`, () => {
      expect(statusName(v.code)).toBe(v.codeName);
      const err = thrownBy(() => runDecoder(v.decode, Buffer.from(v.hex, 'hex')));
      expect(err).toBeInstanceOf(ProtocolError);
      expect((err as ProtocolError).code).toBe(v.code);
    });
  });
});

describe('codec details', () => {
  it('does not copy payloads: MSG payload and control body are views of the received buffer', () => {
    const raw = encodeMsg({ id: 'm', to: 'a@b', from: 'c@d', payload: Buffer.from('xyz') });
    const m = decodeMsg(decodeFrame(raw));
    expect(m.payload.buffer).toBe(raw.buffer);
    expect(m.payload.byteOffset).toBe(raw.byteOffset + raw.length - 3);
  });

  it('writeMsgHeader writes all but the payload, which goes where it says (a seal written in place), the rest as encodeMsg writes it', () => {
    const msg = { id: 'm-1', to: 'printer@acme-hq', from: 'tech@relay' };
    const payload = Buffer.from('sealed in place');
    const frame = Buffer.alloc(msgHeaderLength(msg) + payload.length);
    payload.copy(frame, writeMsgHeader(frame, 0, msg, 0x04));
    expect(frame.equals(encodeMsg({ ...msg, payload }, 0x04))).toBe(true);
    expect(decodeMsg(decodeFrame(frame)).payload.toString()).toBe('sealed in place');
    expect(() => writeMsgHeader(Buffer.alloc(64), 0, { ...msg, to: 'bad address' })).toThrow(RangeError);
  });

  it('writes the channel big-endian in bytes 2-5 and reads it back unsigned', () => {
    const buf = encodeControl(FrameType.GOAWAY, { reason: '' }, 0xfedcba98);
    expect(buf.subarray(0, HEADER_BYTES).toString('hex')).toBe('0600fedcba98');
    expect(decodeFrame(buf).channel).toBe(0xfedcba98);
  });

  it('refuses to encode what a decoder would refuse', () => {
    const base = { id: 'm1', to: 'a@b', from: 'c@d', payload: Buffer.alloc(0) };
    expect(() => encodeMsg({ ...base, id: '' })).toThrow(RangeError);
    expect(() => encodeMsg({ ...base, id: 'x'.repeat(65) })).toThrow(RangeError);
    expect(() => encodeMsg({ ...base, to: 'a b@c' })).toThrow(RangeError);
    expect(() => encodeMsg({ ...base, from: 'ä@b' })).toThrow(RangeError);
    expect(() => encodeAck({ id: 'm1', to: '', from: 'c@d', status: 0, reason: '' })).toThrow(RangeError);
    expect(() => encodeControl(FrameType.GOAWAY, { reason: 'x'.repeat(MAX_CONTROL_BYTES) })).toThrow(RangeError);
    expect(encodeMsg({ ...base, id: 'x'.repeat(64) }).length).toBe(HEADER_BYTES + 1 + 64 + 1 + 3 + 1 + 3);
  });

  it('clips an ACK reason to 256 characters', () => {
    const buf = encodeAck({ id: 'm1', to: 'a@b', from: 'c@d', status: Status.PEER_OFFLINE, reason: 'r'.repeat(1000) });
    expect(decodeAck(decodeFrame(buf)).reason).toBe('r'.repeat(256));
  });

  it('checks the expected control type', () => {
    const frame = decodeFrame(encodeControl(FrameType.REGISTER, {}));
    expect(decodeControl(frame, FrameType.REGISTER)).toEqual({});
    const err = thrownBy(() => decodeControl(frame, FrameType.HELLO));
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe(Status.PROTOCOL_VIOLATION);
  });
});

/** Deterministic PRNG (mulberry32) so a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('robustness against arbitrary bytes', () => {
  const ITERATIONS = 10_000;
  const seeds = [...vectors.valid, ...vectors.invalid].map((v) => Buffer.from(v.hex, 'hex')).filter((b) => b.length < 4096);
  const knownTypes = Object.values(FrameType) as number[];
  const controlTypes = knownTypes.filter(isControlType);

  function sample(rand: () => number, i: number): Buffer {
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    switch (i % 4) {
      case 0: {
        // random bytes, random length, sometimes with a known type byte
        const buf = Buffer.alloc(Math.floor(rand() * 200));
        for (let j = 0; j < buf.length; j++) buf[j] = Math.floor(rand() * 256);
        if (buf.length > 0 && rand() < 0.8) buf[0] = pick(knownTypes);
        return buf;
      }
      case 1: {
        // a truncated vector
        const src = pick(seeds);
        return Buffer.from(src.subarray(0, Math.floor(rand() * (src.length + 1))));
      }
      case 2: {
        // a vector with a few bits flipped
        const buf = Buffer.from(pick(seeds));
        const flips = 1 + Math.floor(rand() * 4);
        for (let j = 0; j < flips && buf.length > 0; j++) buf[Math.floor(rand() * buf.length)]! ^= 1 << Math.floor(rand() * 8);
        return buf;
      }
      default: {
        // a control type with a spliced JSON body
        const src = pick(seeds);
        const buf = Buffer.from(src);
        if (buf.length > 0) buf[0] = pick(controlTypes);
        return buf;
      }
    }
  }

  it(`decodeFrame/decodeMsg/decodeAck/decodeControl throw nothing but ProtocolError over ${ITERATIONS} inputs`, () => {
    const rand = prng(0xc0ffee);
    const outcomes = { decoded: 0, refused: 0 };
    const decoders: ((f: Frame) => unknown)[] = [decodeMsg, decodeAck, (f) => decodeControl(f)];
    const started = Date.now();
    for (let i = 0; i < ITERATIONS; i++) {
      const input = sample(rand, i);
      const attempts: (() => unknown)[] = [() => decodeFrame(input)];
      // The body decoders see every input, even one whose header decodeFrame refuses.
      const asFrame: Frame = { type: input[0] ?? 0, flags: input[1] ?? 0, channel: 0, body: input.subarray(Math.min(HEADER_BYTES, input.length)), raw: input };
      for (const d of decoders) attempts.push(() => d(asFrame));
      for (const attempt of attempts) {
        const err = thrownBy(attempt);
        if (err === undefined) {
          outcomes.decoded++;
          continue;
        }
        if (!(err instanceof ProtocolError)) throw new Error(`input ${input.toString('hex')} threw ${err instanceof Error ? err.stack : typeof err}`);
        expect(isKnownStatus(err.code)).toBe(true);
        outcomes.refused++;
      }
    }
    // Both paths were exercised: the corpus is not all garbage and not all valid.
    expect(outcomes.decoded).toBeGreaterThan(500);
    expect(outcomes.refused).toBeGreaterThan(10_000);
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
