import { decodeControl, encodeControl, type Frame } from '../protocol/codec.js';
import { splice } from '../protocol/bridge.js';
import { decodeDatagram, encodeDatagram, type Datagram } from '../protocol/datagram.js';
import { FrameType, type PortEventBody, type PortRequestBody, type PortResultBody } from '../protocol/frames.js';
import type { Link } from '../protocol/link.js';
import { describeStatus, Status } from '../protocol/status.js';
import { StreamMux, type MuxStream } from '../protocol/stream-mux.js';
import type { Logger } from '../runtime/logger.js';
import type { ControlChannel } from './control.js';
import type { Exposer } from './expose.js';

export interface OperatorHost {
  channel(cp: string): ControlChannel | undefined;
  knownContactPoint(cp: string): boolean;
  readonly exposer: Exposer;
  readonly logger: Logger;
  /** port ownership across operators, so events and datagrams reach the one who opened it */
  claim(cp: string, portId: number, owner: OperatorSession | undefined): void;
}

/**
 * An external peer whose credential carries the `mediate` right, driving port mediation
 * through the relay: its PORT_REQUESTs go to the named contact point's tunnel (answers come
 * back with its own request ids), its streams are spliced to the tunnel's streams, and
 * expose/unexpose create public ports on the relay. Everything it opened is closed when its
 * session ends: nothing stays listening on the LAN for an operator who has gone.
 */
export class OperatorSession {
  readonly mux: StreamMux;
  private readonly ports = new Map<string, { cp: string; portId: number }>();
  /** port id -> contact point, for routing this operator's datagrams without a search */
  private readonly portCp = new Map<number, string>();
  private readonly exposures = new Set<number>();
  private nextStream = -1;

  constructor(
    readonly name: string,
    private readonly link: Link,
    private readonly host: OperatorHost,
  ) {
    this.mux = new StreamMux(link);
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

  private async request(body: PortRequestBody): Promise<PortResultBody> {
    const fail = (code: number, reason?: string): PortResultBody => ({ req: body.req, ok: false, code, reason: reason ?? describeStatus(code) });
    const cp = body.cp;
    if (body.op === 'unexpose') {
      if (body.portId === undefined || !this.exposures.delete(body.portId)) return fail(Status.UNKNOWN_PORT, 'no such exposure of yours');
      this.host.exposer.unexpose(body.portId);
      return { req: body.req, ok: true, portId: body.portId };
    }
    if (!cp) return fail(Status.BAD_REQUEST, 'name the contact point (cp)');
    if (!this.host.knownContactPoint(cp)) return fail(Status.UNKNOWN_CONTACT_POINT);
    if (body.op === 'expose') {
      if (!body.host || !body.targetPort) return fail(Status.BAD_REQUEST, 'expose needs host and targetPort');
      try {
        const e = await this.host.exposer.expose({
          cp,
          proto: body.proto ?? 'tcp',
          host: body.host,
          port: body.targetPort,
          operator: this.name,
          ...(body.port ? { publicPort: body.port } : {}),
          ...(body.maxStreams ? { maxConnections: body.maxStreams } : {}),
          // Refused connections: told to the operator (expose prints them), at most once a second.
          onRefused: (counts, exposureId) => {
            for (const c of counts) {
              this.link.send(encodeControl(FrameType.PORT_EVENT, { portId: exposureId, event: 'refused', count: c.count, code: c.code, reason: c.reason.slice(0, 256) }));
            }
          },
        });
        this.exposures.add(e.id);
        return { req: body.req, ok: true, portId: e.id, port: e.publicPort };
      } catch (err: unknown) {
        return fail(Status.PORT_IN_USE, `relay cannot listen there: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }
    const ch = this.host.channel(cp);
    if (!ch) return fail(Status.CONTACT_POINT_OFFLINE);
    const { cp: _cp, req: _req, streamId: opStream, ...forward } = body;
    if (body.op !== 'open' && (body.portId === undefined || !this.ports.has(`${cp}\n${body.portId}`))) {
      return fail(Status.UNKNOWN_PORT, `port ${body.portId ?? '(none)'} was not opened by you`);
    }
    if (body.op === 'connect') {
      if (opStream === undefined || opStream % 2 !== 0 || this.mux.get(opStream)) return fail(Status.BAD_REQUEST, 'connect needs a fresh even streamId');
      const local = this.mux.open(opStream);
      const r = await ch.request({ ...forward, streamId: 0 }, undefined, local);
      return { ...r, req: body.req, ...(r.ok ? { streamId: opStream } : {}) };
    }
    const r = await ch.request(forward);
    if (r.ok && body.op === 'open' && r.portId !== undefined) {
      this.ports.set(`${cp}\n${r.portId}`, { cp, portId: r.portId });
      if (!this.portCp.has(r.portId)) this.portCp.set(r.portId, cp);
      this.host.claim(cp, r.portId, this);
    } else if (r.ok && body.op === 'close' && body.portId !== undefined) {
      this.forgetPort(cp, body.portId);
      this.host.claim(cp, body.portId, undefined);
    }
    return { ...r, req: body.req };
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
