import { HEADER_BYTES, type Frame } from './codec.js';
import { ProtocolError } from './errors.js';
import { FrameType } from './frames.js';
import { Status } from './status.js';

/** Largest UDP payload carried (IPv4 maximum; anything larger cannot have arrived as one datagram). */
export const MAX_DATAGRAM_BYTES = 65_507;

/** A datagram to send: any byte view will do. */
export interface OutgoingDatagram {
  readonly portId: number;
  readonly address: string;
  readonly port: number;
  readonly payload: Uint8Array;
}

export interface Datagram {
  readonly portId: number;
  /** LAN side address: the source of a datagram going to the relay, the destination of one coming from it */
  readonly address: string;
  readonly port: number;
  readonly payload: Buffer;
}

/**
 * DATAGRAM frame: channel = port id; body = u8 address length, address (ASCII), u16 port,
 * payload. The same layout travels inside the tunnel and over the UDP channel.
 */
export function encodeDatagram(d: OutgoingDatagram): Buffer {
  const addrLen = Buffer.byteLength(d.address, 'latin1');
  if (addrLen === 0 || addrLen > 64) throw new RangeError('datagram address must be 1-64 characters');
  const buf = Buffer.allocUnsafe(HEADER_BYTES + 1 + addrLen + 2 + d.payload.length);
  buf[0] = FrameType.DATAGRAM;
  buf[1] = 0;
  buf.writeUInt32BE(d.portId >>> 0, 2);
  let o = HEADER_BYTES;
  buf[o++] = addrLen;
  o += buf.write(d.address, o, 'latin1');
  o = buf.writeUInt16BE(d.port, o);
  buf.set(d.payload, o);
  return buf;
}

export function decodeDatagram(frame: Frame): Datagram {
  const b = frame.body;
  const len = b[0];
  if (len === undefined || len === 0 || len > 64 || b.length < 1 + len + 2) throw new ProtocolError(Status.MALFORMED_FRAME, 'DATAGRAM address runs past the frame');
  const address = b.toString('latin1', 1, 1 + len);
  if (!/^[0-9a-fA-F:.]+$/.test(address)) throw new ProtocolError(Status.MALFORMED_FRAME, 'DATAGRAM address is not an IP address');
  const port = b.readUInt16BE(1 + len);
  const payload = b.subarray(1 + len + 2);
  if (payload.length > MAX_DATAGRAM_BYTES) throw new ProtocolError(Status.FRAME_TOO_LARGE, 'DATAGRAM payload larger than a UDP datagram');
  return { portId: frame.channel, address, port, payload };
}
