import { parseAddress } from '../protocol/address.js';
import { decodeAck, decodeMsg, encodeAck, type Frame, type MsgFrame } from '../protocol/codec.js';
import { ProtocolError } from '../protocol/errors.js';
import { FrameType, type ReachableBody } from '../protocol/frames.js';
import type { Link } from '../protocol/link.js';
import { MAX_BUFFERED_BYTES, REACHABLE_WAIT_MS, REACHABLE_WAITERS_MAX, REACHABLE_WAITERS_PER_DOMAIN } from '../protocol/limits.js';
import { describeStatus, Status, type StatusCode } from '../protocol/status.js';
import type { Logger } from '../runtime/logger.js';
import { WaitList } from '../runtime/wait-list.js';
import type { CredentialStore } from './credentials.js';
import type { RelaySession, SessionTable, TunnelSession } from './sessions.js';
import type { RelayStats } from './stats.js';

export interface RouterOptions {
  /** the relay's name: the domain of external peers' addresses */
  readonly name: string;
  readonly credentials: CredentialStore;
  readonly logger: Logger;
  readonly maxMessageBytes: number;
  readonly sessions: SessionTable;
  /** where routed and refused messages are counted */
  readonly stats: RelayStats;
}

/**
 * Routing (seed 000's relay server): MSG and ACK frames between tunnels and external sessions
 * by address, refusals with a reason back to the sender, and REACHABLE for those refused
 * because the way was down once it is back. It holds no message state: senders retry,
 * receivers dedupe, so a relay restart loses nothing.
 */
export class Router {
  /**
   * Contact point id (or external peer address) -> sessions (`e:name` / `c:id`) refused
   * CONTACT_POINT_OFFLINE (PEER_OFFLINE) for it, told REACHABLE when it is back.
   */
  private readonly waiting = new WaitList(REACHABLE_WAITERS_PER_DOMAIN, REACHABLE_WAITERS_MAX, REACHABLE_WAIT_MS);

  constructor(private readonly o: RouterOptions) {}

  onMsg(s: RelaySession, frame: Frame): void {
    const msg = decodeMsg(frame);
    if (s.kind === 'external') {
      if (msg.from !== s.address) return this.refuse(s.link, msg, Status.UNAUTHORIZED, `you send as ${s.address}, not ${msg.from}`);
      if (!s.rights.includes('send')) return this.refuse(s.link, msg, Status.UNAUTHORIZED, 'this credential may not send messages');
      if (!s.bucket.take()) return this.refuse(s.link, msg, Status.RATE_LIMITED);
    } else if (parseAddress(msg.from)?.domain !== s.id) {
      return this.refuse(s.link, msg, Status.UNAUTHORIZED, `contact point ${s.id} may only send as *@${s.id}`);
    }
    if (msg.payload.length > this.o.maxMessageBytes) {
      return this.refuse(s.link, msg, Status.TOO_LARGE, `${msg.payload.length} bytes; the limit is ${this.o.maxMessageBytes}`);
    }
    const to = parseAddress(msg.to);
    if (!to) return this.refuse(s.link, msg, Status.BAD_ADDRESS, `"${msg.to}" is not name@domain`);
    let target: Link;
    if (to.domain === this.o.name) {
      const ext = this.o.sessions.externals.get(to.name);
      if (!ext) {
        const known = this.o.credentials.has('external', to.name);
        // Remember who waits, to tell them the moment that peer connects (REACHABLE with name).
        if (known && s.reachable) this.waiting.add(msg.to, s.waitKey);
        return this.refuse(s.link, msg, known ? Status.PEER_OFFLINE : Status.UNKNOWN_PEER);
      }
      target = ext.link;
    } else {
      const tunnel = this.o.sessions.tunnels.get(to.domain);
      if (!tunnel) {
        const known = this.o.credentials.has('contact-point', to.domain);
        // Remember who waits, to tell them the moment the tunnel is back (REACHABLE).
        if (known && s.reachable) this.waiting.add(to.domain, s.waitKey);
        return this.refuse(s.link, msg, known ? Status.CONTACT_POINT_OFFLINE : Status.UNKNOWN_CONTACT_POINT);
      }
      // Registration is checked at the contact point, the single place where traffic is checked
      // (seed 000 [0041]): it refuses with the reason and its admin sees the refusal in the flow.
      target = tunnel.link;
      if (s.reachable && !tunnel.senders.has(s.waitKey)) {
        if (tunnel.senders.size >= REACHABLE_WAITERS_PER_DOMAIN) tunnel.senders.clear();
        tunnel.senders.add(s.waitKey);
      }
    }
    if (target.bufferedAmount > MAX_BUFFERED_BYTES) return this.refuse(s.link, msg, Status.QUEUE_FULL, 'the path to the receiver is congested');
    target.send(frame.raw);
    this.o.stats.routed++;
  }

  /**
   * An ACK travels back to the message's sender. The relay keeps no per-message state, so it
   * cannot know that the message was ever routed here; what it checks is what it can from the
   * link alone (PROTOCOL.md 9.2): the ACK's `from` (the message's recipient) is this link's own
   * address or domain, the only link the relay routes messages for that address to; and its `to`
   * is an address. The sender's SDK completes a send only on an ACK whose `from` is the address
   * it sent to, so together no one but the recipient's link can settle a send.
   */
  onAck(s: RelaySession, frame: Frame): void {
    const ack = decodeAck(frame);
    if (s.kind === 'external' ? ack.from !== s.address : parseAddress(ack.from)?.domain !== s.id) {
      throw new ProtocolError(Status.PROTOCOL_VIOLATION, `ACK from ${ack.from} on a link that is not ${ack.from}`);
    }
    const to = parseAddress(ack.to);
    if (!to) {
      this.o.stats.droppedAcks++;
      this.o.logger.debug('ack dropped: its to is not an address', { to: ack.to, from: ack.from, id: ack.id });
      return;
    }
    const target = to.domain === this.o.name ? this.o.sessions.externals.get(to.name)?.link : this.o.sessions.tunnels.get(to.domain)?.link;
    // An ACK for someone who has gone is not kept: the sender retries and the receiver re-acks the duplicate.
    if (target) target.send(frame.raw);
    else this.o.logger.debug('ack unroutable; sender will retry', { to: ack.to, id: ack.id });
  }

  /** A tunnel closed or was replaced: whoever sent through it lately waits for the next one. */
  sendersWait(t: TunnelSession): void {
    for (const key of t.senders) this.waiting.add(t.id, key);
    t.senders.clear();
  }

  /**
   * A contact point's tunnel is up (`key` = its id), or an external peer connected (`key` = its
   * address): every session waiting for it hears REACHABLE `body` at once.
   */
  tellReachable(key: string, body: ReachableBody): void {
    let told = 0;
    for (const who of this.waiting.take(key)) {
      const name = who.slice(2);
      const s = who.startsWith('e:') ? this.o.sessions.externals.get(name) : this.o.sessions.tunnels.get(name);
      if (!s?.reachable) continue;
      s.link.sendControl(FrameType.REACHABLE, body);
      told++;
    }
    if (told > 0) this.o.logger.debug('told waiting senders the way is back', { key, told });
  }

  private refuse(link: Link, msg: MsgFrame, code: StatusCode, reason?: string): void {
    this.o.stats.refused.add(code);
    link.send(encodeAck({ id: msg.id, to: msg.from, from: msg.to, status: code, reason: reason ?? describeStatus(code) }));
  }
}
