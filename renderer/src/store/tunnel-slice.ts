import type { DirectView, TunnelView } from '../../../core/admin/contract.js';
import type { AppStore } from './app-store';

export interface TunnelSlice {
  readonly tunnel: TunnelView | undefined;
  /** states seen, newest last (for the dashboard's short history) */
  readonly tunnelLog: readonly { readonly at: number; readonly state: TunnelView['state']; readonly detail: string | undefined }[];
  readonly reconnectBusy: boolean;
  /** direct mode's listener and sessions, beside the tunnel (undefined: direct mode is off) */
  readonly direct: DirectView | undefined;
}

/** Entries kept in the tunnel's state log. */
export const TUNNEL_LOG_SIZE = 20;

export function initialTunnel(): TunnelSlice {
  return { tunnel: undefined, tunnelLog: [], reconnectBusy: false, direct: undefined };
}

/** Records a tunnel status; a new state goes in the log at the time the contact point says it began, not when this page heard of it. */
export function tunnelStatus(store: AppStore, t: TunnelView): void {
  const s = store.getState();
  const last = s.tunnelLog.at(-1);
  const log = last?.state === t.state ? s.tunnelLog : [...s.tunnelLog, { at: t.stateSince, state: t.state, detail: t.lastError }].slice(-TUNNEL_LOG_SIZE);
  store.setState({ tunnel: t, tunnelLog: log });
}

/** Direct mode's listener and sessions (from the snapshot, where absent means off, and the direct:status event). */
export function directStatus(store: AppStore, d: DirectView | undefined): void {
  store.setState({ direct: d });
}

export function setReconnectBusy(store: AppStore, busy: boolean): void {
  store.setState({ reconnectBusy: busy });
}
