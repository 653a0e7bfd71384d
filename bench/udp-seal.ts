/**
 * udp-seal: what encrypting the UDP channel costs per packet (issue 14 item 3). One process,
 * no network: rounds alternate between the channel's version 1 packet (HMAC-SHA256/16 over
 * header and body, the body in clear: the format before this change, kept here only as the
 * baseline) and version 2 (AES-256-GCM, core/protocol/udp-channel.ts), each sealing a 512-byte
 * datagram body (the mediation-udp size) and opening it again, as one hop of the channel does.
 * Reports the median over rounds of packets/s on one core, µs per packet and the ratio.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { BenchContext } from './context.js';
import { UDP_BYTES } from './mediation.js';
import { encodeUdpDatagram, openUdp, sealUdp, udpKeys, UdpKind } from '../core/protocol/udp-channel.js';
import { emit, median, note, round } from './util.js';

/** The version 1 packet (removed from the product): header 14 bytes, MAC 16, body in clear. */
function sealV1(key: Buffer, session: Buffer, kind: number, seq: number, body: Buffer): Buffer {
  const p = Buffer.allocUnsafe(30 + body.length);
  p[0] = 1;
  p[1] = kind;
  session.copy(p, 2, 0, 8);
  p.writeUInt32BE(seq >>> 0, 10);
  body.copy(p, 30);
  createHmac('sha256', key).update(p.subarray(0, 14)).update(body).digest().copy(p, 14, 0, 16);
  return p;
}

function openV1(key: Buffer, p: Buffer): Buffer | undefined {
  const mac = createHmac('sha256', key).update(p.subarray(0, 14)).update(p.subarray(30)).digest().subarray(0, 16);
  return timingSafeEqual(mac, p.subarray(14, 30)) ? p.subarray(30) : undefined;
}

export async function runUdpSeal(ctx: BenchContext): Promise<void> {
  if (!ctx.selected('udp-seal')) return;
  const rounds = ctx.quick ? 5 : 11;
  const perRound = ctx.quick ? 20_000 : 50_000;
  const session = randomBytes(8);
  const material = randomBytes(32);
  const v1Key = randomBytes(32);
  const cp = udpKeys(material, session, 'contact-point');
  const relay = udpKeys(material, session, 'relay');
  const body = encodeUdpDatagram({ portId: 1, address: '192.168.1.30', port: 161, payload: randomBytes(UDP_BYTES) });
  let seq = 0;
  const v1 = (): void => {
    for (let i = 0; i < perRound; i++) if (!openV1(v1Key, sealV1(v1Key, session, UdpKind.DATAGRAM, ++seq, body))) throw new Error('v1 packet did not open');
  };
  const v2 = (): void => {
    for (let i = 0; i < perRound; i++) if (!openUdp(relay.receive, sealUdp(cp.send, session, UdpKind.DATAGRAM, ++seq, body))) throw new Error('v2 packet did not open');
  };
  const rate = (f: () => void): number => {
    const t = process.hrtime.bigint();
    f();
    return perRound / (Number(process.hrtime.bigint() - t) / 1e9);
  };
  v1();
  v2();
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < rounds; r++) {
    a.push(rate(v1));
    b.push(rate(v2));
    await new Promise((res) => setImmediate(res));
  }
  const v1pps = median(a);
  const v2pps = median(b);
  note(`udp-seal: seal+open of a ${body.length}-byte datagram body, one core: HMAC (v1) ${Math.round(v1pps)}/s, AES-256-GCM (v2) ${Math.round(v2pps)}/s, ratio ${round(v2pps / v1pps)}`);
  emit({
    name: 'udp_channel.seal_open',
    description: `seal and open one UDP channel packet carrying a ${UDP_BYTES}-byte datagram (one hop), one core, median of ${rounds} alternating rounds of ${perRound}`,
    value: Math.round(v2pps),
    unit: 'packets/s',
    us_per_packet: round(1e6 / v2pps),
    baseline_pps: Math.round(v1pps),
    baseline_us_per_packet: round(1e6 / v1pps),
    baseline: 'version 1 of the channel: HMAC-SHA256/16, body in clear',
    ratio: round(v2pps / v1pps),
    rounds_pps: b.map((x) => Math.round(x)),
    baseline_rounds_pps: a.map((x) => Math.round(x)),
    mode: ctx.quick ? 'quick' : 'full',
  });
}
