import { isValidName } from './name.js';

/**
 * Addresses read like mail: `printer@acme-hq` is peer `printer` behind contact point `acme-hq`;
 * external peers live in the relay's own domain (`alice@relay` by default). Both parts are
 * names (core/protocol/name.ts).
 */
export interface Address {
  readonly name: string;
  readonly domain: string;
}

/** The name checks, for callers that deal in addresses. */
export { isValidName, nameProblem } from './name.js';

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
