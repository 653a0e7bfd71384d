import { mkdir, open, readdir, readFile, rm, truncate, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DEFAULT_HISTORY_RETENTION,
  HISTORY_OUTCOMES,
  MAX_HISTORY_PAGE,
  type FlowDirection,
  type HistoryEntry,
  type HistoryOutcome,
  type HistoryPage,
  type HistoryRetention,
  type HistoryTraffic,
} from '../admin/contract.js';
import { MAX_REASON_LENGTH } from '../protocol/limits.js';
import { ioReason } from '../runtime/json-file.js';
import type { Logger } from '../runtime/logger.js';
import { CompiledFilter, SegmentIndex, type HistoryFilter } from './history-index.js';

/** The history's folder inside the state folder. */
export const HISTORY_DIR = 'history';
/**
 * Observations are written in batches, at most this long after they happen: a crash of the
 * process loses at most the last batch (a power loss, what the OS had not yet written). They
 * are observations, not admin decisions, so they are not fsynced one by one.
 */
export const HISTORY_FLUSH_MS = 100;
/** Observations waiting for a slow disk; past it they are counted as lost instead of held. */
export const MAX_HISTORY_PENDING = 200_000;
/** Entries a history:query page returns unless it asks for another number. */
export const DEFAULT_HISTORY_PAGE = 100;
/** How often the age limit is applied while nothing else rotates a segment. */
export const HISTORY_RETENTION_CHECK_MS = 60_000;
const DAY_MS = 86_400_000;
/** First line of every segment file: the format and its version. */
const HEADER = '{"contactPointHistory":1}\n';
const SEGMENT_NAME = /^(\d{12})\.jsonl$/;
const DIRS: readonly FlowDirection[] = ['in', 'out', 'local'];

/**
 * Entries per segment file: a tenth of the entries kept (at least 1,000, at most 100,000), so
 * the folder holds about eleven files and dropping the oldest frees a tenth of it.
 */
export function segmentEntries(r: HistoryRetention): number {
  return Math.min(100_000, Math.max(1_000, Math.ceil(r.entries / 10)));
}

/** An observation as the contact point records it; the store numbers it. */
export type HistoryObservation = Omit<HistoryEntry, 'seq'>;

/**
 * One line of a segment: a JSON array, in this order (docs/GUI.md "History" shows the format):
 * [seq, at, outcome, dir, from, to, size, code, reason, id]
 */
function encodeLine(seq: number, e: HistoryObservation, reason: string): string {
  // By hand rather than JSON.stringify of the array: outcome and dir are fixed words, numbers
  // need no quoting; the strings still go through JSON.stringify (escaping). Same JSON.
  return `[${seq},${e.at},"${e.outcome}","${e.dir}",${JSON.stringify(e.from)},${JSON.stringify(e.to)},${e.size},${e.code},${JSON.stringify(reason)},${JSON.stringify(e.id)}]\n`;
}

/** A line back into an entry; undefined when it is not one (corrupt, or not ours). */
export function decodeLine(text: string): HistoryEntry | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v.length !== 10) return undefined;
  const [seq, at, outcome, dir, from, to, size, code, reason, id] = v as unknown[];
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) return undefined;
  if (typeof at !== 'number' || typeof size !== 'number' || typeof code !== 'number') return undefined;
  if (!(HISTORY_OUTCOMES as readonly unknown[]).includes(outcome) || !(DIRS as readonly unknown[]).includes(dir)) return undefined;
  if (typeof from !== 'string' || typeof to !== 'string' || typeof reason !== 'string' || typeof id !== 'string') return undefined;
  return { seq, at, outcome: outcome as HistoryOutcome, dir: dir as FlowDirection, from, to, size, code, reason, id };
}

interface Open {
  readonly index: SegmentIndex;
  readonly fh: FileHandle;
}

/**
 * The contact point's history (issue 16): message metadata and outcomes, port events and
 * refusals (never payloads), in append-only segment files of JSON lines in
 * <state>/history/, each named after its first entry's seq. Appends are batched off the
 * message path (HISTORY_FLUSH_MS); whole segments are dropped past the retention (the newest
 * `entries` are always kept; with `days`, older ones go too). On open every segment is read
 * into a SegmentIndex; a corrupt or torn line is skipped with a warning and nothing else is
 * lost. Queries page newest first by seq, filtered, and read only the page's lines from disk.
 */
export class HistoryStore {
  private readonly segments: SegmentIndex[] = [];
  private current: Open | undefined;
  private pending: HistoryObservation[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private retentionTimer: NodeJS.Timeout | undefined;
  /** the write queue; never rejects */
  private writing: Promise<void> = Promise.resolve();
  private nextSeq = 1;
  private lostCount = 0;
  private lostSince: number | undefined;
  private closed = false;

  private constructor(
    readonly dir: string,
    private retentionValue: HistoryRetention,
    private readonly logger: Logger,
    private readonly now: () => number,
  ) {}

  /** Opens (creating) the history in `dir`, reading what earlier runs left. */
  static async open(dir: string, retention: HistoryRetention = DEFAULT_HISTORY_RETENTION, logger: Logger, now: () => number = Date.now): Promise<HistoryStore> {
    const store = new HistoryStore(dir, retention, logger, now);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await store.load();
    await store.enforce();
    store.retentionTimer = setInterval(() => void store.checkAge(), HISTORY_RETENTION_CHECK_MS);
    store.retentionTimer.unref();
    return store;
  }

  get retention(): HistoryRetention {
    return this.retentionValue;
  }

  /** Observations lost since open (disk too slow, a failed write). */
  get lost(): number {
    return this.lostCount;
  }

  /** Records an observation: queued, written with the next batch. Cheap: no I/O, no encoding here. */
  append(e: HistoryObservation): void {
    if (this.closed) return;
    if (this.pending.length >= MAX_HISTORY_PENDING) {
      if (this.lostSince === undefined) {
        this.lostSince = this.now();
        this.logger.warn('history: the disk is not keeping up; observations are being dropped', { dir: this.dir, pending: MAX_HISTORY_PENDING });
      }
      this.lostCount++;
      return;
    }
    this.pending.push(e);
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = undefined;
        void this.flush();
      }, HISTORY_FLUSH_MS);
      this.flushTimer.unref();
    }
  }

  /** Writes what is queued; resolves once it is in the files (not fsynced). Never rejects. */
  flush(): Promise<void> {
    this.writing = this.writing.then(() => this.writeBatch());
    return this.writing;
  }

  /** Changes the retention and applies it at once (the caller saves the setting). */
  async setRetention(r: HistoryRetention): Promise<void> {
    this.retentionValue = r;
    await this.flush();
    this.writing = this.writing.then(() => this.enforce());
    await this.writing;
  }

  stats(): HistoryPage['stored'] {
    let entries = 0;
    let bytes = 0;
    let oldestAt: number | undefined;
    for (const s of this.segments) {
      entries += s.count;
      bytes += s.bytes;
      if (s.count > 0 && (oldestAt === undefined || s.minAt < oldestAt)) oldestAt = s.minAt;
    }
    return { entries, bytes, segments: this.segments.length, oldestAt };
  }

  /** One page, newest first: entries older than `before` that match the filter. */
  async query(q: HistoryFilter & { readonly before?: number | undefined; readonly limit?: number | undefined }): Promise<HistoryPage> {
    await this.flush();
    const limit = Math.min(q.limit ?? DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE);
    const before = q.before ?? Number.MAX_SAFE_INTEGER;
    const filter = new CompiledFilter(q);
    const counts = HISTORY_OUTCOMES.map(() => 0);
    const picks: { seg: SegmentIndex; i: number }[] = [];
    // limit + 1 picks: the extra one says whether there is an older page.
    for (let s = this.segments.length - 1; s >= 0; s--) {
      const seg = this.segments[s]!;
      const collect = picks.length <= limit ? (i: number): boolean => picks.push({ seg, i }) <= limit : undefined;
      seg.scan(filter, before, counts, collect);
    }
    const page = picks.slice(0, limit);
    const entries = await this.read(page);
    const matched = counts.reduce((a, b) => a + b, 0);
    const last = page.at(-1);
    return {
      entries,
      ...(picks.length > limit && last ? { next: last.seg.seqAt(last.i) } : {}),
      matched,
      counts: Object.fromEntries(HISTORY_OUTCOMES.map((o, i) => [o, counts[i]!])) as Record<HistoryOutcome, number>,
      enabled: true,
      retention: this.retentionValue,
      stored: this.stats(),
      lost: this.lostCount,
    };
  }

  /** Messages matching `peer` per time bucket from `since` to `until` (history:traffic). */
  async traffic(q: { peer?: string | undefined; since: number; until?: number | undefined; buckets: number }): Promise<HistoryTraffic> {
    await this.flush();
    const until = q.until ?? this.now();
    const bucketMs = Math.max(1, Math.ceil((until - q.since) / q.buckets));
    const rows = HISTORY_OUTCOMES.map(() => new Array<number>(q.buckets).fill(0));
    const filter = new CompiledFilter({ peer: q.peer, since: q.since, until });
    for (const seg of this.segments) {
      seg.scan(filter, Number.MAX_SAFE_INTEGER, undefined, (i) => {
        const b = Math.min(q.buckets - 1, Math.floor((seg.atOf(i) - q.since) / bucketMs));
        rows[seg.outcomeOf(i)]![b]!++;
        return true;
      });
    }
    const row = (o: HistoryOutcome): number[] => rows[HISTORY_OUTCOMES.indexOf(o)]!;
    return { since: q.since, bucketMs, delivered: row('delivered'), refused: row('refused'), forwarded: row('forwarded'), enabled: true };
  }

  /** Writes what is queued, fsyncs and closes the open segment; later appends are ignored. */
  async close(): Promise<void> {
    clearInterval(this.retentionTimer);
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    await this.flush();
    this.closed = true;
    this.writing = this.writing.then(() => this.closeCurrent(true));
    await this.writing;
  }

  // ---- loading ---------------------------------------------------------------------------

  private async load(): Promise<void> {
    const names = (await readdir(this.dir)).filter((n) => SEGMENT_NAME.test(n)).sort();
    for (const name of names) {
      // New segments are named after their first seq: never one a file here has (even a skipped one).
      this.nextSeq = Math.max(this.nextSeq, Number(SEGMENT_NAME.exec(name)![1]) + 1);
      const seg = await this.loadSegment(name);
      if (!seg) continue;
      this.segments.push(seg.index);
      this.nextSeq = Math.max(this.nextSeq, seg.index.lastSeq + 1);
    }
    // The newest segment takes more entries if it has room: restarts do not add files.
    const last = this.segments.at(-1);
    if (last && last.count < segmentEntries(this.retentionValue)) {
      try {
        this.current = { index: last, fh: await open(join(this.dir, last.file), 'a', 0o600) };
      } catch (err: unknown) {
        this.logger.warn('history: cannot append to the newest segment; starting a new one', { file: last.file, error: ioReason(err) });
      }
    }
  }

  private async loadSegment(name: string): Promise<{ index: SegmentIndex } | undefined> {
    const path = join(this.dir, name);
    let buf: Buffer;
    try {
      buf = await readFile(path);
    } catch (err: unknown) {
      this.logger.warn('history: cannot read a segment; it is skipped', { file: path, error: ioReason(err) });
      return undefined;
    }
    if (buf.subarray(0, HEADER.length).toString('utf8') !== HEADER) {
      this.logger.warn('history: not a history segment of this version; it is skipped and left alone', { file: path });
      return undefined;
    }
    const firstSeq = Number(SEGMENT_NAME.exec(name)![1]);
    const index = new SegmentIndex(name, firstSeq, HEADER.length, segmentEntries(this.retentionValue));
    let pos = HEADER.length;
    let corrupt = 0;
    while (pos < buf.length) {
      const nl = buf.indexOf(10, pos);
      if (nl < 0) {
        // The last write did not finish (a crash mid-batch): that part of the line is lost.
        this.logger.warn('history: skipped a torn last line (the process stopped mid-write)', { file: path, bytes: buf.length - pos });
        await truncate(path, pos).catch((err: unknown) => {
          this.logger.warn('history: cannot cut the torn line off', { file: path, error: ioReason(err) });
        });
        break;
      }
      const e = decodeLine(buf.toString('utf8', pos, nl));
      if (e && e.seq > index.lastSeq) index.add(e.seq, e, e.reason, nl + 1 - pos);
      else {
        corrupt++;
        index.skip(nl + 1 - pos);
      }
      pos = nl + 1;
    }
    if (corrupt > 0) this.logger.warn('history: skipped corrupt lines', { file: path, lines: corrupt });
    return { index };
  }

  // ---- writing ---------------------------------------------------------------------------

  private async writeBatch(): Promise<void> {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    if (this.lostSince !== undefined) {
      this.logger.info('history: the disk caught up', { lost: this.lostCount });
      this.lostSince = undefined;
    }
    let i = 0;
    while (i < batch.length) {
      const cur = await this.segmentForWrite();
      if (!cur) {
        this.lostCount += batch.length - i;
        return;
      }
      const n = Math.min(batch.length - i, segmentEntries(this.retentionValue) - cur.index.count);
      const lines: string[] = new Array<string>(n);
      const reasons: string[] = new Array<string>(n);
      let chars = 0;
      for (let k = 0; k < n; k++) {
        const o = batch[i + k]!;
        reasons[k] = o.reason.length > MAX_REASON_LENGTH ? o.reason.slice(0, MAX_REASON_LENGTH) : o.reason;
        lines[k] = encodeLine(this.nextSeq + k, o, reasons[k]!);
        chars += lines[k]!.length;
      }
      // One buffer for the batch; writing each line into it gives its byte length (UTF-8).
      const buf = Buffer.allocUnsafe(chars * 3);
      const lengths = new Uint32Array(n);
      let used = 0;
      for (let k = 0; k < n; k++) {
        lengths[k] = buf.write(lines[k]!, used, 'utf8');
        used += lengths[k]!;
      }
      const firstSeq = this.nextSeq;
      this.nextSeq += n;
      try {
        await cur.fh.write(buf, 0, used);
      } catch (err: unknown) {
        this.lostCount += n;
        i += n;
        this.logger.error('history: a write failed; those entries are lost, the next go to a new segment', { file: cur.index.file, error: ioReason(err) });
        await this.closeCurrent();
        continue;
      }
      for (let k = 0; k < n; k++) {
        const o = batch[i + k]!;
        cur.index.add(firstSeq + k, o, reasons[k]!, lengths[k]!);
      }
      i += n;
    }
  }

  /** The segment the next lines go to: the open one while it has room (and is young enough), else a new one. */
  private async segmentForWrite(): Promise<Open | undefined> {
    const r = this.retentionValue;
    const cur = this.current;
    const maxAge = r.days > 0 ? (r.days * DAY_MS) / 10 : Infinity;
    if (cur && cur.index.count < segmentEntries(r) && !(cur.index.count > 0 && this.now() - cur.index.minAt > maxAge)) return cur;
    await this.closeCurrent();
    const name = `${String(this.nextSeq).padStart(12, '0')}.jsonl`;
    try {
      const fh = await open(join(this.dir, name), 'wx', 0o600);
      try {
        await fh.write(HEADER);
      } catch (err: unknown) {
        await fh.close();
        throw err;
      }
      const index = new SegmentIndex(name, this.nextSeq, HEADER.length, segmentEntries(r));
      this.segments.push(index);
      this.current = { index, fh };
    } catch (err: unknown) {
      this.logger.error('history: cannot start a segment; observations are lost until it can', { file: join(this.dir, name), error: ioReason(err) });
      return undefined;
    }
    await this.enforce();
    return this.current;
  }

  /** Closes the open segment; `sync` (at close()) fsyncs it first. Rotation does not: these are observations. */
  private async closeCurrent(sync = false): Promise<void> {
    const cur = this.current;
    this.current = undefined;
    if (!cur) return;
    if (sync) {
      try {
        await cur.fh.datasync();
      } catch {
        // a segment that cannot be synced is still closed; what reached the OS stays
      }
    }
    await cur.fh.close().catch(() => undefined);
  }

  // ---- retention -------------------------------------------------------------------------

  /** Drops the oldest segments past the retention: never the newest `entries`; with `days`, everything older. */
  private async enforce(): Promise<void> {
    const { entries, days } = this.retentionValue;
    const cutoff = days > 0 ? this.now() - days * DAY_MS : -Infinity;
    let total = this.segments.reduce((n, s) => n + s.count, 0);
    while (this.segments.length > 0) {
      const oldest = this.segments[0]!;
      const tooOld = oldest.count > 0 && oldest.maxAt < cutoff;
      if (!tooOld && (oldest === this.current?.index || total - oldest.count < entries)) break;
      if (oldest === this.current?.index) await this.closeCurrent();
      this.segments.shift();
      total -= oldest.count;
      await rm(join(this.dir, oldest.file), { force: true }).catch((err: unknown) => {
        this.logger.warn('history: cannot delete an old segment', { file: oldest.file, error: ioReason(err) });
      });
    }
  }

  private async checkAge(): Promise<void> {
    if (this.retentionValue.days === 0 || this.closed) return;
    this.writing = this.writing.then(() => this.enforce());
    await this.writing;
  }

  /** Reads the picked entries' lines back (grouped per file) in the order given. */
  private async read(picks: readonly { seg: SegmentIndex; i: number }[]): Promise<HistoryEntry[]> {
    const out: HistoryEntry[] = [];
    let fh: FileHandle | undefined;
    let file = '';
    try {
      for (const { seg, i } of picks) {
        if (seg.file !== file) {
          await fh?.close();
          fh = undefined;
          file = seg.file;
          // A segment dropped by the retention since the scan: its entries are gone.
          fh = await open(join(this.dir, file), 'r').catch(() => undefined);
        }
        if (!fh) continue;
        const { offset, length } = seg.lineAt(i);
        const buf = Buffer.allocUnsafe(length);
        const { bytesRead } = await fh.read(buf, 0, length, offset);
        const e = decodeLine(buf.toString('utf8', 0, bytesRead).trimEnd());
        if (e) out.push(e);
      }
    } finally {
      await fh?.close();
    }
    return out;
  }
}
