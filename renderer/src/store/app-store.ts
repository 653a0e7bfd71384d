import { createStore, type StoreApi } from 'zustand/vanilla';
import { initialAudit, type AuditSlice } from './audit-slice';
import { initialFlow, type FlowSlice } from './flow-slice';
import { initialPeers, type PeersSlice } from './peers-slice';
import { initialPorts, type PortsSlice } from './ports-slice';
import { initialSeal, type SealSlice } from './seal-slice';
import { initialRules, type RulesSlice } from './rules-slice';
import { initialSession, type SessionSlice } from './session-slice';
import { initialTunnel, type TunnelSlice } from './tunnel-slice';

/** The whole GUI state: one store of typed slices. Actions live beside each slice. */
export type AppState = PeersSlice & FlowSlice & TunnelSlice & PortsSlice & SessionSlice & AuditSlice & SealSlice & RulesSlice;
export type AppStore = StoreApi<AppState>;

/** A fresh store (the app makes one; each test makes its own). */
export function createAppStore(): AppStore {
  return createStore<AppState>()(() => ({ ...initialPeers(), ...initialFlow(), ...initialTunnel(), ...initialPorts(), ...initialSession(), ...initialAudit(), ...initialSeal(), ...initialRules() }));
}
