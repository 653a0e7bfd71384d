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

/**
 * Addresses parsed lately, and what they parsed to (null: not an address). Every message is
 * parsed at several hops for the same few addresses, so most calls are a lookup. Bounded: when
 * full it is emptied and fills again.
 */
export const PARSED_ADDRESSES_KEPT = 4096;
const parsed = new Map<string, Address | null>();

/** `name@domain` split and checked, or undefined when `text` is not an address. The result is frozen (it is shared). */
export function parseAddress(text: string): Address | undefined {
  const known = parsed.get(text);
  if (known !== undefined) return known ?? undefined;
  const address = parse(text);
  if (parsed.size >= PARSED_ADDRESSES_KEPT) parsed.clear();
  parsed.set(text, address ?? null);
  return address;
}

function parse(text: string): Address | undefined {
  const at = text.indexOf('@');
  if (at <= 0 || at !== text.lastIndexOf('@')) return undefined;
  const name = text.slice(0, at);
  const domain = text.slice(at + 1);
  return isValidName(name) && isValidName(domain) ? Object.freeze({ name, domain }) : undefined;
}

export function formatAddress(name: string, domain: string): string {
  return `${name}@${domain}`;
}
