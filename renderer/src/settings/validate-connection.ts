import type { HostSettingsErrors, HostSettingsInput } from '../../../core/admin/host-settings.js';
import { MAX_NAME_LENGTH, NAME_PATTERN, NAME_RULE } from '../../../core/protocol/name.js';

/** The connection form as typed (strings), before checking. */
export interface ConnectionForm {
  readonly relayUrl: string;
  readonly id: string;
  readonly peerPort: string;
  /** '' keeps the stored credential */
  readonly credential: string;
}

/**
 * The same rules the desktop host applies (core/admin/host-settings.ts checkHostSettings),
 * run as the admin types so every bad field is named at once; the host checks again.
 */
export function validateConnection(f: ConnectionForm, credentialStored: boolean): { ok: true; value: HostSettingsInput } | { ok: false; errors: HostSettingsErrors } {
  const errors: HostSettingsErrors = {};
  const relayUrl = f.relayUrl.trim();
  if (relayUrl !== '') {
    let u: URL | undefined;
    try {
      u = new URL(relayUrl);
    } catch {
      errors.relayUrl = 'Not a URL. Expected something like wss://relay.example.com/v1.';
    }
    if (u && u.protocol !== 'ws:' && u.protocol !== 'wss:') errors.relayUrl = `Must start with ws:// or wss://, not ${u.protocol}//.`;
    else if (u && (u.username || u.password)) errors.relayUrl = 'Must not carry a user or password; use the credential field.';
  }
  const id = f.id.trim();
  if (id === '') errors.id = 'Required: the contact point id the relay knows (e.g. acme-hq).';
  else if (id.length > MAX_NAME_LENGTH) errors.id = `At most ${MAX_NAME_LENGTH} characters.`;
  else if (!NAME_PATTERN.test(id)) errors.id = `${NAME_RULE.charAt(0).toUpperCase()}${NAME_RULE.slice(1)}.`;
  const portText = f.peerPort.trim();
  const port = Number(portText);
  if (portText === '' || !/^\d+$/.test(portText) || port > 65_535) errors.peerPort = 'A whole number from 0 (any free port) to 65535.';
  const credential = f.credential;
  if (credential !== '' && /\s/.test(credential)) errors.credential = 'Must not contain spaces or line breaks.';
  else if (credential.length > 512) errors.credential = 'At most 512 characters.';
  else if (relayUrl !== '' && credential === '' && !credentialStored) errors.credential = 'Required for a relay: the secret from `contact-point relay credential add`.';
  if (Object.keys(errors).length > 0) return { ok: false, errors };
  return { ok: true, value: { relayUrl, id, peerPort: port, ...(credential !== '' ? { credential } : {}) } };
}
