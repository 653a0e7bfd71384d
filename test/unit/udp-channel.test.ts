import { createCipheriv, hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeUdpDatagram, openUdp, ReplayWindow, sealUdp, UDP_MAX_SEQ, udpKey, udpKeys, UdpDirection } from '../../core/protocol/udp-channel.js';

interface Vector {
  name: string;
  direction: 'to-relay' | 'to-contact-point';
  hex: string;
  kind?: number;
  seq?: number;
  bodyHex?: string;
  datagram?: { portId: number; address: string; port: number; payloadHex: string };
}
const v = JSON.parse(readFileSync(new URL('../vectors/udp-channel.json', import.meta.url), 'utf8')) as {
  keyMaterialHex: string;
  sessionHex: string;
  keys: Record<Vector['direction'], { direction: number; info: string; keyHex: string }>;
  valid: Vector[];
  invalid: Vector[];
};
const material = Buffer.from(v.keyMaterialHex, 'hex');
const session = Buffer.from(v.sessionHex, 'hex');
const keyOf = (d: Vector['direction']) => udpKey(material, session, d === 'to-relay' ? UdpDirection.TO_RELAY : UdpDirection.TO_CONTACT_POINT);

describe('UDP channel packets (test/vectors/udp-channel.json, PROTOCOL.md 16.9)', () => {
  it('derives each direction key as documented: HKDF-SHA256(material, salt = session id, info)', () => {
    for (const d of ['to-relay', 'to-contact-point'] as const) {
      const documented = Buffer.from(hkdfSync('sha256', material, session, v.keys[d].info, 32));
      expect(documented.toString('hex')).toBe(v.keys[d].keyHex);
      expect(keyOf(d).key.toString('hex')).toBe(v.keys[d].keyHex);
    }
    // The two ends pair up: what one sends, the other opens.
    const relay = udpKeys(material, session, 'relay');
    const cp = udpKeys(material, session, 'contact-point');
    expect(relay.send).toEqual(cp.receive);
    expect(cp.send).toEqual(relay.receive);
    expect(cp.send.key.equals(cp.receive.key)).toBe(false);
  });

  it('seals every valid vector byte for byte, and the documented construction gives the same bytes', () => {
    for (const t of v.valid) {
      const body = Buffer.from(t.bodyHex!, 'hex');
      expect(sealUdp(keyOf(t.direction), session, t.kind!, t.seq!, body).toString('hex'), t.name).toBe(t.hex);
      // Independently of sealUdp: header = ver 2, kind, session, seq u48; nonce = direction u32 || seq u64; AAD = header.
      const header = Buffer.alloc(16);
      header[0] = 2;
      header[1] = t.kind!;
      session.copy(header, 2);
      header.writeUIntBE(t.seq!, 10, 6);
      const nonce = Buffer.alloc(12);
      nonce.writeUInt32BE(v.keys[t.direction].direction, 0);
      nonce.writeBigUInt64BE(BigInt(t.seq!), 4);
      const c = createCipheriv('aes-256-gcm', Buffer.from(v.keys[t.direction].keyHex, 'hex'), nonce);
      c.setAAD(header);
      const ct = Buffer.concat([c.update(body), c.final()]);
      expect(Buffer.concat([header, ct, c.getAuthTag()]).toString('hex'), t.name).toBe(t.hex);
    }
  });

  it('opens every valid vector to its kind, seq and body; the datagram inside decodes', () => {
    for (const t of v.valid) {
      const p = openUdp(keyOf(t.direction), Buffer.from(t.hex, 'hex'));
      expect(p, t.name).toBeDefined();
      expect({ kind: p!.kind, seq: p!.seq, body: p!.body.toString('hex'), session: p!.session.toString('hex') }).toEqual({ kind: t.kind, seq: t.seq, body: t.bodyHex, session: v.sessionHex });
      if (t.datagram) {
        const d = decodeUdpDatagram(p!.body)!;
        expect({ portId: d.portId, address: d.address, port: d.port, payloadHex: Buffer.from(d.payload).toString('hex') }).toEqual(t.datagram);
      }
    }
  });

  it('refuses every invalid vector: a changed header, session, seq, ciphertext or tag, the other direction, version 1', () => {
    expect(v.invalid.length).toBeGreaterThanOrEqual(8);
    for (const t of v.invalid) expect(openUdp(keyOf(t.direction), Buffer.from(t.hex, 'hex')), t.name).toBeUndefined();
  });

  it('the payload is not in the packet; the sequence number stops at 2^48 - 1', () => {
    const marker = Buffer.from('MARKER: public community string');
    const valid = v.valid.find((t) => t.datagram)!;
    expect(Buffer.from(valid.hex, 'hex').includes(marker)).toBe(false);
    expect(Buffer.from(valid.bodyHex!, 'hex').includes(marker)).toBe(true);
    expect(() => sealUdp(keyOf('to-relay'), session, 5, UDP_MAX_SEQ + 1)).toThrow(RangeError);
    expect(() => sealUdp(keyOf('to-relay'), session, 5, 0)).toThrow(RangeError);
  });

  it('the replay window accepts each seq once, tolerates reordering within 64, drops older', () => {
    const w = new ReplayWindow();
    expect([1, 3, 2, 3, 2].map((s) => w.accept(s))).toEqual([true, true, true, false, false]);
    expect(w.accept(200)).toBe(true);
    expect(w.accept(137)).toBe(true);
    expect(w.accept(136)).toBe(false);
    expect(w.accept(UDP_MAX_SEQ)).toBe(true);
    expect(w.accept(UDP_MAX_SEQ)).toBe(false);
  });
});
