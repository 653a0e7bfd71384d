/**
 * A string-keyed table for entries that come and go many times a second and live a moment each
 * (messages awaiting their ACK), built on a null-prototype object (a V8 dictionary) instead of
 * a Map.
 *
 * Why not a Map: V8 keeps a Map's entries in a hash table that it replaces when the Map grows,
 * shrinks or is cleared, and links the old table to the new one (so iterators still running on
 * the old table can follow). A long-lived Map's table ends up in the old generation; from then
 * on, every later table, and every entry each of them held when it was replaced, is reachable
 * from that old table through each scavenge, though nothing uses it, until the next full GC.
 * Under traffic a Map of in-flight messages that grows and shrinks with each burst keeps
 * nearly every message alive that long: measured (a 1 KiB message, 8 in flight, 2,000 bursts
 * a second) ~1.4 MB surviving each scavenge and a mark-compact every second or two, against
 * ~70 KB and none with this table. Those mark-compacts are the slowest 1% of a sender's
 * messages (bench/tail.ts). A dictionary replaced on growth is not linked to its successor.
 *
 * Keys must not look like array indices ("0", "42"): such keys are kept apart by V8 and would
 * come first in iteration, before keys inserted earlier. Message ids never do (they have a dot).
 * Iteration is in insertion order otherwise, and entries may be deleted while iterating.
 */
export class ChurnTable<V> {
  private entries: Record<string, V> = Object.create(null) as Record<string, V>;
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(key: string): V | undefined {
    return this.entries[key];
  }

  has(key: string): boolean {
    return this.entries[key] !== undefined;
  }

  /** `value` must not be undefined (get() could not tell it from a missing key). */
  set(key: string, value: V): this {
    if (this.entries[key] === undefined) this.count++;
    this.entries[key] = value;
    return this;
  }

  delete(key: string): boolean {
    if (this.entries[key] === undefined) return false;
    delete this.entries[key];
    this.count--;
    return true;
  }

  clear(): void {
    this.entries = Object.create(null) as Record<string, V>;
    this.count = 0;
  }

  /**
   * The oldest entry (inserted first among those left), or undefined when empty. Like values(),
   * it lists every key first (V8 sorts a dictionary's keys to enumerate them): fine for a few
   * thousand entries now and then, not for finding the oldest of 65,536 on every insertion.
   */
  first(): [string, V] | undefined {
    for (const key in this.entries) {
      const v = this.entries[key];
      if (v !== undefined) return [key, v];
    }
    return undefined;
  }

  /** The values in insertion order; those deleted during the iteration and not reached yet are skipped. */
  *values(): IterableIterator<V> {
    const entries = this.entries;
    for (const key in entries) {
      if (this.entries !== entries) return; // cleared meanwhile: as a Map's iterator would, stop
      const v = entries[key];
      if (v !== undefined) yield v;
    }
  }
}
