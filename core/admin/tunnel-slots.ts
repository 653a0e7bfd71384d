import type { TunnelSlotView, TunnelView } from './contract.js';

/**
 * One of a contact point's two tunnels in a line (issue 12): its slot, state, relay node and
 * URL, and why it is not up (or left a node). For `status`, serve's banner and the GUI.
 */
export function tunnelSlotText(s: TunnelSlotView): string {
  return `tunnel ${s.slot}: ${s.state}${s.node !== undefined ? ` to node ${s.node}` : ''}, ${s.relayUrl}${s.note !== undefined ? `; ${s.note}` : ''}`;
}

/** A line per tunnel with two or more relay URLs; none with one. */
export function tunnelSlotLines(t: TunnelView): string[] {
  return (t.tunnels ?? []).map(tunnelSlotText);
}
