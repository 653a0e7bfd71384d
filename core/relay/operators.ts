import { isIP } from 'node:net';
import { decodeControl, encodeControl, type Frame } from '../protocol/codec.js';
import { splice } from '../protocol/bridge.js';
import { decodeDatagram, encodeDatagram, type Datagram } from '../protocol/datagram.js';
import { FrameType, type PortEventBody, type PortRequestBody, type PortResultBody } from '../protocol/frames.js';
import { operatorPortRequestSchema, type OperatorPortOp, type OperatorPortRequest } from '../protocol/port-requests.js';
import { dispatch, SchemaError, type Handlers } from '../protocol/schema.js';
import type { Link } from '../protocol/link.js';
import { describeStatus, Status } from '../protocol/status.js';
import { StreamMux, type MuxStream } from '../protocol/stream-mux.js';
import type { Logger } from '../runtime/logger.js';
import type { ControlChannel, PortOwner } from './control.js';
import type { Exposer } from './expose.js';
import type { OperatorView } from '../admin/relay-contract.js';
import type { RefusalSink } from './refusals.js';
import type { NodePlace } from './cluster.js';

export interface OperatorHost {
  channel(cp: string): ControlChannel | undefined;
  knownContactPoint(cp: string): boolean;
  /** whether the office's hello listed `mediation`; undefined while its tunnel is not up here */
  offersMediation(cp: string): boolean | undefined;
  readonly exposer: Exposer;
  readonly logger: Logger;
  /** the relay's own refusals of this operator's requests are reported here */
  readonly refusals: RefusalSink;
  /** port ownership across operators, so events and datagrams reach the one who opened it */
  claim(cp: string, portId: number, owner: OperatorSession | undefined): void;
  /** placement (PROTOCOL.md 17.6): this node's id and the nodes holding the tunnels of `cp`; undefined on a single relay */
  locate?(cp: string): { node: string; places: NodePlace[] } | undefined;
}

/**
 * An external peer whose credential carries the `mediate` right, driving port mediation
 * through the relay: its PORT_REQUESTs go to the named contact point's tunnel (answers come
 * back with its own request ids), its streams are spliced to the tunnel's streams, and
 * expose/unexpose create public ports on the relay. Everything it opened is closed when its
 * session ends: nothing stays listening on the LAN for an operator who has gone.
 */
/** Exposures one operator session may hold at the relay (each a public socket on the relay host; a contact point takes 64 ports per operator too). */
export const MAX_EXPOSURES_PER_OPERATOR = 64;

export class OperatorSession implements PortOwner {
  readonly mux: StreamMux;
  private readonly ports = new Map<string, { cp: string; portId: number }>();
  /** port id -> contact point, for routing this operator's datagrams without a search */
  private readonly portCp = new Map<number, string>();
  private readonly exposures = new Set<number>();
  /** exposures being set up (counted under MAX_EXPOSURES_PER_OPERATOR) */
  private exposing = 0;
  /** the session ended: answers that arrive now are undone, not recorded */
  private ended = false;
  private nextStream = -1;

  constructor(
    readonly name: string,
    private readonly link: Link,
    private readonly host: OperatorHost,
  ) {
    this.mux = new StreamMux(link);
  }

  /** ports this operator has open at contact points */
  get portCount(): number {
    return this.ports.size;
  }

  handleFrame(frame: Frame): boolean {
    if (frame.type === FrameType.PORT_REQUEST) {
      const body = decodeControl(frame, FrameType.PORT_REQUEST);
      void this.request({ ...body, operator: this.name }).then((r) => this.link.send(encodeControl(FrameType.PORT_RESULT, r)));
      return true;
    }
    if (frame.type === FrameType.DATAGRAM) {
      const d = decodeDatagram(frame);
      const cp = this.portCp.get(d.portId);
      if (cp) this.host.channel(cp)?.sendDatagram(d);
      return true;
    }
    return this.mux.handle(frame);
  }

  /** A LAN host connected to a port this operator listens on. */
  accepted(e: PortEventBody, tunnelStream: MuxStream): void {
    const id = this.allocStreamId();
    this.link.send(encodeControl(FrameType.PORT_EVENT, { ...e, streamId: id }));
    splice(this.mux.open(id), tunnelStream);
  }

  closed(cp: string, e: PortEventBody): void {
    this.forgetPort(cp, e.portId);
    this.host.claim(cp, e.portId, undefined);
    this.link.send(encodeControl(FrameType.PORT_EVENT, e));
  }

  datagram(d: Datagram): void {
    this.link.send(encodeDatagram(d));
  }

  close(): void {
    this.ended = true;
    for (const { cp, portId } of this.ports.values()) {
      this.host.claim(cp, portId, undefined);
      void this.host.channel(cp)?.request({ op: 'close', operator: this.name, portId });
    }
    this.ports.clear();
    this.portCp.clear();
    for (const id of this.exposures) this.host.exposer.unexpose(id);
    this.exposures.clear();
    this.mux.resetAll('operator session ended');
  }

  /** The operations an operator may ask for, each given exactly its request's fields. */
  private readonly operations: Handlers<OperatorPortRequest, 'op', Promise<PortResultBody>> = {
    open: (r) => this.forward(r),
    redirect: (r) => this.forward(r),
    connect: (r) => this.forward(r),
    listen: (r) => this.forward(r),
    close: (r) => this.forward(r),
    expose: (r) => this.expose(r),
    unexpose: async (r) => this.unexpose(r),
    locate: async (r) => this.locate(r),
  };

  private async request(body: PortRequestBody): Promise<PortResultBody> {
    // Refused at once (not forwarded to wait for the office's refusal): the office said it takes no port requests.
    if (body.op !== 'unexpose' && body.op !== 'locate' && body.cp !== undefined && this.host.offersMediation(body.cp) === false) return this.refuse(body, Status.NOT_OFFERED);
    try {
      return await dispatch(operatorPortRequestSchema, this.operations, body);
    } catch (err: unknown) {
      if (err instanceof SchemaError) return this.refuse(body, Status.BAD_REQUEST, err.message);
      throw err;
    }
  }

  private unexpose(r: OperatorPortOp<'unexpose'>): PortResultBody {
    if (!this.exposures.delete(r.portId)) return this.refuse(r, Status.UNKNOWN_PORT, 'no such exposure of yours');
    this.host.exposer.unexpose(r.portId);
    return { req: r.req, ok: true, portId: r.portId };
  }

  /** Where the office's tunnels are (placement, PROTOCOL.md 17.6): the operator may dial that node itself. */
  private locate(r: OperatorPortOp<'locate'>): PortResultBody {
    if (!this.host.knownContactPoint(r.cp)) return this.refuse(r, Status.UNKNOWN_CONTACT_POINT);
    const where = this.host.locate?.(r.cp);
    if (!where) return this.refuse(r, Status.NOT_OFFERED, 'this relay is not a node of a cluster: every office it serves is here');
    return { req: r.req, ok: true, node: where.node, places: where.places };
  }

  private async expose(r: OperatorPortOp<'expose'>): Promise<PortResultBody> {
    if (!this.host.knownContactPoint(r.cp)) return this.refuse(r, Status.UNKNOWN_CONTACT_POINT);
    // Each exposure is a public socket on the relay host: bounded per session, those being set up included.
    if (this.exposures.size + this.exposing >= MAX_EXPOSURES_PER_OPERATOR) return this.refuse(r, Status.PORT_LIMIT, `${MAX_EXPOSURES_PER_OPERATOR} exposures of yours are open`);
    // A UDP exposure's datagrams carry their target's address (at most 64 characters, an IP address): a name is refused here, not when the first datagram cannot be encoded.
    if (r.proto === 'udp' && isIP(r.host) === 0) return this.refuse(r, Status.BAD_REQUEST, 'a UDP exposure needs an IP address as its target');
    this.exposing++;
    try {
      const e = await this.host.exposer.expose({
        cp: r.cp,
        proto: r.proto ?? 'tcp',
        host: r.host,
        port: r.targetPort,
        operator: this.name,
        ...(r.port ? { publicPort: r.port } : {}),
        ...(r.maxStreams ? { maxConnections: r.maxStreams } : {}),
        // Refused connections: told to the operator (expose prints them), at most once a second.
        onRefused: (counts, exposureId) => {
          for (const c of counts) {
            this.link.send(encodeControl(FrameType.PORT_EVENT, { portId: exposureId, event: 'refused', count: c.count, code: c.code, reason: c.reason.slice(0, 256) }));
          }
        },
      });
      if (this.ended) {
        // The session ended while the exposure was being set up: nobody holds it.
        this.host.exposer.unexpose(e.id);
        return this.refuse(r, Status.WRONG_STATE, 'the operator session ended');
      }
      this.exposures.add(e.id);
      return { req: r.req, ok: true, portId: e.id, port: e.publicPort };
    } catch (err: unknown) {
      return this.refuse(r, Status.PORT_IN_USE, `relay cannot listen there: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    } finally {
      this.exposing--;
    }
  }

  /** The contact point's own operations: checked here, then sent on its tunnel with the relay's `req` (and, for connect, stream). */
  private async forward(r: OperatorPortOp<'open' | 'redirect' | 'connect' | 'listen' | 'close'>): Promise<PortResultBody> {
    const { cp } = r;
    if (!this.host.knownContactPoint(cp)) return this.refuse(r, Status.UNKNOWN_CONTACT_POINT);
    const ch = this.host.channel(cp);
    if (!ch) return this.refuse(r, Status.CONTACT_POINT_OFFLINE);
    if (r.op !== 'open' && !this.ports.has(`${cp}\n${r.portId}`)) return this.refuse(r, Status.UNKNOWN_PORT, `port ${r.portId} was not opened by you`);
    if (r.op === 'connect') {
      const { req, cp: _cp, streamId, ...onward } = r;
      if (streamId % 2 !== 0 || this.mux.get(streamId)) return this.refuse(r, Status.BAD_REQUEST, 'connect needs a fresh even streamId');
      const local = this.mux.open(streamId);
      // The channel puts its own stream id in place of this placeholder.
      const answer = await ch.request({ ...onward, streamId: 0 }, undefined, local);
      return { ...answer, req, ...(answer.ok ? { streamId } : {}) };
    }
    const { req, cp: _cp, ...onward } = r;
    const answer = await ch.request(onward);
    if (this.ended) {
      // The session ended while the office answered: a port it opened for us is closed again,
      // not left open at the office counting against this operator's limit (PROTOCOL.md 16.8).
      if (answer.ok && r.op === 'open' && answer.portId !== undefined) void ch.request({ op: 'close', operator: this.name, portId: answer.portId });
      return { ...answer, req };
    }
    if (answer.ok && r.op === 'open' && answer.portId !== undefined) {
      this.ports.set(`${cp}\n${answer.portId}`, { cp, portId: answer.portId });
      if (!this.portCp.has(answer.portId)) this.portCp.set(answer.portId, cp);
      this.host.claim(cp, answer.portId, this);
    } else if (answer.ok && r.op === 'close') {
      this.forgetPort(cp, r.portId);
      this.host.claim(cp, r.portId, undefined);
    }
    return { ...answer, req };
  }

  /** What the relay itself refuses (the contact point's own refusals pass through as they are): reported, then answered. */
  private refuse(r: { readonly req: number; readonly op: string; readonly cp?: string | undefined }, code: number, reason = describeStatus(code)): PortResultBody {
    this.host.refusals.record({ kind: 'port', code, who: `operator ${this.name}`, address: this.link.remote, reason, fields: { op: r.op, cp: r.cp } });
    return { req: r.req, ok: false, code, reason };
  }

  /** For the relay's status: what this operator holds open. */
  view(): OperatorView {
    return { ports: this.ports.size, exposures: this.exposures.size, streams: this.mux.size };
  }

  private forgetPort(cp: string, portId: number): void {
    this.ports.delete(`${cp}\n${portId}`);
    if (this.portCp.get(portId) === cp) this.portCp.delete(portId);
  }

  private allocStreamId(): number {
    do {
      this.nextStream = this.nextStream >= 0x7ffffffd ? 1 : this.nextStream + 2;
    } while (this.mux.get(this.nextStream));
    return this.nextStream;
  }
}


