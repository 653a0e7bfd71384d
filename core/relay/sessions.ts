import type { HelloBody } from '../protocol/frames.js';
import type { Link } from '../protocol/link.js';
import type { TokenBucket } from '../runtime/token-bucket.js';
import type { ControlChannel } from './control.js';
import type { CredentialKind, Right } from './credentials.js';
import type { OperatorSession } from './operators.js';

/** What the relay keeps of an admitted connection (see admission.ts). */
export interface Session {
  readonly kind: CredentialKind;
  readonly id: string;
  readonly link: Link;
  readonly session: string;
  readonly rights: readonly Right[];
  /** hash of the credential it authenticated with: a removed or replaced credential ends the session */
  readonly credentialHash: string;
  readonly since: number;
  /** its HELLO listed the `reachable` capability: it may be sent REACHABLE (0x12) */
  readonly reachable: boolean;
  /** how REACHABLE waiters name it: `e:<name>` or `c:<id>` */
  readonly waitKey: string;
}
export interface TunnelSession extends Session {
  readonly kind: 'contact-point';
  readonly peers: Set<string>;
  readonly env: HelloBody['env'];
  /** the control server's end of this tunnel (port mediation, seed 002) */
  readonly control: ControlChannel;
  /** HELLO `instance`: which running contact point holds the tunnel (undefined from older clients) */
  readonly instance: string | undefined;
  /** `host:port` the tunnel comes from, named to another instance refused with ID_IN_USE */
  readonly remote: string;
  /** the liveness probe in flight because another instance said hello with this id */
  probe: Promise<boolean> | undefined;
  /**
   * Sessions (with `reachable`) that sent messages through this tunnel lately, at most
   * REACHABLE_WAITERS_PER_DOMAIN (started over when full). When the tunnel closes or is
   * replaced they wait for the next one: what they sent may have been lost with this one.
   */
  readonly senders: Set<string>;
}
export interface ExternalSession extends Session {
  readonly kind: 'external';
  readonly address: string;
  /** what its hello said it runs (shown in the relay's status, never trusted) */
  readonly env: HelloBody['env'];
  readonly bucket: TokenBucket;
  /** set when this peer drives port mediation (credential right `mediate`) */
  operator: OperatorSession | undefined;
}
export type RelaySession = TunnelSession | ExternalSession;

/** The relay's sessions: one tunnel per contact point id, one session per external peer name. */
export interface SessionTable {
  readonly tunnels: ReadonlyMap<string, TunnelSession>;
  readonly externals: ReadonlyMap<string, ExternalSession>;
}
