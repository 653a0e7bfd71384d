/**
 * `--only direct` (issue 15, part 1): acked 1 KiB messages to one office in the same run, from
 * an external peer connected to the contact point's direct listener (direct mode: external ->
 * contact point's embedded relay -> loopback tunnel -> contact point -> internal peer) and from
 * one connected to the public relay (external -> relay -> tunnel -> contact point -> internal
 * peer, the baseline). Same contact point process, same receiver; rounds alternate so drift on
 * the shared host hits both alike. Everything runs on 127.0.0.1 over plain ws, so the relay hop
 * costs only its processing: on a real network direct mode also saves the relay's round trip.
 */
import { PeerClient } from '../core/peer/peer-client.js';
import type { BenchContext } from './context.js';
import type { WorkerHandle } from './ipc.js';
import { closedLoop, IN_FLIGHT, MSG_BYTES, payload, relaySender, type LoopResult } from './messages.js';
import { emit, median, note, round } from './util.js';
import { startOfficePath } from './office-path.js';

const CP_ID = 'bench-hq';
const RECEIVER = 'sink';
const TO = `${RECEIVER}@${CP_ID}`;

export async function runDirect(ctx: BenchContext): Promise<void> {
  if (!ctx.selected('direct')) return;
  const rounds = ctx.quick ? 1 : 3;
  const warm = ctx.quick ? 1_500 : 2_000;
  const windowMs = ctx.quick ? 3_000 : 5_000;
  const workers: WorkerHandle[] = [];
  const clients: PeerClient[] = [];
  try {
    note('direct: relay, a contact point with direct mode on, its receiver; one sender at the relay and one at the direct listener');
    const { relay, cp, sink } = await startOfficePath(ctx, workers, { id: CP_ID, receiver: RECEIVER, cp: { direct: true } });

    const viaRelay = await relaySender(relay, clients, TO, 'bench-relay');
    const secret = await cp.call<string>('addDirectCredential', { id: 'bench-direct' });
    const direct = new PeerClient({ role: 'external', url: String(cp.info.directUrl), name: 'bench-direct', secret, proxy: null });
    clients.push(direct);
    direct.start();
    await direct.ready();
    await direct.send(TO, payload(false));

    const runs: Record<'direct' | 'relay', LoopResult[]> = { direct: [], relay: [] };
    const latency: Record<'direct' | 'relay', { p50: number; p99: number }[]> = { direct: [], relay: [] };
    const sides = [
      { label: 'direct' as const, sender: direct, on: [cp, sink] },
      { label: 'relay' as const, sender: viaRelay, on: [relay, cp, sink] },
    ];
    for (let r = 0; r < rounds; r++) {
      for (const s of r % 2 === 0 ? sides : [...sides].reverse()) {
        await sink.call('latency'); // drop earlier samples
        const res = await closedLoop(s.sender, TO, warm, windowMs, s.on);
        latency[s.label].push(await sink.call('latency'));
        runs[s.label].push(res);
        note(`  round ${r + 1}: ${s.label.padEnd(6)} ${Math.round(res.msgsPerS)} msgs/s cpu ${JSON.stringify(res.cpu)} host ${JSON.stringify(res.noise)}`);
      }
    }
    const directValue = median(runs.direct.map((p) => p.msgsPerS));
    const relayValue = median(runs.relay.map((p) => p.msgsPerS));
    const all = [...runs.direct, ...runs.relay];
    emit({
      name: 'direct.throughput',
      description: `acked ${MSG_BYTES} B messages to an internal peer, ${IN_FLIGHT} in flight: external peer at the contact point's direct listener (direct mode) vs at the relay (the baseline), same contact point and receiver, same run`,
      value: Math.round(directValue),
      unit: 'msgs/s',
      rounds: runs.direct.map((p) => Math.round(p.msgsPerS)),
      baseline_msgs_per_s: Math.round(relayValue),
      baseline_rounds: runs.relay.map((p) => Math.round(p.msgsPerS)),
      baseline: 'the same messages from an external peer at the relay, through the relay process and the contact point\'s tunnel',
      ratio: round(directValue / relayValue),
      loaded_one_way_ms: latency.direct.map((l) => ({ p50: round(l.p50), p99: round(l.p99) })),
      baseline_loaded_one_way_ms: latency.relay.map((l) => ({ p50: round(l.p50), p99: round(l.p99) })),
      cpu_pct: runs.direct.map((p) => p.cpu),
      baseline_cpu_pct: runs.relay.map((p) => p.cpu),
      host: all.map((p) => p.noise),
      retransmits: all.reduce((n, p) => n + p.retransmits, 0),
      failed: all.reduce((n, p) => n + p.failed, 0),
      ...(all.some((p) => p.lastError) ? { last_error: all.find((p) => p.lastError)?.lastError } : {}),
      in_flight: IN_FLIGHT,
      message_bytes: MSG_BYTES,
      topology: 'processes: relay, contact point (tunnel to the relay; direct listener with its embedded relay and loopback tunnel), internal SDK receiver; SDK senders in the bench process; all on 127.0.0.1, plain ws',
      mode: ctx.quick ? 'quick' : 'full',
      node: process.version,
    });
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    for (const w of workers.reverse()) await w.stop().catch(() => undefined);
  }
}
