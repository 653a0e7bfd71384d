import { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION } from './frames.js';

/** Highest version both sides speak, or undefined when the ranges do not meet. */
export function negotiateVersion(offered: { min: number; max: number }): number | undefined {
  const v = Math.min(offered.max, PROTOCOL_VERSION);
  return v >= Math.max(offered.min, MIN_PROTOCOL_VERSION) ? v : undefined;
}

export const OFFERED_VERSIONS = { min: MIN_PROTOCOL_VERSION, max: PROTOCOL_VERSION } as const;

/** The ws path every client connects to at a relay (the version of its protocol family). */
export const RELAY_PATH = '/v1';
