import { decodeControl, type Frame } from '../protocol/codec.js';
import { CAPABILITY_UDP_AEAD, FrameType, offersMediation } from '../protocol/frames.js';
import type { Link } from '../protocol/link.js';
import { Status } from '../protocol/status.js';
import type { Logger } from '../runtime/logger.js';
import type { Cluster } from './cluster.js';
import { ControlChannel, type ControlSink, type PortOwner } from './control.js';
import type { CredentialStore } from './credentials.js';
import { DEFAULT_EXPOSE_LIMITS, Exposer, type ExposeLimits } from './expose.js';
import { OperatorSession } from './operators.js';
import { who, type RefusalSink } from './refusals.js';
import type { ExternalSession, SessionRegistry, TunnelSession } from './sessions.js';
import { RelayUdpService } from './udp-service.js';

export interface ControlServerOptions {
  readonly credentials: CredentialStore;
  readonly logger: Logger;
  readonly sessions: SessionRegistry;
  /** address exposed ports listen on */
  readonly exposeHost: string;
  /** run the UDP service port (default true) */
  readonly udp?: boolean | undefined;
  /** port announced to contact points for the UDP channel, when a firewall/NAT maps it differently */
  readonly udpAdvertisePort?: number | undefined;
  readonly maxExposeConnections?: number | undefined;
  readonly maxExposeConnectionsPerContactPoint?: number | undefined;
  /** every refusal is reported here (logged once, kept for the status endpoint) */
  readonly refusals: RefusalSink;
  /** where tunnels are: a tunnel on another relay node is reached over the cluster's mediation links (cluster-mediation.ts) */
  readonly cluster?: Cluster | undefined;
}

/**
 * The control server of seed 002, the relay's side of port mediation. Each tunnel has a
 * control channel (control.ts) to its contact point's mediation system; external peers with the
 * `mediate` right drive it as operators (operators.ts), and public ports on the relay forward to
 * LAN targets (expose.ts). Here those meet: it opens and wires each tunnel's channel, starts an
 * operator session on a peer's first port request, remembers which operator owns which port so
 * connection events and datagrams reach it, and offers contact points the UDP service port.
 */
export class ControlServer {
  readonly exposer: Exposer;
  /** the UDP service port (seed 002's UDP channels), when enabled */
  readonly udp: RelayUdpService | undefined;
  /** `${cp}\n${portId}` -> the operator session that opened it (or the mediation link of another node's operator) */
  private readonly portOwners = new Map<string, PortOwner>();

  constructor(private readonly o: ControlServerOptions) {
    this.udp = o.udp === false ? undefined : new RelayUdpService(o.logger);
    this.exposer = new Exposer((cp) => this.channel(cp), o.exposeHost, o.logger, exposeLimits(o), o.refusals);
    o.cluster?.mediation?.attach({
      localChannel: (cp) => this.o.sessions.tunnels.get(cp)?.control,
      opened: (_cp, ch) => {
        ch.sink = this.sink;
      },
      ended: (cp, _ch, reason) => {
        // The tunnel's node closes these ports at the contact point (or the contact point did, with its tunnel).
        for (const [key, owner] of [...this.portOwners]) {
          const [owned, portId] = key.split('\n');
          if (owned === cp) owner.closed(cp, { portId: Number(portId), event: 'closed', reason: reason.slice(0, 256) });
        }
      },
      claim: (cp, portId, owner) => this.claim(cp, portId, owner),
      offersMediation: (cp) => this.offersMediation(cp),
    });
  }

  /**
   * Whether the tunnel of `cp` offers port mediation (its HELLO's capabilities; on another node,
   * what its presence record says); undefined when it is nowhere.
   */
  private offersMediation(cp: string): boolean | undefined {
    const tunnel = this.o.sessions.tunnels.get(cp);
    if (tunnel) return offersMediation(tunnel.env?.capabilities ?? []);
    const place = this.o.cluster?.tunnel(cp);
    return place?.kind === 'remote' ? place.mediation ?? true : undefined;
  }

  /** The control channel to a connected contact point, if its tunnel is up: here, or on another relay node of the cluster. */
  channel(contactPointId: string): ControlChannel | undefined {
    const local = this.o.sessions.tunnels.get(contactPointId)?.control;
    if (local || !this.o.cluster?.mediation) return local;
    const place = this.o.cluster.tunnel(contactPointId);
    return place?.kind === 'remote' ? this.o.cluster.mediation.channel(contactPointId, place.node) : undefined;
  }

  private claim(cp: string, portId: number, owner: PortOwner | undefined): void {
    if (owner) this.portOwners.set(`${cp}\n${portId}`, owner);
    else this.portOwners.delete(`${cp}\n${portId}`);
  }

  /** A contact point's tunnel is being admitted: its control channel, wired to operators and exposures. */
  openChannel(cp: string, link: Link): ControlChannel {
    const control = new ControlChannel(cp, link);
    control.sink = this.sink;
    return control;
  }

  /** After WELCOME: a path on the UDP service port for the tunnel's datagrams, announced to the contact point. */
  offerUdp(session: TunnelSession): void {
    // Only to a contact point that speaks the encrypted channel: an older one keeps its datagrams in the tunnel.
    if (!this.udp || !session.env?.capabilities?.includes(CAPABILITY_UDP_AEAD)) return;
    const control = session.control;
    const path = this.udp.register((d) => control.deliverDatagram(d));
    control.udpPath = path;
    session.link.sendControl(FrameType.UDP_CHANNEL, { port: this.o.udpAdvertisePort ?? this.udp.port, session: path.session, key: path.key, version: path.version });
  }

  /** Mediation frames from an external peer: only for credentials with the `mediate` right. */
  operatorFrame(s: ExternalSession, frame: Frame): boolean {
    if (!s.operator) {
      if (frame.type !== FrameType.PORT_REQUEST) return false;
      // The credential's rights as they are now: one edited since this session connected keeps its
      // secret (and the session), and recheckSessions() closes only sessions already mediating.
      if (!(this.o.credentials.record('external', s.id)?.rights ?? s.rights).includes('mediate')) {
        const req = decodeControl(frame, FrameType.PORT_REQUEST);
        const reason = 'this credential may not drive port mediation';
        this.o.refusals.record({ kind: 'port', code: Status.PERMISSION_DENIED, who: who(s), address: s.link.remote, reason, fields: { op: req.op, cp: req.cp } });
        s.link.sendControl(FrameType.PORT_RESULT, { req: req.req, ok: false, code: Status.PERMISSION_DENIED, reason });
        return true;
      }
      s.operator = new OperatorSession(s.id, s.link, {
        channel: (cp) => this.channel(cp),
        knownContactPoint: (cp) => this.o.sessions.tunnels.has(cp) || this.o.credentials.has('contact-point', cp),
        offersMediation: (cp) => this.offersMediation(cp),
        exposer: this.exposer,
        logger: this.o.logger,
        refusals: this.o.refusals,
        claim: (cp, portId, owner) => this.claim(cp, portId, owner),
        locate: (cp) => {
          const c = this.o.cluster;
          return c?.places && c.node !== undefined ? { node: c.node, places: c.places(cp) } : undefined;
        },
      });
    }
    return s.operator.handleFrame(frame);
  }

  /**
   * Routes every tunnel's mediation events (ControlSink) to the operator that owns the port, or
   * to an exposure: one object for all channels, each saying which contact point it is.
   */
  private readonly sink: ControlSink = {
    accepted: (ch, e, stream, listened) => {
      const owner = this.portOwners.get(`${ch.contactPointId}\n${e.portId}`);
      if (owner) owner.accepted(e, stream);
      else if (!listened) {
        // Nobody (operator or in-process user of relay.control()) takes it: reset the LAN connection.
        stream.on('error', () => undefined);
        stream.destroy(new Error('nobody listens on this port any more'));
      }
    },
    closed: (ch, e) => this.portOwners.get(`${ch.contactPointId}\n${e.portId}`)?.closed(ch.contactPointId, e),
    datagram: (ch, d) => {
      const owner = this.portOwners.get(`${ch.contactPointId}\n${d.portId}`);
      if (owner) owner.datagram(d);
      else this.exposer.datagram(ch.contactPointId, d.portId, d.payload);
    },
  };
}

function exposeLimits(o: ControlServerOptions): ExposeLimits {
  const limits = {
    maxConnections: o.maxExposeConnections ?? DEFAULT_EXPOSE_LIMITS.maxConnections,
    maxConnectionsPerContactPoint: o.maxExposeConnectionsPerContactPoint ?? DEFAULT_EXPOSE_LIMITS.maxConnectionsPerContactPoint,
  };
  for (const [k, v] of Object.entries(limits)) if (!Number.isInteger(v) || v < 1) throw new RangeError(`relay option ${k}: expected a positive integer, got ${v}`);
  return limits;
}
