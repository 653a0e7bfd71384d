import { parseAddress } from '../protocol/address.js';
import { decodeAck, type Frame, type MsgFrame } from '../protocol/codec.js';
import { ProtocolError } from '../protocol/errors.js';
import { MAX_BUFFERED_BYTES, MAX_IN_FLIGHT_PER_PEER, SLOW_CONSUMER_TIMEOUT_MS } from '../protocol/limits.js';
import { messageCount } from '../protocol/seal.js';
import { Status } from '../protocol/status.js';
import type { Logger } from '../runtime/logger.js';
import type { FlowRecorder } from './flow-recorder.js';
import type { Uplink } from './gateway.js';
import type { PeerPort, PeerSession } from './peer-interface.js';
import { refuse, type Reply } from './refusal.js';
import type { Registrar } from './registrar.js';
import type { AccessRules, RuleVerdict } from './access-rules.js';
import { checkRequest, type ContentGate } from './content-check.js';

export interface DistributorDeps {
  readonly id: string;
  readonly registrar: Registrar;
  readonly peers: PeerPort;
  /** the tunnel ACKs for a domain go up (the relay's, or direct mode's for its domain) */
  readonly uplinkFor: (domain: string) => Uplink;
  readonly flow: FlowRecorder;
  readonly logger: Logger;
  /** who may reach whom, per-peer limits (issue 15) */
  readonly rules: AccessRules;
  /** the content check, when the admin set one */
  readonly gate: ContentGate;
}

/**
 * The distributor (seed 000, 240): hands collected messages to the registered peer they are
 * addressed to, and routes every ACK back the way its message came: down the tunnel for
 * external senders, straight to the sending session for LAN-to-LAN messages (seed [0041]:
 * the relay never sees those). It refuses, with a reason, anything for a peer that is not
 * registered, not connected, or not keeping up. What LAN peers send up the tunnel is
 * outbound.ts's.
 */
export class Distributor {
  /** ACKs from LAN peers for messages not delivered to them (not forwarded) */
  strayAcks = 0;
  /** messages from the tunnel that came again (a retry, maybe on the other tunnel) while the peer had the first copy */
  duplicatesInFlight = 0;

  constructor(private readonly d: DistributorDeps) {}

  /**
   * Deliver to a local peer. `dir` says where it came from: the tunnel (`in`) or another LAN
   * peer (`local`). Every message for a LAN peer passes here, whatever brought it, so the
   * access rules and the content check (issue 15) are applied here: senders first (the same
   * answer for every name), then registration, the peer's size and rate limits, the content
   * check, and last the peer's session.
   */
  deliver(msg: MsgFrame, raw: Buffer, dir: 'in' | 'local', reply: Reply): void {
    const to = parseAddress(msg.to)!;
    const ruled = (v: RuleVerdict & { ok: false }): void => {
      if (this.d.registrar.get(to.name)) this.d.rules.recordRefusal(to.name, msg.from, v.code, v.reason);
      refuse(this.d.flow, msg, v.code, dir, reply, v.reason, `${v.reason} (${v.detail})`);
    };
    const admitted = this.d.rules.admit(msg, to.name);
    if (!admitted.ok) return ruled(admitted);
    const record = this.d.registrar.get(to.name);
    if (!record || record.state !== 'registered') {
      // What a sender learns (docs/PROTOCOL.md, "What a sender learns"; issue 16): one answer for
      // an unknown, unregistered, pending or revoked peer, naming the address it tried, so no one
      // outside can probe which names exist or what the admin decided; the admin's flow view
      // gets the detail.
      return refuse(this.d.flow, msg, Status.PEER_NOT_REGISTERED, dir, reply, `peer ${msg.to} is not registered`, record ? `peer is ${record.state}` : 'no such peer');
    }
    const limited = this.d.rules.limit(msg, to.name);
    if (!limited.ok) return ruled(limited);
    if (!this.d.gate.active) return this.handOff(msg, raw, dir, reply);
    this.d.gate.submit(to.name, checkRequest(msg, dir), msg.payload, (o) => {
      if (o.pass) return this.handOff(msg, raw, dir, reply);
      if (o.busy) return refuse(this.d.flow, msg, Status.QUEUE_FULL, dir, reply, o.reason, o.detail);
      ruled({ ok: false, code: Status.CONTENT_REFUSED, reason: o.reason, detail: o.detail });
    });
  }

  /** The last step: the peer's session, if it is still registered and keeping up. */
  private handOff(msg: MsgFrame, raw: Buffer, dir: 'in' | 'local', reply: Reply): void {
    const name = parseAddress(msg.to)!.name;
    // Checked again: the content check may have taken a while, and the admin may have revoked it meanwhile.
    if (!this.d.registrar.isRegistered(name)) return refuse(this.d.flow, msg, Status.PEER_NOT_REGISTERED, dir, reply, `peer ${msg.to} is not registered`, 'revoked while its content check ran');
    const session = this.d.peers.get(name);
    if (!session) return refuse(this.d.flow, msg, Status.PEER_OFFLINE, dir, reply);
    if (session.link.bufferedAmount > MAX_BUFFERED_BYTES) {
      const now = Date.now();
      if (!session.congestedSince) session.congestedSince = now;
      else if (now - session.congestedSince > SLOW_CONSUMER_TIMEOUT_MS) {
        session.link.fault(Status.SLOW_CONSUMER, `nothing read for ${SLOW_CONSUMER_TIMEOUT_MS} ms`);
      }
      return refuse(this.d.flow, msg, Status.QUEUE_FULL, dir, reply, 'the receiver is not reading');
    }
    session.congestedSince = 0;
    if (session.inflight.size >= MAX_IN_FLIGHT_PER_PEER) {
      return refuse(this.d.flow, msg, Status.QUEUE_FULL, dir, reply, `${MAX_IN_FLIGHT_PER_PEER} messages await this peer's acknowledgement`);
    }
    const key = `${msg.from}\n${msg.id}`;
    if (dir === 'in' && session.inflight.has(key)) {
      // The peer has this message and its ACK will follow (PROTOCOL.md 9.4): a copy that came
      // again, maybe on the other of two tunnels, is not handed to it twice.
      this.duplicatesInFlight++;
      return;
    }
    session.inflight.set(key, { size: msg.payload.length, count: messageCount(msg.flags, msg.payload), at: Date.now(), dir, ...(dir === 'in' ? { back: reply } : {}) });
    session.link.send(raw);
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
    if (ack.status === Status.OK) this.d.registrar.countMessage(session.name, 'in', entry.count);
    this.d.flow.record(ack.id, entry.dir, ack.to, ack.from, entry.size, ack.status, ack.reason, entry.count);
    const to = parseAddress(ack.to);
    if (!to) return;
    if (to.domain === this.d.id) this.d.peers.get(to.name)?.link.send(frame.raw);
    else if (entry.back) entry.back(frame.raw);
    else this.d.uplinkFor(to.domain).send(frame.raw);
  }

  /** A peer went away: what it had not acknowledged will be retried by its senders. */
  sessionDown(session: PeerSession): void {
    session.inflight.clear();
  }
}
