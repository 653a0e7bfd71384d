import { mkdtemp, rm } from 'node:fs/promises';
import { expect } from 'vitest';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContactPoint, type ContactPointOptions } from '../core/contact-point/contact-point.js';
import { once } from 'node:events';
import { connect } from 'node:net';
import { PeerIdentity } from '../core/peer/identity.js';
import { Operator } from '../core/peer/operator.js';
import { echoServer } from './net-fixtures.js';
import { PeerClient, type InboundMessage } from '../core/peer/peer-client.js';
import type { TimingOptions } from '../core/protocol/timing.js';
import { DeliveryError } from '../core/protocol/errors.js';
import { CredentialStore } from '../core/relay/credentials.js';
import { Relay, type RelayOptions } from '../core/relay/relay.js';
import { createLogger, type Logger } from '../core/runtime/logger.js';

/** Log lines only when a test run asks for them (CP_TEST_LOG=debug). */
export const logger: Logger = createLogger({ level: (process.env.CP_TEST_LOG as 'debug' | undefined) ?? 'silent' });

/** Fast timers so reconnect and keepalive tests take seconds, not minutes. */
export const FAST = { pingIntervalMs: 1_000, pongTimeoutMs: 1_000, backoffBaseMs: 50, backoffMaxMs: 500 } as const satisfies TimingOptions;

export async function tempDir(prefix = 'cp-test-'): Promise<{ path: string; [Symbol.asyncDispose](): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, [Symbol.asyncDispose]: () => rm(path, { recursive: true, force: true }) };
}

/**
 * An internal peer `name` at contact point `cp`, registered (approved through the admin API);
 * its stop() goes to `cleanup`. FAST timing; the SDK's ACK timeout unless `ackTimeoutMs`.
 */
export async function registeredPeer(
  cp: ContactPoint,
  name: string,
  cleanup: (fn: () => Promise<void>) => void,
  o: { onMessage?: (m: InboundMessage) => void | Promise<void>; ackTimeoutMs?: number } = {},
): Promise<PeerClient> {
  const c = new PeerClient({ role: 'peer', url: cp.peerPortUrl, name, identity: PeerIdentity.generate(), logger, timing: FAST, ...(o.onMessage ? { onMessage: o.onMessage } : {}), ...(o.ackTimeoutMs !== undefined ? { ackTimeoutMs: o.ackTimeoutMs } : {}) });
  cleanup(() => c.stop());
  c.start();
  await c.ready();
  c.register();
  await waitFor(() => cp.registrar.get(name)?.state === 'pending', 5_000, `${name} pending`);
  await cp.call('peers:approve', { name });
  await c.waitForRegistration('registered');
  return c;
}

export interface Harness {
  relay: Relay;
  credentials: CredentialStore;
  cp: ContactPoint;
  cpSecret: string;
  stateDir: string;
  /** an external peer with a fresh credential */
  external(name: string, extra?: Partial<ConstructorParameters<typeof PeerClient>[0]>): Promise<PeerClient>;
  /** an internal peer connected (not yet registered) */
  internal(name: string, opts?: { identity?: PeerIdentity; onMessage?: (m: InboundMessage) => void | Promise<void>; seal?: 'auto' | 'required' | 'off' }): Promise<PeerClient>;
  /** an internal peer, registered by the admin (`extra.seal`: its sealing mode, default 'auto') */
  registered(name: string, onMessage?: (m: InboundMessage) => void | Promise<void>, extra?: { seal?: 'auto' | 'required' | 'off' }): Promise<PeerClient>;
  /** another contact point at the same relay, with its own credential and state folder, tunnel up */
  /** another office on the same relay; `opts` as startHarness's `cp` (e.g. mediation: false) */
  contactPoint(id: string, opts?: Partial<ContactPointOptions>): Promise<ContactPoint>;
  restartRelay(): Promise<void>;
  close(): Promise<void>;
}

export async function startHarness(opts: { cp?: Partial<ContactPointOptions>; relay?: Partial<RelayOptions>; id?: string } = {}): Promise<Harness> {
  const stateDir = await mkdtemp(join(tmpdir(), 'cp-harness-'));
  // A cluster node's store (the cluster's bucket) when given: its credentials reach every node.
  const credentials = opts.relay?.credentials ?? CredentialStore.inMemory();
  const id = opts.id ?? 'acme-hq';
  const cpSecret = await credentials.add('contact-point', id);
  let relay = new Relay({ credentials, logger, pingIntervalMs: FAST.pingIntervalMs, ...opts.relay });
  const url = await relay.start();
  const port = Number(new URL(url).port);
  const cp = await ContactPoint.create({ id, relayUrl: url, secret: cpSecret, stateDir, peerHost: '127.0.0.1', logger, ...opts.cp, timing: { ...FAST, ...opts.cp?.timing } });
  await cp.start();
  await waitFor(() => cp.gateway.connected, 5_000, 'tunnel up');
  const clients: PeerClient[] = [];
  const others: { cp: ContactPoint; dir: string }[] = [];
  const h: Harness = {
    get relay() {
      return relay;
    },
    credentials,
    cp,
    cpSecret,
    stateDir,
    async external(name, extra = {}) {
      const secret = await credentials.add('external', name);
      const c = new PeerClient({ role: 'external', url: relay.url, name, secret, logger, timing: FAST, ackTimeoutMs: 500, ...extra } as ConstructorParameters<typeof PeerClient>[0]);
      clients.push(c);
      c.start();
      await c.ready();
      return c;
    },
    async internal(name, o = {}) {
      const c = new PeerClient({
        role: 'peer',
        url: cp.peerPortUrl,
        name,
        identity: o.identity ?? PeerIdentity.generate(),
        logger,
        timing: FAST,
        ackTimeoutMs: 500,
        ...(o.onMessage ? { onMessage: o.onMessage } : {}),
        ...(o.seal ? { seal: o.seal } : {}),
      });
      clients.push(c);
      c.start();
      await c.ready();
      return c;
    },
    async registered(name, onMessage, extra = {}) {
      const c = await h.internal(name, { ...(onMessage ? { onMessage } : {}), ...extra });
      c.register();
      await waitFor(() => cp.registrar.get(name)?.state === 'pending', 5_000, `${name} pending`);
      await cp.call('peers:approve', { name });
      await c.waitForRegistration('registered');
      await waitFor(() => relay.peersOf(id).includes(name), 5_000, `${name} announced`);
      return c;
    },
    async contactPoint(otherId, extra = {}) {
      const dir = await mkdtemp(join(tmpdir(), 'cp-harness-'));
      const secret = await credentials.add('contact-point', otherId);
      const other = await ContactPoint.create({ id: otherId, relayUrl: relay.url, secret, stateDir: dir, peerHost: '127.0.0.1', logger, timing: FAST, ...extra });
      others.push({ cp: other, dir });
      await other.start();
      await waitFor(() => other.gateway.connected, 5_000, `${otherId} tunnel up`);
      return other;
    },
    async restartRelay() {
      await relay.stop();
      relay = new Relay({ credentials, logger, pingIntervalMs: FAST.pingIntervalMs, port, ...opts.relay });
      await relay.start();
    },
    async close() {
      await Promise.all(clients.map((c) => c.stop()));
      for (const o of others) {
        await o.cp.stop();
        await rm(o.dir, { recursive: true, force: true });
      }
      await cp.stop();
      await relay.stop();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
  return h;
}

export async function waitFor(cond: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * An operator (`name`, rights send and mediate) exposing a LAN echo service behind the
 * harness's contact point (whose port policy then allows loopback targets), with one client
 * connection carried through the public port. close() ends them all.
 */
export async function exposedEcho(h: Harness, name = 'tech'): Promise<{ op: Operator; lanPort: number; publicPort: number; close(): Promise<void> }> {
  await h.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: [] });
  const lan = await echoServer();
  const secret = await h.credentials.add('external', name, ['send', 'mediate']);
  const op = new Operator({ url: h.relay.url, name, secret, logger, timing: FAST });
  op.start();
  await op.ready();
  const { publicPort } = await op.expose(h.cp.id, '127.0.0.1', lan.port);
  const client = connect(publicPort, '127.0.0.1');
  client.write('ping');
  await once(client, 'data');
  return {
    op,
    lanPort: lan.port,
    publicPort,
    close: async () => {
      client.destroy();
      await op.stop();
      await lan.close();
    },
  };
}

/** The DeliveryError a send fails with (the test fails if it succeeds or fails otherwise). */
export async function refusal(p: Promise<unknown>): Promise<DeliveryError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DeliveryError);
  return err as DeliveryError;
}

/** One Prometheus text scrape: `value(name, labels)` is the sample's value, undefined when absent. */
export interface Scrape {
  readonly text: string;
  value(name: string, labels?: Record<string, string>): number | undefined;
}

/** GETs a /metrics URL and parses its samples (`name{a="x",b="y"} value` lines). */
export async function scrapeMetrics(url: string): Promise<Scrape> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`);
  const text = await res.text();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => `${l[1]}=${l[2]}`).sort();
    samples.set(`${m[1]}{${labels.join(',')}}`, Number(m[3]));
  }
  return {
    text,
    value: (name, labels = {}) => samples.get(`${name}{${Object.entries(labels).map(([k, v]) => `${k}=${v}`).sort().join(',')}}`),
  };
}
