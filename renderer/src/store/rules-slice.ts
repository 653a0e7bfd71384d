import type { RulesView } from '../../../core/admin/contract.js';
import type { AppStore } from './app-store';

/** The access rules and the content check (docs/PROTOCOL.md 9.6). */
export interface RulesSlice {
  /** undefined until the snapshot arrives (or from a contact point before the rules) */
  readonly rules: RulesView | undefined;
}

export function initialRules(): RulesSlice {
  return { rules: undefined };
}

export function setRules(store: AppStore, rules: RulesView): void {
  store.setState({ rules });
}
