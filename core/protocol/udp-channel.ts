import { createHmac, timingSafeEqual } from 'node:crypto';
import { MAX_DATAGRAM_BYTES, type Datagram, type OutgoingDatagram } from './datagram.js';

/**
 * The UDP channel between a contact point and the relay's one UDP service port (seed 002:
 * "the tunnel is one TCP channel plus UDP channels"). Every packet:
 *
 *   0     1     2          10         14              30
 *   +-----+-----+----------+----------+---------------+------------------+
 *   | ver | kind| session  | seq u32  | HMAC-SHA256/16 | body ...         |
 *   +-----+-----+----------+----------+---------------+------------------+
 *
 * kind: 1 probe, 2 probe answer, 3 keepalive, 4 keepalive answer, 5 datagram.
 * The MAC covers ver..seq and the body, under the session key the relay gave over the
 * (authenticated, encrypted when wss) tunnel; a sliding window drops replays.
 * A datagram body is: u32 port id, u8 address length, address, u16 port, payload.
 */
export const UDP_VERSION = 1;
export const UDP_HEADER_BYTES = 30;
/** Datagrams larger than this go inside the tunnel instead (no IP fragmentation on the way). */
export const UDP_CHANNEL_MAX_PAYLOAD = 1_400;
/** Keepalive interval on the UDP channel: below the 30 s many NATs give an idle UDP mapping. */
export const UDP_KEEPALIVE_MS = 15_000;
/** A channel with no authenticated packet for this long is not used (datagrams go in the tunnel). */
export const UDP_DEAD_AFTER_MS = 2 * UDP_KEEPALIVE_MS + 5_000;
/** Probe retry interval until the first answer. */
export const UDP_PROBE_MS = 1_000;

export const UdpKind = { PROBE: 1, PROBE_ACK: 2, KEEPALIVE: 3, KEEPALIVE_ACK: 4, DATAGRAM: 5 } as const;

export interface UdpPacket {
  readonly kind: number;
  readonly session: Buffer;
  readonly seq: number;
  readonly body: Buffer;
}

function mac(key: Buffer, packet: Buffer, bodyStart: number): Buffer {
  return createHmac('sha256', key).update(packet.subarray(0, 14)).update(packet.subarray(bodyStart)).digest().subarray(0, 16);
}

export function sealUdp(key: Buffer, session: Buffer, kind: number, seq: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const p = Buffer.allocUnsafe(UDP_HEADER_BYTES + body.length);
  p[0] = UDP_VERSION;
  p[1] = kind;
  session.copy(p, 2, 0, 8);
  p.writeUInt32BE(seq >>> 0, 10);
  body.copy(p, UDP_HEADER_BYTES);
  mac(key, p, UDP_HEADER_BYTES).copy(p, 14);
  return p;
}

/** Session id of a packet (to find its key) without trusting anything else yet. */
export function udpSessionOf(p: Buffer): string | undefined {
  if (p.length < UDP_HEADER_BYTES || p[0] !== UDP_VERSION) return undefined;
  return p.toString('base64', 2, 10);
}

export function openUdp(key: Buffer, p: Buffer): UdpPacket | undefined {
  if (p.length < UDP_HEADER_BYTES || p[0] !== UDP_VERSION) return undefined;
  const expected = mac(key, p, UDP_HEADER_BYTES);
  if (!timingSafeEqual(expected, p.subarray(14, 30))) return undefined;
  return { kind: p[1]!, session: p.subarray(2, 10), seq: p.readUInt32BE(10), body: p.subarray(UDP_HEADER_BYTES) };
}

/** 64-packet sliding window (as IPsec's): accepts each sequence number once, tolerates reordering. */
export class ReplayWindow {
  private highest = -1;
  private bits = 0n;

  accept(seq: number): boolean {
    if (seq > this.highest) {
      const shift = BigInt(Math.min(seq - this.highest, 64));
      this.bits = ((this.bits << shift) | 1n) & 0xffffffffffffffffn;
      this.highest = seq;
      return true;
    }
    const age = this.highest - seq;
    if (age >= 64) return false;
    const bit = 1n << BigInt(age);
    if (this.bits & bit) return false;
    this.bits |= bit;
    return true;
  }
}

export function encodeUdpDatagram(d: OutgoingDatagram): Buffer {
  const addrLen = Buffer.byteLength(d.address, 'latin1');
  const b = Buffer.allocUnsafe(4 + 1 + addrLen + 2 + d.payload.length);
  b.writeUInt32BE(d.portId >>> 0, 0);
  b[4] = addrLen;
  b.write(d.address, 5, 'latin1');
  b.writeUInt16BE(d.port, 5 + addrLen);
  b.set(d.payload, 7 + addrLen);
  return b;
}

export function decodeUdpDatagram(b: Buffer): Datagram | undefined {
  if (b.length < 7) return undefined;
  const len = b[4]!;
  if (len === 0 || len > 64 || b.length < 7 + len) return undefined;
  const address = b.toString('latin1', 5, 5 + len);
  if (!/^[0-9a-fA-F:.]+$/.test(address)) return undefined;
  const payload = b.subarray(7 + len);
  if (payload.length > MAX_DATAGRAM_BYTES) return undefined;
  return { portId: b.readUInt32BE(0), address, port: b.readUInt16BE(5 + len), payload };
}
