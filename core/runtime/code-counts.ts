import { statusName, type StatusName } from '../protocol/status.js';

/**
 * Counts by status code (refusals, failed hellos): a plain Map bumped on the path that refuses,
 * read whole by status views and by the metrics scrape. Status codes are a fixed table, so it
 * holds at most a few dozen keys.
 */
export class CodeCounts {
  private readonly counts = new Map<number, number>();
  total = 0;

  add(code: number): void {
    this.total++;
    this.counts.set(code, (this.counts.get(code) ?? 0) + 1);
  }

  get(code: number): number {
    return this.counts.get(code) ?? 0;
  }

  /** Every code counted so far, by status name (`UNKNOWN_CONTACT_POINT: 3`). */
  byName(): Record<StatusName | `STATUS_${number}`, number> {
    const out: Record<string, number> = {};
    for (const [code, n] of this.counts) out[statusName(code)] = n;
    return out;
  }
}
