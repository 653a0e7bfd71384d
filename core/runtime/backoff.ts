import { RECONNECT_BASE_MS, RECONNECT_FACTOR, RECONNECT_MAX_MS } from '../protocol/limits.js';

/**
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
 * Jitter"): a fleet of contact points that lost the same relay does not come back in lockstep.
 */
export class Backoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly maxMs: number;

  constructor(
    baseMs = RECONNECT_BASE_MS,
    maxMs = RECONNECT_MAX_MS,
    private readonly random: () => number = Math.random,
  ) {
    // A zero or negative base would make every delay 0 (or NaN): a reconnect storm.
    this.baseMs = Math.max(1, baseMs);
    this.maxMs = Math.max(this.baseMs, maxMs);
  }

  /** Delay before the next attempt; grows with each call until reset(). */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.baseMs * RECONNECT_FACTOR ** this.attempt);
    this.attempt++;
    return Math.max(this.baseMs / 2, Math.round(this.random() * ceiling));
  }

  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}
