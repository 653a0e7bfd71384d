/**
 * `--only cluster` (issue 12): acked 1 KiB messages to one office through a relay cluster of two
 * nodes on one nats-server, in the same run: from an external peer on the office's node
 * (same-node, no NATS on the path) and from one on the other node (cross-node: MSG and ACK each
 * cross NATS once). Both go to the same receiver process behind the same contact point.
 */
import type { PeerClient } from '../core/peer/peer-client.js';
import type { BenchContext } from './context.js';
import type { WorkerHandle } from './ipc.js';
import { closedLoop, IN_FLIGHT, MSG_BYTES, relaySender, type LoopResult } from './messages.js';
import { haveNatsServer, NO_NATS_REASON, startNatsServer, type NatsServer } from './nats-server.js';
import { emit, median, note, round, waitFor } from './util.js';

const CP_ID = 'bench-hq';
const RECEIVER = 'sink-worker';
const TO = `${RECEIVER}@${CP_ID}`;
/** Cross-node throughput at least this share of same-node (issue 12's target). */
const TARGET_RATIO = 0.7;

export async function runCluster(ctx: BenchContext): Promise<void> {
  if (!ctx.selected('cluster')) return;
  if (!haveNatsServer) {
    note(NO_NATS_REASON);
    return;
  }
  const rounds = ctx.quick ? 1 : 5;
  const warm = ctx.quick ? 1_500 : 2_000;
  const windowMs = ctx.quick ? 3_000 : 5_000;
  const workers: WorkerHandle[] = [];
  const clients: PeerClient[] = [];
  let nats: NatsServer | undefined;
  try {
    nats = await startNatsServer();
    note(`cluster: nats-server on ${nats.url}; relay nodes r1 (the office's) and r2, contact point, receiver`);
    const servers = [nats.url];
    const r1 = await ctx.startWorker('relay', { cluster: { servers, node: 'r1' } });
    workers.push(r1);
    const r2 = await ctx.startWorker('relay', { cluster: { servers, node: 'r2' } });
    workers.push(r2);
    const cpSecret = await r1.call<string>('addCredential', { kind: 'contact-point', id: CP_ID });
    const cp = await ctx.startWorker('contact-point', { id: CP_ID, relayUrl: r1.url, secret: cpSecret, subnets: ['127.0.0.0/8'] });
    workers.push(cp);
    const sink = await ctx.startWorker('receiver', { url: cp.url, name: RECEIVER });
    workers.push(sink);
    await waitFor(async () => (await r1.call<number>('peersCount', { id: CP_ID })) === 1, 10_000, 'r1 to learn the receiver');
    await waitFor(async () => (await r2.call<string>('tunnelPlace', { id: CP_ID })) === 'remote', 10_000, 'r2 to see the tunnel on r1');

    const same = await relaySender(r1, clients, TO, 'bench-same');
    const cross = await relaySender(r2, clients, TO, 'bench-cross');

    const sameRuns: LoopResult[] = [];
    const crossRuns: LoopResult[] = [];
    const sameLatency: { p50: number; p99: number }[] = [];
    const crossLatency: { p50: number; p99: number }[] = [];
    for (let r = 0; r < rounds; r++) {
      await sink.call('latency'); // drop warm-up samples
      const s = await closedLoop(same, TO, warm, windowMs, [r1, cp, sink]);
      sameLatency.push(await sink.call('latency'));
      sameRuns.push(s);
      note(`  round ${r + 1}: same-node  ${Math.round(s.msgsPerS)} msgs/s cpu ${JSON.stringify(s.cpu)} host ${JSON.stringify(s.noise)}`);
      const c = await closedLoop(cross, TO, warm, windowMs, [r2, r1, cp, sink]);
      crossLatency.push(await sink.call('latency'));
      crossRuns.push(c);
      note(`  round ${r + 1}: cross-node ${Math.round(c.msgsPerS)} msgs/s cpu ${JSON.stringify(c.cpu)} host ${JSON.stringify(c.noise)}`);
    }
    const sameValue = median(sameRuns.map((p) => p.msgsPerS));
    const crossValue = median(crossRuns.map((p) => p.msgsPerS));
    const all = [...sameRuns, ...crossRuns];
    emit({
      name: 'cluster.throughput',
      description: `acked 1 KiB messages to an office through a 2-node relay cluster on one nats-server, ${IN_FLIGHT} in flight: sender on the other node (cross-node) vs on the office's node (same-node, the baseline)`,
      value: Math.round(crossValue),
      unit: 'msgs/s',
      rounds: crossRuns.map((p) => Math.round(p.msgsPerS)),
      baseline_msgs_per_s: Math.round(sameValue),
      baseline_rounds: sameRuns.map((p) => Math.round(p.msgsPerS)),
      baseline: 'same receiver, contact point and office node; the external sender connected to the office node itself (no NATS on the path)',
      ratio: round(crossValue / sameValue),
      target_ratio: TARGET_RATIO,
      target_met: crossValue / sameValue >= TARGET_RATIO,
      loaded_one_way_ms: crossLatency.map((l) => ({ p50: round(l.p50), p99: round(l.p99) })),
      baseline_loaded_one_way_ms: sameLatency.map((l) => ({ p50: round(l.p50), p99: round(l.p99) })),
      cpu_pct: crossRuns.map((p) => p.cpu),
      baseline_cpu_pct: sameRuns.map((p) => p.cpu),
      host: crossRuns.map((p) => p.noise),
      retransmits: all.reduce((n, p) => n + p.retransmits, 0),
      failed: all.reduce((n, p) => n + p.failed, 0),
      ...(all.some((p) => p.lastError) ? { last_error: all.find((p) => p.lastError)?.lastError } : {}),
      in_flight: IN_FLIGHT,
      message_bytes: MSG_BYTES,
      topology: 'processes: nats-server (-js), relay nodes r1 and r2, contact point (tunnel on r1), internal SDK receiver; SDK senders in the bench process; all on 127.0.0.1',
      mode: ctx.quick ? 'quick' : 'full',
      node: process.version,
    });
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    for (const w of workers.reverse()) await w.stop().catch(() => undefined);
    await nats?.stop();
  }
}
