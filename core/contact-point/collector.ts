import { parseAddress } from '../protocol/address.js';
import { decodeMsg, encodeAck, type Frame } from '../protocol/codec.js';
import { MAX_MESSAGE_BYTES } from '../protocol/limits.js';
import { Status, type StatusCode } from '../protocol/status.js';
import type { Distributor } from './distributor.js';
import type { FlowRecorder } from './flow-recorder.js';
import type { Uplink } from './gateway.js';
import type { Outbound } from './outbound.js';
import type { PeerSession } from './peer-interface.js';
import { refuse, type Reply } from './refusal.js';
import type { Registrar } from './registrar.js';
import type { SealGuard } from './seal-guard.js';
import { messageCount } from '../protocol/seal.js';
import { TokenBucket } from '../runtime/token-bucket.js';

export interface CollectorDeps {
  readonly id: string;
  readonly registrar: Registrar;
  /** where messages for a LAN peer go */
  readonly distributor: Distributor;
  /** where LAN peers' messages beyond the LAN go */
  readonly outbound: Outbound;
  /** the tunnel a KEYS request for a domain goes up (the relay's, or direct mode's for its domain) */
  readonly uplinkFor: (domain: string) => Uplink;
  readonly flow: FlowRecorder;
  /** sealed payloads: the policy, key bindings and KEYS answers */
  readonly seal: SealGuard;
  readonly maxMessageBytes?: number;
}

/**
 * Refusals of unregistered peers' messages written to the flow and the history one by one, a
 * second, for all such peers together; past it they are counted in the totals only. Anyone on
 * the LAN can be such a peer: at thousands a second it would push the admin's history out.
 */
export const UNREGISTERED_REFUSALS_NOTED_PER_SECOND = 20;

/**
 * The collector (seed 000, 220): takes every message arriving at the contact point, from the
 * tunnel or from a LAN peer, and runs the checks of the single place where traffic is checked
 * (seed [0041]): address, size, sender identity and registration, rate. What passes goes to
 * the distributor (a local peer) or to outbound (up the tunnel); what fails is answered with a
 * reason.
 */
export class Collector {
  private readonly id: string;
  private readonly maxMessageBytes: number;
  private readonly unregisteredNotes = new TokenBucket(UNREGISTERED_REFUSALS_NOTED_PER_SECOND);

  constructor(private readonly d: CollectorDeps) {
    this.id = d.id;
    this.maxMessageBytes = d.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  }

  /** A message the relay (or direct mode's embedded relay) pushed down a tunnel for one of our peers; `toTunnel` sends up that tunnel. */
  fromTunnel(frame: Frame, toTunnel: Reply): void {
    const msg = decodeMsg(frame);
    const to = parseAddress(msg.to);
    if (!to || to.domain !== this.id) {
      return refuse(this.d.flow, msg, Status.BAD_ADDRESS, 'in', toTunnel, `this is contact point ${this.id}`);
    }
    if (msg.payload.length > this.maxMessageBytes) {
      return refuse(this.d.flow, msg, Status.TOO_LARGE, 'in', toTunnel, `${msg.payload.length} bytes; the limit is ${this.maxMessageBytes}`);
    }
    // Before the distributor's access rules and content check: a sealed payload is checked here as metadata only.
    const sealRefusal = this.d.seal.check(msg, undefined, to.name);
    if (sealRefusal) return refuse(this.d.flow, msg, sealRefusal.code, 'in', toTunnel, sealRefusal.reason);
    this.d.distributor.deliver(msg, frame.raw, 'in', toTunnel);
  }

  /** A KEYS request (PROTOCOL.md 19.4) for one of our peers, from a tunnel; `toTunnel` answers up that tunnel. */
  keysFromTunnel(frame: Frame, toTunnel: Reply): void {
    const answer = this.d.seal.answer(decodeMsg(frame), undefined);
    if (answer !== 'forward') toTunnel(answer);
  }

  /** A LAN peer's KEYS request: answered here, or passed up the tunnel to the contact point that can. */
  keysFromPeer(session: PeerSession, frame: Frame): void {
    const req = decodeMsg(frame);
    const refuseKeys = (status: StatusCode, reason?: string): void => void session.link.send(encodeAck({ id: req.id, to: req.from, from: req.to, status, reason: reason ?? '' }));
    if (req.from !== session.address) return refuseKeys(Status.UNAUTHORIZED, `you ask as ${session.address}`);
    // As for its messages: an unapproved peer asks nothing of other offices (a request passed up
    // the tunnel carries its address, which their contact points would bind), and within its rate.
    if (!this.d.registrar.isRegistered(session.name)) return refuseKeys(Status.UNAUTHORIZED, 'only registered peers may ask for keys; ask the admin to approve this peer');
    if (!session.bucket.take(1)) return refuseKeys(Status.RATE_LIMITED);
    const answer = this.d.seal.answer(req, session.name);
    if (answer === 'forward') this.d.outbound.forwardKeys(session, req, frame.raw);
    else session.link.send(answer);
  }

  /** A message a LAN peer sent: to another LAN peer, or out through the tunnel. */
  fromPeer(session: PeerSession, frame: Frame): void {
    const msg = decodeMsg(frame);
    const reply = (f: Buffer): void => void session.link.send(f);
    const to = parseAddress(msg.to);
    const dir = to?.domain === this.id ? 'local' : 'out';
    if (msg.from !== session.address) {
      return refuse(this.d.flow, msg, Status.UNAUTHORIZED, dir, reply, `you send as ${session.address}`);
    }
    if (!this.d.registrar.isRegistered(session.name)) {
      const reason = 'only registered peers may send; ask the admin to approve this peer';
      return refuse(this.d.flow, msg, Status.UNAUTHORIZED, dir, reply, reason, undefined, this.unregisteredNotes.take());
    }
    if (!to) return refuse(this.d.flow, msg, Status.BAD_ADDRESS, dir, reply, `"${msg.to}" is not name@domain`);
    if (msg.payload.length > this.maxMessageBytes) {
      return refuse(this.d.flow, msg, Status.TOO_LARGE, dir, reply, `${msg.payload.length} bytes; the limit is ${this.maxMessageBytes}`);
    }
    // A sealed bundle (PROTOCOL.md 19.6) counts as the messages it carries, for the rate and the peer's counters.
    const count = messageCount(msg.flags, msg.payload);
    if (!session.bucket.take(count)) return refuse(this.d.flow, msg, Status.RATE_LIMITED, dir, reply);
    const sealRefusal = this.d.seal.check(msg, session.name, dir === 'local' ? to.name : undefined);
    if (sealRefusal) return refuse(this.d.flow, msg, sealRefusal.code, dir, reply, sealRefusal.reason);
    this.d.registrar.countMessage(session.name, 'out', count);
    if (dir === 'local') this.d.distributor.deliver(msg, frame.raw, 'local', reply);
    else this.d.outbound.forward(session, msg, frame.raw);
  }
}
