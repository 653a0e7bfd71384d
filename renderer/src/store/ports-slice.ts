import type { PortPolicyView, PortView } from '../../../core/admin/contract.js';
import type { AppStore } from './app-store';

/** Port mediation: LAN ports the relay had the contact point open, and what it may open. */
export interface PortsSlice {
  readonly ports: readonly PortView[];
  readonly portPolicy: PortPolicyView | undefined;
  /** port ids with a close in flight */
  readonly portBusy: ReadonlySet<number>;
}

export function initialPorts(): PortsSlice {
  return { ports: [], portPolicy: undefined, portBusy: new Set() };
}

export function setPorts(store: AppStore, ports: readonly PortView[]): void {
  store.setState({ ports });
}

export function setPortPolicy(store: AppStore, portPolicy: PortPolicyView): void {
  store.setState({ portPolicy });
}

export function setPortBusy(store: AppStore, id: number, busy: boolean): void {
  store.setState((s) => {
    const next = new Set(s.portBusy);
    if (busy) next.add(id);
    else next.delete(id);
    return { portBusy: next };
  });
}
