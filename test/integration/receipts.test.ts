import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeAck, encodeMsg } from '../../core/protocol/codec.js';
import { FrameType } from '../../core/protocol/frames.js';
import { Status } from '../../core/protocol/status.js';
import type { InboundMessage, PeerClient, Receipt } from '../../core/peer/peer-client.js';
import { startHarness, waitFor, type Harness } from '../helpers.js';
import { RawClient } from '../raw-client.js';

let h: Harness;
const raws: RawClient[] = [];
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  for (const r of raws.splice(0)) r.ws.terminate();
  await h.close();
});

/** A contact point that authenticates at the relay with a real credential of its own, then misbehaves. */
async function hostileContactPoint(id: string): Promise<RawClient> {
  const secret = await h.credentials.add('contact-point', id);
  const r = await RawClient.open(h.relay.url);
  raws.push(r);
  r.hello({ versions: { min: 1, max: 1 }, role: 'contact-point', id, secret });
  await waitFor(() => r.frames.some((f) => f.type === FrameType.WELCOME), 5_000, 'WELCOME for the hostile contact point');
  return r;
}

/** A receiver whose handler holds each message until the test releases it (so no real ACK yet). */
function heldReceiver(): { handler: (m: InboundMessage) => Promise<void>; got: InboundMessage[]; release(): void } {
  const got: InboundMessage[] = [];
  const waiting: (() => void)[] = [];
  return {
    got,
    handler: (m) => {
      got.push(m);
      return new Promise<void>((resolve) => waiting.push(resolve));
    },
    release: () => {
      for (const r of waiting.splice(0)) r();
    },
  };
}

function track(p: Promise<Receipt>): { settled: () => string | undefined; p: Promise<Receipt> } {
  let state: string | undefined;
  p.then(
    () => (state = 'delivered'),
    (e: unknown) => (state = `failed: ${String(e)}`),
  );
  return { settled: () => state, p };
}

describe('delivery receipts come only from the address the message was sent to', () => {
  it('a hostile contact point cannot make an external sender report delivered or failed; the real receipt completes the send', async () => {
    const printer = heldReceiver();
    await h.registered('printer', printer.handler);
    const inbox: InboundMessage[] = [];
    const alice = await h.external('alice', { onMessage: (m) => void inbox.push(m) });
    const evil = await hostileContactPoint('evil');

    const first = track(alice.send('printer@acme-hq', 'one'));
    await waitFor(() => printer.got.length === 1, 5_000, 'printer to hold the message');
    const id = printer.got[0]!.id; // the strongest attacker: it knows the id exactly
    // "Delivered", then a permanent refusal, both signed by the hostile contact point's own
    // address (the relay lets it sign only *@evil).
    evil.send(encodeAck({ id, to: 'alice@relay', from: 'printer@evil', status: Status.OK, reason: '' }));
    evil.send(encodeAck({ id, to: 'alice@relay', from: 'x@evil', status: Status.UNAUTHORIZED, reason: 'forged' }));
    // A message on the same path afterwards: once alice has it, the forged ACKs have arrived.
    evil.send(encodeMsg({ id: 'sync', to: 'alice@relay', from: 'x@evil', payload: Buffer.from('after') }));
    await waitFor(() => inbox.length === 1, 5_000, 'the message after the forged ACKs');
    expect(first.settled()).toBeUndefined();
    expect(alice.stats.strayAcks).toBe(2);
    expect(alice.stats.delivered).toBe(0);

    printer.release();
    const receipt = await first.p;
    expect(receipt.to).toBe('printer@acme-hq');
    expect(alice.stats.delivered).toBe(1);
  });

  it('the relay closes a link that signs an ACK with an address that is not its own, and drops one whose to is not an address', async () => {
    const evil = await hostileContactPoint('evil');
    evil.send(encodeAck({ id: 'x.1', to: 'not-an-address', from: 'x@evil', status: Status.OK, reason: '' }));
    await waitFor(() => h.relay.status().droppedAcks === 1, 5_000, 'the relay to drop the ACK');
    expect(evil.closed).toBeUndefined();
    evil.send(encodeAck({ id: 'x.1', to: 'alice@relay', from: 'printer@acme-hq', status: Status.OK, reason: '' }));
    await evil.waitClosed();
    expect(evil.errorCode()).toBe(Status.PROTOCOL_VIOLATION);
  });

  it('a LAN peer cannot settle another LAN peer\'s send; the contact point forwards only ACKs for messages it delivered', async () => {
    const printer = heldReceiver();
    await h.registered('printer', printer.handler);
    const scannerInbox: InboundMessage[] = [];
    const scanner = await h.registered('scanner', (m) => void scannerInbox.push(m));
    const copier: PeerClient = await h.registered('copier');

    const sent = track(scanner.send('printer@acme-hq', 'scan'));
    await waitFor(() => printer.got.length === 1, 5_000, 'printer to hold the message');
    const id = printer.got[0]!.id;
    // copier signs with its own address (the contact point refuses any other), for a message it never got.
    copier.currentLink!.send(encodeAck({ id, to: 'scanner@acme-hq', from: 'copier@acme-hq', status: Status.OK, reason: '' }));
    await copier.send('scanner@acme-hq', 'sync'); // same contact point -> scanner link, after the ACK
    await waitFor(() => scannerInbox.length === 1, 5_000, 'the message after the forged ACK');
    expect(sent.settled()).toBeUndefined();
    // The contact point dropped it: the scanner never even saw it.
    expect(scanner.stats.strayAcks).toBe(0);

    printer.release();
    expect((await sent.p).to).toBe('printer@acme-hq');
  });
});

describe('message ids', () => {
  it('are not guessable from earlier ones, and the receiver still drops a duplicate', async () => {
    const got: InboundMessage[] = [];
    const printer = await h.registered('printer', (m) => void got.push(m));
    const alice = await h.external('alice');
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push((await alice.send('printer@acme-hq', `m${i}`)).id);
    const prefix = ids[0]!.slice(0, ids[0]!.lastIndexOf('.') + 1);
    const numbers = ids.map((id) => {
      expect(id.startsWith(prefix)).toBe(true);
      const digits = id.slice(prefix.length);
      expect(digits).toMatch(/^(0|[1-9a-z][0-9a-z]{0,9})$/); // the dedupe's numeric form
      return parseInt(digits, 36);
    });
    for (let i = 1; i < numbers.length; i++) expect(numbers[i], `id ${i}`).not.toBe(numbers[i - 1]! + 1);
    expect(new Set(numbers).size).toBe(numbers.length);
    // Wide spread, not a short step: a guess near the last id does not hit the next.
    const gaps = numbers.slice(1).map((n, i) => Math.abs(n - numbers[i]!));
    expect(Math.min(...gaps)).toBeGreaterThan(1_000);

    // The same frame again (a retransmission): ACKed, not handed to the application twice.
    const again = encodeMsg({ id: ids[5]!, to: 'printer@acme-hq', from: 'alice@relay', payload: Buffer.from('m5') }, 1);
    alice.currentLink!.send(again);
    await alice.send('printer@acme-hq', 'after');
    expect(got.map((m) => m.payload.toString())).toEqual([...ids.map((_, i) => `m${i}`), 'after']);
    expect(printer.stats.duplicates).toBe(1);
  });
});
