/**
 * Settings that belong to the HOST of a contact point, not to the contact point itself: which
 * relay it tunnels to, under which id and credential, and on which peer port. Changing them
 * means building a new ContactPoint, which only the host can do. The desktop app (Electron
 * main) implements this and exposes it next to the admin contract on `window.contactPoint`;
 * in headless mode the same values come from `contact-point serve` flags, so a browser has no
 * settings API and the GUI shows them read-only.
 *
 * Plain TypeScript, no Node imports: the renderer imports its types, Electron main its checks.
 */
import { MAX_NAME_LENGTH, NAME_PATTERN, NAME_RULE } from '../protocol/name.js';
import type { AdminApi } from './contract.js';

export interface HostSettingsView {
  /** '' when the desktop app runs its own embedded demo relay (nothing configured yet) */
  readonly relayUrl: string;
  readonly id: string;
  /** 0 = any free port */
  readonly peerPort: number;
  /** whether a credential is stored (the secret itself never leaves the main process) */
  readonly credentialSet: boolean;
  /** how the credential is kept: `os-keychain` (Electron safeStorage) or `plain` when the OS has none */
  readonly credentialStorage: 'os-keychain' | 'plain' | 'none';
}

export interface HostSettingsInput {
  readonly relayUrl: string;
  readonly id: string;
  readonly peerPort: number;
  /** a new credential; omitted keeps the stored one */
  readonly credential?: string;
}

export type HostSettingsField = 'relayUrl' | 'id' | 'peerPort' | 'credential';
export type HostSettingsErrors = Partial<Record<HostSettingsField, string>>;

/** A save either applies (and the host restarts its contact point) or names the bad fields. */
export type HostSettingsResult = { readonly ok: true; readonly settings: HostSettingsView } | { readonly ok: false; readonly errors: HostSettingsErrors };

export interface HostSettingsApi {
  get(): Promise<HostSettingsView>;
  save(input: HostSettingsInput): Promise<HostSettingsResult>;
}

/** IPC channels of the host settings (`area:verb`, like the admin calls). */
export const HOST_SETTINGS_CHANNELS = { get: 'settings:get', save: 'settings:save' } as const;

/**
 * What the desktop preload puts on `window.contactPoint`: the admin contract, plus the host's
 * settings. A browser client is the same object without `settings`.
 */
export interface ContactPointBridge extends AdminApi {
  readonly settings?: HostSettingsApi;
}

/** Longest credential secret accepted from the settings form. */
export const MAX_CREDENTIAL_LENGTH = 512;

/**
 * Validates a settings form as a whole (frp-style: every bad field named at once). Returns the
 * clean input, or the errors keyed by field. An empty relay URL means the embedded demo relay.
 */
export function checkHostSettings(raw: unknown): { ok: true; value: HostSettingsInput } | { ok: false; errors: HostSettingsErrors } {
  const errors: HostSettingsErrors = {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, errors: { relayUrl: 'settings must be an object' } };
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r)) {
    if (!['relayUrl', 'id', 'peerPort', 'credential'].includes(k)) return { ok: false, errors: { relayUrl: `unknown setting ${k}` } };
  }
  const relayUrl = typeof r.relayUrl === 'string' ? r.relayUrl.trim() : '';
  if (typeof r.relayUrl !== 'string') errors.relayUrl = 'must be text';
  else if (relayUrl !== '') {
    let u: URL | undefined;
    try {
      u = new URL(relayUrl);
    } catch {
      errors.relayUrl = 'not a URL; expected something like wss://relay.example.com/v1';
    }
    if (u && u.protocol !== 'ws:' && u.protocol !== 'wss:') errors.relayUrl = `must start with ws:// or wss://, not ${u.protocol}//`;
    else if (u && (u.username || u.password)) errors.relayUrl = 'must not carry a user or password; use the credential field';
  }
  const id = typeof r.id === 'string' ? r.id.trim() : '';
  if (typeof r.id !== 'string' || id === '') errors.id = 'is required';
  else if (id.length > MAX_NAME_LENGTH) errors.id = `must have at most ${MAX_NAME_LENGTH} characters`;
  else if (!NAME_PATTERN.test(id)) errors.id = NAME_RULE;
  const peerPort = r.peerPort;
  if (typeof peerPort !== 'number' || !Number.isInteger(peerPort) || peerPort < 0 || peerPort > 65_535) errors.peerPort = 'must be a whole number from 0 (any free port) to 65535';
  let credential: string | undefined;
  if (r.credential !== undefined) {
    if (typeof r.credential !== 'string') errors.credential = 'must be text';
    else if (r.credential.length > MAX_CREDENTIAL_LENGTH) errors.credential = `must have at most ${MAX_CREDENTIAL_LENGTH} characters`;
    else if (/\s/.test(r.credential)) errors.credential = 'must not contain spaces or line breaks';
    else credential = r.credential;
  }
  if (relayUrl !== '' && credential === '') errors.credential = 'is required for a relay';
  if (Object.keys(errors).length > 0) return { ok: false, errors };
  return { ok: true, value: { relayUrl, id, peerPort: peerPort as number, ...(credential !== undefined ? { credential } : {}) } };
}
