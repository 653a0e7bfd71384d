import { afterEach, describe, expect, it } from 'vitest';
import { decodeControl, decodeFrame } from '../../core/protocol/codec.js';
import { FrameType } from '../../core/protocol/frames.js';
import { OFFERED_VERSIONS } from '../../core/protocol/version.js';
import type { InboundMessage } from '../../core/peer/peer-client.js';
import { closeFloodSockets, rawPeer } from '../flood-client.js';
import { startHarness, waitFor, type Harness } from '../helpers.js';
import { RawClient } from '../raw-client.js';

/** BATCH (0x17, capability `batch`, PROTOCOL.md 3.3) between the real relay, contact point and SDK. */
let h: Harness | undefined;
afterEach(async () => {
  closeFloodSockets();
  await h?.close();
  h = undefined;
});

const BURST = 300;

describe('BATCH on the message path', () => {
  it('the relay, the contact point and the SDK agree on it, and a burst travels in batches both ways, every message delivered once and acked', async () => {
    h = await startHarness();
    const got: InboundMessage[] = [];
    const printer = await h.registered('printer', (m) => void got.push(m));
    // Plain: sealed, a burst for one receiver would go as a few bundles, one MSG each (PROTOCOL.md 19.6); this is about many frames.
    const alice = await h.external('alice', { ackTimeoutMs: 10_000, seal: 'off' });
    const tunnelAtRelay = h.relay.sessions.tunnels.get('acme-hq')!.link;
    for (const link of [alice.currentLink!, printer.currentLink!, h.cp.gateway.currentLink!, tunnelAtRelay]) expect(link.batchingOn).toBe(true);

    const receipts = await Promise.all(Array.from({ length: BURST }, (_, i) => alice.send('printer@acme-hq', `m${i}`)));
    expect(receipts).toHaveLength(BURST);
    expect(got.map((m) => m.payload.toString()).sort()).toEqual(Array.from({ length: BURST }, (_, i) => `m${i}`).sort());
    expect(alice.stats.retransmits).toBe(0);
    // MSGs went out and in as batches on every hop; so did their ACKs on the way back.
    expect(alice.currentLink!.stats.batchesOut).toBeGreaterThan(0);
    expect(h.cp.gateway.currentLink!.stats.batchesIn).toBeGreaterThan(0);
    expect(printer.currentLink!.stats.batchesIn).toBeGreaterThan(0);
    expect(printer.currentLink!.stats.batchesOut).toBeGreaterThan(0);
    expect(tunnelAtRelay.stats.batchesIn).toBeGreaterThan(0);
    expect(alice.currentLink!.stats.batchesIn).toBeGreaterThan(0);
    // Fewer ws messages than frames, as the counts show: each batch held several.
    expect(printer.currentLink!.stats.framesIn).toBeGreaterThanOrEqual(BURST);
  });

  it('an external peer that did not list `batch` gets no BATCH and no capability in WELCOME, and a burst reaches it frame by frame', async () => {
    h = await startHarness();
    const printer = await h.registered('printer', undefined, { seal: 'off' });
    const secret = await h.credentials.add('external', 'bob');
    const bob = await RawClient.open(h.relay.url);
    bob.hello({ versions: OFFERED_VERSIONS, role: 'external', id: 'bob', secret, env: { capabilities: ['reachable'] } });
    await waitFor(() => bob.frames.some((f) => f.type === FrameType.WELCOME), 5_000, 'bob welcomed');
    expect(decodeControl(bob.frames.find((f) => f.type === FrameType.WELCOME)!, FrameType.WELCOME).capabilities).toBeUndefined();

    // bob never acknowledges: the burst is sent once (no retransmission within the test).
    for (let i = 0; i < 50; i++) printer.send('bob@relay', `m${i}`, { deadlineMs: 60_000 }).catch(() => undefined);
    await waitFor(() => bob.frames.filter((f) => f.type === FrameType.MSG).length === 50, 5_000, 'the 50 messages at bob');
    expect(bob.frames.some((f) => f.type === FrameType.BATCH)).toBe(false);
    // The hops before the relay did batch them.
    expect(h.relay.sessions.tunnels.get('acme-hq')!.link.stats.batchesIn).toBeGreaterThan(0);
  });

  it('an internal peer that did not list `batch` gets no BATCH from the peer port, and a burst reaches it frame by frame', async () => {
    h = await startHarness();
    const old = await rawPeer(h.cp.peerPortUrl, 'oldprinter', '127.0.0.1');
    const wsMessages: Buffer[] = [];
    old.ws.on('message', (d: Buffer) => wsMessages.push(d));
    await h.cp.call('peers:approve', { name: 'oldprinter' });
    await waitFor(() => h!.relay.peersOf('acme-hq').includes('oldprinter'), 5_000, 'oldprinter announced');
    const alice = await h.external('alice', { seal: 'off', ackTimeoutMs: 30_000 });
    for (let i = 0; i < 50; i++) alice.send('oldprinter@acme-hq', `m${i}`, { deadlineMs: 60_000 }).catch(() => undefined);
    await waitFor(() => wsMessages.filter((d) => d[0] === FrameType.MSG).length === 50, 5_000, 'the 50 messages at the old peer');
    expect(wsMessages.map((d) => decodeFrame(d).type)).not.toContain(FrameType.BATCH);
    // It came in batches from the relay: the peer port unpacked them and sent each alone.
    expect(h.cp.gateway.currentLink!.stats.batchesIn).toBeGreaterThan(0);
  });
});
