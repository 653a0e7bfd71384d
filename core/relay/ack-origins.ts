import { ChurnTable } from '../runtime/churn-table.js';

/**
 * Messages from external senders on other relay nodes delivered through this one: sender name
 * -> message id -> the node to send its ACK to (PROTOCOL.md 17.2). At most `max` entries in all:
 * past that, the oldest entry of the sender noted first is forgotten (that sender re-sends the
 * message and it is noted again). Two levels, so no key string is made per message; the inner
 * tables are ChurnTables, as an entry is made and taken per message in flight
 * (core/runtime/churn-table.ts says why not Maps), and first() finds a table's oldest at once.
 */
export class AckOrigins {
  private readonly bySender = new Map<string, ChurnTable<string>>();
  private count = 0;

  constructor(private readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`AckOrigins holds at least 1 entry, not ${max}`);
  }

  /** Entries held (message ids awaiting their ACK). */
  get size(): number {
    return this.count;
  }

  /** Senders with entries. */
  get senders(): number {
    return this.bySender.size;
  }

  /** Message `id` from `sender` came from `node`: its ACK goes there (noted again: the newer node). */
  note(sender: string, id: string, node: string): void {
    let byId = this.bySender.get(sender);
    if (byId === undefined) this.bySender.set(sender, (byId = new ChurnTable<string>()));
    const before = byId.size;
    byId.set(id, node);
    if (byId.size === before || ++this.count <= this.max) return;
    // Full: the oldest of the sender noted first goes.
    const [oldestSender, oldest] = this.bySender.entries().next().value!;
    oldest.delete(oldest.first()![0]);
    if (oldest.size === 0) this.bySender.delete(oldestSender);
    this.count--;
  }

  /** The node message `id` from `sender` came from, forgotten as it is told; undefined if none is noted. */
  take(sender: string, id: string): string | undefined {
    const byId = this.bySender.get(sender);
    const node = byId?.get(id);
    if (node === undefined) return undefined;
    byId!.delete(id);
    if (byId!.size === 0) this.bySender.delete(sender);
    this.count--;
    return node;
  }
}
