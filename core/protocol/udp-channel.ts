import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import { MAX_DATAGRAM_BYTES, type Datagram, type OutgoingDatagram } from './datagram.js';

/**
 * The UDP channel between a contact point and the relay's one UDP service port (seed 002:
 * "the tunnel is one TCP channel plus UDP channels"). Every packet (PROTOCOL.md 16.9):
 *
 *   0     1     2          10              16                       end-16     end
 *   +-----+-----+----------+---------------+------------------------+----------+
 *   | ver | kind| session  | seq u48       | AES-256-GCM ciphertext | tag (16) |
 *   +-----+-----+----------+---------------+------------------------+----------+
 *
 * kind: 1 probe, 2 probe answer, 3 keepalive, 4 keepalive answer, 5 datagram.
 * The 16-byte header is the AEAD's additional data (bound, in clear); the body is encrypted.
 * Keys: one per direction, HKDF-SHA256 from the 32 bytes of key material the relay gave over
 * the (authenticated, encrypted when wss) tunnel, salted with the session id. Nonce: the
 * direction (u32) then the sequence number (u64); a sender never reuses a sequence number
 * and stops using the channel before the 48-bit counter runs out. A sliding window drops replays.
 * A datagram body is: u32 port id, u8 address length, address, u16 port, payload.
 */
export const UDP_VERSION = 2;
export const UDP_HEADER_BYTES = 16;
export const UDP_TAG_BYTES = 16;
/** Bytes a packet adds to its body: the header and the AEAD tag. */
export const UDP_OVERHEAD_BYTES = UDP_HEADER_BYTES + UDP_TAG_BYTES;
/** The last sequence number a sender may use (48 bits on the wire); past it the channel is not used. */
export const UDP_MAX_SEQ = 2 ** 48 - 1;
/** Datagrams larger than this go inside the tunnel instead (no IP fragmentation on the way). */
export const UDP_CHANNEL_MAX_PAYLOAD = 1_400;
/** Keepalive interval on the UDP channel: below the 30 s many NATs give an idle UDP mapping. */
export const UDP_KEEPALIVE_MS = 15_000;
/** A channel with no authenticated packet for this long is not used (datagrams go in the tunnel). */
export const UDP_DEAD_AFTER_MS = 2 * UDP_KEEPALIVE_MS + 5_000;
/** Probe retry interval until the first answer. */
export const UDP_PROBE_MS = 1_000;

const CIPHER = 'aes-256-gcm';

export const UdpKind = { PROBE: 1, PROBE_ACK: 2, KEEPALIVE: 3, KEEPALIVE_ACK: 4, DATAGRAM: 5 } as const;

/** Who sealed a packet: each direction has its own key and its own nonce prefix. */
export const UdpDirection = { TO_RELAY: 1, TO_CONTACT_POINT: 2 } as const;
export type UdpDirection = (typeof UdpDirection)[keyof typeof UdpDirection];

export interface UdpPacket {
  readonly kind: number;
  readonly session: Buffer;
  readonly seq: number;
  readonly body: Buffer;
}

/** One direction's sealing state: its key and its direction (the nonce prefix). */
export interface UdpKey {
  readonly key: Buffer;
  readonly direction: UdpDirection;
}

/** The HKDF `info` for each direction's key. */
const INFO: Record<UdpDirection, string> = {
  [UdpDirection.TO_RELAY]: 'contact-point udp v2 to-relay',
  [UdpDirection.TO_CONTACT_POINT]: 'contact-point udp v2 to-contact-point',
};

/** The key of one direction: HKDF-SHA256(ikm = the session's key material, salt = session id, info). */
export function udpKey(material: Buffer, session: Buffer, direction: UdpDirection): UdpKey {
  return { key: Buffer.from(hkdfSync('sha256', material, session, INFO[direction], 32)), direction };
}

/** Both keys of a session as one end uses them: `send` seals what it sends, `receive` opens what arrives. */
export function udpKeys(material: Buffer, session: Buffer, end: 'relay' | 'contact-point'): { send: UdpKey; receive: UdpKey } {
  const toRelay = udpKey(material, session, UdpDirection.TO_RELAY);
  const toCp = udpKey(material, session, UdpDirection.TO_CONTACT_POINT);
  return end === 'relay' ? { send: toCp, receive: toRelay } : { send: toRelay, receive: toCp };
}

function nonce(direction: UdpDirection, seq: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeUInt32BE(direction, 0);
  n.writeUIntBE(seq, 6, 6);
  return n;
}

export function sealUdp(k: UdpKey, session: Buffer, kind: number, seq: number, body: Buffer = Buffer.alloc(0)): Buffer {
  if (!Number.isInteger(seq) || seq < 1 || seq > UDP_MAX_SEQ) throw new RangeError(`udp sequence number ${seq} out of range 1..${UDP_MAX_SEQ}`);
  const p = Buffer.allocUnsafe(UDP_OVERHEAD_BYTES + body.length);
  p[0] = UDP_VERSION;
  p[1] = kind;
  session.copy(p, 2, 0, 8);
  p.writeUIntBE(seq, 10, 6);
  const c = createCipheriv(CIPHER, k.key, nonce(k.direction, seq), { authTagLength: UDP_TAG_BYTES });
  c.setAAD(p.subarray(0, UDP_HEADER_BYTES));
  const n = c.update(body).copy(p, UDP_HEADER_BYTES);
  c.final();
  c.getAuthTag().copy(p, UDP_HEADER_BYTES + n);
  return p;
}

/** Session id of a packet (to find its keys) without trusting anything else yet. */
export function udpSessionOf(p: Buffer): string | undefined {
  if (p.length < UDP_OVERHEAD_BYTES || p[0] !== UDP_VERSION) return undefined;
  return p.toString('base64', 2, 10);
}

/** The packet opened, or undefined when anything is wrong (version, length, key, header, body or tag). */
export function openUdp(k: UdpKey, p: Buffer): UdpPacket | undefined {
  if (p.length < UDP_OVERHEAD_BYTES || p[0] !== UDP_VERSION) return undefined;
  const seq = p.readUIntBE(10, 6);
  if (seq < 1) return undefined;
  const d = createDecipheriv(CIPHER, k.key, nonce(k.direction, seq), { authTagLength: UDP_TAG_BYTES });
  d.setAAD(p.subarray(0, UDP_HEADER_BYTES));
  d.setAuthTag(p.subarray(p.length - UDP_TAG_BYTES));
  let body: Buffer;
  try {
    body = d.update(p.subarray(UDP_HEADER_BYTES, p.length - UDP_TAG_BYTES));
    d.final();
  } catch {
    return undefined;
  }
  return { kind: p[1]!, session: p.subarray(2, 10), seq, body };
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
