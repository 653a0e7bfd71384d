import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContactPoint, type ContactPointOptions } from '../core/contact-point/contact-point.js';
import { PeerIdentity } from '../core/peer/identity.js';
import { PeerClient, type InboundMessage } from '../core/peer/peer-client.js';
import type { TimingOptions } from '../core/protocol/timing.js';
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

export interface Harness {
  relay: Relay;
  credentials: CredentialStore;
  cp: ContactPoint;
  cpSecret: string;
  stateDir: string;
  /** an external peer with a fresh credential */
  external(name: string, extra?: Partial<ConstructorParameters<typeof PeerClient>[0]>): Promise<PeerClient>;
  /** an internal peer connected (not yet registered) */
  internal(name: string, opts?: { identity?: PeerIdentity; onMessage?: (m: InboundMessage) => void | Promise<void> }): Promise<PeerClient>;
  /** an internal peer, registered by the admin */
  registered(name: string, onMessage?: (m: InboundMessage) => void | Promise<void>): Promise<PeerClient>;
  restartRelay(): Promise<void>;
  close(): Promise<void>;
}

export async function startHarness(opts: { cp?: Partial<ContactPointOptions>; relay?: Partial<RelayOptions>; id?: string } = {}): Promise<Harness> {
  const stateDir = await mkdtemp(join(tmpdir(), 'cp-harness-'));
  const credentials = CredentialStore.inMemory();
  const id = opts.id ?? 'acme-hq';
  const cpSecret = await credentials.add('contact-point', id);
  let relay = new Relay({ credentials, logger, pingIntervalMs: FAST.pingIntervalMs, ...opts.relay });
  const url = await relay.start();
  const port = Number(new URL(url).port);
  const cp = await ContactPoint.create({ id, relayUrl: url, secret: cpSecret, stateDir, peerHost: '127.0.0.1', logger, ...opts.cp, timing: { ...FAST, ...opts.cp?.timing } });
  await cp.start();
  await waitFor(() => cp.gateway.connected, 5_000, 'tunnel up');
  const clients: PeerClient[] = [];
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
      });
      clients.push(c);
      c.start();
      await c.ready();
      return c;
    },
    async registered(name, onMessage) {
      const c = await h.internal(name, onMessage ? { onMessage } : {});
      c.register();
      await waitFor(() => cp.registrar.get(name)?.state === 'pending', 5_000, `${name} pending`);
      await cp.call('peers:approve', { name });
      await c.waitForRegistration('registered');
      await waitFor(() => relay.peersOf(id).includes(name), 5_000, `${name} announced`);
      return c;
    },
    async restartRelay() {
      await relay.stop();
      relay = new Relay({ credentials, logger, pingIntervalMs: FAST.pingIntervalMs, port, ...opts.relay });
      await relay.start();
    },
    async close() {
      await Promise.all(clients.map((c) => c.stop()));
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
