/**
 * `npm run bench -- --only outage` (both modes), or on its own
 * `node dist/bench/outage.js [--messages N] [--outage-ms MS] [--mode cut|relay-restart]`:
 * how long messages queued during a tunnel outage wait after the tunnel is back (issue 10
 * item 7). One process, real relay, contact point and SDK clients on loopback, SDK defaults
 * (ACK timeout 2 s, so retries of refused messages settle at one per 2 s).
 *
 * - cut: the contact point reaches the relay through a TCP forwarder that is cut (connections
 *   reset, new ones refused) and later restored; the relay stays up.
 * - relay-restart: the relay stops and a new one starts on the same port.
 *
 * During the outage N messages go external -> LAN peer and N go LAN peer -> external, spread
 * over the first 2 s. Prints one JSON line: the delay from the tunnel's return (the contact
 * point's WELCOME) to each message's arrival at its receiver, median and max per direction.
 * Before REACHABLE (issue 10, item 7) the median was 0.8–1.2 s and the max up to 2 s here;
 * retries of the SDK's default backoff could wait up to 16 s.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContactPoint } from '../core/contact-point/contact-point.js';
import { PeerIdentity } from '../core/peer/identity.js';
import { PeerClient, type InboundMessage } from '../core/peer/peer-client.js';
import { CredentialStore } from '../core/relay/credentials.js';
import { Relay } from '../core/relay/relay.js';
import { createLogger } from '../core/runtime/logger.js';
import type { BenchContext } from './context.js';
import { emit, note, waitFor } from './util.js';

const logger = createLogger({ level: 'silent' });
const FAST = { pingIntervalMs: 1_000, pongTimeoutMs: 1_000, backoffBaseMs: 50, backoffMaxMs: 500 } as const;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

function stats(values: number[]): { n: number; median: number; max: number } {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, median: s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN, max: s.at(-1) ?? NaN };
}

async function forwarder(targetPort: number): Promise<{ port: number; cut(): void; restore(): void; close(): void }> {
  let down = false;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    if (down) return void client.destroy();
    const upstream = connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
      s.on('error', () => undefined);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    cut: () => {
      down = true;
      for (const s of sockets) s.destroy();
    },
    restore: () => void (down = false),
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

type OutageMode = 'cut' | 'relay-restart';

/** One outage of `outageMs` with `n` messages each way queued during it; the result line. */
export async function measureOutage(mode: OutageMode, n: number, outageMs: number): Promise<Record<string, unknown>> {

  const credentials = CredentialStore.inMemory();
  const cpSecret = await credentials.add('contact-point', 'office');
  const aliceSecret = await credentials.add('external', 'alice');
  let relay = new Relay({ credentials, logger, pingIntervalMs: FAST.pingIntervalMs });
  const relayUrl = await relay.start();
  const relayPort = Number(new URL(relayUrl).port);
  const fwd = mode === 'cut' ? await forwarder(relayPort) : undefined;
  const dir = await mkdtemp(join(tmpdir(), 'cp-outage-bench-'));
  const cp = await ContactPoint.create({
    id: 'office',
    relayUrl: fwd ? `ws://127.0.0.1:${fwd.port}/v1` : relayUrl,
    secret: cpSecret,
    stateDir: dir,
    peerHost: '127.0.0.1',
    logger,
    timing: FAST,
  });
  await cp.start();
  await waitFor(() => cp.gateway.connected, 10_000, 'tunnel');

  const arrived = new Map<string, number>();
  const onMessage = (m: InboundMessage): void => void arrived.set(m.payload.toString(), Date.now());
  const printer = new PeerClient({ role: 'peer', url: cp.peerPortUrl, name: 'printer', identity: PeerIdentity.generate(), logger, timing: FAST, onMessage });
  printer.start();
  await printer.ready();
  printer.register();
  await waitFor(() => cp.registrar.get('printer')?.state === 'pending', 10_000, 'pending');
  await cp.call('peers:approve', { name: 'printer' });
  await printer.waitForRegistration('registered');
  const alice = new PeerClient({ role: 'external', url: relayUrl, name: 'alice', secret: aliceSecret, logger, timing: FAST, onMessage });
  alice.start();
  await alice.ready();
  await waitFor(() => relay.peersOf('office').includes('printer'), 10_000, 'announced');

  if (fwd) fwd.cut();
  else await relay.stop();
  await waitFor(() => !cp.gateway.connected, 10_000, 'tunnel down');
  const start = Date.now();
  const sends: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    sends.push(alice.send('printer@office', `in${i}`));
    sends.push(printer.send('alice@relay', `out${i}`));
    await sleep(2_000 / n);
  }
  await sleep(outageMs - (Date.now() - start));
  let upAt = 0;
  cp.gateway.once('up', () => (upAt = Date.now()));
  if (fwd) fwd.restore();
  else {
    relay = new Relay({ credentials, logger, pingIntervalMs: FAST.pingIntervalMs, port: relayPort });
    await relay.start();
  }
  const results = await Promise.allSettled(sends);
  const failed = results.filter((r) => r.status === 'rejected').length;
  const delays = (prefix: string): number[] => [...arrived].filter(([k]) => k.startsWith(prefix)).map(([, at]) => at - upAt);
  const result = {
    name: 'outage.delivery-after-return',
    outage: mode,
    outageMs,
    messagesPerDirection: n,
    failed,
    unit: 'ms after the tunnel returned',
    externalToLan: stats(delays('in')),
    lanToExternal: stats(delays('out')),
    all: stats(delays('')),
  };
  await Promise.all([alice.stop(), printer.stop()]);
  await cp.stop();
  await relay.stop();
  fwd?.close();
  await rm(dir, { recursive: true, force: true });
  return result;
}

/** The `outage` target of `npm run bench`: both modes, one JSON line each. */
export async function runOutage(ctx: BenchContext): Promise<void> {
  if (!ctx.selected('outage')) return;
  for (const mode of ['cut', 'relay-restart'] as const) {
    note(`outage: ${mode}`);
    emit({ ...(await measureOutage(mode, ctx.quick ? 20 : 50, ctx.quick ? 4_000 : 6_000)), mode: ctx.quick ? 'quick' : 'full' });
  }
}

async function main(): Promise<void> {
  const n = Number(arg('messages', '50'));
  const outageMs = Number(arg('outage-ms', '6000'));
  const mode = arg('mode', 'cut');
  if (!Number.isInteger(n) || n < 1 || n > 5_000) throw new Error('--messages must be 1..5000');
  if (mode !== 'cut' && mode !== 'relay-restart') throw new Error('--mode must be cut or relay-restart');
  process.stdout.write(JSON.stringify(await measureOutage(mode, n, outageMs)) + '\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
