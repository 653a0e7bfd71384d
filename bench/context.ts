import type { WorkerHandle } from './ipc.js';

/** What run.ts hands each benchmark group. */
export interface BenchContext {
  /** --quick / BENCH_QUICK=1: shorter windows (said so in every line as mode: "quick") */
  readonly quick: boolean;
  /** whether `name` (a benchmark or its group) was selected with --only */
  readonly selected: (name: string) => boolean;
  /** forks a worker role (relay, contact-point, ack-server), with the profiling flags if asked */
  readonly startWorker: (role: string, config: unknown, opts?: { exposeGc?: boolean }) => Promise<WorkerHandle>;
}
