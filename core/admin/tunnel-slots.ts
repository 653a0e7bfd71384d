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

/** A bound in whole seconds, rounded up (29.5 s reads "30 s", never less than it is). */
function boundText(ms: number): string {
  const s = Math.ceil(ms / 1000);
  return s < 120 ? `${s} s` : `${Math.ceil(s / 60)} min`;
}

/**
 * The tunnel's keepalive (PROTOCOL.md 12): what the relay took up and how soon a dead tunnel is
 * noticed. For `status` and the GUI's Tunnel page.
 */
export function keepaliveText(t: TunnelView): string {
  const every = `ping every ${boundText(t.keepaliveMs)}`;
  const k = t.keepalive;
  if (!k) return every;
  const mode = k.mode === 'heartbeat' ? 'heartbeat from the relay' : k.mode === 'adaptive' ? 'adaptive pings' : every;
  const within = k.noticeBusyMs === k.noticeIdleMs ? `within ${boundText(k.noticeIdleMs)}` : `within ${boundText(k.noticeIdleMs)} idle, ${boundText(k.noticeBusyMs)} with messages waiting`;
  return `${mode} · a dead tunnel is noticed ${within}`;
}
