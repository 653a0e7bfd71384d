import { fingerprint, normalizeFingerprint } from '../protocol/key-statement.js';
import { SealError } from '../protocol/seal.js';
import { Status } from '../protocol/status.js';
import { readJson, writeJsonAtomic } from '../runtime/json-file.js';

/**
 * The contact point keys a peer trusts, by contact point id: pinned by the user (`--pin`, the
 * fingerprint the admin handed over with the credential) or, failing that, the first key seen
 * (trust on first use), kept in a file (mode 0600) so that a later change fails loudly with
 * KEY_CHANGED instead of being trusted.
 */
export class KeyPins {
  private constructor(
    private readonly path: string | undefined,
    private readonly pins: Map<string, string>,
    private readonly explicit: ReadonlyMap<string, string>,
  ) {}

  /** `explicit`: contact point id -> fingerprint; a malformed one throws here. */
  static async open(path: string | undefined, explicit: Readonly<Record<string, string>> = {}): Promise<KeyPins> {
    const given = new Map<string, string>();
    for (const [domain, text] of Object.entries(explicit)) {
      const fp = normalizeFingerprint(text);
      if (!fp) throw new Error(`"${text}" is not a key fingerprint (64 hex digits)`);
      given.set(domain, fp);
    }
    const stored = new Map<string, string>();
    const raw = path !== undefined ? await readJson(path) : undefined;
    if (raw !== undefined) {
      if (typeof raw !== 'object' || raw === null) throw new Error(`${path} is not a pin file`);
      for (const [domain, fp] of Object.entries(raw as Record<string, unknown>)) {
        const n = typeof fp === 'string' ? normalizeFingerprint(fp) : undefined;
        if (n) stored.set(domain, n);
      }
    }
    return new KeyPins(path, stored, given);
  }

  /** Trust on first use, remembered only while this process runs. */
  static memory(): KeyPins {
    return new KeyPins(undefined, new Map(), new Map());
  }

  /** The fingerprint trusted for contact point `domain`, if any. */
  get(domain: string): string | undefined {
    return this.explicit.get(domain) ?? this.pins.get(domain);
  }

  /**
   * `cpKey` (Ed25519 SPKI base64) speaks for contact point `domain`: it matches the pin, or
   * there is none and it becomes the pin. KEY_CHANGED otherwise.
   */
  async accept(domain: string, cpKey: string): Promise<void> {
    const fp = fingerprint(cpKey);
    const pinned = this.get(domain);
    if (pinned === fp) return;
    if (pinned !== undefined) {
      throw new SealError(
        Status.KEY_CHANGED,
        `contact point ${domain} presented key ${fp}, but ${pinned} is ${this.explicit.has(domain) ? 'pinned (--pin)' : `trusted since first use${this.path ? ` (${this.path})` : ''}`}: refusing it. Ask its admin for the fingerprint (contact-point fingerprint)`,
      );
    }
    this.pins.set(domain, fp);
    if (this.path !== undefined) await writeJsonAtomic(this.path, Object.fromEntries(this.pins), 0o600);
  }
}
