import type { FloodView } from './contract.js';

/**
 * The one line a registration flood is shown as, in the GUI's Peers view and by
 * `contact-point peers` / `status`: how many requests the flood limits dropped, from where,
 * over how long. Undefined when there is none. Pure: the renderer imports it too.
 */
export function floodNotice(flood: FloodView | undefined, now: number): string | undefined {
  if (!flood || flood.dropped === 0 || flood.since === undefined) return undefined;
  const first = flood.sources[0]?.address ?? 'unknown';
  const others = flood.sources.length - 1 + flood.otherSources;
  const from = others > 0 ? `${first} and ${others} other address${others === 1 ? '' : 'es'}` : first;
  const minutes = Math.max(1, Math.ceil((now - flood.since) / 60_000));
  const n = flood.dropped;
  return `${n} registration request${n === 1 ? '' : 's'} from ${from} ${n === 1 ? 'was' : 'were'} dropped in the last ${minutes === 1 ? 'minute' : `${minutes} minutes`} (flood limit)`;
}
