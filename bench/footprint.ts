/**
 * Benchmark `footprint` (issue 17, targets 3-5): what a registered peer, an office and an idle
 * tunnel cost, side by side with a mosquitto bridge and a NATS leaf node in the same run
 * (bench/anchors.ts; an anchor that cannot run is skipped with its reason).
 *
 * - footprint.cp_memory_per_peer: contact point RSS growth per registered, connected peer at
 *   FOOTPRINT_PEERS (after a warm-up peer; forced GC before each reading, which V8 can do and
 *   the anchors need not). Anchors: RSS growth of the bridged local mosquitto / the leaf
 *   nats-server per connected, subscribed client. Target: <= 4 KiB.
 * - footprint.attach_ms: FOOTPRINT_PEERS LAN peers registered (hello, key proof, REGISTER,
 *   auto-approved, the relay told) against as many clients connected and subscribed to their own
 *   subject at the anchors; 16 at once everywhere; client keys (identity and sealing) made before
 *   the clock starts.
 *   The contact point has a state folder, as in production. Target: <= 0.5 x mosquitto.
 * - footprint.relay_memory_per_office: relay RSS growth per office at FOOTPRINT_OFFICES offices
 *   (real tunnels, 5 announced peers each). Target: <= 8 KiB.
 * - footprint.idle_wire: bytes a minute on the idle tunnel with those peers behind it, counted
 *   by the kernel on the socket (ss: TCP payload both ways, and segments), over one window shared
 *   with the anchors' bridge and leaf connections. Target: <= 300 B/min on the wire: TCP payload
 *   plus 52 B of IPv4 + TCP headers per segment (an idle link's segments carry a few bytes each, so
 *   the headers are nearly all of it).
 */
import { PeerIdentity } from '../core/peer/identity.js';
import { PeerClient } from '../core/peer/peer-client.js';
import { SealKey } from '../core/protocol/seal.js';
import { cpuMsOf, missing, rssOf, SEGMENT_HEADER_BYTES, startMosquittoBridge, startNatsLeaf, tcpCounters, type Anchor, type TcpCounters } from './anchors.js';
import type { BenchContext } from './context.js';
import type { WorkerHandle } from './ipc.js';
import { FLOOR_KINDS, type FloorKind } from './conn-floor.js';
import { emit, note, pool, round, sleep, waitFor } from './util.js';

export const FOOTPRINT_PEERS = 5_000;
export const FOOTPRINT_OFFICES = 1_000;
/** peers each office of the relay measurement announces */
export const PEERS_EACH = 5;
export const TARGET_CP_BYTES_PER_PEER = 4 * 1024;
export const TARGET_RELAY_BYTES_PER_OFFICE = 8 * 1024;
export const TARGET_ATTACH_RATIO = 0.5;
export const TARGET_IDLE_BYTES_PER_MIN = 300;
/** Hellos in progress at once, here and at the anchors: the peer port allows 32 pending per address. */
export const CONCURRENCY = 16;
const CONNECT_TIMEOUT_MS = 60_000;
const CP_ID = 'bench-hq';

/** Per accepted connection in a bare server of each kind (bench/conn-floor.ts): RSS and heap growth after a forced GC. */
type Floor = Record<FloorKind, { rss: number; heap: number }>;

/**
 * The floor under the memory targets, measured in this run: what `n` connections cost a bare
 * `net` server and a bare ws server (as the peer port sets it up), each in a worker process of its
 * own with the same node flags as the contact point, the clients in another.
 */
async function measureFloor(ctx: BenchContext, n: number, workers: WorkerHandle[]): Promise<Floor> {
  const out: Partial<Floor> = {};
  for (const kind of FLOOR_KINDS) {
    const server = await ctx.startWorker('conn-floor', { kind }, { exposeGc: true });
    workers.push(server);
    await sleep(500);
    const m0 = await server.call<NodeJS.MemoryUsage>('memory');
    const clients = await ctx.startWorker('conn-floor-clients', { url: server.url, n, concurrency: CONCURRENCY * 4 });
    workers.push(clients);
    await waitFor(async () => (await server.call<number>('held')) === n, CONNECT_TIMEOUT_MS, `the ${kind} floor server to hold ${n} connections`, 20);
    await sleep(1_000);
    const m1 = await server.call<NodeJS.MemoryUsage>('memory');
    out[kind] = { rss: Math.round((m1.rss - m0.rss) / n), heap: Math.round((m1.heapUsed - m0.heapUsed) / n) };
    await clients.stop();
    await server.stop();
  }
  return out as Floor;
}

/** The floor's fields for a memory line whose value is `rss` per connection. */
function floorFields(floor: Floor, rss: number): Record<string, unknown> {
  return {
    ws_floor_rss_per_connection: floor.ws.rss,
    ws_floor_heap_per_connection: floor.ws.heap,
    net_floor_rss_per_connection: floor.net.rss,
    net_floor_heap_per_connection: floor.net.heap,
    own_ws_floor_rss_per_connection: floor['own-ws'].rss,
    own_ws_floor_heap_per_connection: floor['own-ws'].heap,
    above_ws_floor: rss - floor.ws.rss,
    above_own_ws_floor: rss - floor['own-ws'].rss,
    floor_basis:
      'RSS and heap growth per accepted connection of a bare server, each in a worker with the same node flags, same run: the ws library as the peer port and the relay set it up until 4 Dec 2026 (ws_floor), their own WebSocket server end now (core/protocol/ws-server.ts: own_ws_floor), a bare net server (net_floor); what one connection costs before any state of ours',
  };
}

interface HeapSpace {
  readonly space_name: string;
  readonly physical_space_size: number;
}

/** What V8's young generation holds in memory (its pages stay resident after a GC empties them). */
function newSpace(l: HeapSpace[]): number {
  return l.find((x) => x.space_name === 'new_space')?.physical_space_size ?? 0;
}

interface Measured {
  readonly name: string;
  readonly attachMs: number;
  /** CPU ms per client the anchor's two processes spent attaching */
  readonly cpuMsPerClient: number;
  readonly rssPerClient: number;
  readonly upstreamPort: number;
}

async function measureAnchor(start: () => Promise<Anchor>, names: readonly string[], started: Anchor[]): Promise<Measured> {
  const a = await start();
  started.push(a);
  await sleep(300);
  const rss0 = rssOf(a.pid);
  const cpu = (): number => a.pids.reduce((sum, pid) => sum + cpuMsOf(pid), 0);
  const cpu0 = cpu();
  const t0 = Date.now();
  await a.attach(names, CONCURRENCY);
  const attachMs = Date.now() - t0;
  const cpuMsPerClient = round((cpu() - cpu0) / names.length, 4);
  await sleep(1_000);
  const rssPerClient = Math.round((rssOf(a.pid) - rss0) / names.length);
  note(`  ${a.name}: ${names.length} clients attached in ${attachMs} ms, ${rssPerClient} B RSS each`);
  return { name: a.name, attachMs, cpuMsPerClient, rssPerClient, upstreamPort: a.upstreamPort };
}

function perMinute(a: TcpCounters, b: TcpCounters, ms: number): { bytes: number; segments: number; with_headers: number; reconnected?: true } {
  const f = 60_000 / ms;
  const bytes = (b.bytes - a.bytes) * f;
  const segments = (b.segments - a.segments) * f;
  return { bytes: Math.round(bytes), segments: round(segments, 1), with_headers: Math.round(bytes + segments * SEGMENT_HEADER_BYTES), ...(a.connections !== b.connections ? { reconnected: true as const } : {}) };
}

/** A second relay with `offices` real tunnels (5 announced peers each): its RSS growth per office. */
async function measureOffices(ctx: BenchContext, offices: number, workers: WorkerHandle[]): Promise<{ upMs: number; rss: number; heap: number; heapTotal: number; external: number; newSpace: number }> {
  const relayB = await ctx.startWorker('relay', {}, { exposeGc: true });
  workers.push(relayB);
  const ids = Array.from({ length: offices }, (_v, i) => `office-${i}`);
  const secrets = await relayB.call<string[]>('addCredentials', { kind: 'contact-point', ids });
  await sleep(300);
  const r0 = await relayB.call<NodeJS.MemoryUsage>('memory');
  const spaces0 = await relayB.call<HeapSpace[]>('heapSpaces');
  const t = Date.now();
  const w = await ctx.startWorker('offices', { relayUrl: relayB.url, offices: ids.map((id, i) => ({ id, secret: secrets[i]! })), peersEach: PEERS_EACH });
  workers.push(w);
  const upMs = Date.now() - t;
  await sleep(1_000);
  const r1 = await relayB.call<NodeJS.MemoryUsage>('memory');
  const spaces1 = await relayB.call<HeapSpace[]>('heapSpaces');
  note(`  relay: ${offices} offices up in ${upMs} ms, ${Math.round((r1.rss - r0.rss) / offices)} B RSS each`);
  return {
    upMs,
    rss: Math.round((r1.rss - r0.rss) / offices),
    heap: Math.round((r1.heapUsed - r0.heapUsed) / offices),
    heapTotal: Math.round((r1.heapTotal - r0.heapTotal) / offices),
    external: Math.round((r1.external - r0.external) / offices),
    newSpace: Math.round((newSpace(spaces1) - newSpace(spaces0)) / offices),
  };
}

/** One LAN peer connected to the contact point at `url` and registered (auto-approved by its subnet policy); its client goes into `clients`. */
export async function attachLanPeer(url: string, name: string, identity: PeerIdentity, sealKey: SealKey, clients: PeerClient[]): Promise<void> {
  const c = new PeerClient({ role: 'peer', url, name, identity, sealKey, proxy: null });
  clients.push(c);
  c.start();
  await c.ready(CONNECT_TIMEOUT_MS);
  c.register(); // auto-approved by the subnet policy
  await c.waitForRegistration('registered', CONNECT_TIMEOUT_MS);
}

export async function runFootprint(ctx: BenchContext): Promise<void> {
  // `--only attach`: the attach and its anchors alone (~1 min), without the idle windows and the offices.
  const attachOnly = !ctx.selected('footprint');
  if (attachOnly && !ctx.selected('attach')) return;
  const n = Number(process.env.BENCH_FOOTPRINT_PEERS ?? FOOTPRINT_PEERS);
  const offices = Number(process.env.BENCH_FOOTPRINT_OFFICES ?? FOOTPRINT_OFFICES);
  const windowMs = ctx.quick ? 40_000 : 180_000;
  const mode = ctx.quick ? 'quick' : 'full';
  const workers: WorkerHandle[] = [];
  const clients: PeerClient[] = [];
  const anchors: Anchor[] = [];
  try {
    note(attachOnly ? `attach: ${n} LAN peers; anchors mosquitto bridge and NATS leaf` : `footprint: ${n} LAN peers, ${offices} offices; anchors mosquitto bridge and NATS leaf; idle window ${windowMs / 1000} s`);
    const relay = await ctx.startWorker('relay', {}, { exposeGc: true });
    workers.push(relay);
    const cpSecret = await relay.call<string>('addCredential', { kind: 'contact-point', id: CP_ID });
    const cp = await ctx.startWorker('contact-point', { id: CP_ID, relayUrl: relay.url, secret: cpSecret, subnets: ['127.0.0.0/8'], history: 'off' }, { exposeGc: true });
    workers.push(cp);
    const relayPort = Number(new URL(relay.url).port);

    const identities = Array.from({ length: n }, () => PeerIdentity.generate());
    const sealKeys = Array.from({ length: n }, () => SealKey.generate());
    const attachOne = (i: number): Promise<void> => attachLanPeer(cp.url, `peer-${i}`, identities[i]!, sealKeys[i]!, clients);
    await attachOne(0);
    await sleep(500);
    const cp0 = await cp.call<NodeJS.MemoryUsage>('memory');
    const cpus = (): Promise<NodeJS.CpuUsage[]> => Promise.all([cp.call<NodeJS.CpuUsage>('cpu'), relay.call<NodeJS.CpuUsage>('cpu')]);
    const cpu0 = await cpus();
    const sdk0 = process.cpuUsage();
    await cp.call('loopDelay', { start: true });
    const spaces0 = await cp.call<HeapSpace[]>('heapSpaces');
    const t0 = Date.now();
    await pool(
      Array.from({ length: n - 1 }, (_v, i) => i + 1),
      CONCURRENCY,
      attachOne,
    );
    await waitFor(async () => (await relay.call<number>('peersCount', { id: CP_ID })) === n, 30_000, `the relay to learn all ${n} peers`, 20);
    const attachMs = Date.now() - t0;
    const sdk = process.cpuUsage(sdk0);
    const cpLoop = await cp.call<{ p50_ms: number; p99_ms: number; max_ms: number } | null>('loopDelay');
    const cpu1 = await cpus();
    const cpuMs = (i: number): number => (cpu1[i]!.user - cpu0[i]!.user + cpu1[i]!.system - cpu0[i]!.system) / 1000;
    const cpuMsPerPeer = round((cpuMs(0) + cpuMs(1)) / (n - 1), 4);
    // Where it went: the contact point, the relay, and the SDK clients here (with whatever else this process did meanwhile).
    const cpuSplit = { contact_point_cpu_ms_per_peer: round(cpuMs(0) / (n - 1), 4), relay_cpu_ms_per_peer: round(cpuMs(1) / (n - 1), 4), sdk_cpu_ms_per_peer: round((sdk.user + sdk.system) / 1000 / (n - 1), 4) };
    await sleep(1_000);
    const cp1 = await cp.call<NodeJS.MemoryUsage>('memory');
    const spaces1 = await cp.call<HeapSpace[]>('heapSpaces');
    const cpPerPeer = {
      rss: Math.round((cp1.rss - cp0.rss) / (n - 1)),
      heap: Math.round((cp1.heapUsed - cp0.heapUsed) / (n - 1)),
      heapTotal: Math.round((cp1.heapTotal - cp0.heapTotal) / (n - 1)),
      external: Math.round((cp1.external - cp0.external) / (n - 1)),
    };
    note(`  contact point: ${n - 1} peers registered in ${attachMs} ms, ${cpPerPeer.rss} B RSS each (heap ${cpPerPeer.heap})`);

    // Idle windows: ours starts now, the anchors' once they are attached; they end together (each
    // scaled to a minute). Offices connect to another relay meanwhile (not on these sockets).
    const ourIdle0 = await tcpCounters(relayPort);
    const w0 = Date.now();
    const names = Array.from({ length: n }, (_v, i) => `peer-${i}`);
    const measured: Measured[] = [];
    const skipped: Record<string, string> = {};
    for (const [which, start] of [
      ['mosquitto', startMosquittoBridge],
      ['nats', startNatsLeaf],
    ] as const) {
      const why = missing(which);
      if (why) {
        skipped[which] = why;
        note(`  ${which} anchor skipped: ${why}`);
        continue;
      }
      try {
        measured.push(await measureAnchor(start, names, anchors));
      } catch (err: unknown) {
        skipped[which] = err instanceof Error ? err.message : String(err);
        note(`  ${which} anchor skipped: ${skipped[which]}`);
      }
    }
    const mq = measured.find((m) => m.name.startsWith('mosquitto'));
    const nats = measured.find((m) => m.name.startsWith('NATS'));
    const common = { peers: n, mode, skipped_anchors: skipped };
    const emitAttach = (): void =>
      emit({
        name: 'footprint.attach_ms',
        description: `${n - 1} LAN peers registered at the contact point (hello, key proof, REGISTER, auto-approved, announced to the relay), ${CONCURRENCY} at once, state folder on`,
        value: attachMs,
        unit: 'ms',
        ...(mq ? { mosquitto_ms: mq.attachMs, ratio: round(attachMs / mq.attachMs) } : {}),
        ...(nats ? { nats_leaf_ms: nats.attachMs, ratio_vs_nats: round(attachMs / nats.attachMs) } : {}),
        cpu_ms_per_peer: cpuMsPerPeer,
        cpu_basis: 'CPU time of the contact point and relay processes (ours), of both mosquitto / both nats-server processes (anchors), per client attached: what the servers spent, whatever the host load did to the wall clock',
        ...cpuSplit,
        ...(cpLoop ? { contact_point_loop_delay: cpLoop, loop_delay_basis: "the contact point's event loop delay during the attach (perf_hooks, 1 ms resolution): how long anything else there, a message to a connected peer, waited" } : {}),
        ...(mq ? { mosquitto_cpu_ms_per_client: mq.cpuMsPerClient, cpu_ratio: round(cpuMsPerPeer / mq.cpuMsPerClient) } : {}),
        ...(nats ? { nats_leaf_cpu_ms_per_client: nats.cpuMsPerClient, cpu_ratio_vs_nats: round(cpuMsPerPeer / nats.cpuMsPerClient) } : {}),
        baseline: `${n} clients connected and subscribed to their own subject at the mosquitto bridge / NATS leaf, ${CONCURRENCY} at once, same run`,
        target_ratio: TARGET_ATTACH_RATIO,
        target_met: mq ? attachMs / mq.attachMs <= TARGET_ATTACH_RATIO : null,
        ...common,
      });
    if (attachOnly) {
      emitAttach();
      return;
    }

    const anchorIdle0 = await Promise.all(measured.map((m) => tcpCounters(m.upstreamPort)));
    const a0 = Date.now();
    const office = await measureOffices(ctx, offices, workers);
    const floor = await measureFloor(ctx, n, workers);
    note(`  floor: a bare ws server ${floor.ws.rss} B RSS per connection (heap ${floor.ws.heap}), ours (ws-server.ts) ${floor['own-ws'].rss} B (heap ${floor['own-ws'].heap}), a bare net server ${floor.net.rss} B (heap ${floor.net.heap})`);
    note(`  idle windows: ${windowMs / 1000} s`);
    await sleep(Math.max(0, w0 + windowMs - Date.now(), a0 + windowMs - Date.now()));
    const ourIdle1 = await tcpCounters(relayPort);
    const elapsed = Date.now() - w0;
    const anchorIdle1 = await Promise.all(measured.map((m) => tcpCounters(m.upstreamPort)));
    const anchorElapsed = Date.now() - a0;
    const ours = perMinute(ourIdle0, ourIdle1, elapsed);
    const anchorIdle = measured.map((m, i) => ({ name: m.name, ...perMinute(anchorIdle0[i]!, anchorIdle1[i]!, anchorElapsed), window_s: round(anchorElapsed / 1000, 1) }));
    const tunnel = await cp.call<{ keepaliveMode?: string }>('tunnel');
    // The same peers once the idle window has passed: V8 gives back young-generation room it grew during the attach burst only when allocation stays low.
    const cp2 = await cp.call<NodeJS.MemoryUsage>('memory');
    const spaces2 = await cp.call<HeapSpace[]>('heapSpaces');
    note(`  contact point after the idle window: ${Math.round((cp2.rss - cp0.rss) / (n - 1))} B RSS each (young generation ${Math.round((newSpace(spaces2) - newSpace(spaces0)) / (n - 1))} B of it)`);

    emit({
      name: 'footprint.cp_memory_per_peer',
      description: `contact point RSS growth per registered, connected LAN peer (${n - 1} after a warm-up peer, forced GC before each reading)`,
      value: cpPerPeer.rss,
      unit: 'bytes',
      heap_used_per_peer: cpPerPeer.heap,
      heap_total_per_peer: cpPerPeer.heapTotal,
      new_space_growth_per_peer: Math.round((newSpace(spaces1) - newSpace(spaces0)) / (n - 1)),
      new_space_note: "V8's young generation grows while thousands of peers attach and their pings keep it from shrinking back; it is part of the RSS growth but not per-peer state",
      rss_after_idle_per_peer: Math.round((cp2.rss - cp0.rss) / (n - 1)),
      new_space_after_idle_per_peer: Math.round((newSpace(spaces2) - newSpace(spaces0)) / (n - 1)),
      after_idle_basis: `the same reading at the end of the ${windowMs / 1000} s idle window`,
      external_per_peer: cpPerPeer.external,
      ...(mq ? { mosquitto_rss_per_client: mq.rssPerClient, ratio_vs_mosquitto: round(cpPerPeer.rss / mq.rssPerClient) } : {}),
      ...(nats ? { nats_leaf_rss_per_client: nats.rssPerClient, ratio_vs_nats: round(cpPerPeer.rss / nats.rssPerClient) } : {}),
      baseline: 'RSS growth per connected, subscribed client of the bridged local mosquitto and of the NATS leaf server, same run',
      ...floorFields(floor, cpPerPeer.rss),
      target: TARGET_CP_BYTES_PER_PEER,
      target_met: cpPerPeer.rss <= TARGET_CP_BYTES_PER_PEER,
      ...common,
    });
    emitAttach();
    emit({
      name: 'footprint.relay_memory_per_office',
      description: `relay RSS growth per office (${offices} real tunnels, ${PEERS_EACH} announced peers each; forced GC before each reading)`,
      value: office.rss,
      unit: 'bytes',
      heap_used_per_office: office.heap,
      // V8's committed heap pages (used + free room in them): RSS less this and external is native memory.
      heap_total_per_office: office.heapTotal,
      external_per_office: office.external,
      new_space_growth_per_office: office.newSpace,
      new_space_note: "V8's young generation grown while the offices connected: part of the RSS growth (its pages stay resident after a GC), not per-office state",
      offices_up_ms: office.upMs,
      ...floorFields(floor, office.rss),
      target: TARGET_RELAY_BYTES_PER_OFFICE,
      target_met: office.rss <= TARGET_RELAY_BYTES_PER_OFFICE,
      offices,
      mode,
    });
    emit({
      name: 'footprint.idle_wire',
      description: `idle tunnel with ${n} registered peers behind it: TCP payload bytes a minute, both directions, kernel counters of the socket (ss)`,
      value: ours.bytes,
      unit: 'bytes/min',
      segments_per_min: ours.segments,
      with_headers_per_min: ours.with_headers,
      headers_basis: `${SEGMENT_HEADER_BYTES} B per segment (IPv4 + TCP with timestamps)`,
      keepalive: tunnel.keepaliveMode ?? 'unknown',
      anchors: anchorIdle,
      baseline: 'the mosquitto bridge connection (keepalive 60 s) and the NATS leaf connection (default pings), same window',
      target: TARGET_IDLE_BYTES_PER_MIN,
      target_basis: 'with_headers_per_min: what crosses the wire',
      target_met: ours.with_headers <= TARGET_IDLE_BYTES_PER_MIN,
      window_s: round(elapsed / 1000, 1),
      ...(ctx.quick ? { window_note: 'quick: a 40 s window holds one or two of the tunnel\'s heartbeats (one per ~25 s) and none of its 200 s pings; the full run\'s 180 s window is the figure' } : {}),
      ...common,
    });
  } finally {
    note(`footprint: stopping ${clients.length} clients`);
    await Promise.all(clients.map((c) => c.stop()));
    for (const a of anchors) await a.stop();
    await Promise.all(workers.map((w) => w.stop()));
  }
}
