import { hostname } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { FrameType } from '../../core/protocol/frames.js';
import { OFFERED_VERSIONS } from '../../core/protocol/version.js';
import { Status } from '../../core/protocol/status.js';
import { CredentialStore } from '../../core/relay/credentials.js';
import { Relay } from '../../core/relay/relay.js';
import { createLogger, type Logger } from '../../core/runtime/logger.js';
import { tcpForwarder } from '../net-fixtures.js';
import { RawClient } from '../raw-client.js';
import { FAST, logger, waitFor } from '../helpers.js';

/**
 * Issue 10 item 2: two contact points started with the same credential (a copied config, a
 * restored VM) must not replace each other for ever. The holder keeps the id while it is alive;
 * the other is refused with ID_IN_USE, says who holds the id, and retries only slowly.
 */

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The slow retry after ID_IN_USE in these tests: 0.4-0.8 s instead of 30-60 s. */
const SLOW_RETRY_MS = 400;
/** The relay's liveness probe deadline in these tests. */
const PROBE_MS = 1_000;

async function relayWith(id = 'acme-hq', opts: Partial<ConstructorParameters<typeof Relay>[0]> = {}): Promise<{ relay: Relay; secret: string; credentials: CredentialStore }> {
  const credentials = CredentialStore.inMemory();
  const secret = await credentials.add('contact-point', id);
  // The relay's own silence timeout (2 * ping + pong = 25 s by default) stays far longer than
  // the probe: a takeover within seconds is the probe's doing.
  const relay = new Relay({ credentials, logger, takeoverProbeMs: PROBE_MS, ...opts });
  await relay.start();
  cleanups.push(() => relay.stop());
  return { relay, secret, credentials };
}

async function contactPoint(url: string, secret: string, o: { retryMs?: number; log?: Logger } = {}): Promise<{ cp: ContactPoint; ups: () => number }> {
  const cp = await ContactPoint.create({
    id: 'acme-hq', relayUrl: url, secret, peerHost: '127.0.0.1', logger: o.log ?? logger, proxy: null, timing: { ...FAST, idInUseRetryMs: o.retryMs ?? SLOW_RETRY_MS },
  });
  let ups = 0;
  cp.gateway.on('up', () => ups++);
  await cp.start();
  cleanups.push(() => cp.stop());
  return { cp, ups: () => ups };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('two contact points with the same id', () => {
  it('do not flap: one holds the tunnel, the other is refused with ID_IN_USE naming the holder, and retries slowly', async () => {
    const { relay, secret } = await relayWith();
    const a = await contactPoint(relay.url, secret);
    await waitFor(() => a.cp.gateway.connected, 5_000, 'first tunnel up');
    const warnings: string[] = [];
    // B's slow retry: 1-2 s. Its reconnect backoff (FAST: 25 ms growing to at most 500 ms) would
    // make well over 5 attempts in 4 s.
    const b = await contactPoint(relay.url, secret, { retryMs: 1_000, log: createLogger({ level: 'warn', write: (l) => void warnings.push(l) }) });

    // Each refusal schedules one retry: count the distinct retry times it announced.
    const retries = new Set<number>();
    b.cp.gateway.on('status', (s) => {
      if (s.lastError?.startsWith('ID_IN_USE') && s.nextRetryAt !== undefined) retries.add(s.nextRetryAt);
    });
    await sleep(4_000);
    const refusals = retries.size;
    // Before the fix each replaced the other several times a second: dozens of tunnel-ups here.
    expect(a.ups() + b.ups()).toBe(1);
    expect(a.cp.gateway.connected).toBe(true);
    expect(b.cp.gateway.connected).toBe(false);
    expect(relay.status().tunnels).toBe(1);
    // Slow retries only: in 4 s at 1-2 s apart, 2 to 5 attempts.
    expect(refusals).toBeGreaterThanOrEqual(2);
    expect(refusals).toBeLessThanOrEqual(5);
    // One warning for the conflict, not one per retry.
    expect(warnings.filter((l) => l.includes('another instance holds this id'))).toHaveLength(1);
    expect(warnings[0]).toContain('is held by another instance at 127.0.0.1:');

    const t = b.cp.gateway.status();
    expect(t.state).toBe('reconnecting');
    expect(t.idInUse).toMatch(new RegExp(`^contact point id "acme-hq" is held by another instance at 127\\.0\\.0\\.1:\\d+ \\(host "${hostname()}"\\) since \\d{4}-\\d\\d-\\d\\dT`));
    // "since" is when the holder's tunnel came up.
    const since = Date.parse(/since (\S+)$/.exec(t.idInUse!)![1]!);
    expect(Math.abs(since - a.cp.gateway.status().connectedAt!)).toBeLessThan(1_000);
    expect(t.lastError).toBe(`ID_IN_USE: ${t.idInUse}`);
    // The holder saw nothing of it.
    expect(a.cp.gateway.status().reconnects).toBe(0);
    expect(a.cp.gateway.status().idInUse).toBeUndefined();
  });

  it('the refused one takes over on its next slow retry once the holder stops', async () => {
    const { relay, secret } = await relayWith();
    const a = await contactPoint(relay.url, secret);
    await waitFor(() => a.cp.gateway.connected, 5_000, 'first tunnel up');
    const b = await contactPoint(relay.url, secret);
    await waitFor(() => b.cp.gateway.status().idInUse !== undefined, 5_000, 'ID_IN_USE');
    await a.cp.stop();
    const t0 = Date.now();
    await waitFor(() => b.cp.gateway.connected, 5_000, 'takeover');
    expect(Date.now() - t0).toBeLessThan(2 * SLOW_RETRY_MS + 1_000);
    expect(b.cp.gateway.status().idInUse).toBeUndefined();
    // The cause of the outage stays, with its time (issue 16, item 9): connected now, refused before.
    expect(b.cp.gateway.status()).toMatchObject({ state: 'connected', lastError: expect.stringMatching(/^ID_IN_USE/) as unknown, lastErrorKind: 'refused' });
    expect(b.cp.gateway.status().lastErrorAt).toBeGreaterThanOrEqual(t0 - 2 * SLOW_RETRY_MS);
  });

  it('a holder that has gone silent (crashed machine, dead path) is replaced after the probe deadline', async () => {
    const { relay, secret } = await relayWith();
    const relayPort = Number(new URL(relay.url).port);
    const fwd = await tcpForwarder(relayPort);
    cleanups.push(() => fwd.close());
    const a = await contactPoint(`ws://127.0.0.1:${fwd.port}/v1`, secret);
    await waitFor(() => a.cp.gateway.connected, 5_000, 'first tunnel up');
    const b = await contactPoint(relay.url, secret);
    await waitFor(() => b.cp.gateway.status().idInUse !== undefined, 5_000, 'ID_IN_USE');
    expect(b.cp.gateway.connected).toBe(false);

    fwd.blackhole(); // a's socket at the relay stays open but nothing answers any more
    const t0 = Date.now();
    await waitFor(() => b.cp.gateway.connected, 8_000, 'takeover from a silent holder');
    const took = Date.now() - t0;
    // next slow retry (<= 0.8 s) + probe deadline (1 s), with slack for a loaded machine; far
    // below the relay's own silence timeout (25 s).
    expect(took).toBeGreaterThanOrEqual(PROBE_MS - 100);
    expect(took).toBeLessThan(2 * SLOW_RETRY_MS + PROBE_MS + 2_000);
    expect(relay.status().tunnels).toBe(1);
  });

  it('the same instance reconnecting replaces its old tunnel at once', async () => {
    const { relay, secret } = await relayWith();
    const hello = { versions: OFFERED_VERSIONS, role: 'contact-point' as const, id: 'acme-hq', secret, instance: 'instance-one-abc' };
    const first = await RawClient.open(relay.url);
    cleanups.push(async () => first.ws.terminate());
    first.hello(hello);
    await waitFor(() => first.frames.some((f) => f.type === FrameType.WELCOME), 5_000, 'welcome');
    const t0 = Date.now();
    const second = await RawClient.open(relay.url);
    cleanups.push(async () => second.ws.terminate());
    second.hello(hello);
    await waitFor(() => second.frames.some((f) => f.type === FrameType.WELCOME), 5_000, 'welcome of the reconnect');
    expect(Date.now() - t0).toBeLessThan(PROBE_MS); // no probe
    await first.waitClosed();
    expect(first.errorCode()).toBe(Status.REPLACED);
  });

  it('a hello without an instance id (an older client) is probed like another instance', async () => {
    const { relay, secret } = await relayWith();
    const holder = await RawClient.open(relay.url);
    cleanups.push(async () => holder.ws.terminate());
    holder.hello({ versions: OFFERED_VERSIONS, role: 'contact-point', id: 'acme-hq', secret });
    await waitFor(() => holder.frames.some((f) => f.type === FrameType.WELCOME), 5_000, 'welcome');
    // The holder answers pings (ws does it by itself): the newcomer without an instance id is refused.
    const old = await RawClient.open(relay.url);
    cleanups.push(async () => old.ws.terminate());
    old.hello({ versions: OFFERED_VERSIONS, role: 'contact-point', id: 'acme-hq', secret });
    await old.waitClosed();
    expect(old.errorCode()).toBe(Status.ID_IN_USE);
    expect(old.closed?.code).toBe(4000 + Status.ID_IN_USE);
    expect(holder.closed).toBeUndefined();
  });

  it('refuses a probe deadline or slow retry out of range with a clear error', async () => {
    const credentials = CredentialStore.inMemory();
    expect(() => new Relay({ credentials, takeoverProbeMs: 5_000 })).toThrow(/takeoverProbeMs 5000: expected a whole number of milliseconds from 1 to 4999/);
    expect(() => new Relay({ credentials, takeoverProbeMs: 0 })).toThrow(/takeoverProbeMs/);
    await expect(ContactPoint.create({ id: 'acme-hq', relayUrl: 'ws://127.0.0.1:1/v1', secret: 'x'.repeat(16), timing: { idInUseRetryMs: 0 } })).rejects.toThrow(/idInUseRetryMs 0: expected/);
  });
});
