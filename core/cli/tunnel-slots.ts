import type { TunnelView } from '../admin/contract.js';

/**
 * A contact point with two relay URLs holds two tunnels (issue 12): one line each, its slot,
 * state, relay node and URL, and why it is not up (or left a node). None with one relay URL.
 */
export function tunnelSlotLines(t: TunnelView): string[] {
  return (t.tunnels ?? []).map((s) => `tunnel ${s.slot}: ${s.state}${s.node !== undefined ? ` to node ${s.node}` : ''}, ${s.relayUrl}${s.note !== undefined ? `; ${s.note}` : ''}`);
}
