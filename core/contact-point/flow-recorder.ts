import type { FlowBatch, FlowDirection, FlowEvent, FlowOutcome, FlowTotals } from '../admin/contract.js';
import { describeStatus, Status, statusName } from '../protocol/status.js';
import type { HistoryObservation } from './history-store.js';

/** How often the admin stream gets a flow batch. */
export const FLOW_BATCH_MS = 250;
/** Events listed per batch; the rest of the interval is counted in `omitted`. */
export const MAX_FLOW_EVENTS_PER_BATCH = 200;

/**
 * The live message flow for the admin: totals always, individual events only while someone
 * watches, and then at most MAX_FLOW_EVENTS_PER_BATCH of the most recent per interval (a ring),
 * so 20,000 msgs/s through the contact point costs the GUI a few hundred rows a second and
 * the contact point a fixed amount of memory. Every event also goes to the history, when there
 * is one (history-store.ts: batched to disk, off this path).
 */
export class FlowRecorder {
  private readonly ring: (FlowEvent | undefined)[] = new Array<FlowEvent | undefined>(MAX_FLOW_EVENTS_PER_BATCH);
  private head = 0;
  private count = 0;
  private intervalEvents = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(b: FlowBatch) => void>();
  private lastEmitAt = Date.now();
  private readonly t = {
    messages: 0,
    bytes: 0,
    delivered: 0,
    refused: 0,
    byDirection: { in: 0, out: 0, local: 0 } as Record<FlowDirection, number>,
    refusals: {} as Record<string, number>,
  };

  constructor(private readonly history?: { append(e: HistoryObservation): void }) {}

  /** True while someone watches: callers skip building event objects otherwise. */
  get watched(): boolean {
    return this.listeners.size > 0;
  }

  start(): void {
    this.timer ??= setInterval(() => this.flush(), FLOW_BATCH_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  subscribe(fn: (b: FlowBatch) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * `count`: the messages the MSG carried (a sealed bundle carries several, PROTOCOL.md 19.6):
   * the totals count each of them, the event list and the history have one entry for the MSG.
   */
  record(id: string, dir: FlowDirection, from: string, to: string, size: number, code: number, reason?: string, count = 1): void {
    const outcome = this.tally(dir, size, code, count);
    if (this.listeners.size === 0 && !this.history) return;
    const event: FlowEvent = {
      at: Date.now(),
      id,
      dir,
      from,
      to,
      size,
      outcome,
      code: Math.max(code, 0),
      reason: outcome === 'refused' ? (reason ?? describeStatus(code)) : '',
      ...(count > 1 ? { count } : {}),
    };
    this.history?.append(event);
    if (this.listeners.size === 0) return;
    this.intervalEvents++;
    this.ring[this.head] = event;
    this.head = (this.head + 1) % MAX_FLOW_EVENTS_PER_BATCH;
    if (this.count < MAX_FLOW_EVENTS_PER_BATCH) this.count++;
  }

  /**
   * A message counted in the totals only, with no event and no history entry (record() does
   * both): for what a flood would otherwise write into the history, one entry each.
   */
  countOnly(dir: FlowDirection, size: number, code: number, count = 1): void {
    this.tally(dir, size, code, count);
  }

  /** Adds a message to the totals; its outcome. */
  private tally(dir: FlowDirection, size: number, code: number, count: number): FlowOutcome {
    const outcome: FlowOutcome = code === Status.OK ? 'delivered' : code < 0 ? 'forwarded' : 'refused';
    this.t.messages += count;
    this.t.bytes += size;
    this.t.byDirection[dir] += count;
    if (outcome === 'delivered') this.t.delivered += count;
    else if (outcome === 'refused') {
      this.t.refused += count;
      const name = statusName(code);
      this.t.refusals[name] = (this.t.refusals[name] ?? 0) + count;
    }
    return outcome;
  }

  totals(): FlowTotals {
    return { ...this.t, byDirection: { ...this.t.byDirection }, refusals: { ...this.t.refusals } };
  }

  private flush(): void {
    const now = Date.now();
    if (this.listeners.size === 0) {
      this.count = 0;
      this.intervalEvents = 0;
      this.lastEmitAt = now;
      return;
    }
    const events: FlowEvent[] = [];
    const start = (this.head - this.count + MAX_FLOW_EVENTS_PER_BATCH) % MAX_FLOW_EVENTS_PER_BATCH;
    for (let i = 0; i < this.count; i++) events.push(this.ring[(start + i) % MAX_FLOW_EVENTS_PER_BATCH]!);
    const batch: FlowBatch = {
      at: now,
      events,
      omitted: this.intervalEvents - events.length,
      intervalMs: now - this.lastEmitAt,
      totals: this.totals(),
    };
    this.count = 0;
    this.intervalEvents = 0;
    this.lastEmitAt = now;
    for (const fn of this.listeners) fn(batch);
  }
}
