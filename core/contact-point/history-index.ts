import { HISTORY_OUTCOMES, type FlowDirection, type HistoryOutcome } from '../admin/contract.js';
import { statusName } from '../protocol/status.js';

/**
 * The in-memory index of one history segment file: per entry its seq, time, where its line is
 * in the file, and its from/to/reason as numbers into the segment's own dictionary, in typed
 * arrays (about 40 bytes an entry). A filtered page over 100,000+ entries is a scan of these
 * arrays, and only the page's lines are read back from disk. The dictionary belongs to the
 * segment, so dropping a segment file drops its strings with it.
 */

const DIR_INDEX: Readonly<Record<FlowDirection, number>> = { in: 0, out: 1, local: 2 };
const OUTCOME_INDEX = Object.fromEntries(HISTORY_OUTCOMES.map((o, i) => [o, i])) as Readonly<Record<HistoryOutcome, number>>;

/** What history:query filters on (all optional; strings as the admin typed them). */
export interface HistoryFilter {
  readonly peer?: string | undefined;
  readonly sender?: string | undefined;
  readonly outcome?: HistoryOutcome | undefined;
  readonly reason?: string | undefined;
  readonly since?: number | undefined;
  readonly until?: number | undefined;
}

/** The columns the index keeps of an entry (the rest is read from its line). */
export interface IndexedFields {
  readonly seq: number;
  readonly at: number;
  readonly outcome: HistoryOutcome;
  readonly dir: FlowDirection;
  readonly from: string;
  readonly to: string;
  readonly code: number;
  readonly reason: string;
}

/** An address filter: with @ it is a whole address; else a part of one. Case does not matter. */
function addressMatcher(filter: string | undefined): ((s: string) => boolean) | undefined {
  if (filter === undefined) return undefined;
  const f = filter.trim().toLowerCase();
  if (f === '') return undefined;
  return f.includes('@') ? (s) => s.toLowerCase() === f : (s) => s.toLowerCase().includes(f);
}

/** A reason filter: a status name (PEER_OFFLINE), or a part of the reason text. */
function reasonMatcher(filter: string | undefined): { text: (s: string) => boolean; code: (c: number) => boolean } | undefined {
  if (filter === undefined) return undefined;
  const f = filter.trim().toLowerCase();
  if (f === '') return undefined;
  const name = f.toUpperCase().replaceAll(' ', '_');
  return { text: (s) => s.toLowerCase().includes(f), code: (c) => c !== 0 && statusName(c) === name };
}

/** A filter compiled once per query; each segment then turns it into flags over its dictionary. */
export class CompiledFilter {
  readonly peer;
  readonly sender;
  readonly reason;
  readonly outcome: number;
  readonly since: number;
  readonly until: number;

  constructor(f: HistoryFilter) {
    this.peer = addressMatcher(f.peer);
    this.sender = addressMatcher(f.sender);
    this.reason = reasonMatcher(f.reason);
    this.outcome = f.outcome === undefined ? -1 : HISTORY_OUTCOMES.indexOf(f.outcome);
    this.since = f.since ?? 0;
    this.until = f.until ?? Number.MAX_SAFE_INTEGER;
  }
}

/** Per-outcome counts, indexed like HISTORY_OUTCOMES. */
export type OutcomeCounts = number[];

export class SegmentIndex {
  count = 0;
  /** bytes of the file (header and torn tail excluded), where the next line goes */
  bytes: number;
  minAt = Number.MAX_SAFE_INTEGER;
  maxAt = 0;
  private seq: Float64Array;
  private at: Float64Array;
  private off: Float64Array;
  private len: Uint32Array;
  private from: Uint32Array;
  private to: Uint32Array;
  private reasonId: Uint32Array;
  private code: Uint16Array;
  /** outcome index * 4 + direction index */
  private kind: Uint8Array;
  private readonly strings: string[] = [];
  private readonly ids = new Map<string, number>();

  constructor(
    readonly file: string,
    readonly firstSeq: number,
    headerBytes: number,
    capacity: number,
  ) {
    this.bytes = headerBytes;
    this.seq = new Float64Array(capacity);
    this.at = new Float64Array(capacity);
    this.off = new Float64Array(capacity);
    this.len = new Uint32Array(capacity);
    this.from = new Uint32Array(capacity);
    this.to = new Uint32Array(capacity);
    this.reasonId = new Uint32Array(capacity);
    this.code = new Uint16Array(capacity);
    this.kind = new Uint8Array(capacity);
  }

  get lastSeq(): number {
    return this.count === 0 ? this.firstSeq - 1 : this.seq[this.count - 1]!;
  }

  /** Indexes entry `seq` whose line of `length` bytes (newline included) starts at `this.bytes`. */
  add(seq: number, e: Omit<IndexedFields, 'seq' | 'reason'>, reason: string, length: number): void {
    if (this.count === this.seq.length) this.grow();
    const i = this.count++;
    this.seq[i] = seq;
    this.at[i] = e.at;
    this.off[i] = this.bytes;
    this.len[i] = length;
    this.from[i] = this.intern(e.from);
    this.to[i] = this.intern(e.to);
    this.reasonId[i] = this.intern(reason);
    this.code[i] = Math.min(Math.max(e.code, 0), 0xffff);
    this.kind[i] = OUTCOME_INDEX[e.outcome] * 4 + DIR_INDEX[e.dir];
    this.bytes += length;
    if (e.at < this.minAt) this.minAt = e.at;
    if (e.at > this.maxAt) this.maxAt = e.at;
  }

  /**
   * Walks the entries newest first. Every match is counted into `counts` (the whole segment);
   * `hit` gets the position of each match older than `before` and returns false to stop.
   */
  scan(f: CompiledFilter, before: number, counts: OutcomeCounts | undefined, hit: ((i: number) => boolean) | undefined): void {
    if (this.count === 0 || this.maxAt < f.since || this.minAt > f.until) return;
    let want = this.firstSeq < before ? hit : undefined;
    if (!want && !counts) return;
    const n = this.strings.length;
    // Each dictionary string is checked once per query, not once per entry.
    const peerOk = f.peer ? flags(this.strings, n, f.peer) : undefined;
    const senderOk = f.sender ? flags(this.strings, n, f.sender) : undefined;
    const reasonOk = f.reason ? flags(this.strings, n, f.reason.text) : undefined;
    const codeOk = f.reason?.code;
    for (let i = this.count - 1; i >= 0; i--) {
      const at = this.at[i]!;
      if (at < f.since || at > f.until) continue;
      const outcome = this.kind[i]! >> 2;
      if (f.outcome >= 0 && outcome !== f.outcome) continue;
      if (peerOk && !peerOk[this.from[i]!] && !peerOk[this.to[i]!]) continue;
      if (senderOk && !senderOk[this.from[i]!]) continue;
      if (reasonOk && !reasonOk[this.reasonId[i]!] && !codeOk!(this.code[i]!)) continue;
      if (counts) counts[outcome]!++;
      if (want && this.seq[i]! < before && !want(i)) {
        want = undefined;
        if (!counts) return;
      }
    }
  }

  /** Accounts for a line that is in the file but not indexed (a corrupt one, skipped). */
  skip(length: number): void {
    this.bytes += length;
  }

  atOf(i: number): number {
    return this.at[i]!;
  }

  /** The outcome of entry `i`, as its index in HISTORY_OUTCOMES. */
  outcomeOf(i: number): number {
    return this.kind[i]! >> 2;
  }

  seqAt(i: number): number {
    return this.seq[i]!;
  }

  /** Where entry `i`'s line is in the file. */
  lineAt(i: number): { offset: number; length: number } {
    return { offset: this.off[i]!, length: this.len[i]! };
  }

  private intern(s: string): number {
    let id = this.ids.get(s);
    if (id === undefined) {
      id = this.strings.length;
      this.strings.push(s);
      this.ids.set(s, id);
    }
    return id;
  }

  private grow(): void {
    const cap = Math.max(16, this.seq.length * 2);
    const g = <T extends Float64Array | Uint32Array | Uint16Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(cap);
      b.set(a);
      return b;
    };
    this.seq = g(this.seq, (n) => new Float64Array(n));
    this.at = g(this.at, (n) => new Float64Array(n));
    this.off = g(this.off, (n) => new Float64Array(n));
    this.len = g(this.len, (n) => new Uint32Array(n));
    this.from = g(this.from, (n) => new Uint32Array(n));
    this.to = g(this.to, (n) => new Uint32Array(n));
    this.reasonId = g(this.reasonId, (n) => new Uint32Array(n));
    this.code = g(this.code, (n) => new Uint16Array(n));
    this.kind = g(this.kind, (n) => new Uint8Array(n));
  }
}

function flags(strings: readonly string[], n: number, match: (s: string) => boolean): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) if (match(strings[i]!)) out[i] = 1;
  return out;
}
