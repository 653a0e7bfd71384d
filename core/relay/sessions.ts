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
  /** the WELCOME's session id: names this connection in logs and the relay's status */
  readonly session: string;
  readonly rights: readonly Right[];
  /** hash of the credential it authenticated with: a removed or replaced credential ends the session */
  readonly credentialHash: string;
  readonly since: number;
  /** `host:port` the connection comes from (a proxy's or NAT's address when there is one) */
  readonly remote: string;
  /** its HELLO listed the `reachable` capability: it may be sent REACHABLE (0x12) */
  readonly reachable: boolean;
  /**
   * its HELLO listed the `sealed` capability: it understands KEYS_REQUEST (0x23). A request for
   * the key of an external session without it is refused NOT_OFFERED at once: an older client
   * would fault on the frame, a raw one never answers (its sender would wait KEYS_TIMEOUT_MS).
   */
  readonly sealed: boolean;
  /** how REACHABLE waiters name it: `e:<name>` (every session of that external peer) or `c:<id>` */
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
  /** HELLO `slot` (0 when absent): a contact point's tunnels in different slots live side by side (issue 12) */
  readonly slot: number;
  /** the liveness probe in flight because another instance said hello with this id */
  probe: Promise<boolean> | undefined;
  /**
   * Sessions (with `reachable`) that sent messages through this tunnel lately, at most
   * REACHABLE_WAITERS_PER_DOMAIN (started over when full). When the tunnel closes or is
   * replaced they wait for the next one: what they sent may have been lost with this one.
   * Undefined until the first (an empty Set costs an office ~150 B).
   */
  senders: Set<string> | undefined;
}
export interface ExternalSession extends Session {
  readonly kind: 'external';
  readonly address: string;
  /** what its hello said it runs (shown in the relay's status, never trusted) */
  readonly env: HelloBody['env'];
  /** the sessions of the same credential, this one among them */
  readonly group: ExternalGroup;
  /** set when this session drives port mediation (credential right `mediate`) */
  operator: OperatorSession | undefined;
  /** the `to` of the last message it sent: its group's first reply route when it is alone and a second session comes */
  lastTo: string | undefined;
}
export type RelaySession = TunnelSession | ExternalSession;

/**
 * The live sessions of one external credential (issue 18: several may live side by side, each
 * with its own session id, ACKs, port requests and exposures), and what they share.
 */
export interface ExternalGroup {
  readonly name: string;
  readonly address: string;
  /** oldest first; messages addressed to `address` go to the newest unless replyRoutes names one */
  readonly sessions: ExternalSession[];
  /** RELAY_RATE_PER_SENDER is per sender address, so its sessions share one bucket */
  readonly bucket: TokenBucket;
  /**
   * While two or more sessions live: id of a message one of them sent (and the relay routed
   * on) -> that session, so the message's ACK goes back to it (routing.ts; oldest first, at
   * most MAX_ACK_ROUTES_PER_CREDENTIAL). Empty while one session is alone: its ACKs are its own.
   */
  readonly ackRoutes: Map<string, ExternalSession>;
  /** the session that was alone when ackRoutes began: ACKs for what it sent before are its own */
  untracked: ExternalSession | undefined;
  /**
   * While two or more sessions live: address one of them last sent a message to -> that
   * session, so what comes back from that address (a reply) reaches the session that asked
   * (routing.ts; least recently used forgotten first, at most MAX_REPLY_ROUTES_PER_CREDENTIAL).
   */
  readonly replyRoutes: Map<string, ExternalSession>;
}

/**
 * The relay's sessions, in one place: one tunnel per contact point id and slot (admission.ts
 * decides who holds it), and per external credential id the group of its sessions. Everything
 * that lists sessions (status, credential recheck) enumerates them here.
 */
export class SessionRegistry {
  /**
   * contact point id -> the tunnel routing uses here: the one held longest (a tunnel that just
   * came, maybe to leave at once for another node, takes over only when the other goes)
   */
  private readonly tunnelMap = new Map<string, TunnelSession>();
  /** contact point id -> its tunnels here by slot (issue 12: two tunnels, usually on two nodes) */
  private readonly slotMap = new Map<string, (TunnelSession | undefined)[]>();
  private readonly groups = new Map<string, ExternalGroup>();

  get tunnels(): ReadonlyMap<string, TunnelSession> {
    return this.tunnelMap;
  }

  /** The newest session of external peer `name`. */
  external(name: string): ExternalSession | undefined {
    const g = this.groups.get(name);
    return g?.sessions[g.sessions.length - 1];
  }

  group(name: string): ExternalGroup | undefined {
    return this.groups.get(name);
  }

  /** Live sessions of external credential `name`, oldest first. */
  externalsOf(name: string): readonly ExternalSession[] {
    return this.groups.get(name)?.sessions ?? [];
  }

  /** The tunnel of contact point `id` in `slot`, if it is here. */
  tunnelIn(id: string, slot: number): TunnelSession | undefined {
    return this.slotMap.get(id)?.[slot];
  }

  /** Every tunnel of contact point `id` here (one per slot), lowest slot first. */
  tunnelsOf(id: string): TunnelSession[] {
    return (this.slotMap.get(id) ?? []).filter((t) => t !== undefined);
  }

  /** Every tunnel here, every slot. */
  *allTunnels(): IterableIterator<TunnelSession> {
    for (const slots of this.slotMap.values()) for (const t of slots) if (t) yield t;
  }

  /** Every live session: tunnels, then external sessions (per credential, oldest first). */
  *all(): IterableIterator<RelaySession> {
    yield* this.allTunnels();
    for (const g of this.groups.values()) yield* g.sessions;
  }

  /** Sessions now (counted from the groups, read by status and scrapes, not per message). */
  get size(): { tunnels: number; externals: number } {
    let externals = 0;
    for (const g of this.groups.values()) externals += g.sessions.length;
    return { tunnels: this.tunnelMap.size, externals };
  }

  /** The tunnel holding contact point id `s.id` in slot `s.slot` from now on; the one it replaces, if any. */
  setTunnel(s: TunnelSession): TunnelSession | undefined {
    let slots = this.slotMap.get(s.id);
    if (!slots) this.slotMap.set(s.id, (slots = []));
    const old = slots[s.slot];
    slots[s.slot] = s;
    const routed = this.tunnelMap.get(s.id);
    if (routed === undefined || routed === old) this.tunnelMap.set(s.id, s);
    return old;
  }

  /** A closed tunnel: true when it was still the holder of its id and slot (not already replaced). */
  removeTunnel(s: TunnelSession): boolean {
    const slots = this.slotMap.get(s.id);
    if (slots?.[s.slot] !== s) return false;
    slots[s.slot] = undefined;
    const rest = slots.find((t) => t !== undefined);
    if (rest) {
      if (this.tunnelMap.get(s.id) === s) this.tunnelMap.set(s.id, rest);
    } else {
      this.tunnelMap.delete(s.id);
      this.slotMap.delete(s.id);
    }
    return true;
  }

  /** The group a new session of `name` joins (created with `bucket()` for the first one). */
  groupFor(name: string, address: string, bucket: () => TokenBucket): ExternalGroup {
    let g = this.groups.get(name);
    if (!g) {
      g = { name, address, sessions: [], bucket: bucket(), ackRoutes: new Map(), untracked: undefined, replyRoutes: new Map() };
      this.groups.set(name, g);
    }
    return g;
  }

  addExternal(s: ExternalSession): void {
    const g = s.group;
    // From the second session on, ACKs need to know whose message they settle, and replies
    // whose question they answer: what the one alone sent last is its own.
    const alone = g.sessions.length === 1 ? g.sessions[0] : undefined;
    if (alone) {
      g.untracked = alone;
      if (alone.lastTo !== undefined) g.replyRoutes.set(alone.lastTo, alone);
    }
    g.sessions.push(s);
  }

  /** A closed external session: it leaves its group, and no ACK is routed to it any more. */
  removeExternal(s: ExternalSession): void {
    const g = s.group;
    const i = g.sessions.indexOf(s);
    if (i < 0) return;
    g.sessions.splice(i, 1);
    if (g.untracked === s) g.untracked = undefined;
    if (g.sessions.length <= 1) {
      // Alone again (or gone): every ACK and message for this address is the remaining session's.
      g.ackRoutes.clear();
      g.replyRoutes.clear();
      g.untracked = undefined;
      if (g.sessions.length === 0) this.groups.delete(g.name);
      return;
    }
    for (const routes of [g.ackRoutes, g.replyRoutes]) for (const [key, owner] of routes) if (owner === s) routes.delete(key);
  }
}
