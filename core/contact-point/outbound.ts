import { parseAddress } from '../protocol/address.js';
import { decodeAck, encodeAck, type Frame, type MsgFrame } from '../protocol/codec.js';
import { messageCount } from '../protocol/seal.js';
import type { ReachableBody } from '../protocol/frames.js';
import { FrameType } from '../protocol/frames.js';
import { MAX_BUFFERED_BYTES, REACHABLE_WAIT_MS, REACHABLE_WAITERS_MAX, REACHABLE_WAITERS_PER_DOMAIN } from '../protocol/limits.js';
import { Status } from '../protocol/status.js';
import type { Logger } from '../runtime/logger.js';
import { WaitList } from '../runtime/wait-list.js';
import type { FlowRecorder } from './flow-recorder.js';
import type { Uplink } from './gateway.js';
import { passOn, type PeerPort, type PeerSession } from './peer-interface.js';
import { refuse } from './refusal.js';

/** Messages forwarded to the relay whose ACK the flow view still waits for; beyond, they show as `forwarded`. */
export const MAX_OUTBOUND_TRACKED = 65_536;

interface Sent {
  readonly size: number;
  /** messages it carries: more than 1 for a sealed bundle */
  readonly count: number;
  readonly from: string;
  readonly to: string;
  /** the tunnel it went up, and which of its slots (issue 12): its ACK may be lost with that slot alone */
  readonly uplink: Uplink;
  readonly slot: number | undefined;
}

export interface OutboundDeps {
  readonly id: string;
  readonly peers: PeerPort;
  /** the tunnel messages for a domain go up (the relay's, or direct mode's for its domain) */
  readonly uplinkFor: (domain: string) => Uplink;
  readonly flow: FlowRecorder;
  readonly logger: Logger;
  /** whether a LAN peer is registered (an ACK from the tunnel reaches only such a one) */
  readonly isRegistered: (name: string) => boolean;
}

/**
 * Outbound messages (seed 000, block 370): what registered LAN peers send beyond the LAN, up the
 * gateway's tunnel. Each is tracked until its ACK comes back down the tunnel (for the flow
 * view), and that ACK goes to the sending session. LAN peers that wait for a domain to come
 * back hear REACHABLE (PROTOCOL.md 9.5): those refused CONTACT_POINT_OFFLINE or PEER_OFFLINE,
 * and those whose messages were in flight when the tunnel dropped.
 */
export class Outbound {
  private readonly sent = new Map<string, Sent>();
  /** domain (or external address) -> LAN peers waiting for it, told REACHABLE when it is back */
  private readonly waiting = new WaitList(REACHABLE_WAITERS_PER_DOMAIN, REACHABLE_WAITERS_MAX, REACHABLE_WAIT_MS);

  constructor(private readonly d: OutboundDeps) {}

  /** A registered peer's message, checked by the collector, up the tunnel (or refused: tunnel down or congested). */
  forward(session: PeerSession, msg: MsgFrame, raw: Buffer): void {
    const reply = (f: Buffer): void => void session.link.send(f);
    const domain = parseAddress(msg.to)!.domain;
    const uplink = this.d.uplinkFor(domain);
    if (!uplink.connected) {
      this.waitFor(domain, session);
      return refuse(this.d.flow, msg, Status.CONTACT_POINT_OFFLINE, 'out', reply, 'the tunnel to the relay is down');
    }
    if (uplink.bufferedAmount > MAX_BUFFERED_BYTES) {
      return refuse(this.d.flow, msg, Status.QUEUE_FULL, 'out', reply, 'the tunnel is congested');
    }
    const key = `${msg.from}\n${msg.id}`;
    const count = messageCount(msg.flags, msg.payload);
    if (this.sent.size < MAX_OUTBOUND_TRACKED) this.sent.set(key, { size: msg.payload.length, count, from: msg.from, to: msg.to, uplink, slot: uplink.sendingSlot });
    else this.d.flow.record(msg.id, 'out', msg.from, msg.to, msg.payload.length, -1, undefined, count);
    uplink.send(raw);
  }

  /**
   * A LAN peer's KEYS request its contact point cannot answer, up the tunnel. With the tunnel
   * down it is refused CONTACT_POINT_OFFLINE at once (retryable) and the peer waits for
   * REACHABLE, as for a message: unanswered, the asker waited KEYS_TIMEOUT_MS, took "no key",
   * and its message went plain once the tunnel was back though the receiver seals.
   */
  forwardKeys(session: PeerSession, req: MsgFrame, raw: Buffer): void {
    const domain = parseAddress(req.to)?.domain ?? '';
    if (this.d.uplinkFor(domain).send(raw)) return;
    this.waitFor(domain, session);
    session.link.send(encodeAck({ id: req.id, to: req.from, from: req.to, status: Status.CONTACT_POINT_OFFLINE, reason: 'the tunnel to the relay is down' }));
  }

  /** An ACK from the relay side for a message a local peer sent out. */
  ackFromTunnel(frame: Frame): void {
    const ack = decodeAck(frame);
    const to = parseAddress(ack.to);
    if (!to || to.domain !== this.d.id) {
      this.d.logger.debug('ACK for another contact point arrived on our tunnel', { to: ack.to });
      return;
    }
    const key = `${ack.to}\n${ack.id}`;
    const entry = this.sent.get(key);
    if (entry) {
      this.sent.delete(key);
      this.d.flow.record(ack.id, 'out', entry.from, entry.to, entry.size, ack.status, ack.reason, entry.count);
    }
    const session = this.d.peers.get(to.name);
    if (!session || !this.d.isRegistered(to.name)) return;
    if (ack.status === Status.CONTACT_POINT_OFFLINE) {
      // The relay refused it: the other contact point is down. The relay tells us when it is back.
      const from = parseAddress(ack.from);
      if (from) this.waitFor(from.domain, session);
    } else if (ack.status === Status.PEER_OFFLINE) {
      // The receiver is away: if it is an external peer, the relay tells us when it connects.
      this.waitFor(ack.from, session);
    }
    passOn(session, true, frame.raw);
  }

  /**
   * The relay says contact point `domain` (or, with `name`, external peer `name@domain`) is
   * back: tell the LAN peers that wait for it.
   */
  reachable(body: ReachableBody): void {
    const key = body.name !== undefined ? `${body.name}@${body.domain}` : body.domain;
    for (const name of this.waiting.take(key)) {
      const session = this.d.peers.get(name);
      if (session?.reachable) session.link.sendControl(FrameType.REACHABLE, body);
    }
  }

  /**
   * Our tunnel is back (`uplink`: the relay's, or direct mode's): every LAN peer refused
   * CONTACT_POINT_OFFLINE hears REACHABLE for each domain it waits for that goes up that tunnel. (For a domain whose own contact point is still down, its retry is
   * refused by the relay, which then tells us when that one returns.)
   */
  tunnelUp(uplink: Uplink): void {
    for (const key of this.waiting.domains()) {
      const at = key.indexOf('@');
      const domain = at < 0 ? key : key.slice(at + 1);
      if (this.d.uplinkFor(domain) !== uplink) continue; // goes up the other tunnel (direct mode), which may still be down
      this.reachable(at < 0 ? { domain } : { domain, name: key.slice(0, at) });
    }
  }

  /**
   * The tunnel dropped: ACKs for messages sent out can no longer come; senders retry. Their
   * senders wait for the tunnel's return (REACHABLE) like refused ones: the messages may have
   * been lost with it, and their next retry may be an ACK timeout of up to 16 s away.
   */
  tunnelDown(uplink: Uplink): void {
    for (const [key, o] of this.sent) {
      const from = parseAddress(o.from);
      const to = parseAddress(o.to);
      if (to && this.d.uplinkFor(to.domain) !== uplink) continue; // went up the other tunnel (direct mode)
      this.sent.delete(key);
      const session = from && this.d.peers.get(from.name);
      if (session && to) this.waitFor(to.domain, session);
    }
  }

  /**
   * One of two tunnels dropped (issue 12) while the other may stay up: what went up that one
   * may be lost with it, and with the other tunnel up no 'down' (tunnelDown) will come. Their
   * senders hear REACHABLE now, so they resend through the tunnel that is up instead of waiting
   * out an ACK timeout (receivers dedupe); with none up they wait for the tunnel like above.
   */
  slotDown(uplink: Uplink, slot: number): void {
    const told = new Set<string>();
    for (const [key, o] of this.sent) {
      if (o.uplink !== uplink || o.slot !== slot) continue;
      this.sent.delete(key);
      const from = parseAddress(o.from);
      const to = parseAddress(o.to);
      const session = from && this.d.peers.get(from.name);
      if (!session || !to) continue;
      if (!uplink.connected) this.waitFor(to.domain, session);
      else if (session.reachable && !told.has(`${session.name}\n${to.domain}`)) {
        told.add(`${session.name}\n${to.domain}`);
        session.link.sendControl(FrameType.REACHABLE, { domain: to.domain });
      }
    }
  }

  /** `key`: a domain, or an address (`name@domain`) refused PEER_OFFLINE. */
  private waitFor(key: string, session: PeerSession): void {
    if (session.reachable) this.waiting.add(key, session.name);
  }
}
