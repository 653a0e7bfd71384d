import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeControl } from '../../core/protocol/codec.js';
import { CAPABILITY_NODE, FrameType, type HelloBody } from '../../core/protocol/frames.js';
import { OFFERED_VERSIONS } from '../../core/protocol/version.js';
import { Status } from '../../core/protocol/status.js';
import { joinNatsCluster } from '../../core/relay/cluster-nats.js';
import { CredentialStore } from '../../core/relay/credentials.js';
import { Relay } from '../../core/relay/relay.js';
import { PeerClient } from '../../core/peer/peer-client.js';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { FAST, logger, registeredPeer, waitFor } from '../helpers.js';
import { haveNatsServer, startNatsServer } from '../nats-fixtures.js';
import { RawClient } from '../raw-client.js';

/**
 * Issue 12, item 3 at the relay: a contact point's tunnels in slots 0 and 1 (HELLO `slot`) live
 * side by side; the replace and ID_IN_USE rules of 6.1.1 hold per slot; a cluster node names
 * itself in WELCOME only to clients that can read it.
 */
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function relayWith(extra: Partial<ConstructorParameters<typeof Relay>[0]> = {}, credentials = CredentialStore.inMemory()): Promise<{ relay: Relay; secret: string; credentials: CredentialStore }> {
  const secret = await credentials.add('contact-point', 'acme-hq');
  const relay = new Relay({ credentials, logger, takeoverProbeMs: 1_000, ...extra });
  await relay.start();
  cleanups.push(() => relay.stop());
  return { relay, secret, credentials };
}

/** A raw tunnel: its HELLO sent, resolved once WELCOMEd (with the WELCOME). */
async function tunnel(url: string, hello: HelloBody): Promise<{ c: RawClient; welcome: Record<string, unknown> }> {
  const c = await RawClient.open(url);
  cleanups.push(async () => c.ws.terminate());
  c.hello(hello);
  await waitFor(() => c.frames.some((f) => f.type === FrameType.WELCOME) || c.closed !== undefined, 5_000, 'welcome or close');
  const f = c.frames.find((x) => x.type === FrameType.WELCOME);
  return { c, welcome: f ? (decodeControl(f, FrameType.WELCOME) as unknown as Record<string, unknown>) : {} };
}

/** Two relays sharing one credential store, and office acme-hq with slot 0 on A and slot 1 on B (both up). */
async function officeOnTwoRelays(): Promise<{ a: Awaited<ReturnType<typeof relayWith>>; b: Relay; cp: ContactPoint }> {
  const a = await relayWith();
  const b = new Relay({ credentials: a.credentials, logger });
  await b.start();
  cleanups.push(() => b.stop());
  const cp = await ContactPoint.create({ id: 'acme-hq', relayUrl: a.relay.url, relayUrls: [b.url], secret: a.secret, peerHost: '127.0.0.1', logger, timing: FAST });
  cleanups.push(() => cp.stop());
  await cp.start();
  await waitFor(() => (cp.gateway.status().tunnels ?? []).every((t) => t.state === 'connected'), 5_000, 'both tunnels up');
  return { a, b, cp };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('a contact point\'s two tunnels at one relay (HELLO slot)', () => {
  it('slots 0 and 1 live side by side; a newer tunnel of the same instance replaces only its own slot; messages go to the tunnel held longest, then to the other', async () => {
    const { relay, secret, credentials } = await relayWith();
    const base = { versions: OFFERED_VERSIONS, role: 'contact-point' as const, id: 'acme-hq', secret, instance: 'instance-one-abc' };
    const a = await tunnel(relay.url, base);
    const b = await tunnel(relay.url, { ...base, slot: 1 });
    expect(b.welcome.session).toBeDefined();
    await sleep(200);
    expect(a.c.closed).toBeUndefined();
    expect(relay.sessions.tunnelsOf('acme-hq').map((t) => t.slot)).toEqual([0, 1]);
    expect(relay.status().tunnels).toBe(1); // one office

    // A message for the office goes to slot 0, held longest.
    const aliceSecret = await credentials.add('external', 'alice');
    // Plain: the raw tunnels here never answer a key request, so a sealing sender would hold its
    // first MSG for KEYS_TIMEOUT_MS; this test is about which slot gets it.
    const alice = new PeerClient({ role: 'external', url: relay.url, name: 'alice', secret: aliceSecret, logger, timing: FAST, seal: 'off' });
    cleanups.push(() => alice.stop());
    alice.start();
    await alice.ready();
    const msgs = (c: RawClient): number => c.frames.filter((f) => f.type === FrameType.MSG).length;
    void alice.send('printer@acme-hq', 'one').catch(() => undefined);
    await waitFor(() => msgs(a.c) === 1, 5_000, 'the first message on slot 0');
    expect(msgs(b.c)).toBe(0);

    // The same instance's newer tunnel in slot 1 replaces slot 1 only.
    const b2 = await tunnel(relay.url, { ...base, slot: 1 });
    await b.c.waitClosed();
    expect(b.c.errorCode()).toBe(Status.REPLACED);
    expect(a.c.closed).toBeUndefined();
    expect(b2.c.closed).toBeUndefined();

    // Slot 0 goes: messages go to slot 1 from then on.
    a.c.ws.close();
    await waitFor(() => relay.sessions.tunnelsOf('acme-hq').length === 1, 5_000, 'slot 0 gone');
    void alice.send('printer@acme-hq', 'two').catch(() => undefined);
    await waitFor(() => msgs(b2.c) >= 1, 5_000, 'the next message on slot 1');
  });

  it('another instance in a held slot is probed and refused ID_IN_USE, per slot', async () => {
    const { relay, secret } = await relayWith();
    const base = { versions: OFFERED_VERSIONS, role: 'contact-point' as const, id: 'acme-hq', secret };
    const a = await tunnel(relay.url, { ...base, instance: 'instance-one-abc', slot: 1 });
    expect(a.welcome.session).toBeDefined();
    const other = await tunnel(relay.url, { ...base, instance: 'instance-two-xyz', slot: 1 });
    await other.c.waitClosed();
    expect(other.c.errorCode()).toBe(Status.ID_IN_USE);
    expect(a.c.closed).toBeUndefined();
  });

  it('another instance in the free slot, while the holder\'s other slot is up, is probed and refused ID_IN_USE; after a silent holder it takes over and the silent one is closed', async () => {
    const { relay, secret } = await relayWith();
    const base = { versions: OFFERED_VERSIONS, role: 'contact-point' as const, id: 'acme-hq', secret };
    const a = await tunnel(relay.url, { ...base, instance: 'instance-one-abc', slot: 0 });
    expect(a.welcome.session).toBeDefined();
    const other = await tunnel(relay.url, { ...base, instance: 'instance-two-xyz', slot: 1 });
    await other.c.waitClosed();
    expect(other.c.errorCode()).toBe(Status.ID_IN_USE);
    expect(a.c.closed).toBeUndefined();
    expect(relay.sessions.tunnelsOf('acme-hq').map((t) => t.instance)).toEqual(['instance-one-abc']);

    // A holder that does not answer the probe gives way, and leaves with its slot (it would still be routed to).
    a.c.ws.close();
    await waitFor(() => relay.sessions.tunnelsOf('acme-hq').length === 0, 5_000, 'first holder gone');
    const silent = await RawClient.open(relay.url, { autoPong: false });
    cleanups.push(async () => silent.ws.terminate());
    silent.hello({ ...base, instance: 'instance-one-abc', slot: 0 });
    await waitFor(() => silent.frames.some((f) => f.type === FrameType.WELCOME), 5_000, 'silent holder welcomed');
    const taker = await tunnel(relay.url, { ...base, instance: 'instance-two-xyz', slot: 1 });
    expect(taker.welcome.session).toBeDefined();
    await silent.waitClosed();
    expect(silent.errorCode()).toBe(Status.REPLACED);
    expect(relay.sessions.tunnelsOf('acme-hq').map((t) => t.instance)).toEqual(['instance-two-xyz']);
  });

  it('refuses a slot out of range with INVALID_BODY', async () => {
    const { relay, secret } = await relayWith();
    const c = await RawClient.open(relay.url);
    cleanups.push(async () => c.ws.terminate());
    c.hello({ versions: OFFERED_VERSIONS, role: 'contact-point', id: 'acme-hq', secret, slot: 2 } as unknown as HelloBody);
    await c.waitClosed();
    expect(c.errorCode()).toBe(Status.INVALID_BODY);
  });

  it.skipIf(!haveNatsServer)('a cluster node says its node id in WELCOME only to a client that sent a slot or the node capability', async () => {
    const nats = await startNatsServer();
    cleanups.push(() => nats.stop());
    const joined = await joinNatsCluster({ servers: [nats.url], node: 'r7', logger });
    const { relay, secret } = await relayWith({ cluster: joined.cluster }, joined.credentials);
    const base = { versions: OFFERED_VERSIONS, role: 'contact-point' as const, id: 'acme-hq', secret, instance: 'instance-one-abc' };
    // An older client (no slot, no capability) gets the WELCOME it knows: strict schemas refuse unknown fields.
    const old = await tunnel(relay.url, base);
    expect(Object.keys(old.welcome).sort()).toEqual(['address', 'limits', 'session', 'version']);
    old.c.ws.close();
    await waitFor(() => relay.sessions.tunnelsOf('acme-hq').length === 0, 5_000, 'old tunnel gone');
    const withCap = await tunnel(relay.url, { ...base, env: { capabilities: [CAPABILITY_NODE] } });
    expect(withCap.welcome.node).toBe('r7');
    const slot1 = await tunnel(relay.url, { ...base, slot: 1 });
    expect(slot1.welcome.node).toBe('r7');
  });
});

describe('a contact point\'s outbound messages with two tunnels (issue 12)', () => {
  it('a LAN peer whose message went up a tunnel that dropped hears REACHABLE at once while the other tunnel stays up, and its resend goes up that one', async () => {
    const { a, cp } = await officeOnTwoRelays();
    // Its own retry is 20 s away: only REACHABLE makes it resend sooner.
    const printer = await registeredPeer(cp, 'printer', (stop) => void cleanups.push(stop), { ackTimeoutMs: 20_000 });

    // bob is on A only and never acknowledges: printer's message waits for an ACK that A's loss takes with it.
    const bobSecret = await a.credentials.add('external', 'bob');
    const bob = await RawClient.open(a.relay.url);
    cleanups.push(async () => bob.ws.terminate());
    bob.hello({ versions: OFFERED_VERSIONS, role: 'external', id: 'bob', secret: bobSecret });
    await waitFor(() => bob.frames.some((f) => f.type === FrameType.WELCOME), 5_000, 'bob welcomed');
    const address = (decodeControl(bob.frames.find((f) => f.type === FrameType.WELCOME)!, FrameType.WELCOME) as { address: string }).address;
    const sending = printer.send(address, 'hello', { deadlineMs: 30_000 });
    sending.catch(() => undefined);
    await waitFor(() => bob.frames.some((f) => f.type === FrameType.MSG), 5_000, 'the message at bob, through slot 0 on A');

    // A goes; slot 1 on B stays up: the office as a whole never went down.
    await a.relay.stop();
    await waitFor(() => printer.stats.reachable > 0, 3_000, 'REACHABLE for the message lost with slot 0');
    expect(cp.gateway.connected).toBe(true);
    await waitFor(() => printer.stats.retransmits > 0, 3_000, 'the resend, through slot 1 on B');
  });
});

describe('an admin\'s reconnect with two tunnels (issue 12)', () => {
  it('tunnel:reconnect drops one tunnel at a time: the other only once the first is back, so the office is never without a tunnel', async () => {
    const { a, b, cp } = await officeOnTwoRelays();
    const session = (r: Relay): string | undefined => r.sessions.tunnelsOf('acme-hq')[0]?.session;
    const before = [session(a.relay), session(b)];
    const events: string[] = [];
    cp.gateway.on('slotUp', (slot) => void events.push(`up ${slot}`));
    cp.gateway.on('slotDown', (slot) => void events.push(`down ${slot}`));
    cp.gateway.on('down', () => void events.push('office down'));

    await cp.call('tunnel:reconnect', {});
    await waitFor(() => events.length === 4, 10_000, 'both tunnels dropped and back');
    // Slot 1 first (sends go on slot 0), then slot 0 once slot 1 is back.
    expect(events).toEqual(['down 1', 'up 1', 'down 0', 'up 0']);
    await waitFor(() => session(a.relay) !== undefined && session(b) !== undefined, 5_000, 'both sessions at the relays');
    expect(session(a.relay)).not.toBe(before[0]);
    expect(session(b)).not.toBe(before[1]);
  });
});

describe('a contact point\'s UDP channel with two tunnels (issue 12)', () => {
  async function udpSocket(): Promise<Socket> {
    const sock = createSocket('udp4');
    sock.bind(0, '127.0.0.1');
    await once(sock, 'listening');
    cleanups.push(async () => sock.close());
    return sock;
  }

  it('keeps the channel it greeted relay A on when B offers one too, so A\'s datagrams are not sent to a closed socket', async () => {
    const a = await relayWith();
    // B's port is known before it runs: slot 1 dials it in vain until it is back, after A's channel is up.
    const first = new Relay({ credentials: a.credentials, logger });
    await first.start();
    const bPort = Number(new URL(first.url).port);
    const bUrl = first.url;
    await first.stop();
    const cp = await ContactPoint.create({ id: 'acme-hq', relayUrl: a.relay.url, relayUrls: [bUrl], secret: a.secret, peerHost: '127.0.0.1', logger, timing: FAST });
    cleanups.push(() => cp.stop());
    await cp.start();
    await waitFor(() => cp.udpChannel?.ready === true, 5_000, 'the channel to A');
    const b = new Relay({ credentials: a.credentials, logger, port: bPort });
    await b.start();
    cleanups.push(() => b.stop());
    await waitFor(() => (cp.gateway.status().tunnels ?? []).every((t) => t.state === 'connected'), 10_000, 'slot 1 up on B');
    await new Promise((r) => setTimeout(r, 500)); // B's UDP_CHANNEL offer, sent with its WELCOME, is handled

    // A UDP echo service on the LAN, exposed at A (the office's tunnel there is slot 0).
    await cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: ['udp:1-65535'] });
    const echo = await udpSocket();
    echo.on('message', (m, r) => void echo.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
    const e = await a.relay.expose({ cp: 'acme-hq', proto: 'udp', host: '127.0.0.1', port: echo.address().port, operator: 'tech' });
    const client = await udpSocket();
    const replies: string[] = [];
    client.on('message', (m) => void replies.push(m.toString()));
    for (let i = 0; i < 100 && replies.length < 3; i++) {
      client.send(`n${i}`, e.publicPort, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(replies.length).toBeGreaterThanOrEqual(3);

    // A goes: the next offer (slot 0 dials B in its turn) is taken up.
    const toA = cp.udpChannel;
    await a.relay.stop();
    await waitFor(() => cp.udpChannel !== undefined && cp.udpChannel !== toA && cp.udpChannel.ready, 5_000, 'a channel to B');
  });
});
