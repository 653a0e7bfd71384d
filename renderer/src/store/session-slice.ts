import type { ContactPointInfo, PolicyView } from '../../../core/admin/contract.js';
import type { HostSettingsView } from '../../../core/admin/host-settings.js';
import type { ConnectionStatus } from '../api/gui-api';
import type { AppStore } from './app-store';

export type ViewName = 'peers' | 'flow' | 'tunnel' | 'ports' | 'audit' | 'settings';

export interface Notice {
  readonly id: number;
  readonly kind: 'ok' | 'error';
  readonly text: string;
  /** when it was raised (ms since epoch): an ok notice fades NOTICE_MS after this, however many come after it */
  readonly at: number;
}

/** The GUI's session with the contact point: connection, identity, policy, host settings, UI. */
export interface SessionSlice {
  readonly connection: ConnectionStatus;
  readonly contactPoint: ContactPointInfo | undefined;
  readonly policy: PolicyView | undefined;
  /** undefined where the host has no settings API (browser) or before it answered */
  readonly hostSettings: HostSettingsView | undefined;
  readonly view: ViewName;
  /** the peer whose page the Peers view shows instead of the table; undefined: the table */
  readonly peerPage: string | undefined;
  readonly notices: readonly Notice[];
}

/** Notices shown at once; older ones drop off. */
export const MAX_NOTICES = 4;

export function initialSession(): SessionSlice {
  return { connection: { state: 'connecting' }, contactPoint: undefined, policy: undefined, hostSettings: undefined, view: 'peers', peerPage: undefined, notices: [] };
}

export function setConnection(store: AppStore, connection: ConnectionStatus): void {
  store.setState({ connection });
}

export function setContactPoint(store: AppStore, info: ContactPointInfo): void {
  store.setState({ contactPoint: info });
}

export function setPolicy(store: AppStore, policy: PolicyView): void {
  store.setState({ policy });
}

export function setHostSettings(store: AppStore, hostSettings: HostSettingsView): void {
  store.setState({ hostSettings });
}

/** Switches views; the Peers view opens on its table. */
export function showView(store: AppStore, view: ViewName): void {
  store.setState({ view, peerPage: undefined });
}

/** Opens a peer's page (in the Peers view); undefined goes back to the table. */
export function openPeerPage(store: AppStore, name: string | undefined): void {
  store.setState({ view: 'peers', peerPage: name });
}

let noticeId = 0;
export function notify(store: AppStore, kind: Notice['kind'], text: string): number {
  const id = ++noticeId;
  store.setState((s) => ({ notices: [...s.notices, { id, kind, text, at: Date.now() }].slice(-MAX_NOTICES) }));
  return id;
}

export function dismissNotice(store: AppStore, id: number): void {
  store.setState((s) => ({ notices: s.notices.filter((n) => n.id !== id) }));
}
