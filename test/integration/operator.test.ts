import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer as createHttpServer, get } from 'node:http';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_PORTS_PER_OPERATOR } from '../../core/contact-point/mediation.js';
import { Operator } from '../../core/peer/operator.js';
import { Status } from '../../core/protocol/status.js';
import { FAST, logger, startHarness, waitFor, type Harness } from '../helpers.js';

let h: Harness;
const closers: (() => unknown)[] = [];
beforeEach(async () => {
  h = await startHarness();
  await h.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: ['tcp:1-65535', 'udp:1-65535'] });
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await h.close();
});

async function operator(name: string, rights: ('send' | 'mediate')[] = ['send', 'mediate']): Promise<Operator> {
  const secret = await h.credentials.add('external', name, rights);
  const op = new Operator({ url: h.relay.url, name, secret, logger, timing: FAST });
  closers.push(() => op.stop());
  op.start();
  await op.ready();
  return op;
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(() => new Promise((r) => server.close(r)));
  return (server.address() as AddressInfo).port;
}

function fetchText(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, agent: false }, (res) => {
      let b = '';
      res.on('data', (d: Buffer) => (b += d.toString()));
      res.on('end', () => resolve(b));
    }).on('error', reject);
  });
}

describe('operators drive port mediation through the relay', () => {
  it('needs the mediate right', async () => {
    const op = await operator('visitor', ['send']);
    await expect(op.open('acme-hq', { proto: 'tcp' })).rejects.toMatchObject({ code: Status.PERMISSION_DENIED });
  });

  it('exposes a LAN web page for as long as the operator session lives', async () => {
    const web = await listen(createHttpServer((_q, r) => r.end('router admin page')));
    const op = await operator('tech');
    const { publicPort } = await op.expose('acme-hq', '127.0.0.1', web);
    expect(await fetchText(publicPort)).toBe('router admin page');
    await op.stop();
    await waitFor(() => h.relay.exposures().length === 0, 3_000, 'exposure closed with the session');
    await expect(fetchText(publicPort)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('opens and connects a stream, makes a server, and closes everything when it leaves', async () => {
    const echo = await listen(createServer((s) => s.on('error', () => undefined).pipe(s)));
    const op = await operator('tech');
    const { portId } = await op.open('acme-hq', { proto: 'tcp' });
    const stream = await op.connect('acme-hq', portId, '127.0.0.1', echo);
    stream.write('ping');
    expect(((await once(stream, 'data')) as [Buffer])[0].toString()).toBe('ping');

    const server = await op.open('acme-hq', { proto: 'tcp', port: 0 });
    const port = await op.listen('acme-hq', server.portId);
    const accepted = once(op, 'accepted');
    const lan = connect(port, '127.0.0.1').on('error', () => undefined);
    const [, inbound] = (await accepted) as [unknown, Duplex];
    lan.write('from the LAN');
    expect(((await once(inbound, 'data')) as [Buffer])[0].toString()).toBe('from the LAN');
    lan.destroy();

    expect(h.cp.ports.list().map((p) => p.operator)).toEqual(['tech', 'tech']);
    stream.on('error', () => undefined);
    inbound.on('error', () => undefined);
    await op.stop();
    await waitFor(() => h.cp.ports.list().length === 0, 3_000, 'ports closed when the operator left');
  });

  it('relays datagrams of a redirected UDP port both ways', async () => {
    const echo = createSocket('udp4');
    echo.on('message', (m, r) => echo.send(Buffer.concat([Buffer.from('re:'), m]), r.port, r.address));
    echo.bind(0, '127.0.0.1');
    await once(echo, 'listening');
    closers.push(() => echo.close());
    const op = await operator('tech');
    const { portId } = await op.open('acme-hq', { proto: 'udp', port: 0 });
    await op.redirect('acme-hq', portId);
    const got = once(op, 'datagram');
    op.sendDatagram(portId, '127.0.0.1', echo.address().port, Buffer.from('hello udp'));
    const [d] = (await got) as [{ payload: Buffer; address: string; port: number }];
    expect(d).toMatchObject({ address: '127.0.0.1', port: echo.address().port });
    expect(d.payload.toString()).toBe('re:hello udp');
  });

  it('caps the ports one operator may hold', async () => {
    const op = await operator('greedy');
    for (let i = 0; i < MAX_PORTS_PER_OPERATOR; i++) await op.open('acme-hq', { proto: 'udp', port: 0 });
    await expect(op.open('acme-hq', { proto: 'udp', port: 0 })).rejects.toMatchObject({ code: Status.PORT_LIMIT });
    const other = await operator('other');
    expect((await other.open('acme-hq', { proto: 'udp', port: 0 })).portId).toBeGreaterThan(0);
  });

  it('cannot touch another operator\'s ports', async () => {
    const a = await operator('alice-op');
    const b = await operator('bob-op');
    const { portId } = await a.open('acme-hq', { proto: 'tcp' });
    await expect(b.close('acme-hq', portId)).rejects.toMatchObject({ code: Status.UNKNOWN_PORT });
  });
  it("cannot listen on the contact point's loopback, multicast or broadcast addresses unless a listen rule names them", async () => {
    const op = await operator('tech');
    const special = ['127.0.0.1', '::1', '::ffff:127.0.0.1', '224.0.0.1', '255.255.255.255'];
    // beforeEach's listen rules name no address (tcp:1-65535, udp:1-65535): any address but these.
    for (const address of special) {
      // A TCP open of port 0 binds nothing; the listen binds, and is refused.
      const { portId } = await op.open('acme-hq', { proto: 'tcp', address });
      await expect(op.listen('acme-hq', portId), `tcp listen ${address}`).rejects.toMatchObject({ code: Status.UNSAFE_TARGET });
      await op.close('acme-hq', portId);
      // A TCP open of a given port, and a UDP open, are checked at once.
      await expect(op.open('acme-hq', { proto: 'tcp', address, port: 47_631 }), `tcp open ${address}`).rejects.toMatchObject({ code: Status.UNSAFE_TARGET });
      await expect(op.open('acme-hq', { proto: 'tcp', address, port: 47_631, importance: 'desired' }), `tcp open desired ${address}`).rejects.toMatchObject({ code: Status.UNSAFE_TARGET });
      await expect(op.open('acme-hq', { proto: 'udp', address }), `udp open ${address}`).rejects.toMatchObject({ code: Status.UNSAFE_TARGET });
    }
    expect(h.cp.ports.list()).toEqual([]);
    // The wildcard is still what an address-less rule allows.
    const any = await op.open('acme-hq', { proto: 'tcp' });
    expect(await op.listen('acme-hq', any.portId)).toBeGreaterThan(0);
    await op.close('acme-hq', any.portId);

    // Rules that name the addresses allow them (::ffff:127.0.0.1 is 127.0.0.1, and binds as such).
    await h.cp.call('ports:policy', { targets: [], listen: ['127.0.0.1:1-65535', '[::1]:tcp:1-65535', '[::1]:udp:1-65535', '224.0.0.1:1-65535', '255.255.255.255:1-65535'] });
    for (const address of special) {
      const tcp = await op.open('acme-hq', { proto: 'tcp', address });
      expect(tcp.address).toBe(address === '::ffff:127.0.0.1' ? '127.0.0.1' : address);
      const port = await op.listen('acme-hq', tcp.portId);
      expect(port, `tcp listen ${address}`).toBeGreaterThan(0);
      if (address === '127.0.0.1') {
        // It really listens there: a LAN client on loopback is accepted.
        const accepted = once(op, 'accepted');
        const lan = connect(port, '127.0.0.1').on('error', () => undefined);
        await accepted;
        lan.destroy();
      }
      await op.close('acme-hq', tcp.portId);
      const udp = await op.open('acme-hq', { proto: 'udp', address });
      expect(udp.port, `udp open ${address}`).toBeGreaterThan(0);
      await op.close('acme-hq', udp.portId);
    }
  });
});
