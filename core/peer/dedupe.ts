/**
 * The (sender, message id) pairs a receiver has delivered, so at-least-once retries reach the
 * application once. Bounded: the oldest entries go first. Insertion order is kept in a ring of
 * keys (filled lazily) rather than read back from the Set: at capacity, evicting through
 * `seen.values().next()` walks over every entry deleted before it, which costs tens of
 * microseconds a message once the window is full.
 */
export class DedupeWindow {
  private readonly seen = new Set<string>();
  private readonly order: string[] = [];
  private oldest = 0;
  private readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = Math.max(1, capacity);
  }

  has(from: string, id: string): boolean {
    return this.seen.has(`${from}\n${id}`);
  }

  add(from: string, id: string): void {
    const key = `${from}\n${id}`;
    if (this.seen.has(key)) return;
    if (this.order.length < this.capacity) {
      this.order.push(key);
    } else {
      this.seen.delete(this.order[this.oldest]!);
      this.order[this.oldest] = key;
      this.oldest = (this.oldest + 1) % this.capacity;
    }
    this.seen.add(key);
  }

  get size(): number {
    return this.seen.size;
  }
}
