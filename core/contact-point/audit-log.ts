import { open, readFile, rename, rm, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import type { AdminSurface, AuditAction, AuditEntry, AuditValue } from '../admin/contract.js';
import { ADMIN_SURFACES, AUDIT_ACTIONS } from '../admin/contract.js';
import { int, list, obj, oneOf, str, type Schema } from '../protocol/schema.js';
import { SchemaError } from '../protocol/schema.js';
import type { Logger } from '../runtime/logger.js';

/** The audit file the newest entries are appended to; rotated ones are `audit.1.jsonl` (newer) .. `audit.N.jsonl` (oldest). */
export const AUDIT_FILE = 'audit.jsonl';
/** The audit file is rotated once it holds this many bytes (default 1 MiB, about 4,000 decisions). */
export const AUDIT_FILE_BYTES = 1024 * 1024;
/** Rotated audit files kept besides the current one (default 3): the trail holds at most (1 + 3) x AUDIT_FILE_BYTES. */
export const AUDIT_ROTATED_FILES = 3;
/** Entries kept in memory when there is no state folder (a contact point without one keeps nothing on disk). */
export const MAX_AUDIT_IN_MEMORY = 2_000;
/** Entries the state file carries that are not yet in the audit file (an append failed); past this a decision is refused. */
export const MAX_AUDIT_TAIL = 1_000;
/** Most entries one `audit:list` call returns. */
export const MAX_AUDIT_PAGE = 1_000;

const MAX_VALUE_KEYS = 16;

/** before/after: a flat object of scalars and short string lists, or null (nothing there). */
const auditValue: Schema<AuditValue> = {
  parse(v, path = '') {
    if (v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v)) throw new SchemaError(path, 'must be an object or null');
    const entries = Object.entries(v as Record<string, unknown>);
    if (entries.length > MAX_VALUE_KEYS) throw new SchemaError(path, `must have at most ${MAX_VALUE_KEYS} fields`);
    const out: Record<string, string | number | boolean | readonly string[]> = {};
    for (const [k, x] of entries) {
      if (typeof x === 'string' || typeof x === 'boolean' || (typeof x === 'number' && Number.isFinite(x))) out[k] = x;
      else out[k] = list(str({ max: 200 }), { max: 256 }).parse(x, `${path}.${k}`);
    }
    return out;
  },
};

export const auditEntrySchema: Schema<AuditEntry> = obj({
  seq: int({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  at: int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  surface: oneOf(ADMIN_SURFACES),
  action: oneOf(AUDIT_ACTIONS),
  target: str({ min: 1, max: 128 }),
  before: auditValue,
  after: auditValue,
}) as Schema<AuditEntry>;

/** What the state file keeps of the audit trail: the last sequence number and the entries not yet in the audit file. */
export const auditStateSchema = obj({
  seq: int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  tail: list(auditEntrySchema, { max: MAX_AUDIT_TAIL + 64 }),
});
export interface AuditState {
  readonly seq: number;
  readonly tail: AuditEntry[];
}

/** An entry as a decision describes it; the store numbers it. */
export interface AuditRecord {
  readonly at: number;
  readonly surface: AdminSurface;
  readonly action: AuditAction;
  readonly target: string;
  readonly before: AuditValue;
  readonly after: AuditValue;
}

export interface AuditQuery {
  /** only entries about this target (a peer name, `policy`, `port 7`, ...) */
  readonly target?: string | undefined;
  /** only entries older than this sequence number (paging backwards) */
  readonly beforeSeq?: number | undefined;
  readonly limit: number;
}

/**
 * The audit trail of admin decisions (issue 16): who decided what, through which surface, when,
 * and the value before and after. Kept with the state: each decision's entry is written into
 * the state file in the same durable write as the decision itself (StateStore), then appended
 * to `audit.jsonl` and fsynced before the call returns. A crash between the two loses nothing:
 * at the next start the entries the state file carries past the audit file's last one are
 * appended (open()). The files rotate by size and the oldest is deleted: bounded on disk.
 */
export class AuditLog {
  /** last sequence number handed out */
  private seq: number;
  /** entries in the state file but not (known to be) in the audit file */
  private unappended: AuditEntry[] = [];
  /** newest entries, for a contact point without a state folder */
  private readonly memory: AuditEntry[] = [];
  private bytes = 0;

  private constructor(
    private readonly dir: string | undefined,
    private readonly logger: Logger,
    state: AuditState,
    private readonly fileBytes: number,
    private readonly rotated: number,
  ) {
    this.seq = state.seq;
  }

  /** Opens the trail in `dir` (undefined: memory only) and appends what the state file holds beyond it (recovery). */
  static async open(dir: string | undefined, state: AuditState | undefined, logger: Logger, opts: { fileBytes?: number; rotatedFiles?: number } = {}): Promise<AuditLog> {
    const log = new AuditLog(dir, logger, state ?? { seq: 0, tail: [] }, opts.fileBytes ?? AUDIT_FILE_BYTES, opts.rotatedFiles ?? AUDIT_ROTATED_FILES);
    if (!dir) return log;
    const path = join(dir, AUDIT_FILE);
    const text = await readFile(path, 'utf8').catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw err;
    });
    // A crash in the middle of an append leaves a partial last line: cut it (the state file still has that entry).
    const whole = text.endsWith('\n') || text === '' ? text : text.slice(0, text.lastIndexOf('\n') + 1);
    if (whole.length !== text.length) await truncate(path, Buffer.byteLength(whole));
    log.bytes = Buffer.byteLength(whole);
    const last = parseLines(whole).at(-1)?.seq ?? (await log.lastRotatedSeq());
    log.seq = Math.max(log.seq, last);
    const missing = (state?.tail ?? []).filter((e) => e.seq > last);
    if (missing.length > 0) {
      log.unappended = missing;
      await log.flushAppends();
    }
    return log;
  }

  /** What the state file must carry with the next write: the last number and the entries not yet appended. */
  state(): AuditState {
    return { seq: this.seq, tail: [...this.unappended] };
  }

  /** Numbers the records of one write; they become part of state() until appended. Throws when too many are unappended. */
  stamp(records: readonly AuditRecord[]): AuditEntry[] {
    if (this.unappended.length + records.length > MAX_AUDIT_TAIL) {
      throw new Error(`the audit file ${this.dir ? join(this.dir, AUDIT_FILE) : ''} cannot be written (${this.unappended.length} entries wait for it)`);
    }
    const entries = records.map((r) => ({ seq: ++this.seq, ...r }));
    this.unappended.push(...entries);
    return entries;
  }

  /** Gives back numbers stamped for a write that failed (nothing of it was saved). */
  unstamp(entries: readonly AuditEntry[]): void {
    if (entries.length === 0) return;
    const seqs = new Set(entries.map((e) => e.seq));
    this.unappended = this.unappended.filter((e) => !seqs.has(e.seq));
    this.seq = Math.min(this.seq, entries[0]!.seq - 1);
  }

  /**
   * After the state file holding them is on disk: appends the unappended entries to the audit
   * file and fsyncs it. A failure is logged and they stay in the state file for the next try.
   */
  async flushAppends(): Promise<void> {
    const entries = this.unappended;
    if (entries.length === 0) return;
    if (!this.dir) {
      this.memory.push(...entries);
      if (this.memory.length > MAX_AUDIT_IN_MEMORY) this.memory.splice(0, this.memory.length - MAX_AUDIT_IN_MEMORY);
      this.unappended = [];
      return;
    }
    try {
      if (this.bytes >= this.fileBytes) await this.rotate();
      const text = entries.map((e) => JSON.stringify(e) + '\n').join('');
      const fh = await open(join(this.dir, AUDIT_FILE), 'a', 0o600);
      try {
        await fh.writeFile(text, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      this.bytes += Buffer.byteLength(text);
      this.unappended = this.unappended.slice(entries.length);
    } catch (err: unknown) {
      this.logger.error('could not append to the audit file; its entries stay in the state file', { error: (err as Error).message });
    }
  }

  /** Entries newest first, filtered and paged. */
  async list(q: AuditQuery): Promise<{ entries: AuditEntry[]; more: boolean }> {
    const limit = Math.min(q.limit, MAX_AUDIT_PAGE);
    const out: AuditEntry[] = [];
    const take = (all: readonly AuditEntry[]): boolean => {
      for (let i = all.length - 1; i >= 0; i--) {
        const e = all[i]!;
        if (q.beforeSeq !== undefined && e.seq >= q.beforeSeq) continue;
        if (q.target !== undefined && e.target !== q.target) continue;
        if (out.length === limit) return true;
        out.push(e);
      }
      return false;
    };
    if (take(this.unappended)) return { entries: out, more: true };
    if (!this.dir) return { entries: out, more: take(this.memory) };
    const appendedMax = this.unappended[0]?.seq;
    for (let i = 0; i <= this.rotated; i++) {
      const file = join(this.dir, i === 0 ? AUDIT_FILE : rotatedName(i));
      const text = await readFile(file, 'utf8').catch(() => '');
      const entries = parseLines(text).filter((e) => appendedMax === undefined || e.seq < appendedMax);
      if (take(entries)) return { entries: out, more: true };
    }
    return { entries: out, more: false };
  }

  private async lastRotatedSeq(): Promise<number> {
    if (!this.dir) return 0;
    const text = await readFile(join(this.dir, rotatedName(1)), 'utf8').catch(() => '');
    return parseLines(text).at(-1)?.seq ?? 0;
  }

  /** audit.jsonl becomes audit.1.jsonl, .1 becomes .2, ...; the oldest past AUDIT_ROTATED_FILES is deleted. */
  private async rotate(): Promise<void> {
    const dir = this.dir!;
    await rm(join(dir, rotatedName(this.rotated)), { force: true });
    for (let i = this.rotated - 1; i >= 1; i--) {
      await rename(join(dir, rotatedName(i)), join(dir, rotatedName(i + 1))).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      });
    }
    if (this.rotated >= 1) await rename(join(dir, AUDIT_FILE), join(dir, rotatedName(1)));
    else await rm(join(dir, AUDIT_FILE), { force: true });
    this.bytes = 0;
  }

  /** Bytes in the current audit file (for tests of rotation). */
  get currentBytes(): number {
    return this.bytes;
  }
}

function rotatedName(i: number): string {
  return `audit.${i}.jsonl`;
}

/** The entries of an audit file, oldest first; a line that does not parse is skipped. */
function parseLines(text: string): AuditEntry[] {
  const out: AuditEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      out.push(auditEntrySchema.parse(JSON.parse(line)));
    } catch {
      // A damaged line: the rest of the trail still reads.
    }
  }
  return out;
}
