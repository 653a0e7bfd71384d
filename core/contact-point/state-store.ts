import { join } from 'node:path';
import { int, list, obj, oneOf, optional, str, type Infer } from '../protocol/schema.js';
import { readJson, writeJsonAtomic } from '../runtime/json-file.js';
import type { Logger } from '../runtime/logger.js';

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
});

export type PeerRecord = Infer<typeof peerRecordSchema>;
export type PersistedState = Infer<typeof stateSchema>;
export const STATE_FILE = 'contact-point.json';
/** Writes are coalesced: at most one every SAVE_DELAY_MS, and always one at stop. */
export const SAVE_DELAY_MS = 200;

export function emptyState(): PersistedState {
  return { version: 1, peers: [], policy: { subnets: [] } };
}

/**
 * The contact point's versioned state file (peers and their decisions, policy). Saves are
 * atomic and coalesced; a newer `version` than this build knows is refused rather than
 * overwritten, so a downgrade cannot silently lose decisions.
 */
export class StateStore {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private dirty = false;
  private closed = false;

  private constructor(
    private readonly path: string | undefined,
    private readonly snapshot: () => PersistedState,
    private readonly logger: Logger,
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

  static create(stateDir: string | undefined, snapshot: () => PersistedState, logger: Logger): StateStore {
    return new StateStore(stateDir ? join(stateDir, STATE_FILE) : undefined, snapshot, logger);
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

  /** Note a change; it is written within SAVE_DELAY_MS (not at all after close). */
  changed(): void {
    if (!this.path || this.closed) return;
    this.dirty = true;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, SAVE_DELAY_MS);
  }

  /** Write now if anything changed; resolves when the file is on disk. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.path || !this.dirty) return this.writing;
    this.dirty = false;
    const path = this.path;
    const state = this.snapshot();
    this.writing = this.writing
      .then(() => writeJsonAtomic(path, state))
      .catch((err: unknown) => {
        this.dirty = true;
        this.logger.error('could not save state', { path, error: (err as Error).message });
      });
    return this.writing;
  }
}
