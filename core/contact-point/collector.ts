import { parseAddress } from '../protocol/address.js';
import { decodeMsg, type Frame } from '../protocol/codec.js';
import { MAX_MESSAGE_BYTES } from '../protocol/limits.js';
import { Status } from '../protocol/status.js';
import type { Distributor } from './distributor.js';
import type { Gateway } from './gateway.js';
import type { PeerSession } from './peer-port.js';
import type { Registrar } from './registrar.js';

/**
 * The collector (seed 000, 220): takes every message arriving at the contact point, from the
 * tunnel or from a LAN peer, and runs the checks of the single place where traffic is checked
 * (seed [0041]): address, size, sender identity and registration, rate. What passes goes to
 * the distributor (a local peer) or up the tunnel; what fails is answered with a reason.
 */
export class Collector {
  constructor(
    private readonly id: string,
    private readonly registrar: Registrar,
    private readonly distributor: Distributor,
    private readonly gateway: Gateway,
    private readonly maxMessageBytes = MAX_MESSAGE_BYTES,
  ) {}

  private readonly toTunnel = (frame: Buffer): void => {
    this.gateway.send(frame);
  };

  /** A message the relay pushed down the tunnel for one of our peers. */
  fromTunnel(frame: Frame): void {
    const msg = decodeMsg(frame);
    const to = parseAddress(msg.to);
    if (!to || to.domain !== this.id) {
      return this.distributor.refuse(msg, Status.BAD_ADDRESS, 'in', this.toTunnel, `this is contact point ${this.id}`);
    }
    if (msg.payload.length > this.maxMessageBytes) {
      return this.distributor.refuse(msg, Status.TOO_LARGE, 'in', this.toTunnel, `${msg.payload.length} bytes; the limit is ${this.maxMessageBytes}`);
    }
    this.distributor.deliver(msg, frame.raw, 'in', this.toTunnel);
  }

  /** A message a LAN peer sent: to another LAN peer, or out through the tunnel. */
  fromPeer(session: PeerSession, frame: Frame): void {
    const msg = decodeMsg(frame);
    const reply = (f: Buffer): void => void session.link.send(f);
    const to = parseAddress(msg.to);
    const dir = to?.domain === this.id ? 'local' : 'out';
    if (msg.from !== session.address) {
      return this.distributor.refuse(msg, Status.UNAUTHORIZED, dir, reply, `you send as ${session.address}`);
    }
    if (!this.registrar.isRegistered(session.name)) {
      return this.distributor.refuse(msg, Status.UNAUTHORIZED, dir, reply, 'only registered peers may send; ask the admin to approve this peer');
    }
    if (!to) return this.distributor.refuse(msg, Status.BAD_ADDRESS, dir, reply, `"${msg.to}" is not name@domain`);
    if (msg.payload.length > this.maxMessageBytes) {
      return this.distributor.refuse(msg, Status.TOO_LARGE, dir, reply, `${msg.payload.length} bytes; the limit is ${this.maxMessageBytes}`);
    }
    if (!session.bucket.take()) return this.distributor.refuse(msg, Status.RATE_LIMITED, dir, reply);
    this.registrar.countMessage(session.name, 'out');
    if (dir === 'local') this.distributor.deliver(msg, frame.raw, 'local', reply);
    else this.distributor.forwardOut(session, msg, frame.raw);
  }
}
