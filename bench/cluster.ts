/**
 * `--only cluster` (issue 12): acked 1 KiB messages to one office through a relay cluster of two
 * nodes on one nats-server, in the same run: from an external peer on the office's node
 * (same-node, no NATS on the path) and from one on the other node (cross-node: MSG and ACK each
 * cross NATS once). Both go to the same receiver process behind the same contact point.
 * - cluster.throughput: closed loop, IN_FLIGHT in flight, cross-node vs same-node msgs/s;
 * - cluster.latency_paced: open loop at PACED_RATE msgs/s, one-way p99 cross-node vs same-node;
 * - cluster.memory_per_office (`--only cluster-memory` alone): a relay's memory per connected
 *   office with MEMORY_OFFICES offices, as a cluster node vs a single relay.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import type { PeerClient } from '../core/peer/peer-client.js';
import type { BenchContext } from './context.js';
import type { WorkerHandle } from './ipc.js';
import { attributeTail, sumTails, type LatencyWithTail, type TailAttribution } from './tail.js';
import { closedLoop, IN_FLIGHT, MSG_BYTES, PACED_RATE, pacedLoop, relaySender, type LoopResult } from './messages.js';
import { CLUSTER_NATS_GOMAXPROCS, haveNatsServer, natsProcsNote, NO_NATS_REASON, startNatsServer, type NatsServer } from './nats-server.js';
import { measured, PORTS, type BulkResult } from './mediation.js';
import { emit, median, note, round, waitFor } from './util.js';

const CP_ID = 'bench-hq';
const RECEIVER = 'sink-worker';
const TO = `${RECEIVER}@${CP_ID}`;
/** Cross-node throughput at least this share of same-node (issue 12's target). */
const TARGET_RATIO = 0.7;
/** Cross-node paced p99 at most this many ms above same-node (issue 12's target). */
const TARGET_P99_EXTRA_MS = 1.5;
/** Offices connected to one relay for cluster.memory_per_office (issue 12: 1,000). */
const MEMORY_OFFICES = 1_000;
/** Peers each of those offices announces (the relay keeps their names). */
const MEMORY_PEERS_EACH = 4;

/** Whether the cluster benchmark `name` runs: selected, and nats-server there (else it says why it is skipped). */
function wanted(ctx: BenchContext, name: string): boolean {
  if (!ctx.selected(name)) return false;
  if (!haveNatsServer) note(NO_NATS_REASON);
  return haveNatsServer;
}

/** Relay node workers r1 and r2 on `nats` (added to `workers`, to be stopped by the caller); with `advertise`, each advertises its URL (placement). */
async function relayNodes(ctx: BenchContext, nats: NatsServer, workers: WorkerHandle[], advertise = false): Promise<[WorkerHandle, WorkerHandle]> {
  const nodes: WorkerHandle[] = [];
  for (const node of ['r1', 'r2']) {
    const w = await ctx.startWorker('relay', { cluster: { servers: [nats.url], node }, ...(advertise ? { advertise: true } : {}) });
    workers.push(w);
    nodes.push(w);
  }
  return [nodes[0]!, nodes[1]!];
}

export async function runCluster(ctx: BenchContext): Promise<void> {
  if (!ctx.selected('cluster') && !ctx.selected('cluster-memory')) return;
  if (!haveNatsServer) {
    note(NO_NATS_REASON);
    return;
  }
  if (ctx.selected('cluster')) await runMessagesAcross(ctx);
  if (ctx.selected('cluster-memory')) await runMemoryPerOffice(ctx);
}

async function runMessagesAcross(ctx: BenchContext): Promise<void> {
  const rounds = ctx.quick ? 1 : 5;
  const warm = ctx.quick ? 1_500 : 2_000;
  const windowMs = ctx.quick ? 3_000 : 5_000;
  const workers: WorkerHandle[] = [];
  const clients: PeerClient[] = [];
  let nats: NatsServer | undefined;
  try {
    nats = await startNatsServer({ gomaxprocs: CLUSTER_NATS_GOMAXPROCS });
    note(`cluster: nats-server on ${nats.url}; relay nodes r1 (the office's) and r2, contact point, receiver`);
    const [r1, r2] = await relayNodes(ctx, nats, workers);
    const cpSecret = await r1.call<string>('addCredential', { kind: 'contact-point', id: CP_ID });
    const cp = await ctx.startWorker('contact-point', { id: CP_ID, relayUrl: r1.url, secret: cpSecret, subnets: ['127.0.0.0/8'] });
    workers.push(cp);
    const sink = await ctx.startWorker('receiver', { url: cp.url, name: RECEIVER });
    workers.push(sink);
    await waitFor(async () => (await r1.call<number>('peersCount', { id: CP_ID })) === 1, 10_000, 'r1 to learn the receiver');
    await waitFor(async () => (await r2.call<string>('tunnelPlace', { id: CP_ID })) === 'remote', 10_000, 'r2 to see the tunnel on r1');

    const same = await relaySender(r1, clients, TO, 'bench-same');
    const cross = await relaySender(r2, clients, TO, 'bench-cross');
    // The SDK seals by default, and sealed messages for one receiver in one turn cross as one
    // bundle (PROTOCOL.md 19.6), so the nodes route ~1/50 as many frames: plain senders show what
    // forwarding costs per frame.
    const samePlain = await relaySender(r1, clients, TO, 'bench-same-plain', 'off');
    const crossPlain = await relaySender(r2, clients, TO, 'bench-cross-plain', 'off');
    const samePlainRuns: LoopResult[] = [];
    const crossPlainRuns: LoopResult[] = [];

    const sameRuns: LoopResult[] = [];
    const crossRuns: LoopResult[] = [];
    const sameLatency: { p50: number; p99: number }[] = [];
    const crossLatency: { p50: number; p99: number }[] = [];
    for (let r = 0; r < rounds; r++) {
      await sink.call('latency'); // drop warm-up samples
      const s = await withNatsCpu(nats, () => closedLoop(same, TO, warm, windowMs, [r1, cp, sink]));
      sameLatency.push(await sink.call('latency'));
      sameRuns.push(s);
      note(`  round ${r + 1}: same-node  ${Math.round(s.msgsPerS)} msgs/s cpu ${JSON.stringify(s.cpu)} io ${JSON.stringify(s.io)} host ${JSON.stringify(s.noise)}`);
      const c = await withNatsCpu(nats, () => closedLoop(cross, TO, warm, windowMs, [r2, r1, cp, sink]));
      crossLatency.push(await sink.call('latency'));
      crossRuns.push(c);
      note(`  round ${r + 1}: cross-node ${Math.round(c.msgsPerS)} msgs/s cpu ${JSON.stringify(c.cpu)} io ${JSON.stringify(c.io)} host ${JSON.stringify(c.noise)}`);
      const sp = await withNatsCpu(nats, () => closedLoop(samePlain, TO, warm, windowMs, [r1, cp, sink]));
      const cp2 = await withNatsCpu(nats, () => closedLoop(crossPlain, TO, warm, windowMs, [r2, r1, cp, sink]));
      samePlainRuns.push(sp);
      crossPlainRuns.push(cp2);
      note(`  round ${r + 1}: plain (not sealed) same-node ${Math.round(sp.msgsPerS)}, cross-node ${Math.round(cp2.msgsPerS)} msgs/s`);
    }
    await sink.call('latency'); // the plain rounds' samples are not the paced rounds'
    emit({
      name: 'cluster.throughput',
      description: `acked 1 KiB messages to an office through a 2-node relay cluster on one nats-server, ${IN_FLIGHT} in flight: sender on the other node (cross-node) vs on the office's node (same-node, the baseline)`,
      ...crossVsSame(sameRuns, crossRuns),
      baseline: 'same receiver, contact point and office node; the external sender connected to the office node itself (no NATS on the path)',
      loaded_one_way_ms: crossLatency.map((l) => ({ p50: round(l.p50), p99: round(l.p99) })),
      baseline_loaded_one_way_ms: sameLatency.map((l) => ({ p50: round(l.p50), p99: round(l.p99) })),
      topology: `processes: ${natsProcsNote(CLUSTER_NATS_GOMAXPROCS)}, relay nodes r1 and r2, contact point (tunnel on r1), internal SDK receiver; SDK senders in the bench process; all on 127.0.0.1`,
      mode: ctx.quick ? 'quick' : 'full',
      node: process.version,
    });
    emit({
      name: 'cluster.throughput_plain',
      description: `cluster.throughput with senders that do not seal (seal off): one frame per message on every hop, so this is what cross-node forwarding costs per frame`,
      ...crossVsSame(samePlainRuns, crossPlainRuns),
      baseline: 'the same, plain sender connected to the office node itself (no NATS on the path)',
      mode: ctx.quick ? 'quick' : 'full',
      node: process.version,
    });

    // Paced: the same two senders at PACED_RATE msgs/s, interleaved round by round.
    const pWarm = ctx.quick ? 1_000 : 2_000;
    const pWindow = ctx.quick ? 3_000 : 5_000;
    note(`cluster latency: paced ${PACED_RATE} msgs/s, ${rounds} round(s) of ${pWarm} ms warm-up + ${pWindow} ms measured, same-node then cross-node`);
    const paced: { same: { p50: number; p99: number }; cross: { p50: number; p99: number }; host: Record<string, number> }[] = [];
    let pacedFailed = 0;
    let pacedError: string | undefined;
    const tails: { same: TailAttribution[]; cross: TailAttribution[] } = { same: [], cross: [] };
    for (let r = 0; r < rounds; r++) {
      await sink.call('latency');
      const s = await pacedLoop(same, TO, PACED_RATE, pWarm, pWindow, [r1, cp, sink]);
      const sameL = await sink.call<LatencyWithTail>('latency', { tail: true });
      tails.same.push(await attributeTail(sameL.tail ?? [], { sender: 'self', office_node: r1, other_node: r2, cp, receiver: sink }));
      const c = await pacedLoop(cross, TO, PACED_RATE, pWarm, pWindow, [r2, r1, cp, sink]);
      const crossL = await sink.call<LatencyWithTail>('latency', { tail: true });
      tails.cross.push(await attributeTail(crossL.tail ?? [], { sender: 'self', office_node: r1, other_node: r2, cp, receiver: sink }));
      pacedFailed += s.failed + c.failed;
      pacedError ??= s.lastError ?? c.lastError;
      paced.push({ same: sameL, cross: crossL, host: c.noise });
      note(`  round ${r + 1}: p99 same-node ${round(sameL.p99)} ms, cross-node ${round(crossL.p99)} ms (p50 ${round(sameL.p50)} / ${round(crossL.p50)}); host ${JSON.stringify(c.noise)}`);
    }
    const sameP99 = median(paced.map((p) => p.same.p99));
    const crossP99 = median(paced.map((p) => p.cross.p99));
    emit({
      name: 'cluster.latency_paced',
      description: `one-way latency (sender's stamp to the receiver) of acked 1 KiB messages at a paced ${PACED_RATE} msgs/s through a 2-node relay cluster: sender on the other node (cross-node) vs on the office's node (same-node, the baseline); median of the rounds' p99`,
      value: round(crossP99),
      unit: 'ms',
      baseline_p99_ms: round(sameP99),
      baseline: 'same receiver, contact point and office node; the external sender connected to the office node itself (no NATS on the path)',
      extra_p99_ms: round(crossP99 - sameP99),
      target_extra_p99_ms: TARGET_P99_EXTRA_MS,
      target_met: crossP99 - sameP99 <= TARGET_P99_EXTRA_MS,
      p50_ms: round(median(paced.map((p) => p.cross.p50))),
      baseline_p50_ms: round(median(paced.map((p) => p.same.p50))),
      rounds: paced.map((p) => ({ p99: round(p.cross.p99), baseline_p99: round(p.same.p99), p50: round(p.cross.p50), baseline_p50: round(p.same.p50), host: p.host })),
      // the slowest 1% of each round's messages against the GC pauses of each process (bench/tail.ts; nats-server is not watched)
      tail: sumTails(tails.cross),
      baseline_tail: sumTails(tails.same),
      failed: pacedFailed,
      ...(pacedError ? { last_error: pacedError } : {}),
      rate_msgs_per_s: PACED_RATE,
      message_bytes: MSG_BYTES,
      mode: ctx.quick ? 'quick' : 'full',
      node: process.version,
    });
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    for (const w of workers.reverse()) await w.stop().catch(() => undefined);
    await nats?.stop();
  }
}

/** Bulk TCP through an exposure on the node that does not hold the office's tunnel (issue 12's target, over ws). */
const TARGET_CROSS_BULK_MB_PER_S = 400;

/**
 * `--only cluster-bulk` (issue 12 item 5): one TCP stream each way through an exposure of a LAN
 * service, in the same run, interleaved: exposed on the office's node r1 (same-node, the
 * baseline), on r2 (cross-node: every STREAM_DATA and WINDOW frame crosses NATS once,
 * cluster-mediation.ts), and by `contact-point expose --relay <r2>` with placement (PROTOCOL.md
 * 17.6: both nodes advertise their URL, so expose dials r2, is told the office is on r1, and
 * exposes there: the bytes do not cross NATS).
 */
export async function runClusterBulk(ctx: BenchContext): Promise<void> {
  if (!wanted(ctx, 'cluster-bulk')) return;
  const bytes = ctx.quick ? 256 * 1024 ** 2 : 1024 ** 3;
  const maxMs = ctx.quick ? 4_000 : 10_000;
  const rounds = ctx.quick ? 1 : 3;
  const workers: WorkerHandle[] = [];
  let nats: NatsServer | undefined;
  let placer: ExposeProcess | undefined;
  try {
    nats = await startNatsServer({ gomaxprocs: CLUSTER_NATS_GOMAXPROCS });
    note(`cluster-bulk: nats-server on ${nats.url}; relay nodes r1 (the office's) and r2, contact point, LAN service, load`);
    const [r1, r2] = await relayNodes(ctx, nats, workers, true);
    const cpSecret = await r1.call<string>('addCredential', { kind: 'contact-point', id: CP_ID });
    const cp = await ctx.startWorker('contact-point', { id: CP_ID, relayUrl: r1.url, secret: cpSecret, ports: PORTS });
    workers.push(cp);
    const lan = await ctx.startWorker('lan', {});
    workers.push(lan);
    const load = await ctx.startWorker('load', {});
    workers.push(load);
    const bulkPort = (lan.info as unknown as { bulkPort: number }).bulkPort;
    await waitFor(async () => (await r2.call<string>('tunnelPlace', { id: CP_ID })) === 'remote', 10_000, 'r2 to see the tunnel on r1');
    const exposeOn = async (relay: WorkerHandle): Promise<number> =>
      (await relay.call<{ publicPort: number }>('expose', { cp: CP_ID, proto: 'tcp', host: '127.0.0.1', port: bulkPort, operator: 'bench-tech' })).publicPort;
    const samePort = await exposeOn(r1);
    const crossPort = await exposeOn(r2);
    const placerSecret = await r1.call<string>('addCredential', { kind: 'external', id: 'bench-placer', rights: ['send', 'mediate'] });
    placer = await placedExpose(r2.url, placerSecret, bulkPort);
    if (placer.ready.node !== 'r1') throw new Error(`expose --relay ${r2.url} was not placed on r1: ${JSON.stringify(placer.ready)}`);
    const placedPort = Number(placer.ready.publicPort);
    note(`  expose --relay ${r2.url} placed on ${String(placer.ready.node)} (${String(placer.ready.exposedVia)}), public port ${placedPort}`);
    for (const port of [samePort, crossPort, placedPort]) for (const dir of ['up', 'down'] as const) await load.call('bulk', { port, dir, bytes: 64 * 1024 ** 2, maxMs: 2_000 }, 30_000);
    for (const dir of ['up', 'down'] as const) {
      const same: BulkResult[] = [];
      const cross: BulkResult[] = [];
      const placed: BulkResult[] = [];
      const placedPerMb: Record<string, number>[] = [];
      const cpu: Record<string, number>[] = [];
      const crossPerMb: Record<string, number>[] = [];
      const samePerMb: Record<string, number>[] = [];
      /** CPU ms per MB moved of the relay nodes (r1 holds the tunnel) and nats-server */
      const perMb = async (port: number): Promise<{ m: Awaited<ReturnType<typeof measured<BulkResult>>>; perMb: Record<string, number> }> => {
        const n0 = natsCpuMs(nats!);
        const m = await measured([r1, r2], () => load.call<BulkResult>('bulk', { port, dir, bytes, maxMs }, maxMs + 30_000));
        const mb = m.result.bytes / 1e6;
        const relays = Object.values(m.usage);
        return { m, perMb: { r1: round(relays[0]!.cpuMs / mb), r2: round(relays[1]!.cpuMs / mb), nats: round((natsCpuMs(nats!) - n0) / mb) } };
      };
      for (let r = 0; r < rounds; r++) {
        // The three in turn, starting one further each round and direction, so none is always first (or last) after a pause.
        const ports = [samePort, crossPort, placedPort];
        const got = new Map<number, Awaited<ReturnType<typeof perMb>>>();
        for (let i = 0; i < ports.length; i++) {
          const port = ports[(r + (dir === 'down' ? 1 : 0) + i) % ports.length]!;
          got.set(port, await perMb(port));
        }
        const s = got.get(samePort)!;
        const c = got.get(crossPort)!;
        const p = got.get(placedPort)!;
        for (const b of [s.m.result, c.m.result, p.m.result]) if (b.confirmed !== b.bytes) throw new Error(`cluster bulk ${dir}: ${b.bytes} bytes sent, ${b.confirmed} arrived`);
        same.push(s.m.result);
        cross.push(c.m.result);
        placed.push(p.m.result);
        placedPerMb.push(p.perMb);
        note(`  bulk ${dir}, round ${r + 1}: placed (expose dialled r2, exposure on r1) ${p.m.result.mbPerS} MB/s cpu ms/MB ${JSON.stringify(p.perMb)}`);
        cpu.push(c.m.cpu);
        crossPerMb.push(c.perMb);
        samePerMb.push(s.perMb);
        note(`  bulk ${dir}, round ${r + 1}: cross-node ${c.m.result.mbPerS} MB/s cpu ms/MB ${JSON.stringify(c.perMb)} host ${JSON.stringify(c.m.host)}; same-node ${s.m.result.mbPerS} MB/s cpu ms/MB ${JSON.stringify(s.perMb)}`);
      }
      const value = median(cross.map((b) => b.mbPerS));
      const baseline = median(same.map((b) => b.mbPerS));
      emit({
        name: `cluster.bulk_tcp_${dir === 'up' ? 'upload' : 'download'}_ws`,
        description: `one TCP stream ${dir === 'up' ? 'client -> LAN sink' : 'LAN source -> client'} through an exposure on the relay node that does not hold the office's ws tunnel (frames cross nats-server) vs one on the node that does, median of ${rounds}`,
        value: round(value, 1),
        unit: 'MB/s',
        rounds: cross.map((b) => b.mbPerS),
        baseline_mb_per_s: round(baseline, 1),
        baseline_rounds: same.map((b) => b.mbPerS),
        baseline: 'the same client, LAN service, contact point and office node; exposed on the office node itself (no NATS on the path), interleaved',
        ratio: round(value / baseline),
        target: TARGET_CROSS_BULK_MB_PER_S,
        target_met: value >= TARGET_CROSS_BULK_MB_PER_S,
        cpu_pct: cpu,
        cpu_ms_per_mb: crossPerMb,
        baseline_cpu_ms_per_mb: samePerMb,
        limits: { bytes, max_ms: maxMs },
        topology: `processes: ${natsProcsNote(CLUSTER_NATS_GOMAXPROCS)}, relay nodes r1 (tunnel) and r2, contact point, lan, load; all on 127.0.0.1`,
        mode: ctx.quick ? 'quick' : 'full',
        node: process.version,
      });
      const placedValue = median(placed.map((b) => b.mbPerS));
      emit({
        name: 'cluster.bulk_cross_node_placed_mbps',
        direction: dir === 'up' ? 'upload' : 'download',
        description: `one TCP stream ${dir === 'up' ? 'client -> LAN sink' : 'LAN source -> client'} through \`contact-point expose --relay <r2>\` for an office whose tunnel is on r1, with placement (PROTOCOL.md 17.6: expose is told the office is on r1 and exposes there; no byte crosses NATS) vs an exposure made on r1 itself, median of ${rounds}`,
        value: round(placedValue, 1),
        unit: 'MB/s',
        rounds: placed.map((b) => b.mbPerS),
        baseline_mb_per_s: round(baseline, 1),
        baseline_rounds: same.map((b) => b.mbPerS),
        baseline: 'the same client, LAN service, contact point and office node; exposed on the office node itself by the relay (no operator session), interleaved',
        ratio: round(placedValue / baseline),
        over_nats_mb_per_s: round(value, 1),
        target: TARGET_CROSS_BULK_MB_PER_S,
        target_met: placedValue >= TARGET_CROSS_BULK_MB_PER_S,
        cpu_ms_per_mb: placedPerMb,
        limits: { bytes, max_ms: maxMs },
        topology: `processes: ${natsProcsNote(CLUSTER_NATS_GOMAXPROCS)}, relay nodes r1 (tunnel) and r2, both with an advertised URL, contact point, lan, load, \`contact-point expose\` (dialled r2); all on 127.0.0.1`,
        mode: ctx.quick ? 'quick' : 'full',
        node: process.version,
      });
    }
  } finally {
    await placer?.stop();
    for (const w of workers.reverse()) await w.stop().catch(() => undefined);
    await nats?.stop();
  }
}

/** A running `contact-point expose --json` and its ready line. */
interface ExposeProcess {
  readonly ready: Record<string, unknown>;
  stop(): Promise<void>;
}

/**
 * `contact-point expose` (the real CLI, its own process) of 127.0.0.1:`port` behind the bench's
 * office, dialling the relay at `relayUrl` as bench-placer. The credential was just added to the
 * cluster: a node that has not seen it yet refuses it, so a refused start is tried again.
 */
async function placedExpose(relayUrl: string, secret: string, port: number): Promise<ExposeProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-placer-'));
  const credFile = join(dir, 'placer.credential');
  await writeFile(credFile, secret, { mode: 0o600 });
  const bin = fileURLToPath(new URL('../../bin/contact-point.js', import.meta.url));
  const args = [bin, 'expose', CP_ID, `127.0.0.1:${port}`, '--relay', relayUrl, '--id', 'bench-placer', '--credential-file', credFile, '--json', '--no-check'];
  let last = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const ready = await new Promise<Record<string, unknown> | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), 20_000);
      createInterface({ input: proc.stdout }).on('line', (line) => {
        try {
          const j = JSON.parse(line) as Record<string, unknown>;
          if (j.event === 'ready') {
            clearTimeout(timer);
            resolve(j);
          }
        } catch {
          // not a JSON line
        }
      });
      proc.once('exit', () => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
    const stop = async (): Promise<void> => {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      }
    };
    if (ready) {
      return {
        ready,
        stop: async () => {
          await stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    await stop();
    last = err;
    await new Promise((r) => setTimeout(r, 500));
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`contact-point expose --relay ${relayUrl} did not start: ${last}`);
}

/** The fields of a cross-node vs same-node throughput line: medians, rounds, ratio against the target, CPU, host, failures. */
function crossVsSame(same: LoopResult[], cross: LoopResult[]): Record<string, unknown> {
  const sameValue = median(same.map((p) => p.msgsPerS));
  const crossValue = median(cross.map((p) => p.msgsPerS));
  const all = [...same, ...cross];
  return {
    value: Math.round(crossValue),
    unit: 'msgs/s',
    rounds: cross.map((p) => Math.round(p.msgsPerS)),
    baseline_msgs_per_s: Math.round(sameValue),
    baseline_rounds: same.map((p) => Math.round(p.msgsPerS)),
    ratio: round(crossValue / sameValue),
    target_ratio: TARGET_RATIO,
    target_met: crossValue / sameValue >= TARGET_RATIO,
    cpu_pct: cross.map((p) => p.cpu),
    baseline_cpu_pct: same.map((p) => p.cpu),
    host: cross.map((p) => p.noise),
    retransmits: all.reduce((n, p) => n + p.retransmits, 0),
    failed: all.reduce((n, p) => n + p.failed, 0),
    ...(all.some((p) => p.lastError) ? { last_error: all.find((p) => p.lastError)?.lastError } : {}),
    in_flight: IN_FLIGHT,
    message_bytes: MSG_BYTES,
  };
}

/**
 * `loop` with nats-server's CPU over it (warm-up included: /proc counts in 10 ms ticks, too
 * coarse for the window alone) added to its cpu percentages as `nats`.
 */
async function withNatsCpu(nats: NatsServer, loop: () => Promise<LoopResult>): Promise<LoopResult> {
  const n0 = natsCpuMs(nats);
  const t0 = performance.now();
  const r = await loop();
  const pct = round(((natsCpuMs(nats) - n0) / (performance.now() - t0)) * 100, 1);
  return { ...r, cpu: { ...r.cpu, nats: pct } };
}

/** CPU ms nats-server has used so far (Linux /proc; 0 where there is none). */
function natsCpuMs(nats: NatsServer): number {
  try {
    const fields = readFileSync(`/proc/${nats.proc.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // utime and stime (fields 14 and 15 of stat; 12 and 13 after the command) in clock ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
}

interface Mem {
  readonly heapUsed: number;
  readonly external: number;
  readonly rss: number;
}

/**
 * A relay's memory per connected office: MEMORY_OFFICES real tunnels (one Gateway each, in one
 * offices worker) to one relay, memory read in the relay process after a full GC before the
 * offices connect (their credentials already added) and after. Once as a node of a cluster
 * (presence records, cp subject subscriptions, the watched presence map) and once as a single
 * relay, in the same run.
 */
async function runMemoryPerOffice(ctx: BenchContext): Promise<void> {
  let nats: NatsServer | undefined;
  const results = new Map<'single' | 'cluster', { rss: number; heap: number; external: number; upMs: number }>();
  try {
    nats = await startNatsServer({ gomaxprocs: CLUSTER_NATS_GOMAXPROCS });
    for (const kind of ['single', 'cluster'] as const) {
      const workers: WorkerHandle[] = [];
      try {
        const relay = await ctx.startWorker('relay', kind === 'cluster' ? { cluster: { servers: [nats.url], node: 'm1' } } : {}, { exposeGc: true });
        workers.push(relay);
        const ids = Array.from({ length: MEMORY_OFFICES }, (_v, i) => `${kind}-office-${i}`);
        const secrets = await relay.call<string[]>('addCredentials', { kind: 'contact-point', ids });
        // Warm-up: one office connects and leaves, so first-use code and tables are not counted.
        const warm = await ctx.startWorker('offices', { relayUrl: relay.url, offices: [{ id: ids[0]!, secret: secrets[0]! }], peersEach: MEMORY_PEERS_EACH });
        await warm.stop();
        await waitFor(async () => (await relay.call<{ tunnels: number }>('status')).tunnels === 0, 10_000, 'the warm-up office to leave');
        const before = await relay.call<Mem>('memory');
        const t0 = Date.now();
        const offices = await ctx.startWorker('offices', { relayUrl: relay.url, offices: ids.map((id, i) => ({ id, secret: secrets[i]! })), peersEach: MEMORY_PEERS_EACH });
        workers.push(offices);
        await waitFor(async () => (await relay.call<{ tunnels: number }>('status')).tunnels === MEMORY_OFFICES, 60_000, `${MEMORY_OFFICES} tunnels at the relay`);
        await waitFor(async () => (await relay.call<number>('peersCount', { id: ids[MEMORY_OFFICES - 1]! })) === MEMORY_PEERS_EACH, 10_000, 'the last office to announce its peers');
        const upMs = Date.now() - t0;
        const after = await relay.call<Mem>('memory');
        const per = (k: keyof Mem): number => Math.round((after[k] - before[k]) / MEMORY_OFFICES);
        results.set(kind, { rss: per('rss'), heap: per('heapUsed'), external: per('external'), upMs });
        note(`cluster memory: ${kind} relay, ${MEMORY_OFFICES} offices up in ${upMs} ms: per office rss ${per('rss')} B, heap ${per('heapUsed')} B, external ${per('external')} B`);
      } finally {
        for (const w of workers.reverse()) await w.stop().catch(() => undefined);
      }
    }
  } finally {
    await nats?.stop();
  }
  const c = results.get('cluster')!;
  const s = results.get('single')!;
  emit({
    name: 'cluster.memory_per_office',
    description: `relay process memory per connected office with ${MEMORY_OFFICES} offices (real tunnels, ${MEMORY_PEERS_EACH} announced peers each), read after a full GC before and after they connect: a node of a cluster on nats-server vs a single relay (the baseline)`,
    value: c.rss,
    unit: 'bytes/office (rss)',
    heap_bytes: c.heap,
    external_bytes: c.external,
    baseline_rss_bytes: s.rss,
    baseline_heap_bytes: s.heap,
    baseline_external_bytes: s.external,
    baseline: 'the same relay worker without --cluster',
    ratio_rss: round(c.rss / s.rss),
    offices: MEMORY_OFFICES,
    up_ms: c.upMs,
    baseline_up_ms: s.upMs,
    topology: `processes: ${natsProcsNote(CLUSTER_NATS_GOMAXPROCS)}, relay (with and without cluster), one offices worker holding every tunnel; all on 127.0.0.1`,
    mode: ctx.quick ? 'quick' : 'full',
    node: process.version,
  });
}
