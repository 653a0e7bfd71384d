/**
 * The adaptive keepalive with the heartbeat (PROTOCOL.md 12.1, 12.2) on a real tunnel with the
 * default timers: a relay and a contact point through a TCP forwarder that can blackhole the
 * path (bytes stop both ways, no FIN, no RST, new connections accepted and never answered), as
 * when a NAT entry silently expires, and a relay in its own process that is frozen (SIGSTOP: its
 * kernel still ACKs, keeps the socket open and would answer TCP keepalives; nothing of the relay
 * answers). Bounds: noticed within 5 s while messages wait for an ACK, within 30 s otherwise.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { PeerClient } from '../../core/peer/peer-client.js';
import { PeerIdentity } from '../../core/peer/identity.js';
import { CAPABILITY_ADAPTIVE_KEEPALIVE, CAPABILITY_HEARTBEAT, FrameType } from '../../core/protocol/frames.js';
import { decodeControl } from '../../core/protocol/codec.js';
import { OFFERED_VERSIONS } from '../../core/protocol/version.js';
import { adaptiveTimers, type Link } from '../../core/protocol/link.js';
import { CredentialStore } from '../../core/relay/credentials.js';
import { Relay } from '../../core/relay/relay.js';
import { tcpForwarder } from '../net-fixtures.js';
import { RawClient } from '../raw-client.js';
import { killHard, requireBuild, ROOT, spawnReady } from '../child.js';
import { logger, waitFor } from '../helpers.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The default timers: what a real tunnel runs with (the relay and the contact point both speak the heartbeat). */
const T = adaptiveTimers(undefined, undefined, true);
/** A loaded test machine runs timers late: this much on top of the design bound. */
const SLACK_MS = 1_500;

/** Prints a detection time beside its design bound (the figures PROTOCOL.md 12.2 quotes come from these lines). */
function report(what: string, ms: number, boundMs: number): void {
  console.log(`keepalive: ${what}: noticed after ${ms} ms (design bound ${boundMs} ms)`);
}

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
  it('the default timers meet the bounds: 5 s with ACKs waiting, 30 s without at the contact point', () => {
    expect(T.noticeBusyMs).toBeLessThanOrEqual(5_000);
    expect(T.noticeIdleClientMs).toBeLessThanOrEqual(30_000);
    // the relay reaps a silent idle tunnel later (12.2): it only frees the slot; a restarted contact point takes its id back by the takeover probe
    expect(T.noticeIdleServerMs).toBeLessThanOrEqual(4 * 60_000);
    // an idle client pings before the server's silence limit, with room for a late timer
    expect(T.idlePingMs + T.idleTickMs).toBeLessThan(T.silenceLimitMs - 2_000);
    // ... and does not count a heartbeat late before it is due
    expect(T.lateMs).toBeGreaterThanOrEqual(T.beatMs + T.serverIdleTickMs);
  });

  it('both ends take it up through HELLO and WELCOME; clients that do not ask keep the fixed pings, an older contact point the adaptive ones', async () => {
    const { relay, cp, credentials } = await setup();
    expect(cp.gateway.keepaliveMode).toBe('heartbeat');
    expect(tunnelLinkAtRelay(relay)?.keepaliveMode).toBe('heartbeat');
    // what the admin sees (GUI Tunnel page, status): the mode and the bounds it keeps
    const k = cp.gateway.status().keepalive;
    expect(k?.mode).toBe('heartbeat');
    expect(k!.noticeIdleMs).toBeLessThanOrEqual(30_000);
    expect(k!.noticeBusyMs).toBeLessThanOrEqual(5_000);
    // an SDK client does not list the capability: its link stays on the fixed pings
    const ext = await client({ role: 'external', url: relay.url, name: 'alice', secret: await credentials.add('external', 'alice') });
    expect(ext.currentLink?.keepaliveMode).toBe('fixed');
    // a contact point from before the heartbeat lists adaptive-keepalive alone: it gets 12.1 as before
    const old = await RawClient.open(relay.url);
    cleanups.push(async () => old.ws.terminate());
    const secret = await credentials.add('contact-point', 'old-office');
    old.hello({ versions: OFFERED_VERSIONS, role: 'contact-point', id: 'old-office', secret, env: { software: 'contact-point/0.0.9', capabilities: ['messages', CAPABILITY_ADAPTIVE_KEEPALIVE] } });
    await waitFor(() => old.frames.some((f) => f.type === FrameType.WELCOME), 5_000, 'welcome');
    const welcome = decodeControl(old.frames.find((f) => f.type === FrameType.WELCOME)!, FrameType.WELCOME);
    expect(welcome.capabilities).toEqual([CAPABILITY_ADAPTIVE_KEEPALIVE]);
    expect(relay.sessions.tunnels.get('old-office')?.link.keepaliveMode).toBe('adaptive');
    // heartbeat without adaptive-keepalive is not taken up
    const odd = await RawClient.open(relay.url);
    cleanups.push(async () => odd.ws.terminate());
    odd.hello({ versions: OFFERED_VERSIONS, role: 'contact-point', id: 'odd-office', secret: await credentials.add('contact-point', 'odd-office'), env: { capabilities: ['messages', CAPABILITY_HEARTBEAT] } });
    await waitFor(() => odd.frames.some((f) => f.type === FrameType.WELCOME), 5_000, 'welcome');
    expect(decodeControl(odd.frames.find((f) => f.type === FrameType.WELCOME)!, FrameType.WELCOME).capabilities).toBeUndefined();
    expect(relay.sessions.tunnels.get('odd-office')?.link.keepaliveMode).toBe('fixed');
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
    report('blackholed path, contact point end, MSG waiting, default timers', noticed, T.noticeBusyMs);
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
    report('blackholed path, relay end, MSGs waiting, default timers', Date.now() - t0, T.noticeBusyMs);
    expect(Date.now() - t0).toBeLessThanOrEqual(T.noticeBusyMs + SLACK_MS);
  }, 30_000);

  it('the contact point notices within 30 s when nothing waits', async () => {
    const { cp, fwd } = await setup();
    await new Promise((r) => setTimeout(r, 1_000));
    fwd.blackhole();
    fwd.swallow();
    const t0 = Date.now();
    await waitFor(() => !cp.gateway.connected, 30_000 + SLACK_MS, 'the contact point to notice');
    const noticed = Date.now() - t0;
    report('blackholed path, idle, default timers', noticed, T.noticeIdleClientMs);
    expect(noticed).toBeLessThanOrEqual(T.noticeIdleClientMs + SLACK_MS);
  }, 45_000);
});

/** A relay in its own process (test/fixtures/relay-child.mjs), so the test can freeze it. */
async function frozenRelaySetup(relayPingMs: number): Promise<{ cp: ContactPoint; upAt: number; freeze: () => void; thaw: () => void }> {
  requireBuild();
  const dir = await mkdtemp(join(tmpdir(), 'cp-keepalive-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const credentials = await CredentialStore.open(dir);
  const secret = await credentials.add('contact-point', 'acme-hq');
  await credentials.add('external', 'alice');
  const relay = await spawnReady([join(ROOT, 'test/fixtures/relay-child.mjs'), dir, '0', String(relayPingMs)]);
  cleanups.push(() => killHard(relay.proc));
  const cp = await ContactPoint.create({ id: 'acme-hq', relayUrl: String(relay.ready.url), secret, peerHost: '127.0.0.1', logger, proxy: null, policy: { subnets: ['127.0.0.1/32'] } });
  await cp.start();
  cleanups.push(() => cp.stop());
  await waitFor(() => cp.gateway.connected, 5_000, 'tunnel up');
  const upAt = Date.now();
  expect(cp.gateway.keepaliveMode).toBe('heartbeat');
  return {
    cp,
    upAt,
    freeze: () => void relay.proc.kill('SIGSTOP'),
    thaw: () => void relay.proc.kill('SIGCONT'),
  };
}

describe('heartbeat keepalive: a frozen relay process (SIGSTOP)', () => {
  it('is noticed within 5 s when a message waits for its ACK (default timers), and the tunnel comes back when it thaws', async () => {
    const { cp, freeze, thaw } = await frozenRelaySetup(10_000);
    // plain, so the MSG itself goes into the tunnel (a sealing sender would first ask for alice's key, which is not a MSG)
    const printer = await client({ role: 'peer', url: cp.peerPortUrl, name: 'printer', identity: PeerIdentity.generate(), ackTimeoutMs: 60_000, seal: 'off' });
    printer.register();
    await printer.waitForRegistration('registered');
    await new Promise((r) => setTimeout(r, 2_000));
    freeze();
    const t0 = Date.now();
    void printer.send('alice@relay', 'waits for its ACK').catch(() => undefined);
    await waitFor(() => !cp.gateway.connected, T.noticeBusyMs + SLACK_MS, 'the contact point to notice');
    const noticed = Date.now() - t0;
    report('frozen relay, MSG waiting, default timers', noticed, T.noticeBusyMs);
    expect(noticed).toBeLessThanOrEqual(T.noticeBusyMs + SLACK_MS);
    thaw();
    await waitFor(() => cp.gateway.connected, 10_000, 'the tunnel back');
  }, 30_000);

  it('is noticed within 30 s when nothing waits (default timers)', async () => {
    const { cp, upAt, freeze } = await frozenRelaySetup(10_000);
    await new Promise((r) => setTimeout(r, 1_000));
    freeze();
    const t0 = Date.now();
    await waitFor(() => !cp.gateway.connected, 30_000 + SLACK_MS, 'the contact point to notice');
    const noticed = Date.now() - t0;
    report('frozen relay, idle, default timers', noticed, T.noticeIdleClientMs);
    // the last thing heard was the pong at the switch (the first heartbeat would have come 25 s
    // later): not noticed before that silence reached lateMs
    expect(noticed).toBeGreaterThanOrEqual(T.lateMs - (t0 - upAt) - 500);
    expect(noticed).toBeLessThanOrEqual(T.noticeIdleClientMs + SLACK_MS);
  }, 45_000);

  it('scaled down (relay ping interval 1 s): heartbeats keep an idle tunnel up without pings, and a freeze is noticed within the scaled bound', async () => {
    const S = adaptiveTimers(1_000, 5_000, true);
    const { cp, freeze } = await frozenRelaySetup(1_000);
    // count the contact point's pings on its tunnel from here on, and the heartbeats it hears
    const ws = cp.gateway.currentLink!.ws;
    const ping = ws.ping.bind(ws);
    let pings = 0;
    ws.ping = (...args: Parameters<typeof ws.ping>): void => {
      pings++;
      ping(...args);
    };
    let beats = 0;
    ws.on('pong', (d: Buffer) => void (d.length === 0 && beats++));
    // several heartbeats' worth of idle time: up, and not one ping of the contact point's own
    await new Promise((r) => setTimeout(r, 3 * S.lateMs));
    expect(cp.gateway.connected).toBe(true);
    expect(pings).toBe(0);
    expect(beats).toBeGreaterThanOrEqual(3);
    freeze();
    const t0 = Date.now();
    await waitFor(() => !cp.gateway.connected, S.noticeIdleClientMs + SLACK_MS, 'the contact point to notice');
    const noticed = Date.now() - t0;
    report('frozen relay, idle, P = 1 s', noticed, S.noticeIdleClientMs);
    expect(noticed).toBeLessThanOrEqual(S.noticeIdleClientMs + SLACK_MS);
  }, 40_000);
});
