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

/** Message ids and addresses are printable ASCII; checked on decode so logs and maps stay clean. */
const PRINTABLE = /^[\x21-\x7e]+$/;

export function decodeFrame(data: Buffer): Frame {
  if (data.length < HEADER_BYTES) throw new ProtocolError(Status.MALFORMED_FRAME, `frame of ${data.length} bytes is shorter than its header`);
  const type = data[0]!;
  if (!isKnownFrameType(type)) throw new ProtocolError(Status.UNKNOWN_FRAME_TYPE, `frame type ${frameTypeName(type)}`);
  return { type, flags: data[1]!, channel: data.readUInt32BE(2), body: data.subarray(HEADER_BYTES), raw: data };
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
  const len = Buffer.byteLength(value, 'latin1');
  if (len === 0 || len > 255 || !PRINTABLE.test(value)) throw new RangeError(`${what} must be 1-255 printable ASCII characters`);
  return len;
}

/** A MSG, or a frame laid out like one (`type`: KEYS_REQUEST, KEYS_ANSWER). */
export function encodeMsg(msg: { id: string; to: string; from: string; payload: Uint8Array }, flags = 0, type: number = FrameType.MSG): Buffer {
  const idLen = shortString(msg.id, 'message id');
  if (idLen > MAX_MESSAGE_ID_LENGTH) throw new RangeError(`message id longer than ${MAX_MESSAGE_ID_LENGTH}`);
  const toLen = shortString(msg.to, 'to address');
  const fromLen = shortString(msg.from, 'from address');
  const buf = Buffer.allocUnsafe(HEADER_BYTES + 3 + idLen + toLen + fromLen + msg.payload.length);
  header(buf, type, flags, 0);
  let o = HEADER_BYTES;
  buf[o++] = idLen;
  o += buf.write(msg.id, o, 'latin1');
  buf[o++] = toLen;
  o += buf.write(msg.to, o, 'latin1');
  buf[o++] = fromLen;
  o += buf.write(msg.from, o, 'latin1');
  buf.set(msg.payload, o);
  return buf;
}

/** Reads a u8-length-prefixed ASCII string at `o`; returns it and the next offset. */
function readShort(body: Buffer, o: number, what: string): [string, number] {
  if (o >= body.length) throw new ProtocolError(Status.MALFORMED_FRAME, `${what} missing`);
  const len = body[o]!;
  const end = o + 1 + len;
  if (len === 0 || end > body.length) throw new ProtocolError(Status.MALFORMED_FRAME, `${what} length ${len} runs past the frame`);
  const value = body.toString('latin1', o + 1, end);
  if (!PRINTABLE.test(value)) throw new ProtocolError(Status.MALFORMED_FRAME, `${what} is not printable ASCII`);
  return [value, end];
}

export function decodeMsg(frame: Frame): MsgFrame {
  const body = frame.body;
  const [id, o1] = readShort(body, 0, 'message id');
  if (id.length > MAX_MESSAGE_ID_LENGTH) throw new ProtocolError(Status.MALFORMED_FRAME, `message id longer than ${MAX_MESSAGE_ID_LENGTH}`);
  const [to, o2] = readShort(body, o1, 'to address');
  const [from, o3] = readShort(body, o2, 'from address');
  return { id, to, from, payload: body.subarray(o3), flags: frame.flags };
}

/** Bytes of a BATCH entry's length prefix (u32 BE). */
const BATCH_LENGTH_BYTES = 4;

/**
 * A BATCH frame (PROTOCOL.md 3.3) of `frames`: after its header, each frame (header and body, as
 * it would go alone) prefixed by its length, u32 BE. `bytes` is the sum of their lengths.
 */
export function encodeBatch(frames: readonly Buffer[], bytes: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_BYTES + frames.length * BATCH_LENGTH_BYTES + bytes);
  header(buf, FrameType.BATCH, 0, 0);
  let o = HEADER_BYTES;
  for (const f of frames) {
    buf.writeUInt32BE(f.length, o);
    buf.set(f, o + BATCH_LENGTH_BYTES);
    o += BATCH_LENGTH_BYTES + f.length;
  }
  return buf;
}

/**
 * The frames of a BATCH, as views into it (not copied). The whole batch is checked before any
 * frame is handed on: each entry must hold at least a frame header and end inside the batch, and
 * none may be a BATCH itself (MALFORMED_FRAME / PROTOCOL_VIOLATION).
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
    if (body[start] === FrameType.BATCH) throw new ProtocolError(Status.PROTOCOL_VIOLATION, 'a BATCH inside a BATCH');
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
  const reason = Buffer.from(ack.reason.slice(0, MAX_REASON_LENGTH), 'utf8');
  const buf = Buffer.allocUnsafe(HEADER_BYTES + 2 + 3 + idLen + toLen + fromLen + reason.length);
  header(buf, FrameType.ACK, 0, 0);
  let o = buf.writeUInt16BE(ack.status, HEADER_BYTES);
  buf[o++] = idLen;
  o += buf.write(ack.id, o, 'latin1');
  buf[o++] = toLen;
  o += buf.write(ack.to, o, 'latin1');
  buf[o++] = fromLen;
  o += buf.write(ack.from, o, 'latin1');
  reason.copy(buf, o);
  return buf;
}

export function decodeAck(frame: Frame): AckFrame {
  const body = frame.body;
  if (body.length < 2) throw new ProtocolError(Status.MALFORMED_FRAME, 'ACK shorter than its status');
  const status = body.readUInt16BE(0);
  const [id, o1] = readShort(body, 2, 'message id');
  const [to, o2] = readShort(body, o1, 'to address');
  const [from, o3] = readShort(body, o2, 'from address');
  if (body.length - o3 > MAX_REASON_LENGTH * 4) throw new ProtocolError(Status.MALFORMED_FRAME, 'ACK reason too long');
  return { id, to, from, status, reason: body.toString('utf8', o3) };
}
