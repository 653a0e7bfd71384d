import { unwatchFile, watchFile } from 'node:fs';
import { join } from 'node:path';
import { isValidName } from '../protocol/address.js';
import { list, obj, oneOf, optional, str, type Infer, int } from '../protocol/schema.js';
import { readJson, writeJsonAtomic } from '../runtime/json-file.js';
import { hashSecret, newSecret, secretMatches } from '../runtime/secrets.js';

/** Who a credential belongs to: a contact point (by its id) or an external peer (by its name). */
export type CredentialKind = 'contact-point' | 'external';
/** `send`: may send messages; `mediate`: may drive port mediation (port mediation issue). */
export type Right = 'send' | 'mediate';

const recordSchema = obj({
  kind: oneOf(['contact-point', 'external'] as const),
  id: str({ min: 1, max: 63 }),
  hash: str({ min: 64, max: 64, pattern: /^[0-9a-f]+$/ }),
  rights: list(oneOf(['send', 'mediate'] as const), { max: 8 }),
  created: str({ max: 40 }),
  note: optional(str({ max: 256 })),
});
const fileSchema = obj({ version: int({ min: 1, max: 1 }), credentials: list(recordSchema, { max: 1_000_000 }) });

export type CredentialRecord = Infer<typeof recordSchema>;

/** A credential record as the file and the cluster's bucket hold it, checked (throws SchemaError). */
export function parseCredentialRecord(raw: unknown): CredentialRecord {
  return recordSchema.parse(raw);
}

/** Where a replicated store writes (a relay cluster's key-value bucket, cluster-credentials.ts): durable when the promise resolves. */
export interface CredentialWriter {
  put(record: CredentialRecord): Promise<void>;
  remove(kind: CredentialKind, id: string): Promise<void>;
}
export const CREDENTIALS_FILE = 'credentials.json';
const PREFIX: Record<CredentialKind, string> = { 'contact-point': 'cpk', external: 'epk' };
/** Hash compared when no record exists, so a miss costs the same time as a wrong secret. */
const DUMMY_HASH = hashSecret('no such credential');

/**
 * The relay's credential store: one hashed secret per contact point id and per external peer.
 * A secret is shown once, when created, and only its SHA-256 is written (file mode 0600).
 */
export class CredentialStore {
  private readonly records = new Map<string, CredentialRecord>();
  /** records held in memory only (addTransient): never saved, listed or dropped by a reload */
  private readonly transient = new Map<string, CredentialRecord>();
  /** a replicated store's change listeners (watch()) */
  private readonly listeners = new Set<() => void>();

  private constructor(
    private readonly path: string | undefined,
    private readonly writer?: CredentialWriter,
  ) {}

  static inMemory(): CredentialStore {
    return new CredentialStore(undefined);
  }

  /**
   * A store whose records live elsewhere (a relay cluster's bucket): add/remove write through
   * `writer`; what every node sees arrives by applyRemote()/dropRemote(), and watch() listeners
   * hear each change at once.
   */
  static replicated(writer: CredentialWriter): CredentialStore {
    return new CredentialStore(undefined, writer);
  }

  /** A record written by anyone (this process included) reached this replica. */
  applyRemote(record: CredentialRecord): void {
    this.records.set(key(record.kind, record.id), record);
    for (const l of this.listeners) l();
  }

  /** A record was removed, by anyone. */
  dropRemote(kind: CredentialKind, id: string): void {
    if (!this.records.delete(key(kind, id))) return;
    for (const l of this.listeners) l();
  }

  static async open(stateDir: string): Promise<CredentialStore> {
    const store = new CredentialStore(join(stateDir, CREDENTIALS_FILE));
    await store.reload();
    return store;
  }

  /** Re-reads the file (another process, e.g. `relay credential remove`, may have changed it). */
  async reload(): Promise<void> {
    if (!this.path) return;
    const raw = await readJson(this.path);
    const next = new Map<string, CredentialRecord>();
    if (raw !== undefined) {
      let parsed;
      try {
        parsed = fileSchema.parse(raw);
      } catch (err: unknown) {
        throw new Error(`${this.path}: ${(err as Error).message}`, { cause: err });
      }
      for (const r of parsed.credentials) next.set(key(r.kind, r.id), r);
    }
    this.records.clear();
    for (const [k, r] of next) this.records.set(k, r);
  }

  /**
   * Calls `onChange` after the file changed and was re-read (polled every `intervalMs`; a
   * file that fails to parse keeps the last good set). Returns the function that stops it.
   */
  watch(onChange: () => void, intervalMs = 2_000, onError?: (err: Error) => void): () => void {
    if (this.writer) {
      this.listeners.add(onChange);
      return () => void this.listeners.delete(onChange);
    }
    const path = this.path;
    if (!path) return () => undefined;
    const listener = (): void => {
      this.reload().then(onChange, (err: unknown) => onError?.(err as Error));
    };
    watchFile(path, { interval: intervalMs, persistent: false }, listener);
    return () => unwatchFile(path, listener);
  }

  /** The current record for (kind, id), to notice a credential that was removed or replaced. */
  record(kind: CredentialKind, id: string): CredentialRecord | undefined {
    return this.transient.get(key(kind, id)) ?? this.records.get(key(kind, id));
  }

  /**
   * A credential that lives only in this process (a direct-mode contact point's own tunnel to
   * its embedded relay, direct-mode.ts): never written, listed or counted, and a file another
   * process rewrote cannot drop it. Returns its secret; the next call replaces it.
   */
  addTransient(kind: CredentialKind, id: string, rights: Right[] = ['send']): string {
    const secret = newSecret(PREFIX[kind]);
    this.transient.set(key(kind, id), { kind, id, hash: hashSecret(secret), rights, created: new Date().toISOString() });
    return secret;
  }

  /** Creates (or replaces) a credential and returns the secret: the only time it exists in clear. */
  async add(kind: CredentialKind, id: string, rights: Right[] = ['send'], note?: string): Promise<string> {
    if (!isValidName(id)) throw new Error(`id "${id}" may use only a-z, 0-9, ".", "_" and "-" (1-63 characters)`);
    const secret = newSecret(PREFIX[kind]);
    const record: CredentialRecord = { kind, id, hash: hashSecret(secret), rights, created: new Date().toISOString() };
    if (note) record.note = note;
    if (this.writer) await this.writer.put(record);
    this.records.set(key(kind, id), record);
    await this.save();
    return secret;
  }

  async remove(kind: CredentialKind, id: string): Promise<boolean> {
    if (this.writer) {
      if (!this.records.has(key(kind, id))) return false;
      await this.writer.remove(kind, id);
      // The replica may have heard of the removal (dropRemote) before the write was confirmed.
      this.records.delete(key(kind, id));
      return true;
    }
    const removed = this.records.delete(key(kind, id));
    if (removed) await this.save();
    return removed;
  }

  has(kind: CredentialKind, id: string): boolean {
    return this.records.has(key(kind, id));
  }

  /** Credentials of one kind (read by the status and metrics, not on a message path). */
  count(kind: CredentialKind): number {
    let n = 0;
    for (const r of this.records.values()) if (r.kind === kind) n++;
    return n;
  }

  list(): CredentialRecord[] {
    return [...this.records.values()].sort((a, b) => a.kind.localeCompare(b.kind) || a.id.localeCompare(b.id));
  }

  /** The record when `secret` is right for (kind, id); undefined otherwise, in constant time. */
  verify(kind: CredentialKind, id: string, secret: string): CredentialRecord | undefined {
    const record = this.record(kind, id);
    const ok = secretMatches(secret, record?.hash ?? DUMMY_HASH);
    return ok && record ? record : undefined;
  }

  private async save(): Promise<void> {
    if (!this.path) return;
    await writeJsonAtomic(this.path, { version: 1, credentials: this.list() });
  }
}

function key(kind: CredentialKind, id: string): string {
  return `${kind}/${id}`;
}
