import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { PeerClient, type InboundMessage, type Receipt } from '../../core/peer/peer-client.js';
import { FrameType } from '../../core/protocol/frames.js';
import { ACK_TIMEOUT_MS } from '../../core/protocol/limits.js';
import { FAST, logger, registeredPeer, startHarness, waitFor, type Harness } from '../helpers.js';
import { tcpForwarder } from '../net-fixtures.js';
import { RawClient } from '../raw-client.js';

/**
 * Issue 10 item 7: after a tunnel outage, messages senders retried during it must not wait out
 * their retry backoff (up to ACK_TIMEOUT_MS between retries while refused "contact point
 * offline"). The relay and the contact point send REACHABLE when the tunnel is back.
 */
const BOUND_MS = 1_500;
/** Long enough that every sender's retry interval has grown to its cap (200+400+800+1600 ms, then 2 s). */
const OUTAGE_MS = 5_500;
const PER_SENDER = 20;

let h: Harness | undefined;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await h?.close();
  h = undefined;
});

/** A registered internal peer with the SDK's default ACK timeout (the harness shortens it). */
function registered(cp: ContactPoint, name: string, onMessage?: (m: InboundMessage) => void): Promise<PeerClient> {
  return registeredPeer(cp, name, (fn) => void cleanups.push(fn), onMessage ? { onMessage } : {});
}

const secrets = new Map<string, string>();

async function contactPoint(id: string, relayUrl: string, keepalive: { pingIntervalMs?: number; pongTimeoutMs?: number } = {}): Promise<ContactPoint> {
  const secret = await h!.credentials.add('contact-point', id);
  secrets.set(id, secret);
  const dir = await mkdtemp(join(tmpdir(), `cp-${id}-`));
  const cp = await ContactPoint.create({ id, relayUrl, secret, stateDir: dir, peerHost: '127.0.0.1', logger, timing: { ...FAST, ...keepalive } });
  cleanups.push(async () => {
    await cp.stop();
    await rm(dir, { recursive: true, force: true });
  });
  await cp.start();
  await waitFor(() => cp.gateway.connected, 5_000, `${id} tunnel`);
  return cp;
}

describe('after a tunnel outage', () => {
  it(`delivers what senders queued during it within ${BOUND_MS} ms of the tunnel's return: external -> LAN, LAN -> external, and LAN -> LAN of another contact point`, async () => {
    h = await startHarness();
    const relayPort = Number(new URL(h.relay.url).port);
    const fwd = await tcpForwarder(relayPort);
    cleanups.push(() => fwd.close());
    const office = await contactPoint('office', `ws://127.0.0.1:${fwd.port}/v1`);
    const arrived = new Map<string, number>();
    const note = (m: InboundMessage): void => void arrived.set(m.payload.toString(), Date.now());
    await registered(office, 'printer', note);
    const printer = await registered(office, 'spooler');
    // ackTimeoutMs as the SDK's default: the retry interval of refused messages caps at it.
    const alice = await h.external('alice', { ackTimeoutMs: ACK_TIMEOUT_MS, onMessage: note });
    expect(ACK_TIMEOUT_MS).toBe(2_000);

    // The harness's contact point: its LAN peer writes to the office through the relay.
    const scanner = await registered(h.cp, 'scanner');
    await waitFor(() => h!.relay.peersOf('office').includes('printer'), 5_000, 'printer announced');

    // The outage: the office's tunnel goes down; the relay and both LANs stay up.
    fwd.cut();
    await waitFor(() => h!.relay.control('office') === undefined && !office.gateway.connected, 5_000, 'the tunnel to go');
    const sends: Promise<Receipt>[] = [];
    const start = Date.now();
    for (let i = 0; i < PER_SENDER; i++) {
      sends.push(alice.send('printer@office', `a${i}`));
      sends.push(printer.send('alice@relay', `p${i}`));
      sends.push(scanner.send('printer@office', `s${i}`));
      // Spread over 2 s, so the retries are spread over their interval too.
      await new Promise((r) => setTimeout(r, 2_000 / PER_SENDER));
    }
    await new Promise((r) => setTimeout(r, OUTAGE_MS - (Date.now() - start)));
    expect(arrived.size).toBe(0);

    let upAt = 0;
    office.gateway.once('up', () => (upAt = Date.now()));
    fwd.restore();
    const receipts = await Promise.all(sends);
    expect(receipts).toHaveLength(3 * PER_SENDER);
    expect(upAt).toBeGreaterThan(0);
    const delays = [...arrived.entries()].map(([what, at]) => [what, at - upAt] as const);
    expect(delays).toHaveLength(3 * PER_SENDER);
    const late = delays.filter(([, d]) => d > BOUND_MS);
    expect(late, `delivered later than ${BOUND_MS} ms after the tunnel returned`).toEqual([]);
    // Each was told, not lucky: the SDKs heard REACHABLE.
    expect(alice.stats.reachable).toBeGreaterThan(0);
    expect(printer.stats.reachable).toBeGreaterThan(0);
    expect(scanner.stats.reachable).toBeGreaterThan(0);
  }, 30_000);

  it(`resends at once what a tunnel swallowed before it was replaced, though nothing was refused`, async () => {
    h = await startHarness();
    const fwd = await tcpForwarder(Number(new URL(h.relay.url).port));
    cleanups.push(() => fwd.close());
    const office = await contactPoint('office', `ws://127.0.0.1:${fwd.port}/v1`);
    const arrived = new Map<string, number>();
    await registered(office, 'printer', (m) => void (m.payload.toString() !== 'warm-up' && arrived.set(m.payload.toString(), Date.now())));
    const alice = await h.external('alice', { ackTimeoutMs: ACK_TIMEOUT_MS });
    await waitFor(() => h!.relay.peersOf('office').includes('printer'), 5_000, 'printer announced');
    // Sealing keys known before the outage (a first message looks them up), so what follows are the messages themselves.
    await alice.send('printer@office', 'warm-up');

    // A tunnel the relay believes is up but that delivers nothing (as a half-dead TCP path
    // would): a raw client holding the office's credential, reading and never answering, not
    // even the relay's liveness probe when the real contact point comes back.
    fwd.cut();
    await waitFor(() => h!.relay.control('office') === undefined && !office.gateway.connected, 5_000, 'the tunnel to go');
    const dead = await RawClient.open(h.relay.url, { autoPong: false });
    cleanups.push(async () => void dead.ws.terminate());
    dead.hello({ versions: { min: 1, max: 1 }, role: 'contact-point', id: 'office', secret: secrets.get('office')! });
    await waitFor(() => h!.relay.control('office') !== undefined, 5_000, 'the dead tunnel to be up');

    const sends: Promise<Receipt>[] = [];
    for (let i = 0; i < PER_SENDER; i++) {
      sends.push(alice.send('printer@office', `a${i}`));
      await new Promise((r) => setTimeout(r, 1_000 / PER_SENDER));
    }
    // Past the first ACK timeout (2 s): each has been swallowed twice, the next try is 4 s off.
    await new Promise((r) => setTimeout(r, 2_500));
    expect(arrived.size).toBe(0);
    expect(dead.frames.filter((f) => f.type === FrameType.MSG).length).toBeGreaterThanOrEqual(2 * PER_SENDER);

    // The real contact point comes back and replaces the dead tunnel.
    let upAt = 0;
    office.gateway.once('up', () => (upAt = Date.now()));
    fwd.restore();
    await Promise.all(sends);
    const late = [...arrived.entries()].map(([what, at]) => [what, at - upAt] as const).filter(([, d]) => d > BOUND_MS);
    expect(late, `delivered later than ${BOUND_MS} ms after the tunnel returned`).toEqual([]);
    expect(alice.stats.reachable).toBeGreaterThan(0);
  }, 30_000);

  it('resends at once what LAN peers sent into a half-dead tunnel, once the contact point has noticed and reconnected', async () => {
    h = await startHarness();
    const fwd = await tcpForwarder(Number(new URL(h.relay.url).port));
    cleanups.push(() => fwd.close());
    // Keepalive notices a little after the LAN peers' first ACK timeout (2 s): their first retry is
    // lost too, and the next is 4 s later.
    const office = await contactPoint('office', `ws://127.0.0.1:${fwd.port}/v1`, { pingIntervalMs: 1_500, pongTimeoutMs: 1_000 });
    const printer = await registered(office, 'printer');
    const arrived = new Map<string, number>();
    const alice = await h.external('alice', { onMessage: (m) => void (m.payload.toString() !== 'warm-up' && arrived.set(m.payload.toString(), Date.now())) });
    // Sealing keys known before the outage: alice's bound at the office, and looked up by the printer.
    await alice.send('printer@office', 'warm-up');
    await printer.send('alice@relay', 'warm-up');

    fwd.swallow();
    const sends: Promise<Receipt>[] = [];
    for (let i = 0; i < PER_SENDER; i++) {
      sends.push(printer.send('alice@relay', `p${i}`));
      await new Promise((r) => setTimeout(r, 500 / PER_SENDER));
    }
    let upAt = 0;
    // The contact point notices the dead tunnel by keepalive, and redials at once.
    await waitFor(() => !office.gateway.connected, 10_000, 'the contact point to notice');
    office.gateway.once('up', () => (upAt = Date.now()));
    await Promise.all(sends);
    expect(printer.stats.retransmits).toBeGreaterThanOrEqual(PER_SENDER); // the first retry was lost too
    const late = [...arrived.entries()].map(([what, at]) => [what, at - upAt] as const).filter(([, d]) => d > BOUND_MS);
    expect(late, `delivered later than ${BOUND_MS} ms after the tunnel returned`).toEqual([]);
    expect(printer.stats.reachable).toBeGreaterThan(0);
  }, 30_000);

  it('after a relay restart, tells LAN senders the moment the external peer they wait for connects', async () => {
    h = await startHarness();
    const printer = await registered(h.cp, 'spooler');
    const aliceSecret = await h.credentials.add('external', 'alice');
    await h.relay.stop();
    await waitFor(() => !h!.cp.gateway.connected, 5_000, 'the tunnel to go');
    const sends: Promise<Receipt>[] = [];
    for (let i = 0; i < PER_SENDER; i++) {
      sends.push(printer.send('alice@relay', `p${i}`));
      await new Promise((r) => setTimeout(r, 2_000 / PER_SENDER));
    }
    await new Promise((r) => setTimeout(r, 2_000));

    // The relay is back; the tunnel returns (and the spooler resends at once: alice is not
    // there yet, so it is refused PEER_OFFLINE). Alice connects a moment later.
    await h.restartRelay();
    await waitFor(() => h!.cp.gateway.connected, 5_000, 'the tunnel to return');
    await new Promise((r) => setTimeout(r, 200));
    const arrived = new Map<string, number>();
    const alice = new PeerClient({ role: 'external', url: h.relay.url, name: 'alice', secret: aliceSecret, logger, timing: FAST, onMessage: (m) => void arrived.set(m.payload.toString(), Date.now()) });
    cleanups.push(() => alice.stop());
    let aliceUpAt = 0;
    alice.on('status', (st) => void (st.state === 'connected' && !aliceUpAt && (aliceUpAt = Date.now())));
    alice.start();
    await Promise.all(sends);
    expect(aliceUpAt).toBeGreaterThan(0);
    const late = [...arrived.entries()].map(([what, at]) => [what, at - aliceUpAt] as const).filter(([, d]) => d > BOUND_MS);
    expect(late, `delivered later than ${BOUND_MS} ms after alice connected`).toEqual([]);
    expect(arrived.size).toBe(PER_SENDER);
  }, 30_000);
});
