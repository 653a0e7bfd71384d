/**
 * The (sender, message id) pairs a receiver has delivered, so at-least-once retries reach the
 * application once. Bounded: the oldest entries go first (Map keeps insertion order).
 */
export class DedupeWindow {
  private readonly seen = new Set<string>();
  constructor(private readonly capacity: number) {}

  has(from: string, id: string): boolean {
    return this.seen.has(`${from}\n${id}`);
  }

  add(from: string, id: string): void {
    const key = `${from}\n${id}`;
    if (this.seen.has(key)) return;
    if (this.seen.size >= this.capacity) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    this.seen.add(key);
  }

  get size(): number {
    return this.seen.size;
  }
}
