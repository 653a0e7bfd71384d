import { EventEmitter } from 'node:events';
import { decodeControl, encodeControl, type Frame } from '../protocol/codec.js';
import { decodeDatagram, encodeDatagram, type Datagram, type OutgoingDatagram } from '../protocol/datagram.js';
import { FrameType, type PortEventBody, type PortResultBody } from '../protocol/frames.js';
import type { CpPortRequest, Without } from '../protocol/port-requests.js';
import { describeStatus, Status } from '../protocol/status.js';
import { StreamMux, type MuxLink, type MuxStream } from '../protocol/stream-mux.js';
import { splice } from '../protocol/bridge.js';
import { PendingRequests } from '../protocol/pending-requests.js';
import type { UdpPath } from './udp-service.js';

/** A request the contact point has not answered by then fails with TIMEOUT. */
export const PORT_REQUEST_TIMEOUT_MS = 15_000;
/** Requests waiting for an answer on one tunnel. */
export const MAX_PENDING_PORT_REQUESTS = 1_024;

/** A request for the contact point, as the relay writes it: the channel numbers it (`req`). */
export type PortRequest = Without<CpPortRequest, 'req'>;

export interface ControlEvents {
  /** a LAN host connected to a listening port: its stream is open */
  accepted: [PortEventBody, MuxStream];
  closed: [PortEventBody];
  datagram: [Datagram];
  /** the channel closed (tunnel lost, or a mediation link to another node ended): why */
  ended: [string];
}

/** Who opened a port at a contact point through the relay: its connection events and datagrams go there. */
export interface PortOwner {
  /** a LAN host connected to the port: its stream, open */
  accepted(e: PortEventBody, tunnelStream: MuxStream): void;
  closed(cp: string, e: PortEventBody): void;
  datagram(d: Datagram): void;
}

/**
 * Who hears every tunnel's mediation events first (the relay's control server): one object for
 * all channels, told which channel, rather than listeners and closures on each of them (an
 * office's idle channel then costs no event table and no closures).
 */
export interface ControlSink {
  /** a LAN host connected to a listening port; `listened`: whether the channel has listeners of its own for it */
  accepted(ch: ControlChannel, e: PortEventBody, stream: MuxStream, listened: boolean): void;
  closed(ch: ControlChannel, e: PortEventBody): void;
  datagram(ch: ControlChannel, d: Datagram): void;
}

/**
 * The control server's end of one tunnel (seed 002): sends port requests to the contact point
 * and matches their answers, holds the tunnel's streams, and receives relayed datagrams and
 * connection events. Closing it (tunnel lost) fails what is pending and resets every stream.
 */
export class ControlChannel {
  readonly mux: StreamMux;
  private readonly pending = new PendingRequests();
  private nextStream = 0;
  private closed = false;
  /** hears the channel's accepted/closed/datagram events before its listeners do */
  sink: ControlSink | undefined;
  /** made with the first listener: an idle channel (most offices never mediate) holds no event table */
  private events: EventEmitter<ControlEvents> | undefined;

  constructor(
    readonly contactPointId: string,
    private readonly link: MuxLink,
  ) {
    this.mux = new StreamMux(link);
  }

  on<K extends keyof ControlEvents>(event: K, listener: (...args: ControlEvents[K]) => void): this {
    (this.events ??= new EventEmitter<ControlEvents>()).on(event, listener as never);
    return this;
  }

  once<K extends keyof ControlEvents>(event: K, listener: (...args: ControlEvents[K]) => void): this {
    (this.events ??= new EventEmitter<ControlEvents>()).once(event, listener as never);
    return this;
  }

  off<K extends keyof ControlEvents>(event: K, listener: (...args: ControlEvents[K]) => void): this {
    this.events?.off(event, listener as never);
    return this;
  }

  listenerCount(event: keyof ControlEvents): number {
    return this.events?.listenerCount(event) ?? 0;
  }

  private emit<K extends keyof ControlEvents>(event: K, ...args: ControlEvents[K]): void {
    (this.events as EventEmitter | undefined)?.emit(event, ...args);
  }

  /** A datagram from the contact point (in the tunnel, or over the UDP channel): to the sink, then to listeners. */
  deliverDatagram(d: Datagram): void {
    this.sink?.datagram(this, d);
    this.emit('datagram', d);
  }

  /** Sends a request; resolves with the contact point's answer (ok or a numbered refusal), never rejects. */
  request(body: PortRequest, timeoutMs = PORT_REQUEST_TIMEOUT_MS, splicedTo?: MuxStream): Promise<PortResultBody> {
    if (body.op === 'connect' && splicedTo) {
      // An operator's connect: our stream to the contact point is opened first, then joined to theirs.
      const streamId = this.allocStreamId();
      const stream = this.mux.open(streamId);
      return this.request({ ...body, streamId }, timeoutMs).then((r) => {
        if (r.ok && !splicedTo.destroyed) splice(splicedTo, stream);
        else if (r.ok) stream.destroy(new Error('the other side went away before the connect was answered'));
        else {
          this.mux.forget(streamId);
          splicedTo.destroy(new Error(r.reason ?? 'connect refused'));
        }
        return r;
      });
    }
    const req = this.pending.id();
    const fail = (code: number, reason?: string): PortResultBody => ({ req, ok: false, code, reason: reason ?? describeStatus(code) });
    if (this.closed) return Promise.resolve(fail(Status.CONTACT_POINT_OFFLINE));
    if (this.pending.size >= MAX_PENDING_PORT_REQUESTS) return Promise.resolve(fail(Status.QUEUE_FULL, 'too many port requests waiting'));
    return this.pending.wait(req, timeoutMs, () => this.link.send(encodeControl(FrameType.PORT_REQUEST, { ...body, req })));
  }

  /**
   * One port at the contact point for an exposure of `host:port`: every connection of the
   * exposure is then one connect on it (connectExposed), a stream and not a port of its own.
   */
  exposePort(operator: string, host: string, port: number): Promise<PortResultBody> {
    return this.request({ op: 'expose', operator, proto: 'tcp', host, targetPort: port });
  }

  /** One connection of an exposure: a stream to its target through its port at the contact point. */
  async connectExposed(operator: string, portId: number, host: string, port: number): Promise<{ ok: true; stream: MuxStream } | { ok: false; code: number; reason: string }> {
    const streamId = this.allocStreamId();
    // The stream exists before the request leaves, so the first LAN bytes always find it.
    const stream = this.mux.open(streamId);
    const r = await this.request({ op: 'connect', operator, portId, host, targetPort: port, streamId });
    if (!r.ok) {
      this.mux.forget(streamId);
      return { ok: false, code: r.code ?? Status.INTERNAL, reason: r.reason ?? '' };
    }
    return { ok: true, stream };
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Over the UDP channel while it is alive (and the datagram small enough), else inside the tunnel. */
  sendDatagram(d: OutgoingDatagram): boolean {
    return this.udpPath?.send(d) || this.link.send(encodeDatagram(d));
  }

  /** The authenticated UDP channel of this tunnel, when the relay runs a UDP service port. */
  udpPath: UdpPath | undefined;

  /** Handles a mediation frame from the tunnel; false when `frame` is not one. */
  handleFrame(frame: Frame): boolean {
    switch (frame.type) {
      case FrameType.PORT_RESULT:
        this.pending.settle(decodeControl(frame, FrameType.PORT_RESULT));
        return true;
      case FrameType.PORT_EVENT: {
        const e = decodeControl(frame, FrameType.PORT_EVENT);
        if (e.event === 'accepted' && e.streamId !== undefined && e.streamId % 2 === 1 && !this.mux.get(e.streamId)) {
          const stream = this.mux.open(e.streamId);
          this.sink?.accepted(this, e, stream, this.listenerCount('accepted') > 0);
          this.emit('accepted', e, stream);
        } else if (e.event === 'closed') {
          this.sink?.closed(this, e);
          this.emit('closed', e);
        }
        return true;
      }
      case FrameType.DATAGRAM:
        this.deliverDatagram(decodeDatagram(frame));
        return true;
      default:
        return this.mux.handle(frame);
    }
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.pending.failAll(Status.CONTACT_POINT_OFFLINE, reason);
    this.mux.resetAll(reason);
    this.udpPath?.close();
    this.emit('ended', reason);
  }

  private allocStreamId(): number {
    do {
      this.nextStream = this.nextStream >= 0x7ffffffe ? 2 : this.nextStream + 2;
    } while (this.mux.get(this.nextStream));
    return this.nextStream;
  }
}
