import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DeliveryError } from '../../core/protocol/errors.js';
import { Status } from '../../core/protocol/status.js';
import type { InboundMessage } from '../../core/peer/peer-client.js';
import { startHarness, waitFor, type Harness } from '../helpers.js';

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

async function refusal(p: Promise<unknown>): Promise<DeliveryError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DeliveryError);
  return err as DeliveryError;
}

describe('addressed messages end to end', () => {
  it('delivers external -> relay -> tunnel -> contact point -> registered peer, with the ack travelling back', async () => {
    const got: InboundMessage[] = [];
    await h.registered('printer', (m) => void got.push(m));
    const alice = await h.external('alice');
    const receipt = await alice.send('printer@acme-hq', 'hello');
    expect(receipt.to).toBe('printer@acme-hq');
    expect(got).toHaveLength(1);
    expect(got[0]!.payload.toString()).toBe('hello');
    expect(got[0]!.from).toBe('alice@relay');
  });

  it('lets the internal peer answer the external one through the tunnel', async () => {
    const printer = await h.registered('printer');
    const inbox: string[] = [];
    const alice = await h.external('alice', { onMessage: (m) => void inbox.push(m.payload.toString()) });
    await printer.send('alice@relay', 'page printed');
    expect(inbox).toEqual(['page printed']);
    expect(alice.stats.received).toBe(1);
  });

  it('delivers between two LAN peers without the relay seeing it', async () => {
    const got: string[] = [];
    await h.registered('printer', (m) => void got.push(m.payload.toString()));
    const scanner = await h.registered('scanner');
    const routedBefore = h.relay.status().routed;
    await scanner.send('printer@acme-hq', 'scan done');
    expect(got).toEqual(['scan done']);
    expect(h.relay.status().routed).toBe(routedBefore);
  });

  it('refuses with a reason for each failure the sender can meet', async () => {
    const alice = await h.external('alice');
    await h.credentials.add('contact-point', 'other-office');
    expect((await refusal(alice.send('printer@nowhere', 'x'))).code).toBe(Status.UNKNOWN_CONTACT_POINT);
    expect((await refusal(alice.send('printer@other-office', 'x', { deadlineMs: 300 }))).code).toBe(Status.CONTACT_POINT_OFFLINE);
    expect((await refusal(alice.send('printer@acme-hq', 'x'))).code).toBe(Status.PEER_NOT_REGISTERED);
    const printer = await h.registered('printer');
    await printer.stop();
    await waitFor(() => !h.cp.registrar.isOnline('printer'));
    expect((await refusal(alice.send('printer@acme-hq', 'x', { deadlineMs: 300 }))).code).toBe(Status.PEER_OFFLINE);
    expect((await refusal(alice.send('not an address', 'x'))).code).toBe(Status.BAD_ADDRESS);
    expect((await refusal(alice.send('printer@acme-hq', Buffer.alloc(2 * 1024 * 1024)))).code).toBe(Status.TOO_LARGE);
  });

  it('tells a sender the same for an unknown, an unregistered, a pending and a revoked peer: PEER_NOT_REGISTERED naming the address', async () => {
    const alice = await h.external('alice');
    await h.internal('badge'); // connected, never asked
    const scanner = await h.internal('scanner');
    scanner.register();
    await waitFor(() => h.cp.registrar.get('scanner')?.state === 'pending');
    await h.registered('printer');
    await h.cp.call('peers:revoke', { name: 'printer' });
    const answers: [string, number, string][] = [];
    for (const name of ['ghost', 'badge', 'scanner', 'printer']) {
      const err = await refusal(alice.send(`${name}@acme-hq`, 'x'));
      answers.push([name, err.code, err.reason]);
    }
    expect(answers).toEqual([
      ['ghost', Status.PEER_NOT_REGISTERED, 'peer ghost@acme-hq is not registered'],
      ['badge', Status.PEER_NOT_REGISTERED, 'peer badge@acme-hq is not registered'],
      ['scanner', Status.PEER_NOT_REGISTERED, 'peer scanner@acme-hq is not registered'],
      ['printer', Status.PEER_NOT_REGISTERED, 'peer printer@acme-hq is not registered'],
    ]);
  });

  it('rate-limits a flooding sender with RATE_LIMITED, and retries within the deadline succeed', async () => {
    await h.close();
    h = await startHarness({ relay: { ratePerSender: 20 } });
    const got: string[] = [];
    await h.registered('printer', (m) => void got.push(m.payload.toString()));
    const alice = await h.external('alice');
    // 100 at once against 20/s (burst 40): the rest are refused; with a short deadline some give up.
    const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => alice.send('printer@acme-hq', `m${i}`, { deadlineMs: 400 })));
    const refused = results.filter((r) => r.status === 'rejected').map((r) => (r.reason as DeliveryError).code);
    expect(refused.length).toBeGreaterThan(0);
    expect(new Set(refused)).toEqual(new Set([Status.RATE_LIMITED]));
    expect(got.length).toBe(results.filter((r) => r.status === 'fulfilled').length);
    // Paced within the rate, everything goes through.
    for (let i = 0; i < 5; i++) await alice.send('printer@acme-hq', 'paced');
  });

  it('refuses at once after revoke and closes the live session', async () => {
    const got: string[] = [];
    const printer = await h.registered('printer', (m) => void got.push(m.payload.toString()));
    const alice = await h.external('alice');
    await alice.send('printer@acme-hq', 'one');
    await h.cp.call('peers:revoke', { name: 'printer' });
    await waitFor(() => !printer.connected, 3_000, 'revoked peer disconnected');
    const err = await refusal(alice.send('printer@acme-hq', 'two'));
    expect(err.code).toBe(Status.PEER_NOT_REGISTERED);
    expect(got).toEqual(['one']);
  });

  it('answers RECEIVER_FAILED when the handler throws or rejects, and delivers the next attempt once it succeeds', async () => {
    const failures: unknown[] = [new Error('paper jam'), undefined, 'not an Error'];
    const seen: string[] = [];
    await h.registered('printer', (m) => {
      seen.push(m.payload.toString());
      if (failures.length === 0) return;
      const f = failures.shift();
      if (seen.length === 1) throw f; // sync throw of an Error
      if (seen.length === 2) throw f; // `throw undefined` is a failure too
      return Promise.reject(f as Error); // async rejection with a non-Error
    });
    const alice = await h.external('alice');
    const first = await refusal(alice.send('printer@acme-hq', 'a'));
    expect(first.code).toBe(Status.RECEIVER_FAILED);
    expect(first.message).toContain('paper jam');
    expect((await refusal(alice.send('printer@acme-hq', 'b'))).code).toBe(Status.RECEIVER_FAILED);
    expect((await refusal(alice.send('printer@acme-hq', 'c'))).code).toBe(Status.RECEIVER_FAILED);
    await alice.send('printer@acme-hq', 'd');
    expect(seen).toEqual(['a', 'b', 'c', 'd']);
  });
});
