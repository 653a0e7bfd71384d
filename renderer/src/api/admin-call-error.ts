import type { AdminErrorCode } from '../../../core/admin/contract.js';

/** An admin call that failed, with the contract's stable code when the transport carried it. */
export class AdminCallError extends Error {
  override readonly name = 'AdminCallError';
  constructor(
    readonly code: AdminErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** A message to show the admin for anything a call rejected with. */
export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message.replace(/^Error invoking remote method '[^']+': (Error: )?/, '');
  return String(err);
}
