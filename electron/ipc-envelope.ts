import type { AdminErrorCode } from '../core/admin/contract.js';

/**
 * What crosses IPC from main to the preload for every call: never a thrown error (Electron
 * would flatten it to a string), always an envelope the preload turns back into a real one.
 */
export type IpcEnvelope<T = unknown> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: { readonly code: AdminErrorCode; readonly message: string } };
