import { readFile } from 'node:fs/promises';
import { AdminError } from '../core/admin/contract.js';
import { ioReason, writeJsonAtomic } from '../core/runtime/json-file.js';
import { checkHostSettings, type HostSettingsErrors, type HostSettingsInput, type HostSettingsView } from '../core/admin/host-settings.js';

/**
 * The desktop app's own settings: which relay, which id, the credential and the peer port, in
 * `settings.json` in Electron's userData folder. The credential is encrypted with the OS
 * keychain (Electron safeStorage) when the OS has one; the file never holds it in clear
 * otherwise unless the OS offers no keychain at all, and the GUI says which.
 */

/** What encrypts the credential: Electron's safeStorage in the app, a stand-in in tests. */
export interface SecretBox {
  available(): boolean;
  encrypt(plain: string): Buffer;
  decrypt(sealed: Buffer): string;
}

type StoredCredential = { readonly scheme: 'os-keychain'; readonly data: string } | { readonly scheme: 'plain'; readonly data: string };

interface StoredSettings {
  readonly version: 1;
  readonly relayUrl: string;
  readonly id: string;
  readonly peerPort: number;
  readonly credential?: StoredCredential;
}

/** Everything the host needs to build its contact point. */
export interface DesktopSettings {
  readonly relayUrl: string;
  readonly id: string;
  readonly peerPort: number;
  readonly credential: string | undefined;
  readonly credentialStorage: HostSettingsView['credentialStorage'];
}

/** Peer port with nothing configured: the same as `contact-point start`, so LAN peers find it again after a restart. */
export const DEFAULT_PEER_PORT = 7901;

/** With nothing configured: the embedded demo relay and contact point `demo`. */
export const DEFAULT_SETTINGS: DesktopSettings = { relayUrl: '', id: 'demo', peerPort: DEFAULT_PEER_PORT, credential: undefined, credentialStorage: 'none' };

export class SettingsStore {
  private current: DesktopSettings = DEFAULT_SETTINGS;
  /** saves, one at a time: each reads the settings the one before left */
  private saving: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly file: string,
    private readonly box: SecretBox,
  ) {}

  get settings(): DesktopSettings {
    return this.current;
  }

  view(): HostSettingsView {
    const s = this.current;
    return { relayUrl: s.relayUrl, id: s.id, peerPort: s.peerPort, credentialSet: s.credential !== undefined, credentialStorage: s.credentialStorage };
  }

  /** Reads the file; a missing file is the first run, a broken one is reported and replaced by defaults. */
  async load(): Promise<{ ok: true } | { ok: false; problem: string }> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ok: true };
      return { ok: false, problem: `cannot read ${this.file}: ${(err as Error).message}` };
    }
    try {
      const raw = JSON.parse(text) as StoredSettings;
      const checked = checkHostSettings({ relayUrl: raw.relayUrl, id: raw.id, peerPort: raw.peerPort });
      if (!checked.ok) return { ok: false, problem: `${this.file}: ${Object.values(checked.errors).join('; ')}` };
      let credential: string | undefined;
      if (raw.credential?.scheme === 'os-keychain') credential = this.box.decrypt(Buffer.from(raw.credential.data, 'base64'));
      else if (raw.credential?.scheme === 'plain') credential = raw.credential.data;
      this.current = { ...checked.value, credential, credentialStorage: raw.credential?.scheme ?? 'none' };
      return { ok: true };
    } catch (err: unknown) {
      return { ok: false, problem: `${this.file} is not valid settings: ${(err as Error).message}` };
    }
  }

  /**
   * Validates a change from the GUI as a whole and, when good, writes it (atomically and
   * durably, mode 0600) before it becomes the current settings. The credential is kept when the
   * form leaves it out. Saves run one at a time. A write that fails rejects with NOT_SAVED and
   * the reason, and the settings stay as they were (and as the file says).
   */
  save(input: unknown): Promise<{ ok: true; settings: DesktopSettings } | { ok: false; errors: HostSettingsErrors }> {
    const run = this.saving.then(() => this.saveNow(input));
    this.saving = run.catch(() => undefined);
    return run;
  }

  private async saveNow(input: unknown): Promise<{ ok: true; settings: DesktopSettings } | { ok: false; errors: HostSettingsErrors }> {
    const checked = checkHostSettings(input);
    if (!checked.ok) return checked;
    const v: HostSettingsInput = checked.value;
    const credential = v.credential ?? this.current.credential;
    if (v.relayUrl !== '' && !credential) return { ok: false, errors: { credential: 'is required for a relay: the secret from `contact-point relay credential add`' } };
    let stored: StoredCredential | undefined;
    let storage: DesktopSettings['credentialStorage'] = 'none';
    if (credential !== undefined) {
      if (this.box.available()) {
        stored = { scheme: 'os-keychain', data: this.box.encrypt(credential).toString('base64') };
        storage = 'os-keychain';
      } else {
        stored = { scheme: 'plain', data: credential };
        storage = 'plain';
      }
    }
    const file: StoredSettings = { version: 1, relayUrl: v.relayUrl, id: v.id, peerPort: v.peerPort, ...(stored ? { credential: stored } : {}) };
    try {
      await writeJsonAtomic(this.file, file, 0o600);
    } catch (err: unknown) {
      throw new AdminError('NOT_SAVED', `nothing changed: could not save ${this.file}: ${ioReason(err)}`);
    }
    this.current = { relayUrl: v.relayUrl, id: v.id, peerPort: v.peerPort, credential, credentialStorage: storage };
    return { ok: true, settings: this.current };
  }
}
