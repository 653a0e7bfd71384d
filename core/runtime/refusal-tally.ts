/** Refusals of one kind of thing (an exposure's connections, a port's), counted by status code. */
export interface RefusalCount {
  readonly code: number;
  readonly count: number;
  /** the reason of the last refusal with this code */
  readonly reason: string;
}

/**
 * Counts refusals and reports them at most once per interval: the first refusal after a quiet
 * interval at once, the ones that follow in one report per code when the interval ends. So a
 * flood of refused connections costs one log line (or one event) per second, with its count.
 */
export class RefusalTally {
  private readonly unreported = new Map<number, { count: number; reason: string }>();
  private lastReport = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private disposed = false;
  /** every refusal counted, reported or not */
  total = 0;

  constructor(
    private readonly intervalMs: number,
    private readonly report: (counts: readonly RefusalCount[]) => void,
  ) {}

  /** Counts `n` refusals with `code` (the last `reason` is the one reported). */
  add(code: number, reason: string, n = 1): void {
    this.total += n;
    if (this.disposed) return;
    const u = this.unreported.get(code);
    if (u) {
      u.count += n;
      u.reason = reason;
    } else this.unreported.set(code, { count: n, reason });
    if (this.timer) return;
    const wait = this.lastReport + this.intervalMs - Date.now();
    if (wait <= 0) this.flush();
    else {
      this.timer = setTimeout(() => this.flush(), wait);
      this.timer.unref();
    }
  }

  /** Reports what is counted and not yet reported (nothing when there is none). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.unreported.size === 0) return;
    const counts = [...this.unreported].map(([code, u]) => ({ code, count: u.count, reason: u.reason }));
    this.unreported.clear();
    this.lastReport = Date.now();
    this.report(counts);
  }

  /** No more reports (what is pending is dropped); counting goes on. */
  dispose(): void {
    this.disposed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.unreported.clear();
  }
}
