/**
 * Numbered status codes: the one table every endpoint uses. Delivery outcomes travel in ACK
 * frames; connection faults travel in an ERROR frame and the ws close code 4000 + code.
 * Numbers are stable: never reuse or renumber one (docs/PROTOCOL.md mirrors this table).
 */
export const Status = {
  OK: 0,

  // Delivery refusals (ACK status). `retryable` ones are transient: SDKs retry them until the deadline.
  UNKNOWN_CONTACT_POINT: 10,
  CONTACT_POINT_OFFLINE: 11,
  PEER_NOT_REGISTERED: 12,
  PEER_OFFLINE: 13,
  TOO_LARGE: 14,
  RATE_LIMITED: 15,
  UNAUTHORIZED: 16,
  QUEUE_FULL: 17,
  TIMEOUT: 18,
  BAD_ADDRESS: 19,
  UNKNOWN_PEER: 20,
  RECEIVER_FAILED: 21,
  SEAL_REQUIRED: 22,
  BAD_SEAL: 23,
  KEY_CHANGED: 26,
  NOT_ALLOWED: 24,
  CONTENT_REFUSED: 25,

  // Port mediation results (PORT_RESULT code).
  PERMISSION_DENIED: 30,
  PORT_IN_USE: 31,
  UNKNOWN_PORT: 32,
  CONNECT_FAILED: 33,
  PORT_LIMIT: 34,
  UNSAFE_TARGET: 35,
  BAD_REQUEST: 36,
  WRONG_STATE: 37,
  STREAM_LIMIT: 38,
  NOT_OFFERED: 39,

  // Connection faults (ERROR frame, then close 4000 + code).
  MALFORMED_FRAME: 100,
  UNKNOWN_FRAME_TYPE: 101,
  FRAME_TOO_LARGE: 102,
  VERSION_MISMATCH: 103,
  BAD_CREDENTIALS: 104,
  HELLO_TIMEOUT: 105,
  PROTOCOL_VIOLATION: 106,
  IDENTITY_MISMATCH: 107,
  RESOURCE_LIMIT: 108,
  REPLACED: 109,
  SHUTTING_DOWN: 110,
  SLOW_CONSUMER: 111,
  INVALID_BODY: 112,
  REVOKED: 113,
  ID_IN_USE: 114,
  SESSION_LIMIT: 115,
  INTERNAL: 199,
} as const;

export type StatusName = keyof typeof Status;
export type StatusCode = (typeof Status)[StatusName];

const NAMES = new Map<number, StatusName>(
  (Object.entries(Status) as [StatusName, StatusCode][]).map(([name, code]) => [code, name]),
);

/** Refusals worth retrying: the path may come back (offline, congestion), nothing is wrong with the message. */
const RETRYABLE = new Set<number>([
  Status.CONTACT_POINT_OFFLINE,
  Status.PEER_OFFLINE,
  Status.RATE_LIMITED,
  Status.QUEUE_FULL,
  Status.TIMEOUT,
]);

/** Short text a person reads for each code (in CLI output, the GUI flow and ERROR frames). */
const DESCRIPTIONS: Record<StatusName, string> = {
  OK: 'delivered',
  UNKNOWN_CONTACT_POINT: 'unknown contact point',
  CONTACT_POINT_OFFLINE: 'contact point offline',
  PEER_NOT_REGISTERED: 'peer not registered',
  PEER_OFFLINE: 'peer offline',
  TOO_LARGE: 'message too large',
  RATE_LIMITED: 'rate limited',
  UNAUTHORIZED: 'unauthorized',
  QUEUE_FULL: 'queue full',
  TIMEOUT: 'timed out waiting for an acknowledgement',
  BAD_ADDRESS: 'malformed address',
  UNKNOWN_PEER: 'unknown peer',
  RECEIVER_FAILED: 'the receiving application failed',
  SEAL_REQUIRED: 'sealed payloads only',
  BAD_SEAL: 'seal did not verify',
  KEY_CHANGED: 'key differs from the one bound or pinned',
  NOT_ALLOWED: "the receiver's access rules do not let this sender in",
  CONTENT_REFUSED: "refused by the contact point's content check",
  PERMISSION_DENIED: 'not allowed by the contact point admin',
  PORT_IN_USE: 'port already in use',
  UNKNOWN_PORT: 'no such port id',
  CONNECT_FAILED: 'connection to the target failed',
  PORT_LIMIT: 'too many open ports or streams',
  UNSAFE_TARGET: 'target address refused (loopback, link-local or similar)',
  BAD_REQUEST: 'malformed port request',
  WRONG_STATE: 'the port is not in a state that allows this',
  STREAM_LIMIT: 'too many connections at once',
  NOT_OFFERED: 'the office does not offer port mediation',
  MALFORMED_FRAME: 'malformed frame',
  UNKNOWN_FRAME_TYPE: 'unknown frame type',
  FRAME_TOO_LARGE: 'frame too large',
  VERSION_MISMATCH: 'no common protocol version',
  BAD_CREDENTIALS: 'bad credentials',
  HELLO_TIMEOUT: 'hello not completed in time',
  PROTOCOL_VIOLATION: 'protocol violation',
  IDENTITY_MISMATCH: 'name already belongs to another key',
  RESOURCE_LIMIT: 'resource limit reached',
  REPLACED: 'replaced by a newer session',
  SHUTTING_DOWN: 'shutting down',
  SLOW_CONSUMER: 'receiver does not read',
  INVALID_BODY: 'invalid frame body',
  REVOKED: 'registration revoked',
  ID_IN_USE: 'another live instance holds this id',
  SESSION_LIMIT: 'too many sessions of this credential',
  INTERNAL: 'internal error',
};

export function statusName(code: number): StatusName | `STATUS_${number}` {
  return NAMES.get(code) ?? `STATUS_${code}`;
}

export function describeStatus(code: number): string {
  const name = NAMES.get(code);
  return name ? DESCRIPTIONS[name] : `status ${code}`;
}

export function isRetryable(code: number): boolean {
  return RETRYABLE.has(code);
}

export function isKnownStatus(code: number): code is StatusCode {
  return NAMES.has(code);
}

/** ws close code for a connection fault: 4000 + status (RFC 6455 §7.4.2 reserves 4000-4999 for applications). */
export function closeCodeFor(code: StatusCode): number {
  return 4000 + code;
}

/** The status a ws close code carries, if it is one of ours. */
export function statusFromCloseCode(closeCode: number): number | undefined {
  return closeCode >= 4000 && closeCode <= 4999 ? closeCode - 4000 : undefined;
}
