/**
 * Where a latency tail comes from: the paced benchmarks' slowest 1% of messages, each checked
 * against the GC pauses of every process on its path.
 *
 * The receiver keeps each measured message's send time beside its latency; every process records
 * its GC pauses (bench/util.ts watchGc, in the bench process and in each worker). A tail message
 * was in flight from its send time to its arrival; a process "paused it" when one of its GC pauses
 * overlapped that interval. A message no pause overlapped is counted under `none`: its delay came
 * from somewhere else (scheduling on a busy host, a batch, a timer, a process without a GC
 * observer such as nats-server).
 */
import type { WorkerHandle } from './ipc.js';
import { gcEventsBetween, round } from './util.js';

/** How a paced run's tail (samples at or above its p99) lines up with GC pauses, per process. */
export interface TailAttribution {
  /** tail samples (the receiver's p99 and above) */
  samples: number;
  /** the fastest of them, ms */
  from_ms: number;
  /** tail samples overlapped by a GC pause of each process (one sample may count for several) */
  gc: Record<string, number>;
  /** ... by a full (mark-compact) pause of each process */
  full_gc: Record<string, number>;
  /** tail samples no pause of any watched process overlapped */
  none: number;
}

/** A paced run's summary as the receiver's `latency` op returns it with `{ tail: true }`. */
export interface LatencyWithTail {
  p50: number;
  p99: number;
  tail?: [number, number][];
}

/**
 * Attributes `tail` ([send time, latency] pairs, nowMs() times) to the GC pauses of `procs`: the
 * workers by name, and `self` (the bench process, where SDK senders run) when given.
 */
export async function attributeTail(tail: readonly [number, number][], procs: Record<string, WorkerHandle | 'self'>): Promise<TailAttribution> {
  const out: TailAttribution = { samples: tail.length, from_ms: tail.length ? round(Math.min(...tail.map((t) => t[1]))) : NaN, gc: {}, full_gc: {}, none: 0 };
  if (tail.length === 0) return out;
  const from = Math.min(...tail.map((t) => t[0]));
  const to = Math.max(...tail.map((t) => t[0] + t[1]));
  const events = await Promise.all(
    Object.entries(procs).map(async ([name, w]) => [name, w === 'self' ? gcEventsBetween(from, to) : await w.call<{ at: number; ms: number; full: boolean }[]>('gcEvents', { from, to })] as const),
  );
  for (const [name] of events) {
    out.gc[name] = 0;
    out.full_gc[name] = 0;
  }
  for (const [sent, latency] of tail) {
    let any = false;
    for (const [name, list] of events) {
      const hit = list.filter((g) => g.at <= sent + latency && g.at + g.ms >= sent);
      if (hit.length === 0) continue;
      any = true;
      out.gc[name]!++;
      if (hit.some((g) => g.full)) out.full_gc[name]!++;
    }
    if (!any) out.none++;
  }
  return out;
}

/** Sums per-round attributions (one line per benchmark side). */
export function sumTails(list: readonly TailAttribution[]): TailAttribution {
  const out: TailAttribution = { samples: 0, from_ms: NaN, gc: {}, full_gc: {}, none: 0 };
  for (const t of list) {
    out.samples += t.samples;
    out.none += t.none;
    out.from_ms = Number.isNaN(out.from_ms) ? t.from_ms : Math.min(out.from_ms, t.from_ms);
    for (const [k, v] of Object.entries(t.gc)) out.gc[k] = (out.gc[k] ?? 0) + v;
    for (const [k, v] of Object.entries(t.full_gc)) out.full_gc[k] = (out.full_gc[k] ?? 0) + v;
  }
  return out;
}
