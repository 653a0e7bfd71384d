import { createContext, useContext, type ReactNode } from 'react';
import { useStore } from 'zustand';
import type { AppState } from './app-store';
import type { Ctx } from './commands';

const AppContext = createContext<Ctx | undefined>(undefined);

export function AppProvider({ value, children }: { value: Ctx; children: ReactNode }) {
  return <AppContext.Provider value={value}>{children}</AppContext.Provider>;
}

export function useCtx(): Ctx {
  const ctx = useContext(AppContext);
  if (!ctx) throw new Error('useCtx outside AppProvider');
  return ctx;
}

/** Selects from the app store; wrap array-deriving selectors in useShallow. */
export function useApp<T>(selector: (s: AppState) => T): T {
  return useStore(useCtx().store, selector);
}
