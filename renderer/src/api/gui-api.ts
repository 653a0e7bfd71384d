import type { ContactPointBridge } from '../../../core/admin/host-settings.js';

/** Where the GUI stands with the contact point's admin API. */
export type ConnectionState = 'connecting' | 'open' | 'lost' | 'unauthorized';

export interface ConnectionStatus {
  readonly state: ConnectionState;
  /** why it is not open (shown to the admin) */
  readonly detail?: string;
  /** when the next attempt is due (ms since epoch), while lost */
  readonly retryAt?: number;
}

/**
 * What the GUI programs against: the admin contract (and, in the desktop app, the host's
 * settings). A transport that can lose its connection also reports it; one that cannot
 * (Electron IPC) leaves `onConnection` out and is taken as always open.
 */
export interface GuiApi extends ContactPointBridge {
  onConnection?(listener: (status: ConnectionStatus) => void): () => void;
}

declare global {
  interface Window {
    /** set by the desktop app's preload (contextBridge); absent in a browser */
    readonly contactPoint?: ContactPointBridge;
  }
}
