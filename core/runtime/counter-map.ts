/**
 * Counts per key with a hard cap on keys, for per-address limits that must not grow with an
 * attacker's address space: when full, the oldest key is forgotten.
 */
export class CounterMap {
  private readonly counts = new Map<string, number>();
  constructor(private readonly maxKeys: number) {}

  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  add(key: string, n = 1): number {
    const v = (this.counts.get(key) ?? 0) + n;
    if (v <= 0) {
      this.counts.delete(key);
      return 0;
    }
    if (!this.counts.has(key) && this.counts.size >= this.maxKeys) {
      const oldest = this.counts.keys().next().value;
      if (oldest !== undefined) this.counts.delete(oldest);
    }
    this.counts.set(key, v);
    return v;
  }

  clear(): void {
    this.counts.clear();
  }
}
