/**
 * The cost of sealed payloads (issue 14).
 *
 * - sealing.throughput: acked 1 KiB messages external -> relay -> tunnel -> contact point ->
 *   internal peer, closed loop (as messages.throughput), from two external senders in the same
 *   run towards the same receiver: one sealing (the SDK's default; the receiver opens each
 *   message), one with sealing off. Rounds alternate so drift on the shared host hits both alike.
 * - sealing.latency: the same two senders paced at PACED_RATE msgs/s; the receiver records the
 *   one-way latency of each measured message (its stamp is read after opening the seal).
 * - sealing.first_message: a new sender's first message, from send() to its ACK, sealed (the
 *   receiver's key is asked for first: one more round trip, and the statement checked) vs plain.
 * Targets (issue 14): sealed throughput at least 85% of plain, paced p99 within 0.3 ms of plain.
 */
import { performance } from 'node:perf_hooks';
import { PeerClient } from '../core/peer/peer-client.js';
import type { BenchContext } from './context.js';
import type { WorkerHandle } from './ipc.js';
import { closedLoop, IN_FLIGHT, MSG_BYTES, PACED_RATE, pacedLoop, payload, type LoopResult } from './messages.js';
import { emit, median, note, round } from './util.js';
import { startOfficePath } from './office-path.js';
import { attributeTail, sumTails, type LatencyWithTail, type TailAttribution } from './tail.js';

export const TARGET_SEALED_RATIO = 0.85;
export const TARGET_SEALED_P99_DELTA_MS = 0.3;

type Side = 'plain' | 'sealed';

/** New senders per side whose first message is timed (sealing.first_message). */
const FIRST_MESSAGE_SENDERS = 5;

/** Each process's CPU per acked message (µs), the median over `rounds`. */
function cpuPerMsg(rounds: readonly LoopResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(rounds[0]?.cpu ?? {})) out[k] = round(median(rounds.map((c) => (c.cpu[k]! * 10_000) / c.msgsPerS)), 1);
  return out;
}

export async function runSealing(ctx: BenchContext): Promise<void> {
  if (!ctx.selected('sealing')) return;
  const mode = ctx.quick ? 'quick' : 'full';
  const rounds = ctx.quick ? 2 : 4;
  const warm = ctx.quick ? 1_500 : 2_000;
  const window = ctx.quick ? 3_000 : 5_000;
  const workers: WorkerHandle[] = [];
  const clients: PeerClient[] = [];
  try {
    note('sealing: relay, contact point, receiver; two external senders (sealing on, off)');
    const { relay, cp, sink, to } = await startOfficePath(ctx, workers, { id: 'bench-seal', receiver: 'sink' });
    const senders = {} as Record<Side, PeerClient>;
    for (const side of ['plain', 'sealed'] as const) {
      const name = `bench-${side}`;
      const s = await relay.call<string>('addCredential', { kind: 'external', id: name });
      const c = new PeerClient({ role: 'external', url: relay.url, name, secret: s, proxy: null, seal: side === 'sealed' ? 'auto' : 'off' });
      clients.push(c);
      c.start();
      await c.ready();
      await c.send(to, payload(false)); // the receiver's key is looked up (sealed) before anything is timed
      senders[side] = c;
    }
    if (senders.sealed.stats.sealed !== 1 || senders.plain.stats.sealed !== 0) throw new Error('sealing: the sealed sender did not seal (or the plain one did)');

    const closed: Record<Side, LoopResult[]> = { plain: [], sealed: [] };
    const lat: Record<Side, { p50: number; p99: number; rate: number; failed: number; host: Record<string, number> }[]> = { plain: [], sealed: [] };
    const tails: Record<Side, TailAttribution[]> = { plain: [], sealed: [] };
    // GC pauses of the bench process (where both senders run) during each side's measured paced windows
    const senderGc: Record<Side, { count: number; full: number; total_ms: number }> = { plain: { count: 0, full: 0, total_ms: 0 }, sealed: { count: 0, full: 0, total_ms: 0 } };
    // The sealed sender's bundles (PROTOCOL.md 19.6) in the closed loops and in the paced ones: how many messages shared a seal.
    const shared = { closed: { bundles: 0, sealed: 0 }, paced: { bundles: 0, sealed: 0 } };
    const tally = async <T>(into: { bundles: number; sealed: number }, side: Side, run: () => Promise<T>): Promise<T> => {
      const s = senders[side].stats;
      const before = { bundles: s.bundlesSent, sealed: s.sealed };
      const out = await run();
      into.bundles += s.bundlesSent - before.bundles;
      into.sealed += s.sealed - before.sealed;
      return out;
    };
    for (let r = 0; r < rounds; r++) {
      for (const side of r % 2 === 0 ? (['plain', 'sealed'] as const) : (['sealed', 'plain'] as const)) {
        const c = await tally(shared.closed, side, () => closedLoop(senders[side], to, warm, window, [relay, cp, sink]));
        closed[side].push(c);
        await sink.call('latency'); // drop earlier samples
        const t0 = performance.now();
        const p = await tally(shared.paced, side, () => pacedLoop(senders[side], to, PACED_RATE, warm, window, [relay, cp, sink]));
        const wall = performance.now() - t0;
        const l = await sink.call<LatencyWithTail>('latency', { tail: true });
        tails[side].push(await attributeTail(l.tail ?? [], { sender: 'self', relay, cp, receiver: sink }));
        senderGc[side].count += p.gc.count;
        senderGc[side].full += p.gc.full;
        senderGc[side].total_ms = round(senderGc[side].total_ms + p.gc.total_ms, 2);
        // host: what else used the CPUs in this paced window (steal included): a tail from that is the host's, not the path's
        lat[side].push({ p50: round(l.p50), p99: round(l.p99), rate: Math.round((p.sent / wall) * 1000), failed: p.failed, host: p.noise });
        note(`  round ${r + 1}: ${side}: closed loop ${Math.round(c.msgsPerS)} msgs/s; paced ${PACED_RATE} msgs/s p99 ${round(l.p99)} ms`);
      }
    }
    // A new sender's first message: sides alternate, each sender connected before the clock starts.
    const first: Record<Side, number[]> = { plain: [], sealed: [] };
    for (let i = 0; i < FIRST_MESSAGE_SENDERS; i++) {
      for (const side of ['sealed', 'plain'] as const) {
        const name = `bench-first-${side}-${i}`;
        const secret = await relay.call<string>('addCredential', { kind: 'external', id: name });
        const c = new PeerClient({ role: 'external', url: relay.url, name, secret, proxy: null, seal: side === 'sealed' ? 'auto' : 'off' });
        clients.push(c);
        c.start();
        await c.ready();
        const t0 = performance.now();
        await c.send(to, payload(false));
        first[side].push(performance.now() - t0);
        if (c.stats.sealed !== (side === 'sealed' ? 1 : 0)) throw new Error(`sealing: the first ${side} message was ${c.stats.sealed ? '' : 'not '}sealed`);
        await c.stop();
      }
    }
    const rate = (side: Side): number => median(closed[side].map((c) => c.msgsPerS));
    const p99 = (side: Side): number => median(lat[side].map((l) => l.p99));
    const failed = [...closed.plain, ...closed.sealed].reduce((n, c) => n + c.failed, 0) + [...lat.plain, ...lat.sealed].reduce((n, l) => n + l.failed, 0);
    emit({
      name: 'sealing.throughput',
      description: `acked ${MSG_BYTES} B messages external -> relay -> tunnel -> contact point -> internal peer, ${IN_FLIGHT} in flight, sealed (X25519 + AES-256-GCM: seal version 2 alone, version 3 for bundles of a turn's messages; opened by the receiver) vs plain, same run`,
      value: Math.round(rate('sealed')),
      unit: 'msgs/s',
      baseline_msgs_per_s: Math.round(rate('plain')),
      baseline: 'the same path and receiver, from a second sender with sealing off, rounds alternating',
      ratio: round(rate('sealed') / rate('plain')),
      target_ratio: TARGET_SEALED_RATIO,
      rounds_sealed: closed.sealed.map((c) => Math.round(c.msgsPerS)),
      rounds_plain: closed.plain.map((c) => Math.round(c.msgsPerS)),
      // sealed messages of the closed loops, and the bundles (version 3) some of them went in
      sealed_messages: shared.closed.sealed,
      bundles: shared.closed.bundles,
      // CPU per acked message of each process (µs), median of rounds: where sealing costs
      cpu_us_per_msg_sealed: cpuPerMsg(closed.sealed),
      cpu_us_per_msg_plain: cpuPerMsg(closed.plain),
      cpu_sealed: closed.sealed.map((c) => c.cpu),
      cpu_plain: closed.plain.map((c) => c.cpu),
      failed,
      host: closed.sealed.map((c) => c.noise),
      warmup_s: warm / 1000,
      window_s: window / 1000,
      mode,
    });
    emit({
      name: 'sealing.latency',
      description: `one-way p99 of 1 KiB messages paced at ${PACED_RATE} msgs/s on the same path, sealed vs plain, same run (median of rounds)`,
      value: round(p99('sealed')),
      unit: 'ms',
      baseline_p99_ms: round(p99('plain')),
      delta_ms: round(p99('sealed') - p99('plain')),
      target_delta_ms: TARGET_SEALED_P99_DELTA_MS,
      p50_ms_sealed: round(median(lat.sealed.map((l) => l.p50))),
      p50_ms_plain: round(median(lat.plain.map((l) => l.p50))),
      rounds_sealed: lat.sealed,
      rounds_plain: lat.plain,
      // the slowest 1% of each round's messages against the GC pauses of each process (bench/tail.ts)
      tail_sealed: sumTails(tails.sealed),
      tail_plain: sumTails(tails.plain),
      sender_gc_sealed: senderGc.sealed,
      sender_gc_plain: senderGc.plain,
      // the paced sealed messages, and the bundles some of them shared (those sent in the same turn)
      sealed_messages: shared.paced.sealed,
      bundles: shared.paced.bundles,
      mode,
    });
    emit({
      name: 'sealing.first_message',
      description: `a new external sender's first ${MSG_BYTES} B message on the same path, from send() to its ACK, sealed (its receiver's key asked for first) vs plain, median of ${FIRST_MESSAGE_SENDERS} senders each`,
      value: round(median(first.sealed)),
      unit: 'ms',
      baseline_ms: round(median(first.plain)),
      delta_ms: round(median(first.sealed) - median(first.plain)),
      samples_sealed: first.sealed.map((x) => round(x)),
      samples_plain: first.plain.map((x) => round(x)),
      mode,
    });
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    await Promise.all(workers.map((w) => w.stop()));
  }
}
