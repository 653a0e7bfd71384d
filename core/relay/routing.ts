import { parseAddress, type Address } from '../protocol/address.js';
import { decodeAck, decodeFrame, decodeMsg, encodeAck, type AckFrame, type Frame, type MsgFrame } from '../protocol/codec.js';
import { ProtocolError } from '../protocol/errors.js';
import { FrameType, type ReachableBody } from '../protocol/frames.js';
import type { Link } from '../protocol/link.js';
import { MAX_ACK_ROUTES_PER_CREDENTIAL, MAX_BUFFERED_BYTES, MAX_REMOTE_ACK_ROUTES, MAX_REMOTE_REPLY_ROUTES, MAX_REPLY_ROUTES_PER_CREDENTIAL, REACHABLE_WAIT_MS, REACHABLE_WAITERS_MAX, REACHABLE_WAITERS_PER_DOMAIN } from '../protocol/limits.js';
import { messageCount } from '../protocol/seal.js';
import { describeStatus, Status, type StatusCode } from '../protocol/status.js';
import type { Logger } from '../runtime/logger.js';
import { WaitList } from '../runtime/wait-list.js';
import { AckOrigins } from './ack-origins.js';
import { replyNode, type Cluster, type RemotePlace } from './cluster.js';
import type { CredentialStore } from './credentials.js';
import { who, type RefusalSink } from './refusals.js';
import type { ExternalGroup, ExternalSession, RelaySession, SessionRegistry, TunnelSession } from './sessions.js';
import type { RelayStats } from './stats.js';

export interface RouterOptions {
  /** the relay's name: the domain of external peers' addresses */
  readonly name: string;
  readonly credentials: CredentialStore;
  readonly logger: Logger;
  readonly maxMessageBytes: number;
  readonly sessions: SessionRegistry;
  /** every refusal is reported here (logged once, kept for the status endpoint) */
  readonly refusals: RefusalSink;
  /** where tunnels and sessions are: here, on another relay node, or nowhere (cluster.ts) */
  readonly cluster: Cluster;
  /** where routed and refused messages are counted */
  readonly stats: RelayStats;
}

/**
 * Routing (seed 000's relay server): MSG and ACK frames between tunnels and external sessions
 * by address, refusals with a reason back to the sender, and REACHABLE for those refused
 * because the way was down once it is back. It keeps no messages, only, for a credential with
 * several sessions, which of them sent each message awaiting its ACK and which last wrote to
 * an address (PROTOCOL.md 9.2): senders retry, receivers dedupe, so a relay restart loses nothing.
 */
export class Router {
  /** Messages from external senders on other nodes delivered here: where each one's ACK goes (core/relay/ack-origins.ts). Empty on a single relay. */
  private readonly remoteOrigins = new AckOrigins(MAX_REMOTE_ACK_ROUTES);
  /** the last reply subject a forwarded frame came with, and the node it names (a batch's frames share one) */
  private lastReply: string | undefined;
  private lastReplyNode: string | undefined;
  /** the remoteReplyRoutes entry written last (the newest): written again, it would stay as it is */
  private lastRoute: { name: string; to: string; node: string } | undefined;
  /**
   * Contact point id -> wait keys of sessions here (with `reachable`) that sent messages to its
   * tunnel on another node lately: a local tunnel's `senders`, for a tunnel elsewhere. When a
   * newer tunnel of that contact point comes up (on any node) they are told REACHABLE: what they
   * sent may have died with the old one. At most REACHABLE_WAITERS_PER_DOMAIN per contact point
   * (started over when full) and REACHABLE_WAITERS_MAX contact points (oldest forgotten first).
   * Empty on a single relay.
   */
  private readonly remoteSenders = new Map<string, Set<string>>();
  /**
   * `name\naddress`: external peer `name`'s latest message to `address` delivered here came from
   * a session on another node -> that node, so a reply from `address` goes to the session that
   * asked (9.2's rule across nodes). A session here writing to `address` takes it back. Least
   * recently written first, at most MAX_REMOTE_REPLY_ROUTES. Empty on a single relay.
   */
  private readonly remoteReplyRoutes = new Map<string, string>();
  /**
   * Contact point id (or external peer address) -> sessions (`e:name` / `c:id`) refused
   * CONTACT_POINT_OFFLINE (PEER_OFFLINE) for it, told REACHABLE when it is back.
   */
  private readonly waiting = new WaitList(REACHABLE_WAITERS_PER_DOMAIN, REACHABLE_WAITERS_MAX, REACHABLE_WAIT_MS);

  constructor(private readonly o: RouterOptions) {}

  onMsg(s: RelaySession, frame: Frame): void {
    const msg = decodeMsg(frame);
    // KEYS_REQUEST takes this path too (PROTOCOL.md 19.4); only MSG counts as message traffic.
    const counted = frame.type === FrameType.MSG;
    if (s.kind === 'external') {
      if (msg.from !== s.address) return this.refuse(s, msg, counted, Status.UNAUTHORIZED, `you send as ${s.address}, not ${msg.from}`);
      if (!s.rights.includes('send')) return this.refuse(s, msg, counted, Status.UNAUTHORIZED, 'this credential may not send messages');
      // A sealed bundle (PROTOCOL.md 19.6) takes a token for each message it carries.
      if (!s.group.bucket.take(counted ? messageCount(msg.flags, msg.payload) : 1)) return this.refuse(s, msg, counted, Status.RATE_LIMITED);
    } else if (parseAddress(msg.from)?.domain !== s.id) {
      return this.refuse(s, msg, counted, Status.UNAUTHORIZED, `contact point ${s.id} may only send as *@${s.id}`);
    }
    if (msg.payload.length > this.o.maxMessageBytes) {
      return this.refuse(s, msg, counted, Status.TOO_LARGE, `${msg.payload.length} bytes; the limit is ${this.o.maxMessageBytes}`);
    }
    const to = parseAddress(msg.to);
    if (!to) return this.refuse(s, msg, counted, Status.BAD_ADDRESS, `"${msg.to}" is not name@domain`);
    let target: Link;
    if (to.domain === this.o.name) {
      const ext = this.remoteAsker(to.name, msg.from) ?? this.receiver(to.name, msg.from) ?? this.o.cluster.external(to.name);
      if (!ext) {
        const known = this.o.credentials.has('external', to.name);
        // Remember who waits, to tell them the moment that peer connects (REACHABLE with name).
        if (known && s.reachable) this.waiting.add(msg.to, s.waitKey);
        return this.refuse(s, msg, counted, known ? Status.PEER_OFFLINE : Status.UNKNOWN_PEER);
      }
      if (ext.kind === 'remote') {
        if (counted) this.o.stats.forwarded++;
        this.noteSent(s, msg);
        return this.o.cluster.sendToNode(ext.node, frame.raw);
      }
      // A KEYS request to a peer whose HELLO did not say `sealed`: "no key" at once (it would not
      // answer, and the asker would wait KEYS_TIMEOUT_MS before sending plain; PROTOCOL.md 19.4).
      if (!counted && !ext.sealed) return this.refuse(s, msg, counted, Status.UNKNOWN_PEER, `${msg.to} does not seal (its software did not say so at hello)`);
      target = ext.link;
    } else {
      const tunnel = this.o.cluster.tunnel(to.domain);
      if (!tunnel) {
        const known = this.o.credentials.has('contact-point', to.domain);
        // Remember who waits, to tell them the moment the tunnel is back (REACHABLE).
        if (known && s.reachable) this.waiting.add(to.domain, s.waitKey);
        return this.refuse(s, msg, counted, known ? Status.CONTACT_POINT_OFFLINE : Status.UNKNOWN_CONTACT_POINT);
      }
      if (tunnel.kind === 'remote') {
        if (counted) this.o.stats.forwarded++;
        this.noteSent(s, msg);
        if (s.reachable) this.noteRemoteSender(to.domain, s.waitKey);
        return this.o.cluster.sendToTunnel(to.domain, frame.raw);
      }
      // Registration is checked at the contact point, the single place where traffic is checked
      // (seed 000 [0041]): it refuses with the reason and its admin sees the refusal in the flow.
      target = tunnel.link;
      if (s.reachable && !tunnel.senders?.has(s.waitKey)) {
        // made with the first such sender: most offices are only ever sent to by their own peers' replies
        tunnel.senders ??= new Set();
        if (tunnel.senders.size >= REACHABLE_WAITERS_PER_DOMAIN) tunnel.senders.clear();
        tunnel.senders.add(s.waitKey);
      }
    }
    if (target.bufferedAmount > MAX_BUFFERED_BYTES) return this.refuse(s, msg, counted, Status.QUEUE_FULL, 'the path to the receiver is congested');
    target.send(frame.raw);
    if (counted) this.o.stats.routed++;
    this.noteSent(s, msg);
  }

  /**
   * A message routed (here, or forwarded to another node): for a credential with several
   * sessions, remember whose it is, for its ACK and replies. Alone, only the last address (for
   * when a second session comes): no allocation.
   */
  private noteSent(s: RelaySession, msg: MsgFrame): void {
    if (s.kind !== 'external') return;
    s.lastTo = msg.to;
    if (this.remoteReplyRoutes.size > 0) {
      this.remoteReplyRoutes.delete(`${s.id}\n${msg.to}`);
      if (this.lastRoute?.name === s.id && this.lastRoute.to === msg.to) this.lastRoute = undefined;
    }
    if (s.group.sessions.length > 1) track(s.group, msg.id, msg.to, s);
  }

  private noteRemoteSender(cp: string, waitKey: string): void {
    let set = this.remoteSenders.get(cp);
    if (!set) setCapped(this.remoteSenders, cp, (set = new Set<string>()), REACHABLE_WAITERS_MAX);
    else if (set.has(waitKey)) return;
    if (set.size >= REACHABLE_WAITERS_PER_DOMAIN) set.clear();
    set.add(waitKey);
  }

  /** Another node forwarded a MSG it checked (sender, rights, rate, size) or an ACK: deliver it here or refuse it back. */
  onForwarded(raw: Buffer, reply: string | undefined): void {
    const frame = decodeFrame(raw);
    if (frame.type === FrameType.KEYS_ANSWER) {
      // Goes back like an ACK, to the session that asked (PROTOCOL.md 19.4).
      const answer = decodeMsg(frame);
      const to = parseAddress(answer.to);
      return to ? this.deliverAck(to, answer, raw) : undefined;
    }
    if (frame.type === FrameType.ACK) {
      const ack = decodeAck(frame);
      const to = parseAddress(ack.to);
      if (!to) return;
      // The holding node refused a message from here (its tunnel or session left meanwhile): the
      // sender waits for it as if this node had refused it (9.5).
      if (ack.status === Status.CONTACT_POINT_OFFLINE || ack.status === Status.PEER_OFFLINE) this.waitAfterRemoteRefusal(to, ack);
      return this.deliverAck(to, ack, raw);
    }
    if (frame.type !== FrameType.MSG && frame.type !== FrameType.KEYS_REQUEST) {
      throw new ProtocolError(Status.PROTOCOL_VIOLATION, `a node forwarded a frame of type ${frame.type}`);
    }
    const msg = decodeMsg(frame);
    const counted = frame.type === FrameType.MSG;
    const to = parseAddress(msg.to);
    if (!to) return;
    // The sender's node saw the way here; it may have gone meanwhile (a tunnel that just closed).
    const refuse = (code: StatusCode, reason = describeStatus(code)): void => {
      // Logged and listed here, the node that decided it (the sender's node passes the ACK on as it is).
      if (counted) this.o.stats.refused.add(code);
      if (counted) this.o.refusals.record({ kind: 'message', code, who: `forwarded by node ${reply !== undefined ? (replyNode(reply) ?? '?') : '?'}`, reason, fields: { from: msg.from, to: msg.to } });
      if (reply) this.o.cluster.answer(reply, encodeAck({ id: msg.id, to: msg.from, from: msg.to, status: code, reason }));
    };
    const local = to.domain === this.o.name ? this.receiver(to.name, msg.from) : this.o.sessions.tunnels.get(to.domain);
    if (!local) {
      if (to.domain === this.o.name) return refuse(this.o.credentials.has('external', to.name) ? Status.PEER_OFFLINE : Status.UNKNOWN_PEER);
      return refuse(this.o.credentials.has('contact-point', to.domain) ? Status.CONTACT_POINT_OFFLINE : Status.UNKNOWN_CONTACT_POINT);
    }
    if (!counted && local.kind === 'external' && !local.sealed) return refuse(Status.UNKNOWN_PEER, `${msg.to} does not seal (its software did not say so at hello)`);
    if (local.link.bufferedAmount > MAX_BUFFERED_BYTES) return refuse(Status.QUEUE_FULL, 'the path to the receiver is congested');
    local.link.send(raw);
    if (counted) this.o.stats.routed++;
    if (reply === undefined) return;
    // An external sender on another node: its ACK goes back to that node, not to a session of
    // the same credential that may be here too.
    const from = parseAddress(msg.from);
    if (from?.domain !== this.o.name) return;
    if (reply !== this.lastReply) {
      this.lastReply = reply;
      this.lastReplyNode = replyNode(reply);
    }
    const origin = this.lastReplyNode;
    if (origin === undefined) return;
    this.remoteOrigins.note(from.name, msg.id, origin);
    // A reply to that peer from this address goes to the node that asked (deleted first: least
    // recently written first). Already the newest entry with that node: nothing to change.
    const last = this.lastRoute;
    if (last !== undefined && last.name === from.name && last.to === msg.to && last.node === origin) return;
    const route = `${from.name}\n${msg.to}`;
    this.remoteReplyRoutes.delete(route);
    setCapped(this.remoteReplyRoutes, route, origin, MAX_REMOTE_REPLY_ROUTES);
    this.lastRoute = { name: from.name, to: msg.to, node: origin };
  }

  /**
   * The node whose session of external peer `name` last wrote to `from` (its message came here
   * from there), while that node still holds a session of it; undefined when a session here
   * wrote last, or none is known.
   */
  private remoteAsker(name: string, from: string): RemotePlace | undefined {
    if (this.remoteReplyRoutes.size === 0) return undefined;
    const node = this.remoteReplyRoutes.get(`${name}\n${from}`);
    return node !== undefined && this.o.cluster.externalAt(name, node) ? { kind: 'remote', node } : undefined;
  }

  private waitAfterRemoteRefusal(to: Address, ack: AckFrame): void {
    const waitKey = to.domain === this.o.name ? `e:${to.name}` : `c:${to.domain}`;
    const recipient = parseAddress(ack.from);
    if (!recipient) return;
    if (recipient.domain === this.o.name) {
      if (ack.status === Status.PEER_OFFLINE) this.waiting.add(ack.from, waitKey);
    } else if (ack.status === Status.CONTACT_POINT_OFFLINE) this.waiting.add(recipient.domain, waitKey);
  }

  /**
   * Which session of external peer `name` a message from `from` goes to (PROTOCOL.md 9.2): its
   * only one; of several, the one that last sent a message to `from` (so a reply reaches the
   * session that asked), else the newest. One receiver per message: one end-to-end ACK.
   */
  private receiver(name: string, from: string): ExternalSession | undefined {
    const g = this.o.sessions.group(name);
    if (!g) return undefined;
    if (g.sessions.length === 1) return g.sessions[0];
    return g.replyRoutes.get(from) ?? g.sessions[g.sessions.length - 1];
  }

  /**
   * An ACK travels back to the message's sender: by its `to`, and to the very session that sent
   * the message when that credential has several (ackTarget). The relay does not know that the
   * message was ever routed here; what it checks is what it can from the link alone
   * (PROTOCOL.md 9.2): the ACK's `from` (the message's recipient) is this link's own address or
   * domain, a link the relay routes messages for that address to; and its `to` is an address.
   * The sender's SDK completes a send only on an ACK whose `from` is the address it sent to, so
   * together no one but the recipient's credential can settle a send.
   */
  onAck(s: RelaySession, frame: Frame): void {
    this.routeReply(s, decodeAck(frame), frame.raw);
  }

  /**
   * A KEYS_ANSWER (PROTOCOL.md 19.4) is the answer to one session's request, as an ACK is: it
   * goes back the same way, to the session (and node) that sent the request with its id.
   */
  onKeysAnswer(s: RelaySession, frame: Frame): void {
    this.routeReply(s, decodeMsg(frame), frame.raw);
  }

  /** An ACK or a KEYS answer, `raw` as received, back to the sender of message (request) `ack.id`. */
  private routeReply(s: RelaySession, ack: Reply, raw: Buffer): void {
    if (s.kind === 'external' ? ack.from !== s.address : parseAddress(ack.from)?.domain !== s.id) {
      throw new ProtocolError(Status.PROTOCOL_VIOLATION, `ACK from ${ack.from} on a link that is not ${ack.from}`);
    }
    const to = parseAddress(ack.to);
    if (!to) {
      this.o.stats.droppedAcks++;
      this.o.logger.debug('ack dropped: its to is not an address', { to: ack.to, from: ack.from, id: ack.id });
      return;
    }
    if (this.o.cluster.node !== undefined) {
      // A cluster node: the sender may be on another node (then the ACK goes there as it is).
      if (to.domain === this.o.name) {
        // The message came from a session on another node (onForwarded noted which): back there,
        // even when this node holds sessions of the same credential too.
        const origin = this.remoteOrigins.size > 0 ? this.remoteOrigins.take(to.name, ack.id) : undefined;
        if (origin !== undefined) return this.o.cluster.sendToNode(origin, raw);
        const ext = this.o.cluster.external(to.name);
        if (ext?.kind === 'remote') return this.o.cluster.sendToNode(ext.node, raw);
      } else {
        const tunnel = this.o.cluster.tunnel(to.domain);
        if (tunnel?.kind === 'remote') return this.o.cluster.sendToTunnel(to.domain, raw);
      }
    }
    this.deliverAck(to, ack, raw);
  }

  /** An ACK to a session on this node (from a link here or forwarded by another node). */
  private deliverAck(to: Address, ack: Reply, raw: Buffer): void {
    const target = to.domain === this.o.name ? this.ackTarget(to.name, ack.id)?.link : this.o.sessions.tunnels.get(to.domain)?.link;
    // An ACK for someone who has gone is not kept: the sender retries and the receiver re-acks the duplicate.
    if (target) target.send(raw);
    else this.o.logger.debug('ack unroutable; sender will retry', { to: ack.to, id: ack.id });
  }

  /**
   * The session of external peer `name` an ACK for message `id` goes to: its only session, or
   * of several the one that sent `id` (or, for what was sent before a second session came, the
   * session that was alone then). Undefined: none of them sent it, or that one has gone.
   */
  private ackTarget(name: string, id: string): ExternalSession | undefined {
    const g = this.o.sessions.group(name);
    if (!g) return undefined;
    if (g.sessions.length === 1) return g.sessions[0];
    const owner = g.ackRoutes.get(id);
    if (owner === undefined) return g.untracked;
    g.ackRoutes.delete(id);
    return owner;
  }

  /** A tunnel closed or was replaced: whoever sent through it lately waits for the next one. */
  sendersWait(t: TunnelSession): void {
    if (t.senders === undefined) return;
    for (const key of t.senders) this.waiting.add(t.id, key);
    t.senders.clear();
  }

  /**
   * A contact point's tunnel is up (`key` = its id), or an external peer connected (`key` = its
   * address): every session waiting for it hears REACHABLE `body` at once.
   */
  tellReachable(key: string, body: ReachableBody): void {
    // A newer tunnel of this contact point: who sent through the old one elsewhere waits no more.
    const sent = body.name === undefined ? this.remoteSenders.get(key) : undefined;
    if (sent) {
      this.remoteSenders.delete(key);
      for (const k of sent) this.waiting.add(key, k);
    }
    let told = 0;
    for (const who of this.waiting.take(key)) {
      const name = who.slice(2);
      // `e:name` stands for every session of that credential: what each of them sent may wait.
      for (const s of who.startsWith('e:') ? this.o.sessions.externalsOf(name) : [this.o.sessions.tunnels.get(name)]) {
        if (!s?.reachable) continue;
        s.link.sendControl(FrameType.REACHABLE, body);
        told++;
      }
    }
    if (told > 0) this.o.logger.debug('told waiting senders the way is back', { key, told });
  }

  /** Refuses a MSG or a KEYS_REQUEST with an ACK; only a MSG's refusal (`counted`) is counted and listed as message traffic. */
  private refuse(s: RelaySession, msg: MsgFrame, counted: boolean, code: StatusCode, reason = describeStatus(code)): void {
    if (counted) this.o.stats.refused.add(code);
    if (counted) this.o.refusals.record({ kind: 'message', code, who: who(s), address: s.link.remote, reason, fields: { from: msg.from, to: msg.to } });
    s.link.send(encodeAck({ id: msg.id, to: msg.from, from: msg.to, status: code, reason }));
  }
}

/** What routing a reply needs of it: an ACK, or a KEYS answer (laid out like a MSG). */
type Reply = Pick<AckFrame, 'id' | 'to' | 'from'>;

/**
 * Remembers that session `s` of group `g` sent message `id` to `to` (for the ACK, and for
 * replies from `to`); past their caps the oldest entry is forgotten.
 */
function track(g: ExternalGroup, id: string, to: string, s: ExternalSession): void {
  setCapped(g.ackRoutes, id, s, MAX_ACK_ROUTES_PER_CREDENTIAL);
  // Delete first, so the map's order is least recently used first.
  g.replyRoutes.delete(to);
  setCapped(g.replyRoutes, to, s, MAX_REPLY_ROUTES_PER_CREDENTIAL);
}

function setCapped<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  if (map.size >= max && !map.has(key)) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
  map.set(key, value);
}
