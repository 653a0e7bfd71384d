/**
 * Benchmark 2: 1,000 registered internal peers behind one contact point, against 1,000
 * external peers each connected to the relay themselves.
 *
 * Processes: relay A + contact point (the product's way), relay B (the baseline), each in its
 * own child process started with --expose-gc; the 2,000 SDK clients run in the bench process.
 * Internal peers each have their own Ed25519 identity and are registered by the contact point's
 * auto-approve policy (subnet 127.0.0.0/8). State is kept in memory (no state dir).
 *
 * - relay sockets: relay.status().sockets (and /healthz) with the contact point's 1,000 peers,
 *   against relay B's with 1,000 direct external peers.
 * - idle bytes per minute on the tunnel: the gateway's link counters (our frames) and the tunnel
 *   socket's bytesRead/bytesWritten (ws framing and keepalive pings included), over an idle
 *   window (2 minutes; 10 s with --quick, scaled to a minute); baseline: relay B's sockets.
 * - contact point memory per peer: heapUsed/external/rss after forced GC, after one warm-up peer
 *   and after the rest, divided by their number; baseline: relay B's memory per direct peer.
 */
import { PeerIdentity } from '../core/peer/identity.js';
import { PeerClient } from '../core/peer/peer-client.js';
import type { BenchContext } from './context.js';
import type { WorkerHandle } from './ipc.js';
import { emit, note, pool, round, sleep, waitFor } from './util.js';

export const PEERS = 1_000;
export const TARGET_RELAY_SOCKETS = 1;
export const TARGET_BYTES_PER_PEER = 30 * 1024;
/** Hellos in progress at once: the peer port and the relay each allow 32 pending per address. */
const CONNECT_CONCURRENCY = 16;
const CONNECT_TIMEOUT_MS = 30_000;
const CP_ID = 'bench-hq';

interface Tunnel {
  bytesIn: number;
  bytesOut: number;
  framesIn: number;
  framesOut: number;
  reconnects: number;
  state: string;
  wire: { read: number; written: number };
}
interface RelayWire {
  sockets: number;
  read: number;
  written: number;
  frameBytes: number;
}
interface RelayStatus {
  sockets: number;
  tunnels: number;
  externals: number;
}

function perPeer(after: NodeJS.MemoryUsage, before: NodeJS.MemoryUsage, n: number): { heap: number; external: number; heapPlusExternal: number; rss: number } {
  const heap = (after.heapUsed - before.heapUsed) / n;
  const external = (after.external - before.external) / n;
  return { heap: Math.round(heap), external: Math.round(external), heapPlusExternal: Math.round(heap + external), rss: Math.round((after.rss - before.rss) / n) };
}

async function healthzSockets(relayUrl: string): Promise<number> {
  const u = new URL(relayUrl);
  const res = await fetch(`http://${u.host}/healthz`, { signal: AbortSignal.timeout(5_000) });
  return ((await res.json()) as { sockets: number }).sockets;
}

export async function runPeers(ctx: BenchContext): Promise<void> {
  if (!ctx.selected('peers')) return;
  const n = Number(process.env.BENCH_PEERS ?? PEERS);
  const windowMs = ctx.quick ? 10_000 : 120_000;
  const mode = ctx.quick ? 'quick' : 'full';
  const workers: WorkerHandle[] = [];
  const clients: PeerClient[] = [];

  const internal = async (url: string, name: string): Promise<PeerClient> => {
    const c = new PeerClient({ role: 'peer', url, name, identity: PeerIdentity.generate(), proxy: null });
    clients.push(c);
    c.start();
    await c.ready(CONNECT_TIMEOUT_MS);
    c.register(); // auto-approved by the subnet policy
    await c.waitForRegistration('registered', CONNECT_TIMEOUT_MS);
    return c;
  };
  const external = async (url: string, name: string, secret: string): Promise<PeerClient> => {
    const c = new PeerClient({ role: 'external', url, name, secret, proxy: null });
    clients.push(c);
    c.start();
    await c.ready(CONNECT_TIMEOUT_MS);
    return c;
  };

  try {
    note(`peers: ${n} internal peers behind one contact point vs ${n} external peers on a relay; idle window ${windowMs / 1000} s${ctx.quick ? ' (quick, scaled to a minute)' : ''}`);
    const relayA = await ctx.startWorker('relay', {}, { exposeGc: true });
    workers.push(relayA);
    const cpSecret = await relayA.call<string>('addCredential', { kind: 'contact-point', id: CP_ID });
    const cp = await ctx.startWorker('contact-point', { id: CP_ID, relayUrl: relayA.url, secret: cpSecret, subnets: ['127.0.0.0/8'] }, { exposeGc: true });
    workers.push(cp);
    const relayB = await ctx.startWorker('relay', {}, { exposeGc: true });
    workers.push(relayB);

    // Contact point: one warm-up peer (first-use code paths, lazily built tables), then the rest.
    await internal(cp.url, 'peer-0');
    await sleep(500);
    const cpBefore = await cp.call<NodeJS.MemoryUsage>('memory');
    const t0 = Date.now();
    const names = Array.from({ length: n - 1 }, (_, i) => `peer-${i + 1}`);
    await pool(names, CONNECT_CONCURRENCY, (name) => internal(cp.url, name));
    note(`  ${n} internal peers connected and registered in ${Date.now() - t0} ms`);
    await waitFor(async () => (await relayA.call<number>('peersCount', { id: CP_ID })) === n, 30_000, `relay A to learn all ${n} peers`, 100);
    await sleep(1_000);
    const cpAfter = await cp.call<NodeJS.MemoryUsage>('memory');
    const cpPeers = await cp.call<{ known: number; registered: number; connections: number }>('peers');

    // Baseline: the same number of external peers, each with its own socket to relay B.
    const ids = Array.from({ length: n }, (_, i) => `ext-${i}`);
    const secrets = await relayB.call<string[]>('addCredentials', { kind: 'external', ids });
    await external(relayB.url, ids[0]!, secrets[0]!);
    await sleep(500);
    const rbBefore = await relayB.call<NodeJS.MemoryUsage>('memory');
    const t1 = Date.now();
    await pool(ids.slice(1), CONNECT_CONCURRENCY, (id, i) => external(relayB.url, id, secrets[i + 1]!));
    note(`  ${n} external peers connected to relay B in ${Date.now() - t1} ms`);
    await sleep(1_000);
    const rbAfter = await relayB.call<NodeJS.MemoryUsage>('memory');

    const statusA = await relayA.call<RelayStatus>('status');
    const statusB = await relayB.call<RelayStatus>('status');
    const healthA = await healthzSockets(relayA.url);
    const healthB = await healthzSockets(relayB.url);

    // Idle window: nobody sends; only keepalives should cross.
    await sleep(2_000);
    const tunnel0 = await cp.call<Tunnel>('tunnel');
    const wireA0 = await relayA.call<RelayWire>('wire');
    const wireB0 = await relayB.call<RelayWire>('wire');
    const w0 = Date.now();
    note(`  idle window: ${windowMs / 1000} s`);
    await sleep(windowMs);
    const tunnel1 = await cp.call<Tunnel>('tunnel');
    const wireA1 = await relayA.call<RelayWire>('wire');
    const wireB1 = await relayB.call<RelayWire>('wire');
    const elapsed = Date.now() - w0;
    const perMin = (bytes: number): number => Math.round((bytes * 60_000) / elapsed);
    const frameBytes = tunnel1.bytesIn + tunnel1.bytesOut - (tunnel0.bytesIn + tunnel0.bytesOut);
    const tunnelWire = tunnel1.wire.read + tunnel1.wire.written - (tunnel0.wire.read + tunnel0.wire.written);
    const relayAWire = wireA1.read + wireA1.written - (wireA0.read + wireA0.written);
    const relayBWire = wireB1.read + wireB1.written - (wireB0.read + wireB0.written);
    const relayBFrames = wireB1.frameBytes - wireB0.frameBytes;

    const scaled = ctx.quick ? { scaled_from_s: round(elapsed / 1000, 1), note: 'quick mode: 10 s window scaled to a minute; the idle tunnel carries a heartbeat once per ~25 s and a ping once per ~200 s (PROTOCOL.md 12.2), so this is coarse: footprint.idle_wire counts a longer window' } : {};
    emit({
      name: 'peers.relay_sockets',
      description: `sockets the relay holds for ${n} registered internal peers behind one contact point`,
      value: statusA.sockets,
      unit: 'sockets',
      healthz_sockets: healthA,
      tunnels: statusA.tunnels,
      peers_registered: cpPeers.registered,
      peer_port_connections: cpPeers.connections,
      baseline_sockets: statusB.sockets,
      baseline_healthz_sockets: healthB,
      baseline: `${n} external peers each connected to the relay themselves`,
      ratio: round(statusA.sockets / statusB.sockets, 4),
      target: TARGET_RELAY_SOCKETS,
      target_met: statusA.sockets <= TARGET_RELAY_SOCKETS,
      peers: n,
      mode,
    });
    emit({
      name: 'peers.tunnel_idle_bytes',
      description: `idle bytes per minute on the tunnel with ${n} registered internal peers connected`,
      value: perMin(frameBytes),
      unit: 'bytes/min',
      counter: 'gateway status bytesIn+bytesOut (protocol frames only)',
      wire_bytes_per_min: perMin(tunnelWire),
      wire_counter: 'tunnel TCP socket bytesRead+bytesWritten at the contact point (ws framing, pings and pongs included; not IP/TCP headers)',
      relay_wire_bytes_per_min: perMin(relayAWire),
      frames: tunnel1.framesIn + tunnel1.framesOut - (tunnel0.framesIn + tunnel0.framesOut),
      tunnel_reconnects: tunnel1.reconnects - tunnel0.reconnects,
      baseline_bytes_per_min: perMin(relayBFrames),
      baseline_wire_bytes_per_min: perMin(relayBWire),
      baseline: `relay B, all sockets of ${n} directly connected external peers, same counters, same window`,
      ratio: round(perMin(tunnelWire) / perMin(relayBWire), 4),
      ratio_basis: 'wire bytes (frame counters are 0 on both sides when idle)',
      window_s: round(elapsed / 1000, 1),
      ...scaled,
      peers: n,
      mode,
    });
    const cp1 = perPeer(cpAfter, cpBefore, n - 1);
    const rb1 = perPeer(rbAfter, rbBefore, n - 1);
    emit({
      name: 'peers.cp_memory_per_peer',
      description: `contact point process memory per registered, connected internal peer (${n - 1} peers after a warm-up peer, forced GC before each reading)`,
      value: cp1.heapPlusExternal,
      unit: 'bytes',
      measure: 'heapUsed + external delta / peers',
      heap_used_per_peer: cp1.heap,
      external_per_peer: cp1.external,
      rss_per_peer: cp1.rss,
      before: { heapUsed: cpBefore.heapUsed, external: cpBefore.external, rss: cpBefore.rss },
      after: { heapUsed: cpAfter.heapUsed, external: cpAfter.external, rss: cpAfter.rss },
      baseline_bytes_per_peer: rb1.heapPlusExternal,
      baseline_rss_per_peer: rb1.rss,
      baseline: 'relay B process memory per directly connected external peer, same method',
      ratio: round(cp1.heapPlusExternal / rb1.heapPlusExternal),
      target: TARGET_BYTES_PER_PEER,
      target_ratio: round(cp1.heapPlusExternal / TARGET_BYTES_PER_PEER),
      target_met: cp1.heapPlusExternal <= TARGET_BYTES_PER_PEER,
      rss_target_met: cp1.rss <= TARGET_BYTES_PER_PEER,
      peers: n,
      mode,
    });
  } finally {
    note(`peers: stopping ${clients.length} clients`);
    await Promise.all(clients.map((c) => c.stop()));
    await Promise.all(workers.map((w) => w.stop()));
  }
}
