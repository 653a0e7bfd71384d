import { ADMIN_CALLS, AdminError, isAdminMethod, unknownMethodMessage, type AdminHostApi, type AdminMethod } from '../core/admin/contract.js';
import { SchemaError } from '../core/protocol/schema.js';
import type { Logger } from '../core/runtime/logger.js';
import type { IpcEnvelope } from './ipc-envelope.js';

/**
 * One admin call from the window: the method must be in the contract and its parameters must
 * pass the contract's schema here, in main, before anything reaches the core (the renderer is
 * treated as untrusted input). Every outcome is an envelope. The window is the GUI: its calls
 * are audited as `gui`.
 */
export async function handleAdminCall(api: AdminHostApi, method: unknown, params: unknown, logger: Logger): Promise<IpcEnvelope> {
  if (!isAdminMethod(method)) return { ok: false, error: { code: 'UNKNOWN_METHOD', message: unknownMethodMessage(method) } };
  let checked: unknown;
  try {
    checked = ADMIN_CALLS[method].parse(params ?? {});
  } catch (err: unknown) {
    if (err instanceof SchemaError) return { ok: false, error: { code: 'INVALID_PARAMS', message: `${method}: ${err.message}` } };
    throw err;
  }
  try {
    return { ok: true, value: await api.call(method as AdminMethod, checked as never, 'gui') };
  } catch (err: unknown) {
    if (err instanceof AdminError) return { ok: false, error: { code: err.code, message: err.message } };
    logger.error('admin call failed', { method, error: String(err) });
    return { ok: false, error: { code: 'INTERNAL', message: 'internal error; see the app log' } };
  }
}

/** Wraps any other handler (settings) so it also answers with an envelope. */
export async function envelope<T>(fn: () => Promise<T>, logger: Logger, what: string): Promise<IpcEnvelope<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (err: unknown) {
    if (err instanceof AdminError) return { ok: false, error: { code: err.code, message: err.message } };
    logger.error(`${what} failed`, { error: String(err) });
    return { ok: false, error: { code: 'INTERNAL', message: `${what} failed: ${(err as Error).message}` } };
  }
}
