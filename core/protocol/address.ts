import { MAX_NAME_LENGTH } from './limits.js';

/**
 * Addresses read like mail: `printer@acme-hq` is peer `printer` behind contact point `acme-hq`;
 * external peers live in the relay's own domain (`alice@relay` by default).
 * Names are lower-case so `Printer` and `printer` can never be two different peers.
 */
const NAME = /^[a-z0-9](?:[a-z0-9._-]{0,62})$/;

export interface Address {
  readonly name: string;
  readonly domain: string;
}

export function isValidName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME.test(name) && !name.includes('..');
}

/** Why a name is not acceptable, or undefined when it is. For CLI and config errors. */
export function nameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.length > MAX_NAME_LENGTH) return `is longer than ${MAX_NAME_LENGTH} characters`;
  if (!isValidName(name)) return 'may use only a-z, 0-9, ".", "_" and "-", starting with a letter or digit';
  return undefined;
}

export function parseAddress(text: string): Address | undefined {
  const at = text.indexOf('@');
  if (at <= 0 || at !== text.lastIndexOf('@')) return undefined;
  const name = text.slice(0, at);
  const domain = text.slice(at + 1);
  return isValidName(name) && isValidName(domain) ? { name, domain } : undefined;
}

export function formatAddress(name: string, domain: string): string {
  return `${name}@${domain}`;
}
