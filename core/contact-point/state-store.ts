import { join } from 'node:path';
import { MAX_HISTORY_DAYS, MAX_HISTORY_ENTRIES } from '../admin/contract.js';
import { int, list, obj, oneOf, optional, str, type Infer } from '../protocol/schema.js';
import { ioReason, readJson, writeJsonAtomic } from '../runtime/json-file.js';
import type { Logger } from '../runtime/logger.js';
import { auditStateSchema, type AuditLog, type AuditRecord } from './audit-log.js';
import { accessStateSchema } from './access-rules.js';
import type { AuditEntry } from '../admin/contract.js';
import { sealStateSchema } from './seal-guard.js';

const peerRecordSchema = obj({
  name: str({ min: 1, max: 63 }),
  publicKey: str({ min: 1, max: 128 }),
  state: oneOf(['unregistered', 'pending', 'registered', 'revoked'] as const),
  admittedBy: optional(str({ max: 128 })),
  firstSeen: int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  lastSeen: int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  lanAddress: optional(str({ max: 64 })),
  decidedAt: optional(int({ min: 0, max: Number.MAX_SAFE_INTEGER })),
  messagesIn: int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  messagesOut: int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  /** the admin surface of the last admin decision (absent: none yet, or the policy's) */
  decidedVia: optional(oneOf(['gui', 'cli', 'api'] as const)),
  /** when the peer last asked to be registered */
  requestedAt: optional(int({ min: 0, max: Number.MAX_SAFE_INTEGER })),
  /** its X25519 sealing key (raw, base64), signed by its identity at hello; absent: it does not seal */
  sealKey: optional(str({ min: 1, max: 48 })),
});
const stateSchema = obj({
  version: int({ min: 1, max: 1 }),
  peers: list(peerRecordSchema, { max: 1_000_000 }),
  policy: obj({
    subnets: list(str({ max: 49 }), { max: 64 }),
    joinCodeHash: optional(str({ min: 64, max: 64 })),
  }),
  /** port mediation allowlists (absent in files from before port mediation: nothing allowed) */
  ports: optional(obj({ targets: list(str({ max: 80 }), { max: 256 }), listen: list(str({ max: 80 }), { max: 256 }) })),
  /** how much message history to keep (absent: the defaults, DEFAULT_HISTORY_RETENTION) */
  history: optional(obj({ entries: int({ min: 1, max: MAX_HISTORY_ENTRIES }), days: int({ min: 0, max: MAX_HISTORY_DAYS }) })),
  /**
   * The audit trail's part of the state (core/contact-point/audit-log.ts): the last entry's
   * number and the entries not yet in audit.jsonl, so a decision and its entry are saved in one
   * write (absent in files from before the audit trail).
   */
  audit: optional(auditStateSchema),
  /** sealed payloads (core/contact-point/seal-guard.ts; absent in files from before: nothing required, nothing bound) */
  seal: optional(sealStateSchema),
  /** access rules and the content check (core/contact-point/access-rules.ts; absent: none) */
  access: optional(accessStateSchema),
});

export type PeerRecord = Infer<typeof peerRecordSchema>;
export type PersistedState = Infer<typeof stateSchema>;
export const STATE_FILE = 'contact-point.json';
/** Counter and last-seen updates are coalesced: at most one write every SAVE_DELAY_MS, and one at stop. Decisions are written at once. */
export const SAVE_DELAY_MS = 200;
/**
 * ...or every SAVE_PACE times as long as the last write took, when that is longer: the whole
 * file is written each time (tens of ms at thousands of peers), so while thousands of peers
 * say hello the bookkeeping writes take at most about a fifth of the time instead of most of it.
 */
export const SAVE_PACE = 4;
/** The longest a bookkeeping change waits for its write however slow the last one was. */
export const SAVE_DELAY_MAX_MS = 5_000;

/** How long bookkeeping changes are coalesced after a write that took `lastWriteMs`. */
export function bookkeepingDelayMs(lastWriteMs: number): number {
  return Math.min(SAVE_DELAY_MAX_MS, Math.max(SAVE_DELAY_MS, Math.ceil(SAVE_PACE * lastWriteMs)));
}

export function emptyState(): PersistedState {
  return { version: 1, peers: [], policy: { subnets: [] } };
}

/** A decision could not be written: nothing was applied. */
export class StateSaveError extends Error {
  override readonly name = 'StateSaveError';
  constructor(
    readonly path: string,
    cause: unknown,
  ) {
    super(`could not save ${path}: ${ioReason(cause)}`, { cause });
  }
}

/** A decision came after close(): nothing was applied. */
export class StateClosedError extends Error {
  override readonly name = 'StateClosedError';
}

/**
 * The state file as it will be once the decisions of one write are made: each decision checks
 * itself against it (so it sees the decisions queued before it) and writes its change into it.
 */
export class StateDraft {
  /** by name, in the file's order */
  readonly peers: Map<string, PeerRecord>;
  policy: PersistedState['policy'];
  ports: PersistedState['ports'];
  history: PersistedState['history'];
  seal: PersistedState['seal'];
  access: PersistedState['access'];

  constructor(state: PersistedState) {
    this.peers = new Map(state.peers.map((p) => [p.name, { ...p }]));
    this.policy = state.policy;
    this.ports = state.ports;
    this.history = state.history;
    this.seal = state.seal;
    this.access = state.access;
  }

  state(): PersistedState {
    return {
      version: 1,
      peers: [...this.peers.values()],
      policy: this.policy,
      ...(this.ports ? { ports: this.ports } : {}),
      ...(this.history ? { history: this.history } : {}),
      ...(this.seal ? { seal: this.seal } : {}),
      ...(this.access ? { access: this.access } : {}),
    };
  }
}

/**
 * A decision checked and written into the draft, not yet applied: how to apply it in memory
 * once the draft is on disk, and how to give up on it if the write fails.
 */
export interface Decision<T> {
  apply(): T;
  abandon?(): void;
  /** the audit entry of this decision, saved in the same write (decisions the host makes itself at start have none) */
  readonly audit?: AuditRecord;
}

interface Queued {
  plan(draft: StateDraft): Decision<unknown>;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/**
 * The contact point's versioned state file (peers and their decisions, policy, port policy).
 * Every write is atomic and durable (temp file, fsync, rename, fsync of the folder) and all
 * writes go through one queue, in order. Two kinds of change:
 *
 * - decisions (commit): written at once; the change is applied in memory only after the file
 *   is on disk, so a caller told "done" keeps its decision across a crash, and a failed write
 *   leaves memory as it was, equal to the file. Decisions that queue up while a write is under
 *   way go to disk together in the next one (group commit), each checked in its turn;
 * - bookkeeping (changed: last seen, LAN address, new unregistered records): coalesced into
 *   one write within SAVE_DELAY_MS (longer when the last write took long: bookkeepingDelayMs());
 *   a failed one is logged and retried with the next change.
 *
 * A newer `version` than this build knows is refused rather than overwritten, so a downgrade
 * cannot silently lose decisions.
 */
export class StateStore {
  private timer: NodeJS.Timeout | undefined;
  /** the write queue; never rejects */
  private writing: Promise<void> = Promise.resolve();
  private dirty = false;
  private closed = false;
  /** decisions waiting for the next write */
  private queue: Queued[] = [];
  /** how long the last write took (ms), for bookkeepingDelayMs() */
  private lastWriteMs = 0;

  private constructor(
    private readonly path: string | undefined,
    private readonly snapshot: () => PersistedState,
    private readonly logger: Logger,
    private readonly audit: AuditLog | undefined,
    private readonly onAudit: (e: AuditEntry) => void,
  ) {}

  static async load(stateDir: string | undefined): Promise<PersistedState> {
    if (!stateDir) return emptyState();
    const path = join(stateDir, STATE_FILE);
    const raw = await readJson(path);
    if (raw === undefined) return emptyState();
    const version = (raw as { version?: unknown }).version;
    if (typeof version === 'number' && version > 1) {
      throw new Error(`${path} was written by a newer contact point (state version ${version}); this one reads version 1`);
    }
    try {
      return stateSchema.parse(raw);
    } catch (err: unknown) {
      throw new Error(`${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * `audit`: the audit trail, whose part of the state every write carries; `onAudit` hears each
   * entry once its decision is saved and applied.
   */
  static create(stateDir: string | undefined, snapshot: () => PersistedState, logger: Logger, audit?: AuditLog, onAudit: (e: AuditEntry) => void = () => undefined): StateStore {
    return new StateStore(stateDir ? join(stateDir, STATE_FILE) : undefined, snapshot, logger, audit, onAudit);
  }

  /** What is written: the owner's state and the audit trail's part. */
  private full(state: PersistedState): PersistedState {
    return this.audit ? { ...state, audit: this.audit.state() } : state;
  }

  /**
   * The owner stops: write what changed, and save nothing after. Sessions that close while a
   * contact point stops would otherwise schedule a write after stop() returned, into a state
   * directory that may be going away (seen as ENOTEMPTY when a test removed it).
   */
  close(): Promise<void> {
    this.closed = true;
    return this.flush();
  }

  /** Note a bookkeeping change; it is written within bookkeepingDelayMs() (SAVE_DELAY_MS for a small file; not at all after close). */
  changed(): void {
    if (!this.path || this.closed) return;
    this.dirty = true;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, bookkeepingDelayMs(this.lastWriteMs));
  }

  /** writeJsonAtomic, timed for the bookkeeping pace. */
  private async write(path: string, state: PersistedState): Promise<void> {
    const t = performance.now();
    try {
      await writeJsonAtomic(path, state);
    } finally {
      this.lastWriteMs = performance.now() - t;
    }
  }

  /** Write now if anything changed; resolves when the file is on disk (or the write failed and was logged). */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.path || !this.dirty) return this.writing;
    this.dirty = false;
    const path = this.path;
    // The snapshot is taken when the write's turn comes, so it holds every decision applied before it.
    this.writing = this.writing
      .then(() => this.write(path, this.full(this.snapshot())))
      .catch((err: unknown) => {
        this.dirty = true;
        this.logger.error('could not save state', { path, error: (err as Error).message });
      });
    return this.writing;
  }

  /**
   * A decision. When every earlier write is done, `plan` checks the change against a draft of
   * the state (memory now, plus the decisions queued before it) and writes it into the draft; it
   * may throw, and then only this decision fails. The draft is written and fsynced, and only
   * then is each decision applied in memory, in order, before any later write starts. Resolves
   * with what apply() returned; rejects with StateSaveError (nothing applied, memory still
   * equals the file) when the write fails, or StateClosedError after close().
   */
  commit<T>(plan: (draft: StateDraft) => Decision<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ plan, resolve: resolve as (v: unknown) => void, reject });
      // One write step takes every decision queued by the time its turn comes.
      if (this.queue.length === 1) this.writing = this.writing.then(() => this.writeDecisions());
    });
  }

  private async writeDecisions(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    if (this.closed) {
      for (const q of batch) q.reject(new StateClosedError('the contact point is stopping; nothing was changed'));
      return;
    }
    const draft = new StateDraft(this.snapshot());
    const planned: { q: Queued; d: Decision<unknown> }[] = [];
    for (const q of batch) {
      try {
        planned.push({ q, d: q.plan(draft) });
      } catch (err: unknown) {
        q.reject(err);
      }
    }
    if (planned.length === 0) return;
    let entries: AuditEntry[];
    try {
      entries = this.audit?.stamp(planned.flatMap((p) => (p.d.audit ? [p.d.audit] : []))) ?? [];
    } catch (err: unknown) {
      const failure = new StateSaveError(this.path ?? 'the audit trail', err);
      for (const p of planned) {
        p.d.abandon?.();
        p.q.reject(failure);
      }
      return;
    }
    if (this.path) {
      // This write carries every bookkeeping change made so far, too.
      clearTimeout(this.timer);
      this.timer = undefined;
      this.dirty = false;
      try {
        await this.write(this.path, this.full(draft.state()));
      } catch (err: unknown) {
        this.audit?.unstamp(entries);
        const failure = new StateSaveError(this.path, err);
        for (const p of planned) {
          p.d.abandon?.();
          p.q.reject(failure);
        }
        // Bring the file back to what memory holds with the next write (a rename that
        // happened before a failed folder fsync would otherwise linger).
        this.changed();
        return;
      }
    }
    // The entries are in the state file now; the audit file gets them before any caller hears "done".
    await this.audit?.flushAppends();
    const quiet = !this.dirty && this.timer === undefined;
    for (const p of planned) {
      try {
        p.q.resolve(p.d.apply());
      } catch (err: unknown) {
        p.q.reject(err);
      }
    }
    for (const e of entries) this.onAudit(e);
    if (quiet) {
      // What the decisions changed is what was just written: no second write for it.
      clearTimeout(this.timer);
      this.timer = undefined;
      this.dirty = false;
    }
  }
}
