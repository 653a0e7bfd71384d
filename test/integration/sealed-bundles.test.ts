import { afterEach, describe, expect, it, vi } from 'vitest';
import { SealGuard } from '../../core/contact-point/seal-guard.js';
import type { InboundMessage, PeerClient } from '../../core/peer/peer-client.js';
import { decodeAck, decodeFrame, decodeMsg, type Frame } from '../../core/protocol/codec.js';
import { FLAG_RETRY, FLAG_SEAL_BUNDLE, FLAG_SEALED, FrameType } from '../../core/protocol/frames.js';
import { BUNDLE_MAX_MESSAGES, BUNDLE_OVERHEAD, BUNDLE_SEND_BYTES, SEAL_HEADER_BYTES, SEAL_VERSION_AES, SEAL_VERSION_BUNDLE } from '../../core/protocol/seal.js';
import { Status } from '../../core/protocol/status.js';
import { Router } from '../../core/relay/routing.js';
import type { RelaySession } from '../../core/relay/sessions.js';
import { startHarness, waitFor, type Harness } from '../helpers.js';

/**
 * Sealed bundles (PROTOCOL.md 19.6): the messages a sender has for one receiver in one turn go
 * as one MSG under one seal (version 3), when the receiver said it opens them.
 */

const MARKER = 'MARKER-bundle-9c1e-plaintext-the-relay-must-not-see';

interface Tap {
  /** every MSG the relay routed (raw) */
  readonly msgs: Buffer[];
  readonly acks: { id: string; status: number; reason: string; from: string }[];
  rewrite: ((frame: Frame) => Buffer | undefined) | undefined;
  /** an ACK it says true for is dropped (recorded, never forwarded) */
  dropAck: ((ack: { id: string; from: string }) => boolean) | undefined;
}

function tapRelay(): Tap {
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called with the router as `this` below
  const { onMsg, onAck } = Router.prototype;
  const tap: Tap = { msgs: [], acks: [], rewrite: undefined, dropAck: undefined };
  vi.spyOn(Router.prototype, 'onMsg').mockImplementation(function (this: Router, s: RelaySession, frame: Frame) {
    if (frame.type !== FrameType.MSG) return onMsg.call(this, s, frame);
    tap.msgs.push(Buffer.from(frame.raw));
    const changed = tap.rewrite?.(frame);
    return onMsg.call(this, s, changed ? decodeFrame(changed) : frame);
  });
  vi.spyOn(Router.prototype, 'onAck').mockImplementation(function (this: Router, s: RelaySession, frame: Frame) {
    const a = decodeAck(frame);
    tap.acks.push({ id: a.id, status: a.status, reason: a.reason, from: a.from });
    if (tap.dropAck?.(a)) return;
    return onAck.call(this, s, frame);
  });
  return tap;
}

/** The envelope versions of the sealed MSGs the relay routed, in order. */
function versions(tap: Tap): number[] {
  return tap.msgs.filter((f) => (f[1]! & FLAG_SEALED) !== 0).map((f) => decodeMsg(decodeFrame(f)).payload[0]!);
}

/** `n` messages sent in one turn; resolves with their outcomes. */
function burst(c: PeerClient, to: string, n: number, opts: { deadlineMs?: number } = {}): Promise<PromiseSettledResult<unknown>[]> {
  const sends: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) sends.push(c.send(to, `${MARKER} #${i}`, opts));
  return Promise.allSettled(sends);
}

/** An external sender that already has printer's key (its first message looked it up, and went alone). */
async function warmSender(h: Harness, name = 'alice'): Promise<PeerClient> {
  const alice = await h.external(name);
  await alice.send('printer@acme-hq', 'first');
  return alice;
}

let h: Harness | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await h?.close();
  h = undefined;
});

describe('sealed bundles', () => {
  it('many messages to one receiver in one turn: sealed as bundles, delivered in order and once each; the relay never sees the plaintext', async () => {
    const tap = tapRelay();
    h = await startHarness();
    const got: InboundMessage[] = [];
    const printer = await h.registered('printer', (m) => void got.push(m));
    const alice = await warmSender(h);
    const flow: { id: string; count?: number }[] = [];
    const unsubscribe = h.cp.flow.subscribe((b) => void flow.push(...b.events));
    const n = BUNDLE_MAX_MESSAGES + 36; // more than one bundle's worth
    const results = await burst(alice, 'printer@acme-hq', n);
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    const bodies = got.slice(1).map((m) => m.payload.toString());
    expect(bodies).toEqual(Array.from({ length: n }, (_, i) => `${MARKER} #${i}`));
    expect(got.slice(1).every((m) => m.sealed === true && m.bundle !== undefined)).toBe(true);
    // Each message keeps its own id (its Receipt's), the bundle's wire id is another.
    const receipts = results.map((r) => (r as PromiseFulfilledResult<{ id: string }>).value.id);
    expect(got.slice(1).map((m) => m.id)).toEqual(receipts);
    // The first went alone (version 2); the burst in two bundles, the first holding the most a bundle may.
    expect(versions(tap)).toEqual([SEAL_VERSION_AES, SEAL_VERSION_BUNDLE, SEAL_VERSION_BUNDLE]);
    expect(alice.stats.bundlesSent).toBe(2);
    expect(printer.stats.bundlesReceived).toBe(2);
    expect(alice.stats.sealed).toBe(n + 1);
    expect(tap.msgs.some((f) => f.includes(MARKER))).toBe(false);
    // The contact point's totals count the messages, not the MSGs; its flow has one entry per bundle.
    await waitFor(() => h!.cp.flow.totals().delivered === n + 1, 5_000, 'flow totals');
    expect(h.cp.registrar.get('printer')?.messagesIn).toBe(n + 1);
    await waitFor(() => flow.length >= 2, 5_000, 'the flow events of the bundles');
    unsubscribe();
    expect(flow.map((e) => e.count)).toEqual([BUNDLE_MAX_MESSAGES, 36]);
  });

  it('an internal peer bursting to an external one: bundles the other way, opened by the external peer against its statement', async () => {
    const tap = tapRelay();
    h = await startHarness();
    const printer = await h.registered('printer');
    const inbox: string[] = [];
    const alice = await h.external('alice', { onMessage: (m: InboundMessage) => void inbox.push(m.payload.toString()) });
    await alice.send('printer@acme-hq', 'hello'); // alice's key is bound, and she said she opens bundles
    await printer.send('alice@relay', 'first');
    const results = await burst(printer, 'alice@relay', 20);
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    expect(inbox).toEqual(['first', ...Array.from({ length: 20 }, (_, i) => `${MARKER} #${i}`)]);
    expect(printer.stats.bundlesSent).toBe(1);
    expect(alice.stats.bundlesReceived).toBe(1);
    expect(tap.msgs.some((f) => f.includes(MARKER))).toBe(false);
    await waitFor(() => h!.cp.registrar.get('printer')?.messagesOut === 21, 5_000, 'printer counted 21 out');
  });

  it('a bundle that comes again (a retransmission, a replay within the age limit) is ACKed and not delivered twice', async () => {
    const tap = tapRelay();
    h = await startHarness();
    const got: string[] = [];
    await h.registered('printer', (m) => void got.push(m.payload.toString()));
    const alice = await warmSender(h);
    await burst(alice, 'printer@acme-hq', 5);
    const bundle = tap.msgs.find((f) => decodeMsg(decodeFrame(f)).payload[0] === SEAL_VERSION_BUNDLE)!;
    const acksBefore = tap.acks.length;
    // The relay sends the recorded bundle on once more, as if it were a retransmission.
    const router = (h.relay as unknown as { router: Router }).router;
    expect(router).toBeInstanceOf(Router);
    const session = [...h.relay.sessions.all()].find((s) => s.kind === 'external')!;
    router.onMsg(session, decodeFrame(bundle));
    await waitFor(() => tap.acks.length > acksBefore, 5_000, 're-ACK');
    expect(tap.acks.at(-1)).toMatchObject({ id: decodeMsg(decodeFrame(bundle)).id, status: Status.OK });
    expect(got.length).toBe(6);
  });

  it('a tampered bundle is refused whole (BAD_SEAL, with the reason); its messages then go each alone, sealed, and arrive once', async () => {
    const tap = tapRelay();
    h = await startHarness();
    const got: string[] = [];
    const printer = await h.registered('printer', (m) => void got.push(m.payload.toString()));
    const alice = await warmSender(h);
    let tampered: string | undefined;
    tap.rewrite = (frame) => {
      const msg = decodeMsg(frame);
      if (tampered !== undefined || msg.payload[0] !== SEAL_VERSION_BUNDLE) return undefined;
      tampered = msg.id;
      const raw = Buffer.from(frame.raw);
      raw[raw.length - 20]! ^= 0x01; // a bit of the ciphertext
      return raw;
    };
    const results = await burst(alice, 'printer@acme-hq', 10);
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    expect(tampered).toBeDefined();
    const refusal = tap.acks.find((a) => a.id === tampered);
    expect(refusal).toMatchObject({ status: Status.BAD_SEAL, from: 'printer@acme-hq' });
    expect(refusal!.reason).toMatch(/did not verify/);
    expect(printer.stats.badSeals).toBe(1);
    // Nothing of the tampered bundle was delivered; each message came once, alone (version 2).
    expect(got.slice(1)).toEqual(Array.from({ length: 10 }, (_, i) => `${MARKER} #${i}`));
    expect(versions(tap).slice(1)).toEqual([SEAL_VERSION_BUNDLE, ...new Array<number>(10).fill(SEAL_VERSION_AES)]);
    expect(tap.msgs.some((f) => f.includes(MARKER))).toBe(false);
  });

  it('a receiver that did not say `seal-bundle` at hello gets each message sealed alone', async () => {
    // The contact point hears the peer's HELLO as an older SDK's: no bundles (its KEYS answers lack FLAG_SEAL_BUNDLE).
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called with the guard as `this` below
    const { noteAes } = SealGuard.prototype;
    vi.spyOn(SealGuard.prototype, 'noteAes').mockImplementation(function (this: SealGuard, address: string, reads: boolean) {
      return noteAes.call(this, address, reads, false);
    });
    const tap = tapRelay();
    h = await startHarness();
    const got: string[] = [];
    await h.registered('printer', (m) => void got.push(m.payload.toString()));
    const alice = await warmSender(h);
    await burst(alice, 'printer@acme-hq', 8);
    expect(got.slice(1)).toEqual(Array.from({ length: 8 }, (_, i) => `${MARKER} #${i}`));
    expect(versions(tap)).toEqual(new Array<number>(9).fill(SEAL_VERSION_AES));
    expect(alice.stats.bundlesSent).toBe(0);
  });

  it('a relay that clears FLAG_SEAL_BUNDLE from key answers only makes the sender seal each message alone', async () => {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called with the router as `this` below
    const { onKeysAnswer } = Router.prototype;
    vi.spyOn(Router.prototype, 'onKeysAnswer').mockImplementation(function (this: Router, s: RelaySession, frame: Frame) {
      const raw = Buffer.from(frame.raw);
      raw[1] = raw[1]! & ~FLAG_SEAL_BUNDLE;
      return onKeysAnswer.call(this, s, decodeFrame(raw));
    });
    const tap = tapRelay();
    h = await startHarness();
    const got: string[] = [];
    await h.registered('printer', (m) => void got.push(m.payload.toString()));
    const alice = await warmSender(h);
    await burst(alice, 'printer@acme-hq', 6);
    expect(got.length).toBe(7);
    expect(versions(tap)).toEqual(new Array<number>(7).fill(SEAL_VERSION_AES));
  });

  it("counts each message of a bundle against the receiver's rate limit: a bundle does not slip more through than single messages would", async () => {
    h = await startHarness();
    const got: string[] = [];
    await h.registered('printer', (m) => void got.push(m.payload.toString()));
    const alice = await warmSender(h);
    await h.cp.call('rules:set', { peer: 'printer', perMinute: 5 });
    const results = await burst(alice, 'printer@acme-hq', 20, { deadlineMs: 1_500 });
    const delivered = results.filter((r) => r.status === 'fulfilled').length;
    // The bucket holds 5 (the first message was before the rule): one bundle of 20 may not take them all in one token.
    expect(delivered).toBeGreaterThan(0);
    expect(delivered).toBeLessThanOrEqual(5);
    expect(got.length - 1).toBe(delivered);
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(refused.every((r) => (r.reason as { code: number }).code === Status.RATE_LIMITED)).toBe(true);
    expect(alice.stats.bundlesSent).toBeGreaterThanOrEqual(1);
  });

  it("counts each message of a bundle against the relay's rate per sender", async () => {
    h = await startHarness({ relay: { ratePerSender: 4 } }); // burst 8
    const got: string[] = [];
    await h.registered('printer', (m) => void got.push(m.payload.toString()));
    const alice = await warmSender(h);
    const results = await burst(alice, 'printer@acme-hq', 30, { deadlineMs: 1_000 });
    const delivered = results.filter((r) => r.status === 'fulfilled').length;
    // At most the bucket's burst and what refills in the deadline (8 + ~4 a second), never all 30 in one token.
    expect(delivered).toBeGreaterThan(0);
    expect(delivered).toBeLessThan(16);
    expect(got.length - 1).toBe(delivered);
  });

  it('a bundle lost on the way is sent again sealed anew (same wire id and size, FLAG_RETRY, a new nonce), and its messages are delivered once', async () => {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called with the router as `this` below
    const { onMsg } = Router.prototype;
    const seen: Buffer[] = [];
    let dropped = false;
    vi.spyOn(Router.prototype, 'onMsg').mockImplementation(function (this: Router, s: RelaySession, frame: Frame) {
      if (frame.type === FrameType.MSG && decodeMsg(frame).payload[0] === SEAL_VERSION_BUNDLE) {
        seen.push(Buffer.from(frame.raw));
        if (!dropped) {
          dropped = true; // lost: the relay drops it, no ACK comes
          return;
        }
      }
      return onMsg.call(this, s, frame);
    });
    h = await startHarness();
    const got: string[] = [];
    await h.registered('printer', (m) => void got.push(m.payload.toString()));
    const alice = await warmSender(h);
    const results = await burst(alice, 'printer@acme-hq', 5);
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    expect(seen.length).toBe(2);
    expect(seen[0]![1]! & FLAG_RETRY).toBe(0);
    expect(seen[1]![1]! & FLAG_RETRY).toBe(FLAG_RETRY);
    const [first, again] = [decodeMsg(decodeFrame(seen[0]!)), decodeMsg(decodeFrame(seen[1]!))];
    expect(again.id).toBe(first.id);
    expect(again.payload.length).toBe(first.payload.length);
    // sealed again: the envelope's nonce (the last 12 bytes of its clear header) is another
    const nonce = (m: { payload: Buffer }): Buffer => m.payload.subarray(SEAL_HEADER_BYTES - 12, SEAL_HEADER_BYTES);
    expect(nonce(again).equals(nonce(first))).toBe(false);
    expect(alice.stats.retransmits).toBe(1);
    expect(got.slice(1)).toEqual(Array.from({ length: 5 }, (_, i) => `${MARKER} #${i}`));
    expect((results[0] as PromiseFulfilledResult<{ attempts: number }>).value.attempts).toBe(2);
  });

  it('a burst of 1 KiB messages goes in bundles of at most BUNDLE_SEND_BYTES of entries (smaller units pipeline better along the hops), each delivered once and in order', async () => {
    const tap = tapRelay();
    h = await startHarness();
    const got: string[] = [];
    await h.registered('printer', (m) => void got.push(m.payload.toString()));
    const alice = await warmSender(h);
    const before = tap.msgs.length;
    const body = (i: number): string => `${i}:`.padEnd(1024, 'x');
    const results = await Promise.allSettled(Array.from({ length: BUNDLE_MAX_MESSAGES }, (_, i) => alice.send('printer@acme-hq', body(i))));
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    const bundles = tap.msgs.slice(before).map((f) => decodeMsg(decodeFrame(f)).payload).filter((p) => p[0] === SEAL_VERSION_BUNDLE);
    expect(bundles.length).toBeGreaterThanOrEqual(Math.ceil((BUNDLE_MAX_MESSAGES * 1024) / BUNDLE_SEND_BYTES));
    for (const b of bundles) expect(b.length).toBeLessThanOrEqual(BUNDLE_SEND_BYTES + BUNDLE_OVERHEAD);
    expect(got.slice(1)).toEqual(Array.from({ length: BUNDLE_MAX_MESSAGES }, (_, i) => body(i)));
  });

  it("a bundle's ACK lost on the way back: the copy sealed anew is opened, its messages found delivered, ACKed, and not delivered twice", async () => {
    const tap = tapRelay();
    h = await startHarness();
    const got: string[] = [];
    await h.registered('printer', (m) => void got.push(m.payload.toString()));
    const alice = await h.external('alice', { ackTimeoutMs: 200 });
    await alice.send('printer@acme-hq', 'first');
    let dropped = 0;
    tap.dropAck = (a) => {
      if (a.from !== 'printer@acme-hq' || dropped > 0) return false;
      dropped++;
      return true;
    };
    const before = tap.msgs.length;
    const results = await burst(alice, 'printer@acme-hq', 6);
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    expect(dropped).toBe(1);
    const copies = tap.msgs.slice(before).map((f) => decodeMsg(decodeFrame(f)));
    expect(copies).toHaveLength(2);
    expect(copies[1]!.id).toBe(copies[0]!.id);
    expect(copies.map((m) => m.payload[0])).toEqual([SEAL_VERSION_BUNDLE, SEAL_VERSION_BUNDLE]);
    expect(copies[1]!.payload.equals(copies[0]!.payload)).toBe(false); // sealed anew
    expect(got).toEqual(['first', ...Array.from({ length: 6 }, (_, i) => `${MARKER} #${i}`)]);
  });

  it("a bundle over the receiver's size limit: its messages go again each alone and pass (the bundle costs no message)", async () => {
    const tap = tapRelay();
    h = await startHarness();
    const got: string[] = [];
    await h.registered('printer', (m) => void got.push(m.payload.toString()));
    const alice = await warmSender(h);
    await h.cp.call('rules:set', { peer: 'printer', maxBytes: 400 }); // a message sealed alone is ~135 bytes, a bundle of 8 ~680
    const results = await burst(alice, 'printer@acme-hq', 8);
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    expect(got.slice(1)).toEqual(Array.from({ length: 8 }, (_, i) => `${MARKER} #${i}`));
    expect(tap.acks.some((a) => a.status === Status.TOO_LARGE)).toBe(true);
    expect(versions(tap).slice(1)).toEqual([SEAL_VERSION_BUNDLE, ...new Array<number>(8).fill(SEAL_VERSION_AES)]);
  });

  it('a handler that fails for one message of a bundle: that send is refused RECEIVER_FAILED, the others are delivered', async () => {
    h = await startHarness();
    const got: string[] = [];
    await h.registered('printer', (m) => {
      const text = m.payload.toString();
      if (text.endsWith('#3')) throw new Error('no paper');
      got.push(text);
    });
    const alice = await warmSender(h);
    const results = await burst(alice, 'printer@acme-hq', 6);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const err = (results[3] as PromiseRejectedResult).reason as { code: number; message: string };
    expect(err.code).toBe(Status.RECEIVER_FAILED);
    expect(err.message).toMatch(/bundle messages 4 of 6 failed: receiver failed: no paper/);
    expect(got.slice(1)).toEqual([0, 1, 2, 4, 5].map((i) => `${MARKER} #${i}`));
    expect(alice.stats.bundlesSent).toBe(1);
  });
});
