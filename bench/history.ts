/**
 * The history's cost (issue 16, item 1).
 *
 * - history.throughput: acked 1 KiB messages external -> relay -> tunnel -> contact point ->
 *   internal peer, through two contact points in the same run, one keeping its history in a
 *   state folder and one without: closed-loop throughput (as messages.throughput), and at a
 *   paced 20,000 msgs/s the rate reached, the contact point's CPU and the one-way p99. Rounds
 *   alternate off/on so drift on the shared host hits both alike.
 * - history.disk: bytes on disk per message recorded in that run.
 * - history.query: a filtered page over HISTORY_ENTRIES entries in a HistoryStore on this
 *   process's disk (first page unfiltered, by peer, a rare reason, a deep cursor page), and
 *   the time to open the store (read every segment, build the index).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { HistoryOutcome } from '../core/admin/contract.js';
import { HistoryStore, type HistoryObservation } from '../core/contact-point/history-store.js';
import { PeerClient } from '../core/peer/peer-client.js';
import { silentLogger } from '../core/runtime/logger.js';
import type { BenchContext } from './context.js';
import type { WorkerHandle } from './ipc.js';
import { closedLoop, IN_FLIGHT, MSG_BYTES, pacedLoop, payload, type LoopResult } from './messages.js';
import { cpuPercent, emit, median, note, round, waitFor } from './util.js';

/** The product's top message rate (the 20,000 msgs/s). */
export const HISTORY_RATE = 20_000;
/** Entries in the store the query benchmark pages through. */
export const HISTORY_ENTRIES = 100_000;
/** Query repetitions per kind; the median is reported. */
const QUERY_REPS = 15;

interface Side {
  readonly label: 'off' | 'on';
  readonly cp: WorkerHandle;
  readonly sink: WorkerHandle;
  readonly to: string;
}

/** A varied observation: 200 peers, 50 senders, one in 20 refused with one of two reasons. */
function observation(n: number): HistoryObservation {
  const refused = n % 20 === 0;
  const outcome: HistoryOutcome = refused ? 'refused' : 'delivered';
  return {
    at: Date.now() - (HISTORY_ENTRIES - n) * 10,
    id: `m${n.toString(36)}-${(n * 2654435761) % 1e9}`,
    dir: n % 4 === 0 ? 'local' : 'in',
    from: `sender${n % 50}@branch-${n % 5}`,
    to: `device${n % 200}@acme-hq`,
    size: 200 + (n % 800),
    outcome,
    code: refused ? (n % 40 === 0 ? 13 : 12) : 0,
    reason: refused ? (n % 40 === 0 ? 'the peer is not connected' : 'peer is revoked') : '',
  };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

async function runQuery(mode: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cp-bench-history-query-'));
  try {
    note(`history.query: ${HISTORY_ENTRIES} entries into a store, then ${QUERY_REPS} queries of each kind`);
    let store = await HistoryStore.open(dir, { entries: HISTORY_ENTRIES, days: 0 }, silentLogger);
    const fill = await timed(async () => {
      for (let i = 1; i <= HISTORY_ENTRIES; i++) store.append(observation(i));
      await store.flush();
    });
    await store.close();
    const opened = await timed(() => HistoryStore.open(dir, { entries: HISTORY_ENTRIES, days: 0 }, silentLogger));
    store = opened.value;
    const stats = store.stats();
    const kinds: Record<string, Parameters<HistoryStore['query']>[0]> = {
      newest_page: { limit: 100 },
      peer_page: { peer: 'device17@acme-hq', limit: 100 },
      rare_reason_page: { reason: 'PEER_OFFLINE', peer: 'device40@acme-hq', limit: 100 },
      deep_cursor_page: { before: Math.floor(HISTORY_ENTRIES / 10), outcome: 'refused', limit: 100 },
      no_match: { sender: 'nobody@nowhere', limit: 100 },
    };
    const results: Record<string, { median_ms: number; max_ms: number; entries: number; matched: number }> = {};
    for (const [kind, q] of Object.entries(kinds)) {
      const times: number[] = [];
      let entries = 0;
      let matched = 0;
      for (let i = 0; i < QUERY_REPS; i++) {
        const t = await timed(() => store.query(q));
        times.push(t.ms);
        entries = t.value.entries.length;
        matched = t.value.matched;
      }
      results[kind] = { median_ms: round(median(times)), max_ms: round(Math.max(...times)), entries, matched };
      note(`  ${kind}: median ${round(median(times))} ms, ${entries} entries of ${matched} matching`);
    }
    await store.close();
    emit({
      name: 'history.query',
      description: `one filtered page (100 entries, newest first) over ${HISTORY_ENTRIES} stored entries; median of ${QUERY_REPS}`,
      value: results.peer_page!.median_ms,
      unit: 'ms',
      queries: results,
      open_ms: round(opened.ms),
      open: 'HistoryStore.open: read every segment file and build the index (what a restart costs)',
      fill_entries_per_s: Math.round((HISTORY_ENTRIES / fill.ms) * 1000),
      stored_entries: stats.entries,
      stored_bytes: stats.bytes,
      bytes_per_entry: round(stats.bytes / stats.entries, 1),
      segments: stats.segments,
      mode,
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function runHistory(ctx: BenchContext): Promise<void> {
  if (!ctx.selected('history')) return;
  const mode = ctx.quick ? 'quick' : 'full';
  const rounds = ctx.quick ? 1 : 3;
  const warm = ctx.quick ? 1_500 : 2_000;
  const window = ctx.quick ? 3_000 : 5_000;
  const workers: WorkerHandle[] = [];
  const clients: PeerClient[] = [];
  try {
    note('history: relay, two contact points (history off, on), a receiver worker for each');
    const relay = await ctx.startWorker('relay', {});
    workers.push(relay);
    const sides: Side[] = [];
    for (const label of ['off', 'on'] as const) {
      const id = `bench-${label}`;
      const secret = await relay.call<string>('addCredential', { kind: 'contact-point', id });
      const cp = await ctx.startWorker('contact-point', { id, relayUrl: relay.url, secret, subnets: ['127.0.0.0/8'], history: label });
      workers.push(cp);
      const sink = await ctx.startWorker('receiver', { url: cp.url, name: 'sink' });
      workers.push(sink);
      await waitFor(async () => (await relay.call<number>('peersCount', { id })) === 1, 10_000, `the relay to learn ${id}'s receiver`);
      sides.push({ label, cp, sink, to: `sink@${id}` });
    }
    const extSecret = await relay.call<string>('addCredential', { kind: 'external', id: 'bench-src' });
    const sender = new PeerClient({ role: 'external', url: relay.url, name: 'bench-src', secret: extSecret, proxy: null });
    clients.push(sender);
    sender.start();
    await sender.ready();
    for (const s of sides) await sender.send(s.to, payload(false));

    const closed: Record<'off' | 'on', LoopResult[]> = { off: [], on: [] };
    const paced: Record<'off' | 'on', { rate: number; cp_cpu_pct: number; p50_ms: number; p99_ms: number; failed: number }[]> = { off: [], on: [] };
    for (let r = 0; r < rounds; r++) {
      for (const s of r % 2 === 0 ? sides : [...sides].reverse()) {
        const c = await closedLoop(sender, s.to, warm, window, [relay, s.cp, s.sink]);
        closed[s.label].push(c);
        note(`  round ${r + 1}: history ${s.label}: closed loop ${Math.round(c.msgsPerS)} msgs/s cpu ${JSON.stringify(c.cpu)}`);
        await s.sink.call('latency'); // drop earlier samples
        const cpuBefore = await s.cp.call<NodeJS.CpuUsage>('cpu');
        const t0 = performance.now();
        const p = await pacedLoop(sender, s.to, HISTORY_RATE, warm, window, [relay, s.cp, s.sink]);
        const wall = performance.now() - t0;
        const cpu = cpuPercent(cpuBefore, await s.cp.call<NodeJS.CpuUsage>('cpu'), wall);
        const lat = await s.sink.call<{ p50: number; p99: number }>('latency');
        const point = { rate: Math.round((p.sent / wall) * 1000), cp_cpu_pct: round(cpu, 1), p50_ms: round(lat.p50), p99_ms: round(lat.p99), failed: p.failed };
        paced[s.label].push(point);
        note(`  round ${r + 1}: history ${s.label}: paced ${HISTORY_RATE} msgs/s -> ${point.rate} sent/s, contact point cpu ${point.cp_cpu_pct}%, p99 ${point.p99_ms} ms`);
      }
    }
    const disk = await sides[1]!.cp.call<{ entries: number; bytes: number; segments: number; lost: number }>('history');
    const onRate = median(closed.on.map((c) => c.msgsPerS));
    const offRate = median(closed.off.map((c) => c.msgsPerS));
    const med = (side: 'off' | 'on', k: 'rate' | 'cp_cpu_pct' | 'p99_ms'): number => round(median(paced[side].map((p) => p[k])), 1);
    emit({
      name: 'history.throughput',
      description: `acked ${MSG_BYTES} B messages external -> relay -> tunnel -> contact point -> internal peer, ${IN_FLIGHT} in flight, contact point keeping its history vs not (same run)`,
      value: Math.round(onRate),
      unit: 'msgs/s',
      baseline_msgs_per_s: Math.round(offRate),
      baseline: 'the same path through a second contact point with a state folder but --no-history, rounds alternating',
      ratio: round(onRate / offRate),
      rounds_on: closed.on.map((c) => Math.round(c.msgsPerS)),
      rounds_off: closed.off.map((c) => Math.round(c.msgsPerS)),
      cp_cpu_pct_on: closed.on.map((c) => c.cpu['contact-point']),
      cp_cpu_pct_off: closed.off.map((c) => c.cpu['contact-point']),
      paced_rate_target: HISTORY_RATE,
      paced_on: paced.on,
      paced_off: paced.off,
      paced_rate_on: med('on', 'rate'),
      paced_rate_off: med('off', 'rate'),
      paced_cp_cpu_pct_on: med('on', 'cp_cpu_pct'),
      paced_cp_cpu_pct_off: med('off', 'cp_cpu_pct'),
      paced_p99_ms_on: med('on', 'p99_ms'),
      paced_p99_ms_off: med('off', 'p99_ms'),
      failed: [...closed.on, ...closed.off].reduce((n, c) => n + c.failed, 0),
      host: closed.on.map((c) => c.noise),
      warmup_s: warm / 1000,
      window_s: window / 1000,
      mode,
    });
    emit({
      name: 'history.disk',
      description: 'bytes on disk per recorded message (segment files of JSON lines, metadata only) after the run above',
      value: round(disk.bytes / Math.max(1, disk.entries), 1),
      unit: 'bytes/msg',
      entries: disk.entries,
      bytes: disk.bytes,
      segments: disk.segments,
      lost: disk.lost,
      mode,
    });
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    await Promise.all(workers.map((w) => w.stop()));
  }
  await runQuery(mode);
}
