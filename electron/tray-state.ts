import type { TunnelView } from '../core/admin/contract.js';

export type TrayIcon = 'connected' | 'reconnecting' | 'offline';

/** The tray's picture (colour) and tooltip for a tunnel status. */
export function trayLook(t: TunnelView | undefined, now = Date.now()): { icon: TrayIcon; tooltip: string } {
  if (!t) return { icon: 'offline', tooltip: 'Contact Point — starting' };
  switch (t.state) {
    case 'connected':
      return { icon: 'connected', tooltip: `Contact Point — tunnel connected (${t.peersServed} peer${t.peersServed === 1 ? '' : 's'} served)` };
    case 'connecting':
      return { icon: 'reconnecting', tooltip: 'Contact Point — connecting to the relay' };
    case 'reconnecting': {
      const wait = t.nextRetryAt !== undefined ? ` in ${Math.max(0, Math.ceil((t.nextRetryAt - now) / 1000))} s` : '';
      return { icon: 'reconnecting', tooltip: `Contact Point — reconnecting${wait}${t.lastError ? `: ${t.lastError}` : ''}` };
    }
    case 'offline':
      return { icon: 'offline', tooltip: `Contact Point — offline${t.lastError ? `: ${t.lastError}` : ''}` };
  }
}
