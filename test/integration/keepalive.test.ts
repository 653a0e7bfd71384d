/**
 * The adaptive keepalive (PROTOCOL.md 12.1) on a real tunnel with the default timers: a relay and
 * a contact point through a TCP forwarder that can blackhole the path (bytes stop both ways, no
 * FIN, no RST, new connections accepted and never answered), as when a NAT entry silently
 * expires. Bounds: noticed within 5 s while messages wait for an ACK, within 30 s otherwise.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { PeerClient } from '../../core/peer/peer-client.js';
import { PeerIdentity } from '../../core/peer/identity.js';
import { adaptiveTimers, type Link } from '../../core/protocol/link.js';
import { CredentialStore } from '../../core/relay/credentials.js';
import { Relay } from '../../core/relay/relay.js';
import { tcpForwarder } from '../net-fixtures.js';
import { logger, waitFor } from '../helpers.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The default timers: what a real tunnel runs with. */
const T = adaptiveTimers();
/** A loaded test machine runs timers late: this much on top of the design bound. */
const SLACK_MS = 1_500;

interface Setup {
  relay: Relay;
  cp: ContactPoint;
  fwd: Awaited<ReturnType<typeof tcpForwarder>>;
  credentials: CredentialStore;
}

/** Relay and contact point with default timing, the tunnel through a forwarder. */
async function setup(): Promise<Setup> {
  const credentials = CredentialStore.inMemory();
  const relay = new Relay({ credentials, logger });
  await relay.start();
  cleanups.push(() => relay.stop());
  const fwd = await tcpForwarder(Number(new URL(relay.url).port));
  cleanups.push(() => fwd.close());
  const cp = await ContactPoint.create({
    id: 'acme-hq',
    relayUrl: `ws://127.0.0.1:${fwd.port}/v1`,
    secret: await credentials.add('contact-point', 'acme-hq'),
    peerHost: '127.0.0.1',
    logger,
    proxy: null,
    policy: { subnets: ['127.0.0.0/8'] },
  });
  await cp.start();
  cleanups.push(() => cp.stop());
  await waitFor(() => cp.gateway.connected, 5_000, 'tunnel up');
  return { relay, cp, fwd, credentials };
}

function tunnelLinkAtRelay(relay: Relay): Link | undefined {
  return relay.sessions.tunnels.get('acme-hq')?.link;
}

async function client(opts: ConstructorParameters<typeof PeerClient>[0]): Promise<PeerClient> {
  const c = new PeerClient({ logger, proxy: null, ...opts } as ConstructorParameters<typeof PeerClient>[0]);
  cleanups.push(() => c.stop());
  c.start();
  await c.ready();
  return c;
}

describe('adaptive keepalive on a real tunnel', () => {
  it('the default timers meet the bounds: 5 s with ACKs waiting, 30 s without', () => {
    expect(T.noticeBusyMs).toBeLessThanOrEqual(5_000);
    expect(T.noticeIdleClientMs).toBeLessThanOrEqual(30_000);
    expect(T.noticeIdleServerMs).toBeLessThanOrEqual(30_000);
    // an idle client pings before the server's silence limit, with room for a late timer
    expect(T.idlePingMs + T.idleTickMs).toBeLessThan(T.silenceLimitMs - 2_000);
  });

  it('both ends take it up through HELLO and WELCOME; clients that do not ask keep the fixed pings', async () => {
    const { relay, cp, credentials } = await setup();
    expect(cp.gateway.keepaliveMode).toBe('adaptive');
    expect(tunnelLinkAtRelay(relay)?.keepaliveMode).toBe('adaptive');
    // an SDK client does not list the capability: its link stays on the fixed pings
    const ext = await client({ role: 'external', url: relay.url, name: 'alice', secret: await credentials.add('external', 'alice') });
    expect(ext.currentLink?.keepaliveMode).toBe('fixed');
  });

  it('the contact point end notices within 5 s when the path dies while its message waits for an ACK', async () => {
    const { relay, cp, fwd, credentials } = await setup();
    // an external receiver that never acknowledges: the message stays owed on both tunnel ends
    const ext = await client({ role: 'external', url: relay.url, name: 'alice', secret: await credentials.add('external', 'alice'), onMessage: () => new Promise<void>(() => undefined), ackTimeoutMs: 60_000 });
    const printer = await client({ role: 'peer', url: cp.peerPortUrl, name: 'printer', identity: PeerIdentity.generate(), ackTimeoutMs: 60_000 });
    printer.register();
    await printer.waitForRegistration('registered');
    let got = false;
    ext.setMessageHandler(() => {
      got = true;
      return new Promise<void>(() => undefined);
    });
    void printer.send('alice@relay', 'waits for an ACK').catch(() => undefined);
    await waitFor(() => got, 5_000, 'the message at the receiver');
    await new Promise((r) => setTimeout(r, 3_000)); // idle pings of the quiet path would not come for ~20 s
    expect(cp.gateway.connected).toBe(true);
    fwd.blackhole();
    fwd.swallow();
    const t0 = Date.now();
    await waitFor(() => !cp.gateway.connected, T.noticeBusyMs + SLACK_MS, 'the contact point to notice');
    const noticed = Date.now() - t0;
    expect(noticed).toBeLessThanOrEqual(T.noticeBusyMs + SLACK_MS);
  }, 30_000);

  it('the relay end notices within 5 s when messages for the office wait for their ACK', async () => {
    const { relay, cp, fwd, credentials } = await setup();
    const printer = await client({ role: 'peer', url: cp.peerPortUrl, name: 'printer', identity: PeerIdentity.generate() });
    printer.register();
    await printer.waitForRegistration('registered');
    await waitFor(() => relay.peersOf('acme-hq').includes('printer'), 5_000, 'printer announced');
    // Plain: a sealing sender's first message waits for the printer's key (KEYS_REQUEST, which the
    // relay does not count as a message awaiting its ACK), so the MSG this test times would leave
    // only after KEYS_TIMEOUT_MS. The test is about the keepalive, not sealing.
    const ext = await client({ role: 'external', url: relay.url, name: 'alice', secret: await credentials.add('external', 'alice'), ackTimeoutMs: 60_000, seal: 'off' });
    fwd.blackhole();
    fwd.swallow();
    const t0 = Date.now();
    void ext.send('printer@acme-hq', 'into the void').catch(() => undefined);
    await waitFor(() => tunnelLinkAtRelay(relay) === undefined, T.noticeBusyMs + SLACK_MS, 'the relay to drop the tunnel');
    expect(Date.now() - t0).toBeLessThanOrEqual(T.noticeBusyMs + SLACK_MS);
  }, 30_000);

  it('notices within 30 s at both ends when nothing waits', async () => {
    const { relay, cp, fwd } = await setup();
    await new Promise((r) => setTimeout(r, 1_000));
    fwd.blackhole();
    fwd.swallow();
    const t0 = Date.now();
    let cpAt = 0;
    let relayAt = 0;
    await waitFor(
      () => {
        if (!cpAt && !cp.gateway.connected) cpAt = Date.now();
        if (!relayAt && tunnelLinkAtRelay(relay) === undefined) relayAt = Date.now();
        return cpAt !== 0 && relayAt !== 0;
      },
      30_000 + SLACK_MS,
      'both ends to notice',
    );
    // not by a fast check: the idle path is left alone for two ping intervals
    expect(cpAt - t0).toBeGreaterThan(T.idlePingMs - T.idleTickMs - 1_000);
    expect(cpAt - t0).toBeLessThanOrEqual(T.noticeIdleClientMs + SLACK_MS);
    expect(relayAt - t0).toBeLessThanOrEqual(T.noticeIdleServerMs + SLACK_MS);
  }, 45_000);
});
