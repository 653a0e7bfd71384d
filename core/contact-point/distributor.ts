import { parseAddress } from '../protocol/address.js';
import { decodeAck, encodeAck, type Frame, type MsgFrame } from '../protocol/codec.js';
import { ProtocolError } from '../protocol/errors.js';
import { FrameType, type ReachableBody } from '../protocol/frames.js';
import {
  MAX_BUFFERED_BYTES,
  MAX_IN_FLIGHT_PER_PEER,
  REACHABLE_WAIT_MS,
  REACHABLE_WAITERS_MAX,
  REACHABLE_WAITERS_PER_DOMAIN,
  SLOW_CONSUMER_TIMEOUT_MS,
} from '../protocol/limits.js';
import { describeStatus, Status, type StatusCode } from '../protocol/status.js';
import type { Logger } from '../runtime/logger.js';
import { WaitList } from '../runtime/wait-list.js';
import type { FlowRecorder } from './flow-recorder.js';
import type { Gateway } from './gateway.js';
import type { PeerPort, PeerSession } from './peer-port.js';
import type { Registrar } from './registrar.js';

/** Messages forwarded to the relay whose ACK the flow view still waits for; beyond, they show as `forwarded`. */
export const MAX_OUTBOUND_TRACKED = 65_536;

/** Where a refusal or an ACK for a message goes back to. */
export type Reply = (frame: Buffer) => void;

interface Outbound {
  readonly size: number;
  readonly from: string;
  readonly to: string;
}

export interface DistributorDeps {
  readonly id: string;
  readonly registrar: Registrar;
  readonly peers: PeerPort;
  readonly gateway: Gateway;
  readonly flow: FlowRecorder;
  readonly logger: Logger;
}

/**
 * The distributor (seed 000, 240): hands collected messages to the registered peer they are
 * addressed to, and routes every ACK back the way its message came: down the tunnel for
 * external senders, straight to the sending session for LAN-to-LAN messages (seed [0041]:
 * the relay never sees those). It refuses, with a reason, anything for a peer that is not
 * registered, not connected, or not keeping up.
 */
export class Distributor {
  private readonly outbound = new Map<string, Outbound>();
  /** domain -> LAN peers whose messages for it were refused CONTACT_POINT_OFFLINE (told REACHABLE when it is back) */
  private readonly waiting = new WaitList(REACHABLE_WAITERS_PER_DOMAIN, REACHABLE_WAITERS_MAX, REACHABLE_WAIT_MS);
  /** ACKs from LAN peers for messages not delivered to them (not forwarded) */
  strayAcks = 0;

  constructor(private readonly d: DistributorDeps) {}

  /** Deliver to a local peer. `dir` says where it came from: the tunnel (`in`) or another LAN peer (`local`). */
  deliver(msg: MsgFrame, raw: Buffer, dir: 'in' | 'local', reply: Reply): void {
    const to = parseAddress(msg.to)!;
    const record = this.d.registrar.get(to.name);
    if (!record || record.state !== 'registered') {
      // The sender learns only "not registered" (no probing which names exist or were revoked);
      // the admin's flow view gets the detail.
      return this.refuse(msg, Status.PEER_NOT_REGISTERED, dir, reply, undefined, record ? `peer is ${record.state}` : 'no such peer');
    }
    const session = this.d.peers.get(to.name);
    if (!session) return this.refuse(msg, Status.PEER_OFFLINE, dir, reply);
    if (session.link.bufferedAmount > MAX_BUFFERED_BYTES) {
      const now = Date.now();
      if (!session.congestedSince) session.congestedSince = now;
      else if (now - session.congestedSince > SLOW_CONSUMER_TIMEOUT_MS) {
        session.link.fault(Status.SLOW_CONSUMER, `nothing read for ${SLOW_CONSUMER_TIMEOUT_MS} ms`);
      }
      return this.refuse(msg, Status.QUEUE_FULL, dir, reply, 'the receiver is not reading');
    }
    session.congestedSince = 0;
    if (session.inflight.size >= MAX_IN_FLIGHT_PER_PEER) {
      return this.refuse(msg, Status.QUEUE_FULL, dir, reply, `${MAX_IN_FLIGHT_PER_PEER} messages await this peer's acknowledgement`);
    }
    session.inflight.set(`${msg.from}\n${msg.id}`, { size: msg.payload.length, at: Date.now(), dir });
    session.link.send(raw);
  }

  /** A registered peer sends beyond the LAN: up the tunnel. */
  forwardOut(session: PeerSession, msg: MsgFrame, raw: Buffer): void {
    if (!this.d.gateway.connected) {
      this.waitFor(parseAddress(msg.to)!.domain, session);
      return this.refuse(msg, Status.CONTACT_POINT_OFFLINE, 'out', session.link.send.bind(session.link), 'the tunnel to the relay is down');
    }
    if (this.d.gateway.bufferedAmount > MAX_BUFFERED_BYTES) {
      return this.refuse(msg, Status.QUEUE_FULL, 'out', session.link.send.bind(session.link), 'the tunnel is congested');
    }
    const key = `${msg.from}\n${msg.id}`;
    if (this.outbound.size < MAX_OUTBOUND_TRACKED) this.outbound.set(key, { size: msg.payload.length, from: msg.from, to: msg.to });
    else this.d.flow.record(msg.id, 'out', msg.from, msg.to, msg.payload.length, -1);
    this.d.gateway.send(raw);
  }

  /** An ACK from a local peer for a message we delivered to it. */
  ackFromPeer(session: PeerSession, frame: Frame): void {
    const ack = decodeAck(frame);
    if (ack.from !== session.address) throw new ProtocolError(Status.PROTOCOL_VIOLATION, `ACK signed ${ack.from} on ${session.address}'s link`);
    const key = `${ack.to}\n${ack.id}`;
    const entry = session.inflight.get(key);
    if (!entry) {
      // Not a message we delivered to this peer (or one from before it reconnected): a receipt
      // for it is not the peer's to give. Dropped; a real sender retries and gets a re-ACK.
      this.strayAcks++;
      this.d.logger.debug('ACK for a message not delivered to this peer; dropped', { peer: session.name, to: ack.to, id: ack.id });
      return;
    }
    session.inflight.delete(key);
    if (ack.status === Status.OK) this.d.registrar.countMessage(session.name, 'in');
    this.d.flow.record(ack.id, entry.dir, ack.to, ack.from, entry.size, ack.status, ack.reason);
    const to = parseAddress(ack.to);
    if (!to) return;
    if (to.domain === this.d.id) this.d.peers.get(to.name)?.link.send(frame.raw);
    else this.d.gateway.send(frame.raw);
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
    const entry = this.outbound.get(key);
    if (entry) {
      this.outbound.delete(key);
      this.d.flow.record(ack.id, 'out', entry.from, entry.to, entry.size, ack.status, ack.reason);
    }
    const session = this.d.peers.get(to.name);
    if (!session) return;
    if (ack.status === Status.CONTACT_POINT_OFFLINE) {
      // The relay refused it: the other contact point is down. The relay tells us when it is back.
      const from = parseAddress(ack.from);
      if (from) this.waitFor(from.domain, session);
    } else if (ack.status === Status.PEER_OFFLINE) {
      // The receiver is away: if it is an external peer, the relay tells us when it connects.
      this.waitFor(ack.from, session);
    }
    session.link.send(frame.raw);
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
   * Our tunnel is back: every LAN peer refused CONTACT_POINT_OFFLINE hears REACHABLE for each
   * domain it waits for. (For a domain whose own contact point is still down, its retry is
   * refused by the relay, which then tells us when that one returns.)
   */
  tunnelUp(): void {
    for (const key of this.waiting.domains()) {
      const at = key.indexOf('@');
      this.reachable(at < 0 ? { domain: key } : { domain: key.slice(at + 1), name: key.slice(0, at) });
    }
  }

  /** `key`: a domain, or an address (`name@domain`) refused PEER_OFFLINE. */
  private waitFor(key: string, session: PeerSession): void {
    if (session.reachable) this.waiting.add(key, session.name);
  }

  /** Answer a message with a refusal ACK (never drop it silently) and count it in the flow. */
  refuse(msg: MsgFrame, code: StatusCode, dir: 'in' | 'out' | 'local', reply: Reply, reason?: string, adminDetail?: string): void {
    const text = reason ?? describeStatus(code);
    this.d.flow.record(msg.id, dir, msg.from, msg.to, msg.payload.length, code, adminDetail ?? text);
    reply(encodeAck({ id: msg.id, to: msg.from, from: msg.to, status: code, reason: text }));
  }

  /** A peer went away: what it had not acknowledged will be retried by its senders. */
  sessionDown(session: PeerSession): void {
    session.inflight.clear();
  }

  /**
   * The tunnel dropped: ACKs for messages sent out can no longer come; senders retry. Their
   * senders wait for the tunnel's return (REACHABLE) like refused ones: the messages may have
   * been lost with it, and their next retry may be an ACK timeout of up to 16 s away.
   */
  tunnelDown(): void {
    for (const o of this.outbound.values()) {
      const from = parseAddress(o.from);
      const to = parseAddress(o.to);
      const session = from && this.d.peers.get(from.name);
      if (session && to) this.waitFor(to.domain, session);
    }
    this.outbound.clear();
  }
}
