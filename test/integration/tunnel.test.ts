import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { PeerClient } from '../../core/peer/peer-client.js';
import { CredentialStore } from '../../core/relay/credentials.js';
import { adaptiveTimers } from '../../core/protocol/link.js';
import { Relay } from '../../core/relay/relay.js';
import { tcpForwarder, connectProxy, selfSignedCert } from '../net-fixtures.js';
import { FAST, logger, startHarness, tempDir, waitFor } from '../helpers.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('the one tunnel', () => {
  it('reaches a TLS relay through the HTTPS_PROXY CONNECT proxy, and carries messages', async () => {
    await using dir = await tempDir();
    const tls = selfSignedCert(dir.path);
    const credentials = CredentialStore.inMemory();
    const secret = await credentials.add('contact-point', 'acme-hq');
    const relay = new Relay({ credentials, tls, logger });
    const url = await relay.start();
    cleanups.push(() => relay.stop());
    expect(url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+\/v1$/);
    const proxy = await connectProxy();
    cleanups.push(() => proxy.close());

    const saved = { HTTPS_PROXY: process.env.HTTPS_PROXY, NO_PROXY: process.env.NO_PROXY };
    process.env.HTTPS_PROXY = proxy.url;
    delete process.env.NO_PROXY;
    let cp: ContactPoint;
    try {
      cp = await ContactPoint.create({ id: 'acme-hq', relayUrl: url, secret, ca: tls.cert, peerHost: '127.0.0.1', logger, timing: FAST });
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await cp.start();
    cleanups.push(() => cp.stop());
    await waitFor(() => cp.gateway.connected, 5_000, 'tunnel through the proxy');
    expect(proxy.connects).toEqual([`127.0.0.1:${new URL(url).port}`]);
    expect(cp.gateway.status().proxy).toBe(proxy.url);

    const aliceSecret = await credentials.add('external', 'alice');
    const alice = new PeerClient({ role: 'external', url, name: 'alice', secret: aliceSecret, ca: tls.cert, proxy: null, logger, timing: FAST });
    alice.start();
    cleanups.push(() => alice.stop());
    await alice.ready();
    await cp.call('policy:set', { subnets: ['127.0.0.0/8'] });
    const { PeerIdentity } = await import('../../core/peer/identity.js');
    const got: string[] = [];
    const printer = new PeerClient({ role: 'peer', url: cp.peerPortUrl, name: 'printer', identity: PeerIdentity.generate(), logger, timing: FAST, onMessage: (m) => void got.push(m.payload.toString()) });
    printer.start();
    cleanups.push(() => printer.stop());
    await printer.ready();
    printer.register();
    await printer.waitForRegistration('registered');
    await waitFor(() => relay.peersOf('acme-hq').includes('printer'));
    await alice.send('printer@acme-hq', 'via proxy and TLS');
    expect(got).toEqual(['via proxy and TLS']);

    // Stream bytes are framed by the Link itself (ws-frame.ts), written to the TLS socket that
    // runs inside the proxy's CONNECT tunnel: 2 MiB through an exposed echo service, both ways.
    await cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: [] });
    const echo = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    });
    echo.listen(0, '127.0.0.1');
    await once(echo, 'listening');
    cleanups.push(() => new Promise((r) => echo.close(r)));
    const e = await relay.expose({ cp: 'acme-hq', proto: 'tcp', host: '127.0.0.1', port: (echo.address() as AddressInfo).port, operator: 'tech' });
    const sent = randomBytes(2 * 1024 * 1024);
    const client = connect({ port: e.publicPort, host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    client.on('data', (d: Buffer) => chunks.push(d));
    client.end(sent);
    await once(client, 'end');
    client.destroy();
    expect(Buffer.concat(chunks).equals(sent)).toBe(true);
  });

  it('refuses a relay certificate it does not trust', async () => {
    await using dir = await tempDir();
    const tls = selfSignedCert(dir.path);
    const credentials = CredentialStore.inMemory();
    const secret = await credentials.add('contact-point', 'acme-hq');
    const relay = new Relay({ credentials, tls, logger });
    const url = await relay.start();
    cleanups.push(() => relay.stop());
    const cp = await ContactPoint.create({ id: 'acme-hq', relayUrl: url, secret, proxy: null, peerHost: '127.0.0.1', logger, timing: FAST });
    await cp.start();
    cleanups.push(() => cp.stop());
    await waitFor(() => cp.gateway.status().lastError !== undefined, 5_000, 'a TLS error');
    expect(cp.gateway.connected).toBe(false);
    expect(cp.gateway.status().lastError).toMatch(/certificate/i);
  });

  it('notices a silently dead idle tunnel within the heartbeat keepalive\'s bound and comes back when the path does', async () => {
    const h = await startHarness();
    cleanups.push(() => h.close());
    const relayPort = Number(new URL(h.relay.url).port);
    const fwd = await tcpForwarder(relayPort);
    cleanups.push(() => fwd.close());
    const cp = await ContactPoint.create({
      id: 'branch', relayUrl: `ws://127.0.0.1:${fwd.port}/v1`, secret: await h.credentials.add('contact-point', 'branch'),
      peerHost: '127.0.0.1', logger, timing: FAST, proxy: null,
    });
    await cp.start();
    cleanups.push(() => cp.stop());
    await waitFor(() => cp.gateway.connected, 5_000, 'tunnel up');
    expect(cp.gateway.keepaliveMode).toBe('heartbeat');
    fwd.blackhole();
    const t0 = Date.now();
    // The dialer's state turns when ws reports the close, just after the socket is dropped.
    await waitFor(() => cp.gateway.status().state === 'reconnecting', 8_000, 'dead tunnel noticed');
    const noticedMs = Date.now() - t0;
    // FAST, heartbeat and idle: a ping once nothing was heard for 3.5 s (the heartbeat at P = 1 s
    // is overdue), pong within 1 s, checks every 0.25 s (adaptiveTimers; PROTOCOL.md 12.2); slack
    // for a loaded machine.
    expect(noticedMs).toBeLessThanOrEqual(adaptiveTimers(FAST.pingIntervalMs, FAST.pongTimeoutMs, true).noticeIdleClientMs + 2_000);
    expect(cp.gateway.connected).toBe(false);
    fwd.restore();
    await waitFor(() => cp.gateway.connected, 5_000, 'tunnel back');
    expect(cp.gateway.status().reconnects).toBe(1);
  });

  it('re-announces registered peers after a reconnect and backs off while the relay is away', async () => {
    const h = await startHarness();
    cleanups.push(() => h.close());
    await h.registered('printer');
    await h.relay.stop();
    await waitFor(() => h.cp.gateway.status().state === 'reconnecting');
    await new Promise((r) => setTimeout(r, 600));
    const s = h.cp.gateway.status();
    expect(s.nextRetryAt).toBeGreaterThan(Date.now() - 50);
    expect(s.lastError).toBeDefined();
    await h.restartRelay();
    await waitFor(() => h.cp.gateway.connected, 5_000, 'tunnel back');
    await waitFor(() => h.relay.peersOf('acme-hq').includes('printer'), 5_000, 're-announced');
  });

  it('holds one socket at the relay however many peers it serves', async () => {
    const h = await startHarness();
    cleanups.push(() => h.close());
    for (const n of ['a', 'b', 'c', 'd', 'e']) await h.registered(n);
    expect(h.relay.status()).toMatchObject({ tunnels: 1, sockets: 1 });
    expect(h.cp.gateway.status().peersServed).toBe(5);
  });
});
