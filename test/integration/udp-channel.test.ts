import { spawnSync } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { CAPABILITY_REACHABLE, CAPABILITY_UDP_AEAD, FrameType } from '../../core/protocol/frames.js';
import { decodeControl } from '../../core/protocol/codec.js';
import { sealUdp, udpKey, UdpDirection, UdpKind } from '../../core/protocol/udp-channel.js';
import { RawClient } from '../raw-client.js';
import { startHarness, waitFor, type Harness } from '../helpers.js';

let h: Harness | undefined;
const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await h?.close();
  h = undefined;
});

async function udp(): Promise<Socket> {
  const s = createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  closers.push(() => s.close());
  return s;
}

/**
 * A UDP echo service on the "LAN", exposed through the relay: a client sends `${prefix}${i}`
 * until `count` replies came; the replies, and how many datagrams the service echoed.
 */
async function roundTrips(harness: Harness, count: number, prefix = 'n'): Promise<{ replies: string[]; echoed: () => number }> {
  await harness.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: ['udp:1-65535'] });
  const echo = await udp();
  let echoed = 0;
  echo.on('message', (m, r) => {
    echoed++;
    echo.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address);
  });
  const e = await harness.relay.expose({ cp: 'acme-hq', proto: 'udp', host: '127.0.0.1', port: echo.address().port, operator: 'tech' });
  closers.push(() => harness.relay.unexpose(e.id));
  const client = await udp();
  const replies: string[] = [];
  client.on('message', (m) => replies.push(m.toString()));
  for (let i = 0; i < 100 && replies.length < count; i++) {
    client.send(`${prefix}${i}`, e.publicPort, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 10));
  }
  return { replies, echoed: () => echoed };
}

/** A payload a captured packet must not show. */
const MARKER = 'MARKER-7f3a-secret-payload';

describe('the UDP channel beside the tunnel', () => {
  it('carries mediated datagrams over UDP when UDP passes, authenticated per session', async () => {
    h = await startHarness();
    const cp = h.cp;
    await waitFor(() => cp.udpChannel?.ready === true, 5_000, 'udp channel up');
    const { replies } = await roundTrips(h, 5);
    expect(replies.length).toBeGreaterThanOrEqual(5);
    expect(replies.every((r) => r.startsWith('echo:n'))).toBe(true);
    // Both directions went over UDP, not inside the ws tunnel.
    expect(cp.udpChannel!.stats.datagramsOut).toBeGreaterThanOrEqual(5);
    expect(cp.udpChannel!.stats.datagramsIn).toBeGreaterThanOrEqual(5);
    expect(h.relay.udp!.stats.datagramsIn).toBeGreaterThanOrEqual(5);
  });

  it('falls back to the tunnel when UDP is blocked', async () => {
    // The relay announces a port where nothing answers: the firewall drops UDP.
    const blackhole = await udp();
    h = await startHarness({ relay: { udpAdvertisePort: blackhole.address().port } });
    await new Promise((r) => setTimeout(r, 300));
    expect(h.cp.udpChannel?.ready).toBe(false);
    const { replies } = await roundTrips(h, 5);
    expect(replies.length).toBeGreaterThanOrEqual(5);
    expect(h.cp.udpChannel!.stats.datagramsOut).toBe(0);
    expect(h.relay.udp!.stats.datagramsIn).toBe(0);
  });

  it('rejects packets without the session key', async () => {
    h = await startHarness();
    const relay = h.relay;
    await waitFor(() => h!.cp.udpChannel?.ready === true);
    const attacker = await udp();
    const before = relay.udp!.stats.rejected;
    const forged = sealUdp(udpKey(Buffer.alloc(32, 1), Buffer.alloc(8, 2), UdpDirection.TO_RELAY), Buffer.alloc(8, 2), UdpKind.DATAGRAM, 1, Buffer.from('x'));
    attacker.send(forged, relay.udp!.port, '127.0.0.1');
    attacker.send(Buffer.from('garbage'), relay.udp!.port, '127.0.0.1');
    await waitFor(() => relay.udp!.stats.rejected >= before + 2, 3_000, 'forged packets rejected');
    expect(relay.udp!.stats.datagramsIn).toBe(0);
  });

  it('encrypts: a datagram captured on the wire between contact point and relay shows no payload, both ways', async () => {
    const wire = await udpWire();
    h = await startHarness({ relay: { udpAdvertisePort: wire.port } });
    wire.relayPort = h.relay.udp!.port;
    await waitFor(() => h!.cp.udpChannel?.ready === true, 5_000, 'udp channel up through the wire');
    const { replies, echoed } = await roundTrips(h, 5, `${MARKER}:`);
    expect(replies.length).toBeGreaterThanOrEqual(5);
    expect(replies.every((r) => r.startsWith(`echo:${MARKER}`))).toBe(true);
    const datagrams = (dir: 'to-relay' | 'to-cp') => wire.captured.filter((c) => c.dir === dir && c.packet[1] === UdpKind.DATAGRAM);
    expect(datagrams('to-relay').length).toBeGreaterThanOrEqual(5);
    expect(datagrams('to-cp').length).toBeGreaterThanOrEqual(5);
    expect(echoed()).toBeGreaterThanOrEqual(5);
    for (const c of wire.captured) {
      expect(c.packet.includes(MARKER)).toBe(false);
      expect(c.packet.includes('echo:')).toBe(false);
      expect(c.packet.includes('127.0.0.1')).toBe(false);
    }
  });

  it('drops and counts a tampered or replayed datagram at either end; the service never sees it', async () => {
    const wire = await udpWire();
    h = await startHarness({ relay: { udpAdvertisePort: wire.port } });
    wire.relayPort = h.relay.udp!.port;
    const udpChannel = h.cp.udpChannel;
    await waitFor(() => udpChannel?.ready === true, 5_000, 'udp channel up through the wire');
    const { replies, echoed } = await roundTrips(h, 3, `${MARKER}:`);
    expect(replies.length).toBeGreaterThanOrEqual(3);
    const relayStats = h.relay.udp!.stats;
    const cpStats = udpChannel!.stats;
    const seen = { echoed: echoed(), replies: replies.length, relayIn: relayStats.datagramsIn, cpIn: cpStats.datagramsIn };
    const toRelay = wire.captured.find((c) => c.dir === 'to-relay' && c.packet[1] === UdpKind.DATAGRAM)!.packet;
    const toCp = wire.captured.find((c) => c.dir === 'to-cp' && c.packet[1] === UdpKind.DATAGRAM)!.packet;
    const flipped = (p: Buffer, at: number): Buffer => {
      const b = Buffer.from(p);
      b[at]! ^= 0x01;
      return b;
    };
    const before = { relayRejected: relayStats.rejected, relayReplayed: relayStats.replayed, cpRejected: cpStats.rejected, cpReplayed: cpStats.replayed };
    // At the relay: the same packet again, one bit of its body, one bit of its header (kind: bound), one bit of its tag.
    wire.inject('to-relay', toRelay);
    wire.inject('to-relay', flipped(toRelay, 20));
    wire.inject('to-relay', flipped(toRelay, 1));
    wire.inject('to-relay', flipped(toRelay, toRelay.length - 1));
    // At the contact point, the same from the relay's side.
    wire.inject('to-cp', toCp);
    wire.inject('to-cp', flipped(toCp, 20));
    wire.inject('to-cp', flipped(toCp, toCp.length - 1));
    await waitFor(() => relayStats.replayed >= before.relayReplayed + 1 && relayStats.rejected >= before.relayRejected + 3, 3_000, 'the relay counted them');
    await waitFor(() => cpStats.replayed >= before.cpReplayed + 1 && cpStats.rejected >= before.cpRejected + 2, 3_000, 'the contact point counted them');
    await new Promise((r) => setTimeout(r, 200));
    expect({ echoed: echoed(), replies: replies.length, relayIn: relayStats.datagramsIn, cpIn: cpStats.datagramsIn }).toEqual(seen);
    expect({ relayReplayed: relayStats.replayed, relayRejected: relayStats.rejected, cpReplayed: cpStats.replayed, cpRejected: cpStats.rejected }).toEqual({
      relayReplayed: before.relayReplayed + 1,
      relayRejected: before.relayRejected + 3,
      cpReplayed: before.cpReplayed + 1,
      cpRejected: before.cpRejected + 2,
    });
  });

  it('offers the channel only to a contact point that lists udp-aead; an older one keeps its datagrams in the tunnel', async () => {
    h = await startHarness();
    const offersTo = async (id: string, capabilities: string[]): Promise<{ offered: boolean; version: number | undefined }> => {
      const secret = await h!.credentials.add('contact-point', id);
      const raw = await RawClient.open(h!.relay.url);
      closers.push(() => raw.ws.close());
      raw.hello({ versions: { min: 1, max: 1 }, role: 'contact-point', id, secret, env: { software: 'contact-point/old', capabilities } });
      await waitFor(() => raw.frames.some((f) => f.type === FrameType.WELCOME), 3_000, 'welcome');
      // The relay offers right after WELCOME, in the same turn: whether it did is known now.
      const offered = h!.relay.sessions.tunnels.get(id)!.control.udpPath !== undefined;
      if (offered) await waitFor(() => raw.frames.some((f) => f.type === FrameType.UDP_CHANNEL), 3_000, 'udp channel offer');
      const offer = raw.frames.find((f) => f.type === FrameType.UDP_CHANNEL);
      return { offered: offered || offer !== undefined, version: offer ? decodeControl(offer, FrameType.UDP_CHANNEL).version : undefined };
    };
    expect(await offersTo('old-office', ['messages', CAPABILITY_REACHABLE])).toEqual({ offered: false, version: undefined });
    expect(await offersTo('new-office', ['messages', CAPABILITY_REACHABLE, CAPABILITY_UDP_AEAD])).toEqual({ offered: true, version: 2 });
  });

  it('a contact point does not use an older relay\'s channel (an offer without version 2): datagrams stay in the tunnel', async () => {
    h = await startHarness();
    const tunnel = h.relay.sessions.tunnels.get('acme-hq')!;
    await waitFor(() => h!.cp.udpChannel?.ready === true, 5_000, 'udp channel up');
    // The offer an older relay makes: the same fields without `version` (its key is an HMAC key).
    // The relay's side of it: a fresh path, which the contact point never probes, in place of the first.
    tunnel.control.udpPath?.close();
    const path = h.relay.udp!.register(() => undefined);
    tunnel.control.udpPath = path;
    tunnel.link.sendControl(FrameType.UDP_CHANNEL, { port: h.relay.udp!.port, session: path.session, key: path.key });
    await waitFor(() => h!.cp.udpChannel === undefined, 3_000, 'the old offer replaced the channel and was not used');
    const { replies } = await roundTrips(h, 3);
    expect(replies.length).toBeGreaterThanOrEqual(3);
    expect(h.cp.udpChannel).toBeUndefined();
  });
});

/**
 * A real UDP hop between contact point and relay (the relay advertises its port): it forwards
 * both ways, keeps a copy of every packet, and can send one of its own in either direction.
 */
async function udpWire(): Promise<{ port: number; relayPort: number; captured: { dir: 'to-relay' | 'to-cp'; packet: Buffer }[]; inject(dir: 'to-relay' | 'to-cp', p: Buffer): void }> {
  const s = await udp();
  let cp: { address: string; port: number } | undefined;
  const wire = {
    port: s.address().port,
    relayPort: 0,
    captured: [] as { dir: 'to-relay' | 'to-cp'; packet: Buffer }[],
    inject(dir: 'to-relay' | 'to-cp', p: Buffer): void {
      if (dir === 'to-relay') s.send(p, wire.relayPort, '127.0.0.1');
      else if (cp) s.send(p, cp.port, cp.address);
    },
  };
  s.on('message', (m, r) => {
    if (wire.relayPort === 0) return; // the relay's port is not known yet: the contact point probes again
    if (r.port === wire.relayPort) {
      wire.captured.push({ dir: 'to-cp', packet: Buffer.from(m) });
      if (cp) s.send(m, cp.port, cp.address);
    } else {
      cp = { address: r.address, port: r.port };
      wire.captured.push({ dir: 'to-relay', packet: Buffer.from(m) });
      s.send(m, wire.relayPort, '127.0.0.1');
    }
  });
  return wire;
}

/**
 * Sends one UDP datagram to 127.0.0.1:`port` from source port 0, as any host on the internet
 * can (a raw socket: Node has none, so python3's; it needs root or CAP_NET_RAW). Undefined when
 * it was sent, else why not.
 */
function sendFromPort0(port: number, payload: string): string | undefined {
  const script = `
import socket, struct, sys
port = int(sys.argv[1]); payload = sys.argv[2].encode()
hdr = struct.pack('!HHHH', 0, port, 8 + len(payload), 0)  # checksum 0: none, allowed over IPv4
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
s.sendto(hdr + payload, ('127.0.0.1', 0))
`;
  const r = spawnSync('python3', ['-c', script, String(port), payload], { encoding: 'utf8', timeout: 10_000 });
  if (r.error) return `python3 is not available (${r.error.message})`;
  if (r.status !== 0) return `no raw socket here (${r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`})`;
  return undefined;
}

describe('a UDP exposure and the UDP channel take datagrams from source port 0', () => {
  it('drop them and keep serving (one ended the relay: its reply was sent to port 0)', async (ctx) => {
    h = await startHarness();
    const cp = h.cp;
    await waitFor(() => cp.udpChannel?.ready === true, 5_000, 'udp channel up');
    const { replies } = await roundTrips(h, 1);
    expect(replies.length).toBeGreaterThanOrEqual(1);
    const exposure = h.relay.exposures()[0]!;
    const why = sendFromPort0(exposure.publicPort, 'from-port-0');
    if (why) {
      console.warn(`skipped: cannot send from source port 0: ${why}`);
      ctx.skip();
    }
    sendFromPort0(exposure.publicPort, 'from-port-0-again');
    expect(sendFromPort0(h.relay.udp!.port, 'not-a-session')).toBeUndefined();
    // The exposure still answers a real client, through the same relay process.
    await new Promise((r) => setTimeout(r, 200));
    const again = await roundTrips(h, 1, 'after');
    expect(again.replies.some((r) => r.startsWith('echo:after'))).toBe(true);
    expect(h.relay.udp!.stats.rejected).toBeGreaterThanOrEqual(1);
  });
});
