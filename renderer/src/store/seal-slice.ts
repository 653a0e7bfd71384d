import type { SealView } from '../../../core/admin/contract.js';
import type { AppStore } from './app-store';

/** The contact point's key fingerprint and its "sealed payloads only" policy (issue 14). */
export interface SealSlice {
  /** undefined until the snapshot arrives, and from contact points older than sealing */
  readonly seal: SealView | undefined;
}

export function initialSeal(): SealSlice {
  return { seal: undefined };
}

export function setSeal(store: AppStore, seal: SealView): void {
  store.setState({ seal });
}
