import { afterEach, describe, expect, it } from 'vitest';
import { PeerClient, type InboundMessage, type PeerClientOptions } from '../../core/peer/peer-client.js';
import { closeCodeFor, Status } from '../../core/protocol/status.js';
import { CredentialStore } from '../../core/relay/credentials.js';
import { Relay } from '../../core/relay/relay.js';
import { FAST, logger, startHarness, waitFor, type Harness } from '../helpers.js';
import { RawClient } from '../raw-client.js';
import { SealKey } from '../../core/protocol/seal.js';

/**
 * Programs sharing an external credential share its sealing key too (the contact point binds
 * the address to one key: README, "Sealed messages"), as `peer send` does through its state folder.
 */
const sealKeys = new Map<string, SealKey>();
function sealKeyOf(name: string): SealKey {
  let k = sealKeys.get(name);
  if (!k) sealKeys.set(name, (k = SealKey.generate()));
  return k;
}

/**
 * Issue 18: several sessions of one external credential live side by side at the relay, each
 * with its own ACKs and replies; the cap refuses the one over it; closing one leaves the rest.
 * Real relay, contact point and SDK clients on loopback.
 */

let h: Harness | undefined;
const clients: PeerClient[] = [];
const raws: RawClient[] = [];
afterEach(async () => {
  for (const r of raws.splice(0)) r.ws.terminate();
  await Promise.all(clients.splice(0).map((c) => c.stop()));
  await h?.close();
  h = undefined;
});

/** A session of external credential `name` (its secret given), connected. */
async function session(harness: Harness, name: string, secret: string, extra: Partial<PeerClientOptions> = {}): Promise<PeerClient> {
  const c = new PeerClient({ role: 'external', url: harness.relay.url, name, secret, logger, timing: FAST, sealKey: sealKeyOf(name), ...extra } as PeerClientOptions);
  clients.push(c);
  c.start();
  await c.ready();
  return c;
}

/**
 * Sends `n` messages to `to`, at most `window` unacknowledged at once. `delivered()` counts the
 * receipts so far; `done` resolves when all came or one send failed.
 */
function sendWindowed(c: PeerClient, to: string, n: number, window: number, tag: string): { delivered: () => number; done: Promise<unknown> } {
  let next = 0;
  let delivered = 0;
  const lane = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      await c.send(to, `${tag}:${i}:${'x'.repeat(1000)}`);
      delivered++;
    }
  };
  return { delivered: () => delivered, done: Promise.all(Array.from({ length: window }, lane)).catch((err: unknown) => err) };
}

describe('several sessions of one external credential', () => {
  it('two SDK senders with one credential, sending at once under load, each get exactly their own receipts', async () => {
    h = await startHarness();
    const received = { a: 0, b: 0 };
    await h.registered('printer', (m) => void received[m.payload.toString('latin1', 0, 1) as 'a' | 'b']++);
    const secret = await h.credentials.add('external', 'alice');
    // A long ACK timeout: no retransmission, so every ACK a client gets answers one transmission,
    // and one for an id it did not send can only be a misrouted one.
    const a = await session(h, 'alice', secret, { ackTimeoutMs: 30_000 });
    const b = await session(h, 'alice', secret, { ackTimeoutMs: 30_000 });
    expect(h.relay.status().externals).toBe(2);

    const N = 3_000;
    const sa = sendWindowed(a, 'printer@acme-hq', N, 128, 'a');
    const sb = sendWindowed(b, 'printer@acme-hq', N, 128, 'b');
    // Bounded: a misrouted ACK would leave its send waiting for the 30 s timeout.
    await Promise.race([Promise.all([sa.done, sb.done]), new Promise((r) => setTimeout(r, 15_000))]);
    expect({ a: sa.delivered(), b: sb.delivered() }).toEqual({ a: N, b: N }); // 0 lost
    expect(received).toEqual({ a: N, b: N });
    for (const c of [a, b]) {
      // 0 crossed: no ACK for an id the client did not send, none from a wrong address, no reconnect.
      expect({ unmatched: c.stats.unmatchedAcks, stray: c.stats.strayAcks, retransmits: c.stats.retransmits, delivered: c.stats.delivered, reconnects: c.status().reconnects }).toEqual({
        unmatched: 0,
        stray: 0,
        retransmits: 0,
        delivered: N,
        reconnects: 0,
      });
    }
    // The relay forgot every message id once its ACK had come back.
    expect(h.relay.sessions.group('alice')?.ackRoutes.size).toBe(0);
  });

  it('a message to the address goes to the session that last sent to its sender, else to the newest; closing one leaves the other', async () => {
    h = await startHarness();
    const printer = await h.registered('printer');
    printer.setMessageHandler((m) => void printer.send(m.from, `echo ${m.payload.toString()}`));
    const scanner = await h.registered('scanner');
    const secret = await h.credentials.add('external', 'alice');
    const inbox = (): { got: string[]; onMessage: (m: InboundMessage) => void } => {
      const got: string[] = [];
      return { got, onMessage: (m) => void got.push(`${m.from} ${m.payload.toString()}`) };
    };
    const ia = inbox();
    const ib = inbox();
    const a = await session(h, 'alice', secret, { onMessage: ia.onMessage });
    // Alone, a asks the printer; then b connects: what the printer says next is still for a.
    await a.send('printer@acme-hq', 'from a');
    await waitFor(() => ia.got.length === 1, 5_000, 'echo to a');
    const b = await session(h, 'alice', secret, { onMessage: ib.onMessage });
    await printer.send('alice@relay', 'more for a');
    await waitFor(() => ia.got.length === 2, 5_000, 'printer to a');
    // The newer session asks the printer: the echo comes back to it, not to the older one.
    await b.send('printer@acme-hq', 'from b');
    await waitFor(() => ib.got.length === 1, 5_000, 'echo to b');
    // Someone neither of them wrote to: the newest session.
    await scanner.send('alice@relay', 'hello alice');
    await waitFor(() => ib.got.length === 2, 5_000, 'scanner to b');
    expect({ a: ia.got, b: ib.got }).toEqual({
      a: ['printer@acme-hq echo from a', 'printer@acme-hq more for a'],
      b: ['printer@acme-hq echo from b', 'scanner@acme-hq hello alice'],
    });

    // Closing the newer session leaves the older one as it was: messages now reach it.
    await b.stop();
    await waitFor(() => h!.relay.status().externals === 1, 5_000, 'b gone at the relay');
    expect(a.connected).toBe(true);
    await scanner.send('alice@relay', 'still there?');
    await waitFor(() => ia.got.length === 3, 5_000, 'scanner to a');
    expect(ia.got[2]).toBe('scanner@acme-hq still there?');
    expect(a.status().reconnects).toBe(0);
  });

  it('the cap refuses the session over it with SESSION_LIMIT (close 4115) and leaves the others alone', async () => {
    h = await startHarness({ relay: { maxSessionsPerCredential: 2 } });
    const secret = await h.credentials.add('external', 'tech');
    const one = await session(h, 'tech', secret);
    const two = await session(h, 'tech', secret);

    const third = await RawClient.open(h.relay.url);
    raws.push(third);
    third.hello({ versions: { min: 1, max: 1 }, role: 'external', id: 'tech', secret });
    const closed = await third.waitClosed();
    expect({ code: closed.code, error: third.errorCode() }).toEqual({ code: closeCodeFor(Status.SESSION_LIMIT), error: Status.SESSION_LIMIT });
    expect(closed.reason).toContain('credential "tech" has 2 sessions');

    // The SDK says so at once to a caller that asks, and otherwise keeps retrying slowly.
    const sdk = new PeerClient({ role: 'external', url: h.relay.url, name: 'tech', secret, logger, timing: FAST });
    clients.push(sdk);
    sdk.start();
    await expect(sdk.ready(5_000, { failOn: [Status.SESSION_LIMIT] })).rejects.toThrow(/SESSION_LIMIT/);
    expect(sdk.status()).toMatchObject({ state: 'reconnecting', lastErrorCode: Status.SESSION_LIMIT });

    expect(one.connected && two.connected).toBe(true);
    expect(h.relay.status().externals).toBe(2);
    const printer = await h.registered('printer');
    expect(printer.connected).toBe(true);
    await one.send('printer@acme-hq', 'still here');
    await two.send('printer@acme-hq', 'me too');
    // Once one ends, the next one gets in.
    await one.stop();
    await sdk.ready(5_000);
    expect(h.relay.status().externals).toBe(2);
  });

  it('rejects a session cap that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => new Relay({ credentials: CredentialStore.inMemory(), maxSessionsPerCredential: bad })).toThrow(/maxSessionsPerCredential/);
    }
  });
});
