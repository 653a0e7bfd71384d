import { describeStatus, statusName, type StatusCode } from './status.js';

/**
 * A fault with a stable numbered code. Thrown by the codec and schema checks at the boundary;
 * link handlers turn it into an ERROR frame and a close with 4000 + code, or an ACK refusal.
 */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  constructor(
    readonly code: StatusCode,
    detail?: string,
  ) {
    super(detail ? `${describeStatus(code)}: ${detail}` : describeStatus(code));
  }

  get codeName(): string {
    return statusName(this.code);
  }
}

/** A refused or failed delivery as the SDK reports it to the application. */
export class DeliveryError extends Error {
  override readonly name = 'DeliveryError';
  constructor(
    readonly code: number,
    readonly reason: string,
    readonly messageId: string,
  ) {
    super(`${statusName(code)} (${code}): ${reason}`);
  }
}
