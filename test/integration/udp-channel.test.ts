import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { sealUdp, UdpKind } from '../../core/protocol/udp-channel.js';
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

/** A UDP echo service on the "LAN", exposed through the relay; returns the replies a client got. */
async function roundTrips(harness: Harness, count: number): Promise<string[]> {
  await harness.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: ['udp:1-65535'] });
  const echo = await udp();
  echo.on('message', (m, r) => echo.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
  const e = await harness.relay.expose({ cp: 'acme-hq', proto: 'udp', host: '127.0.0.1', port: echo.address().port, operator: 'tech' });
  closers.push(() => harness.relay.unexpose(e.id));
  const client = await udp();
  const replies: string[] = [];
  client.on('message', (m) => replies.push(m.toString()));
  for (let i = 0; i < 100 && replies.length < count; i++) {
    client.send(`n${i}`, e.publicPort, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 10));
  }
  return replies;
}

describe('the UDP channel beside the tunnel', () => {
  it('carries mediated datagrams over UDP when UDP passes, authenticated per session', async () => {
    h = await startHarness();
    const cp = h.cp;
    await waitFor(() => cp.udpChannel?.ready === true, 5_000, 'udp channel up');
    const replies = await roundTrips(h, 5);
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
    const replies = await roundTrips(h, 5);
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
    const forged = sealUdp(Buffer.alloc(32, 1), Buffer.alloc(8, 2), UdpKind.DATAGRAM, 1, Buffer.from('x'));
    attacker.send(forged, relay.udp!.port, '127.0.0.1');
    attacker.send(Buffer.from('garbage'), relay.udp!.port, '127.0.0.1');
    await waitFor(() => relay.udp!.stats.rejected >= before + 2, 3_000, 'forged packets rejected');
    expect(relay.udp!.stats.datagramsIn).toBe(0);
  });
});
