/**
 * The desktop window's bridge (sandboxed preload, so CommonJS and nothing but `electron`):
 * exposes ONE object, `window.contactPoint`, shaped by the admin contract. No ipcRenderer and
 * no generic invoke reach the page: only the contract's calls and events, each by name.
 */
// A sandboxed preload is CommonJS; with verbatimModuleSyntax its import is written as require.
// eslint-disable-next-line @typescript-eslint/no-require-imports
import electron = require('electron');
import type { AdminEventName, AdminEvents, AdminMethod, AdminParams, AdminResults } from '../core/admin/contract.js';
import type { ContactPointBridge, HOST_SETTINGS_CHANNELS, HostSettingsInput, HostSettingsResult, HostSettingsView } from '../core/admin/host-settings.js';
import type { IpcEnvelope } from './ipc-envelope.js';

// The contract's names, checked against it by the compiler (a sandboxed preload cannot load
// the contract module itself): a call or event added there and missing here fails the build.
const CALLS = {
  'snapshot:get': true,
  'peers:approve': true,
  'peers:reject': true,
  'peers:revoke': true,
  'peers:forget': true,
  'policy:set': true,
  'tunnel:reconnect': true,
  'ports:close': true,
  'ports:policy': true,
  'history:query': true,
  'history:retention': true,
  'history:traffic': true,
  'audit:list': true,
  'seal:policy': true,
  'rules:get': true,
  'rules:set': true,
  'rules:check': true,
  'rules:refusals': true,
} as const satisfies Record<AdminMethod, true>;
const EVENTS = {
  'peer:changed': true,
  'peer:removed': true,
  'tunnel:status': true,
  'direct:status': true,
  'flow:batch': true,
  'policy:changed': true,
  'ports:changed': true,
  'ports:policy-changed': true,
  'peers:flood': true,
  'audit:entry': true,
  'seal:changed': true,
  'rules:changed': true,
} as const satisfies Record<AdminEventName, true>;
const { contextBridge, ipcRenderer } = electron;
const SETTINGS_GET: (typeof HOST_SETTINGS_CHANNELS)['get'] = 'settings:get';
const SETTINGS_SAVE: (typeof HOST_SETTINGS_CHANNELS)['save'] = 'settings:save';

/** Events held for a name nobody has subscribed to yet (the page is still loading). */
const MAX_QUEUED_PER_EVENT = 64;

class AdminCallError extends Error {
  override readonly name = 'AdminCallError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function invoke<T>(channel: string, ...args: unknown[]): Promise<T> {
  const env = (await ipcRenderer.invoke(channel, ...args)) as IpcEnvelope<T>;
  if (env.ok) return env.value;
  // contextBridge copies only an error's message across worlds, so the code leads it too.
  throw new AdminCallError(env.error.code, env.error.message);
}

const listeners = new Map<AdminEventName, Set<(data: unknown) => void>>();
const queued = new Map<AdminEventName, unknown[]>();
for (const name of Object.keys(EVENTS) as AdminEventName[]) {
  ipcRenderer.on(name, (_e, data: unknown) => {
    const set = listeners.get(name);
    if (set && set.size > 0) {
      for (const fn of set) fn(data);
      return;
    }
    const q = queued.get(name) ?? [];
    q.push(data);
    if (q.length > MAX_QUEUED_PER_EVENT) q.shift();
    queued.set(name, q);
  });
}

const bridge: ContactPointBridge = {
  call<M extends AdminMethod>(method: M, params: AdminParams<M>): Promise<AdminResults[M]> {
    if (!Object.hasOwn(CALLS, method)) return Promise.reject(new AdminCallError('UNKNOWN_METHOD', `no admin call named ${String(method)}`));
    return invoke<AdminResults[M]>(method, params);
  },
  subscribe<E extends AdminEventName>(event: E, listener: (data: AdminEvents[E]) => void): () => void {
    if (!Object.hasOwn(EVENTS, event)) throw new TypeError(`no admin event named ${String(event)}`);
    let set = listeners.get(event);
    if (!set) listeners.set(event, (set = new Set()));
    const fn = listener as (data: unknown) => void;
    set.add(fn);
    const backlog = queued.get(event);
    if (backlog) {
      queued.delete(event);
      for (const d of backlog) fn(d);
    }
    return () => void set.delete(fn);
  },
  settings: {
    get: () => invoke<HostSettingsView>(SETTINGS_GET),
    save: (input: HostSettingsInput) => invoke<HostSettingsResult>(SETTINGS_SAVE, input),
  },
};

contextBridge.exposeInMainWorld('contactPoint', bridge);
