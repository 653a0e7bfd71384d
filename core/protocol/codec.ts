import { ProtocolError } from './errors.js';
import {
  CONTROL_SCHEMAS,
  FrameType,
  frameTypeName,
  isControlType,
  isKnownFrameType,
  type ControlBodies,
  type ControlType,
} from './frames.js';
import { MAX_CONTROL_BYTES, MAX_MESSAGE_ID_LENGTH, MAX_REASON_LENGTH } from './limits.js';
import { SchemaError } from './schema.js';
import { Status } from './status.js';

/**
 * Every ws binary message is one frame:
 *
 *   0      1      2              6
 *   +------+------+--------------+--------------------+
 *   | type | flags| channel u32  | body ...           |
 *   +------+------+--------------+--------------------+
 *
 * Control bodies are UTF-8 JSON; MSG and ACK bodies are binary (see encodeMsg / encodeAck).
 * Decoders check every length against the bytes present before slicing, and never copy payloads.
 */
export const HEADER_BYTES = 6;

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly channel: number;
  readonly body: Buffer;
  /** the whole frame as received, for hops that forward it unchanged */
  readonly raw: Buffer;
}

export interface MsgFrame {
  readonly id: string;
  readonly to: string;
  readonly from: string;
  readonly payload: Buffer;
  readonly flags: number;
}

export interface AckFrame {
  readonly id: string;
  /** the address the acknowledgement travels to: the original sender */
  readonly to: string;
  /** the address that answers: the original recipient (or the hop that refused) */
  readonly from: string;
  readonly status: number;
  readonly reason: string;
}

/*
 * Message ids and addresses are printable ASCII (0x21-0x7e), checked on encode (writeShort) and
 * on decode (readShort) so logs and maps stay clean.
 */

/**
 * A decoded frame. Its `body` view is made when first asked for: the hot path (MSG, ACK) reads
 * them from `raw` and never needs it, and each view is an object the GC must collect.
 */
class DecodedFrame implements Frame {
  private bodyView: Buffer | undefined;
  constructor(
    readonly type: number,
    readonly flags: number,
    readonly channel: number,
    readonly raw: Buffer,
  ) {}

  get body(): Buffer {
    return (this.bodyView ??= this.raw.subarray(HEADER_BYTES));
  }
}

export function decodeFrame(data: Buffer): Frame {
  if (data.length < HEADER_BYTES) throw new ProtocolError(Status.MALFORMED_FRAME, `frame of ${data.length} bytes is shorter than its header`);
  const type = data[0]!;
  if (!isKnownFrameType(type)) throw new ProtocolError(Status.UNKNOWN_FRAME_TYPE, `frame type ${frameTypeName(type)}`);
  return new DecodedFrame(type, data[1]!, data.readUInt32BE(2), data);
}

function header(buf: Buffer, type: number, flags: number, channel: number): void {
  buf[0] = type;
  buf[1] = flags;
  buf.writeUInt32BE(channel >>> 0, 2);
}

export function encodeControl<T extends ControlType>(type: T, body: ControlBodies[T], channel = 0): Buffer {
  const json = Buffer.from(JSON.stringify(body), 'utf8');
  if (json.length > MAX_CONTROL_BYTES) throw new RangeError(`${frameTypeName(type)} body of ${json.length} bytes exceeds ${MAX_CONTROL_BYTES}`);
  const buf = Buffer.allocUnsafe(HEADER_BYTES + json.length);
  header(buf, type, 0, channel);
  json.copy(buf, HEADER_BYTES);
  return buf;
}

/** Parse and validate a control frame's body against the frame table's schema for its type. */
export function decodeControl<T extends ControlType>(frame: Frame, expected?: T): ControlBodies[T] {
  const type = frame.type;
  if (!isControlType(type)) throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(type)} is not a control frame`);
  if (expected !== undefined && type !== expected) {
    throw new ProtocolError(Status.PROTOCOL_VIOLATION, `expected ${frameTypeName(expected)}, got ${frameTypeName(type)}`);
  }
  if (frame.body.length > MAX_CONTROL_BYTES) throw new ProtocolError(Status.FRAME_TOO_LARGE, `control body of ${frame.body.length} bytes`);
  let json: unknown;
  try {
    json = JSON.parse(frame.body.toString('utf8'));
  } catch {
    throw new ProtocolError(Status.MALFORMED_FRAME, `${frameTypeName(type)} body is not JSON`);
  }
  try {
    return CONTROL_SCHEMAS[type].parse(json) as ControlBodies[T];
  } catch (err: unknown) {
    if (err instanceof SchemaError) throw new ProtocolError(Status.INVALID_BODY, `${frameTypeName(type)}: ${err.message}`);
    throw err;
  }
}

function shortString(value: string, what: string): number {
  const len = value.length;
  if (len === 0 || len > 255) throw new RangeError(`${what} must be 1-255 printable ASCII characters`);
  return len;
}

/**
 * Writes `value` (its length checked by shortString) at `buf[o]` as its length byte and its
 * characters, checking each is printable ASCII as it goes; returns the next offset. A JS loop:
 * for a few dozen characters cheaper than a regex test and a native write.
 */
function writeShort(buf: Buffer, o: number, value: string, what: string): number {
  const len = value.length;
  buf[o++] = len;
  for (let i = 0; i < len; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) throw new RangeError(`${what} must be 1-255 printable ASCII characters`);
    buf[o + i] = c;
  }
  return o + len;
}

/** A MSG, or a frame laid out like one (`type`: KEYS_REQUEST, KEYS_ANSWER). */
export function encodeMsg(msg: { id: string; to: string; from: string; payload: Uint8Array }, flags = 0, type: number = FrameType.MSG): Buffer {
  const buf = Buffer.allocUnsafe(msgHeaderLength(msg) + msg.payload.length);
  buf.set(msg.payload, writeMsgHeader(buf, 0, msg, flags, type));
  return buf;
}

/** The bytes of a MSG frame before its payload: frame header, id, to and from (each checked). */
export function msgHeaderLength(msg: { id: string; to: string; from: string }): number {
  const idLen = shortString(msg.id, 'message id');
  if (idLen > MAX_MESSAGE_ID_LENGTH) throw new RangeError(`message id longer than ${MAX_MESSAGE_ID_LENGTH}`);
  return HEADER_BYTES + 3 + idLen + shortString(msg.to, 'to address') + shortString(msg.from, 'from address');
}

/** Writes a MSG frame's header, id, to and from at `out[at..]` (msgHeaderLength() bytes); returns where its payload goes. */
export function writeMsgHeader(out: Buffer, at: number, msg: { id: string; to: string; from: string }, flags = 0, type: number = FrameType.MSG): number {
  out[at] = type;
  out[at + 1] = flags;
  out.writeUInt32BE(0, at + 2);
  const o = writeShort(out, at + HEADER_BYTES, msg.id, 'message id');
  return writeShort(out, writeShort(out, o, msg.to, 'to address'), msg.from, 'from address');
}

/**
 * A frame written straight into the buffer it goes out from (a link's reused write buffer, or
 * its place in a BATCH) instead of being built in one of its own first: `length` bytes, header
 * included, that `put` writes at `out[at..]`, returning where it ended. It must not throw (check
 * what it writes before making one); a fill that throws or writes another length than it said
 * fails the write (putFill).
 */
export interface FrameFill {
  /** the frame type it writes (a MSG owes an ACK: see Link) */
  readonly type: number;
  readonly length: number;
  readonly put: (out: Buffer, at: number) => number;
}

/** Runs `f.put` at `out[at..]`; throws a RangeError when it wrote another length than it said. */
export function putFill(f: FrameFill, out: Buffer, at: number): void {
  const end = f.put(out, at);
  if (end !== at + f.length) throw new RangeError(`a frame said ${f.length} bytes and wrote ${end - at}`);
}

/** Where the last readShort() ended (no array per call). */
let shortEnd = 0;

/**
 * Reads a u8-length-prefixed ASCII string at `buf[o]` (the frame, header included); returns it
 * and leaves where it ends in shortEnd.
 */
function readShort(buf: Buffer, o: number, what: string): string {
  if (o >= buf.length) throw new ProtocolError(Status.MALFORMED_FRAME, `${what} missing`);
  const len = buf[o]!;
  const end = o + 1 + len;
  if (len === 0 || end > buf.length) throw new ProtocolError(Status.MALFORMED_FRAME, `${what} length ${len} runs past the frame`);
  for (let i = o + 1; i < end; i++) {
    const c = buf[i]!;
    if (c < 0x21 || c > 0x7e) throw new ProtocolError(Status.MALFORMED_FRAME, `${what} is not printable ASCII`);
  }
  shortEnd = end;
  return buf.toString('latin1', o + 1, end);
}

export function decodeMsg(frame: Frame): MsgFrame {
  // Read from the whole frame (its body starts at HEADER_BYTES), so no body view is made.
  const raw = frame.raw;
  const id = readShort(raw, HEADER_BYTES, 'message id');
  if (id.length > MAX_MESSAGE_ID_LENGTH) throw new ProtocolError(Status.MALFORMED_FRAME, `message id longer than ${MAX_MESSAGE_ID_LENGTH}`);
  const to = readShort(raw, shortEnd, 'to address');
  const from = readShort(raw, shortEnd, 'from address');
  return { id, to, from, payload: raw.subarray(shortEnd), flags: frame.flags };
}

/** Bytes of a BATCH entry's length prefix (u32 BE). */
const BATCH_LENGTH_BYTES = 4;

/** Bytes of a BATCH of `count` frames of `bytes` in all. */
export function batchLength(count: number, bytes: number): number {
  return HEADER_BYTES + count * BATCH_LENGTH_BYTES + bytes;
}

/**
 * Writes the BATCH frame (PROTOCOL.md 3.3) of `frames` at `out[at..]` (batchLength() bytes):
 * after its header, each frame (header and body, as it would go alone) prefixed by its length,
 * u32 BE.
 */
export function writeBatch(out: Buffer, at: number, frames: readonly (Buffer | FrameFill)[]): void {
  header(out.subarray(at), FrameType.BATCH, 0, 0);
  let o = at + HEADER_BYTES;
  for (const f of frames) {
    out.writeUInt32BE(f.length, o);
    if (f instanceof Uint8Array) out.set(f, o + BATCH_LENGTH_BYTES);
    else putFill(f, out, o + BATCH_LENGTH_BYTES);
    o += BATCH_LENGTH_BYTES + f.length;
  }
}

/** A BATCH frame of `frames`, `bytes` the sum of their lengths (writeBatch into a buffer of its own). */
export function encodeBatch(frames: readonly Buffer[], bytes: number): Buffer {
  const buf = Buffer.allocUnsafe(batchLength(frames.length, bytes));
  writeBatch(buf, 0, frames);
  return buf;
}

/**
 * The frames of a BATCH, as views into it (not copied). The whole batch is checked before any
 * frame is handed on: each entry must hold at least a frame header and end inside the batch, be
 * of a known frame type, and not be a BATCH itself (MALFORMED_FRAME / UNKNOWN_FRAME_TYPE /
 * PROTOCOL_VIOLATION).
 */
export function splitBatch(frame: Frame): Buffer[] {
  const body = frame.body;
  const out: Buffer[] = [];
  let o = 0;
  while (o < body.length) {
    if (o + BATCH_LENGTH_BYTES > body.length) throw new ProtocolError(Status.MALFORMED_FRAME, `BATCH entry ${out.length} has no complete length`);
    const len = body.readUInt32BE(o);
    const start = o + BATCH_LENGTH_BYTES;
    if (len < HEADER_BYTES || start + len > body.length) throw new ProtocolError(Status.MALFORMED_FRAME, `BATCH entry ${out.length} of ${len} bytes does not fit`);
    const type = body[start]!;
    if (type === FrameType.BATCH) throw new ProtocolError(Status.PROTOCOL_VIOLATION, 'a BATCH inside a BATCH');
    if (!isKnownFrameType(type)) throw new ProtocolError(Status.UNKNOWN_FRAME_TYPE, `BATCH entry ${out.length} has frame type ${frameTypeName(type)}`);
    out.push(body.subarray(start, start + len));
    o = start + len;
  }
  if (out.length === 0) throw new ProtocolError(Status.MALFORMED_FRAME, 'an empty BATCH');
  return out;
}

export function encodeAck(ack: AckFrame): Buffer {
  const idLen = shortString(ack.id, 'message id');
  const toLen = shortString(ack.to, 'to address');
  const fromLen = shortString(ack.from, 'from address');
  const reason = ack.reason === '' ? undefined : Buffer.from(ack.reason.slice(0, MAX_REASON_LENGTH), 'utf8');
  const buf = Buffer.allocUnsafe(HEADER_BYTES + 2 + 3 + idLen + toLen + fromLen + (reason?.length ?? 0));
  header(buf, FrameType.ACK, 0, 0);
  let o = writeShort(buf, buf.writeUInt16BE(ack.status, HEADER_BYTES), ack.id, 'message id');
  o = writeShort(buf, o, ack.to, 'to address');
  o = writeShort(buf, o, ack.from, 'from address');
  reason?.copy(buf, o);
  return buf;
}

export function decodeAck(frame: Frame): AckFrame {
  const raw = frame.raw;
  if (raw.length < HEADER_BYTES + 2) throw new ProtocolError(Status.MALFORMED_FRAME, 'ACK shorter than its status');
  const status = raw.readUInt16BE(HEADER_BYTES);
  const id = readShort(raw, HEADER_BYTES + 2, 'message id');
  const to = readShort(raw, shortEnd, 'to address');
  const from = readShort(raw, shortEnd, 'from address');
  const o = shortEnd;
  if (raw.length - o > MAX_REASON_LENGTH * 4) throw new ProtocolError(Status.MALFORMED_FRAME, 'ACK reason too long');
  return { id, to, from, status, reason: o === raw.length ? '' : raw.toString('utf8', o) };
}
