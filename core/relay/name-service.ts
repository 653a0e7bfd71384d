import { parseAddress } from '../protocol/address.js';
import { CAPABILITY_LOOKUP, FrameType, type LookupBody, type LookupResultBody, type PresenceBody, type SubscribeBody } from '../protocol/frames.js';
import { ProtocolError } from '../protocol/errors.js';
import { Status } from '../protocol/status.js';
import type { Logger } from '../runtime/logger.js';
import type { Cluster } from './cluster.js';
import type { LookupAnswer } from './cluster-names.js';
import type { CredentialStore } from './credentials.js';
import type { ExternalSession, SessionRegistry, TunnelSession } from './sessions.js';

/** How long the relay waits for a contact point's answer to a lookup (ms, default 5 s); then it answers the office's state alone. */
export const LOOKUP_TIMEOUT_MS = 5_000;
/** Lookups one external session may have waiting on contact points (default 64; lookups from other cluster nodes count per asking address); past it the answer is the office's state alone, with a reason. */
export const MAX_LOOKUPS_PER_SESSION = 64;
/** Addresses one external session may subscribe to (default 256); past it SUBSCRIBE is a protocol fault (RESOURCE_LIMIT). */
export const MAX_SUBSCRIPTIONS_PER_SESSION = 256;

type Result = LookupAnswer;
/** Who waits for lookups: a session here, or (`from` address) an external peer on another cluster node. */
type Asker = ExternalSession | string;

interface Waiting {
  readonly address: string;
  readonly tunnel: TunnelSession;
  readonly asker: Asker;
  readonly timer: NodeJS.Timeout;
  readonly done: (r: Result) => void;
}

/**
 * The relay as a name service (seed 000 [0037]: "an external peer ... typically uses some
 * name-service to figure out that the relay server is the contact point ..."; issue 15 part 2,
 * docs/PROTOCOL.md 9.7). An authenticated external peer asks about an address and learns whether
 * its office is connected, and, from the contact point itself, whether the peer is registered and
 * online, unless the office's access rules hide it from that asker. The relay answers only what
 * it knows by itself: the office's tunnel, and the external peers (on any node of a cluster).
 * In a cluster, an office whose tunnel is on another node is asked through that node
 * (cluster-names.ts), which answers as for a peer of its own.
 *
 * Subscriptions push PRESENCE when an answer changes: the relay looks the address up again when
 * its office connects or disconnects, and when the contact point hints that the peer changed.
 */
export class NameService {
  private nextReq = 1;
  private readonly waiting = new Map<number, Waiting>();
  private readonly pendingBySession = new Map<Asker, number>();
  /** address -> subscribers, each with the last answer pushed to it */
  private readonly subs = new Map<string, Map<ExternalSession, string>>();
  private readonly subsOf = new Map<ExternalSession, Set<string>>();

  constructor(
    private readonly o: {
      readonly name: string;
      readonly sessions: SessionRegistry;
      /** where an office's tunnel or an external peer's session is: on a cluster node, maybe another node */
      readonly cluster: Pick<Cluster, 'tunnel' | 'external' | 'names'>;
      readonly credentials: CredentialStore;
      readonly logger: Logger;
    },
  ) {
    o.cluster.names?.attach({
      answer: (address, from) => new Promise((done) => this.resolve(from, from, address, done, false)),
      hinted: (address) => this.refresh(address),
    });
  }

  /** LOOKUP from an external peer. */
  lookup(s: ExternalSession, body: LookupBody): void {
    this.resolve(s, s.address, body.address, (r) => s.link.sendControl(FrameType.LOOKUP_RESULT, { req: body.req, ...r }));
  }

  /** SUBSCRIBE from an external peer: the current state is pushed at once, then every change. */
  subscribe(s: ExternalSession, body: SubscribeBody): void {
    let mine = this.subsOf.get(s);
    if (body.op === 'remove') {
      mine?.delete(body.address);
      this.subs.get(body.address)?.delete(s);
      if (this.subs.get(body.address)?.size === 0) this.subs.delete(body.address);
      return;
    }
    if (!mine) this.subsOf.set(s, (mine = new Set<string>()));
    if (!mine.has(body.address) && mine.size >= MAX_SUBSCRIPTIONS_PER_SESSION) throw new ProtocolError(Status.RESOURCE_LIMIT, `more than ${MAX_SUBSCRIPTIONS_PER_SESSION} presence subscriptions`);
    mine.add(body.address);
    let subscribers = this.subs.get(body.address);
    if (!subscribers) this.subs.set(body.address, (subscribers = new Map<ExternalSession, string>()));
    subscribers.set(s, '');
    this.refreshOne(s, body.address);
  }

  /** LOOKUP_RESULT or PRESENCE from a contact point; false for other frames. */
  fromTunnel(t: TunnelSession, type: number, body: unknown): boolean {
    if (type === FrameType.LOOKUP_RESULT) {
      const r = body as LookupResultBody;
      const w = this.waiting.get(r.req);
      if (!w || w.tunnel !== t || parseAddress(r.address)?.domain !== t.id) return true; // late, or not this tunnel's to answer
      this.settle(r.req, w);
      w.done({ address: r.address, office: 'connected', ...(r.peer ? { peer: r.peer } : {}) });
      return true;
    }
    if (type === FrameType.PRESENCE) {
      const p = body as PresenceBody;
      if (parseAddress(p.address)?.domain !== t.id) throw new ProtocolError(Status.PROTOCOL_VIOLATION, `PRESENCE for ${p.address} on ${t.id}'s tunnel`);
      this.refresh(p.address);
      this.o.cluster.names?.hint(p.address); // subscribers on other nodes
      return true;
    }
    return false;
  }

  /** An office connected or disconnected: its subscribed addresses are looked up again. */
  officeChanged(domain: string): void {
    for (const address of this.subs.keys()) if (parseAddress(address)?.domain === domain) this.refresh(address);
  }

  /** An external peer came or went: subscriptions to its address, and its own, are updated. */
  externalChanged(s: ExternalSession, gone: boolean): void {
    if (gone) {
      for (const address of this.subsOf.get(s) ?? []) {
        this.subs.get(address)?.delete(s);
        if (this.subs.get(address)?.size === 0) this.subs.delete(address);
      }
      this.subsOf.delete(s);
      for (const [req, w] of this.waiting) if (w.asker === s) this.settle(req, w);
    }
    if (this.subs.has(s.address)) this.refresh(s.address);
  }

  /** An office's tunnel or an external peer's session came or went on another cluster node: subscriptions to it are updated. */
  changedElsewhere(kind: 'contact-point' | 'external', id: string): void {
    if (kind === 'contact-point') this.officeChanged(id);
    else this.refresh(`${id}@${this.o.name}`);
  }

  /** The tunnel closed: lookups waiting on it get the office's state now. */
  tunnelClosed(t: TunnelSession): void {
    for (const [req, w] of this.waiting) {
      if (w.tunnel !== t) continue;
      this.settle(req, w);
      w.done({ address: w.address, office: this.o.cluster.tunnel(t.id) !== undefined ? 'connected' : 'disconnected' });
    }
  }

  private refresh(address: string): void {
    for (const s of this.subs.get(address)?.keys() ?? []) this.refreshOne(s, address);
  }

  private refreshOne(s: ExternalSession, address: string): void {
    this.resolve(s, s.address, address, (r) => {
      const subscribers = this.subs.get(address);
      const last = subscribers?.get(s);
      if (last === undefined) return; // unsubscribed meanwhile
      const now = `${r.office}:${r.peer ?? ''}`;
      if (now === last) return;
      subscribers!.set(s, now);
      s.link.sendControl(FrameType.PRESENCE, { address, office: r.office, ...(r.peer ? { peer: r.peer } : {}) });
    });
  }

  /**
   * What `from` (asking in session `asker`, or from another node) may learn of `address`: from the
   * relay alone, or from the office's contact point (through the node holding its tunnel when
   * `forward`; a node asked by another answers from its own tunnel only).
   */
  private resolve(asker: Asker, from: string, address: string, done: (r: Result) => void, forward = true): void {
    const to = parseAddress(address)!;
    if (to.domain === this.o.name) {
      const online = this.o.cluster.external(to.name) !== undefined;
      return done({ address, office: 'connected', peer: online ? 'online' : this.o.credentials.has('external', to.name) ? 'offline' : 'unregistered' });
    }
    const t = this.o.cluster.tunnel(to.domain);
    if (!t) return done({ address, office: this.o.credentials.has('contact-point', to.domain) ? 'disconnected' : 'unknown' });
    if (t.kind === 'remote') {
      const names = this.o.cluster.names;
      // Asked by another node for a tunnel that moved on meanwhile: no second hop.
      if (!forward || !names) return done({ address, office: 'connected', reason: `the office's tunnel is on relay node ${t.node} now; ask again` });
      if (!this.take(asker)) return done({ address, office: 'connected', reason: `more than ${MAX_LOOKUPS_PER_SESSION} lookups waiting; try again` });
      void names.ask(t.node, address, from).then((r) => {
        this.release(asker);
        done(r ?? { address, office: this.o.cluster.tunnel(to.domain) !== undefined ? 'connected' : 'disconnected', reason: `relay node ${t.node}, which holds the office's tunnel, did not answer` });
      });
      return;
    }
    if (!(t.env?.capabilities?.includes(CAPABILITY_LOOKUP) ?? false)) return done({ address, office: 'connected', reason: 'this contact point does not answer lookups for its peers' });
    if (!this.take(asker)) return done({ address, office: 'connected', reason: `more than ${MAX_LOOKUPS_PER_SESSION} lookups waiting; try again` });
    const req = this.nextReq;
    this.nextReq = this.nextReq >= 0xffffffff ? 1 : this.nextReq + 1;
    const timer = setTimeout(() => {
      const w = this.waiting.get(req);
      if (!w) return;
      this.settle(req, w);
      done({ address, office: 'connected', reason: 'the contact point did not answer in time' });
    }, LOOKUP_TIMEOUT_MS);
    timer.unref();
    this.waiting.set(req, { address, tunnel: t, asker, timer, done });
    t.link.sendControl(FrameType.LOOKUP, { req, address, from });
  }

  /** One more lookup of `asker` waits; false when MAX_LOOKUPS_PER_SESSION already do. */
  private take(asker: Asker): boolean {
    const n = this.pendingBySession.get(asker) ?? 0;
    if (n >= MAX_LOOKUPS_PER_SESSION) return false;
    this.pendingBySession.set(asker, n + 1);
    return true;
  }

  private release(asker: Asker): void {
    const n = (this.pendingBySession.get(asker) ?? 1) - 1;
    if (n > 0) this.pendingBySession.set(asker, n);
    else this.pendingBySession.delete(asker);
  }

  private settle(req: number, w: Waiting): void {
    clearTimeout(w.timer);
    this.waiting.delete(req);
    this.release(w.asker);
  }

  /** Stops every timer (the relay stops). */
  stop(): void {
    for (const [req, w] of this.waiting) this.settle(req, w);
  }
}
