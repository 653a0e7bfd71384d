import { EventEmitter } from 'node:events';
import { decodeControl, type Frame } from '../protocol/codec.js';
import { decodeDatagram, encodeDatagram, type Datagram } from '../protocol/datagram.js';
import { CAPABILITY_PLACEMENT, FrameType, type PortEventBody, type PortResultBody } from '../protocol/frames.js';
import type { OperatorPortRequest, Without } from '../protocol/port-requests.js';
import type { Link } from '../protocol/link.js';
import { Status, statusName } from '../protocol/status.js';
import { StreamMux, type MuxStream } from '../protocol/stream-mux.js';
import { PeerClient, type ExternalPeerOptions } from './peer-client.js';
import { PendingRequests } from '../protocol/pending-requests.js';

/** Placement (PROTOCOL.md 17.6): how long a session to the node holding an office may take to come up before the operator stays where it is. */
export const PLACEMENT_DIAL_TIMEOUT_MS = 5_000;

/**
 * Whether a session may be placed at `url` when the operator gave `relayUrl`: never from wss:// to
 * plain ws:// (the credential would then cross the network in clear because of what the cluster
 * advertised).
 */
export function placementAllowed(relayUrl: string, url: string): boolean {
  // Schemes in any case (URL and ws take WSS:// too): WSS:// -> ws:// is the same downgrade.
  const secure = (u: string): boolean => /^\s*wss:/i.test(u);
  return !(secure(relayUrl) && !secure(url));
}

/** An operator request the relay has not answered by then fails with TIMEOUT. */
export const OPERATOR_REQUEST_TIMEOUT_MS = 20_000;

export type OperatorOptions = Omit<ExternalPeerOptions, 'role' | 'onOtherFrame'>;

export class MediationError extends Error {
  override readonly name = 'MediationError';
  constructor(
    readonly code: number,
    readonly reason: string,
  ) {
    super(`${statusName(code)} (${code}): ${reason}`);
  }
}

export interface OperatorEvents {
  /** a LAN host connected to a port you listen on */
  accepted: [PortEventBody, MuxStream];
  closed: [PortEventBody];
  /** connections to one of your exposures (portId = its exposeId) were refused: count and status, at most once a second */
  refused: [PortEventBody];
  datagram: [Datagram];
}

/** A request as `request` takes it: `cp` is its own argument, `req` and `operator` are filled in. */
export type OperatorRequest = Without<OperatorPortRequest, 'req' | 'operator' | 'cp'>;

/**
 * The operator SDK: an external peer whose credential has the `mediate` right drives port
 * mediation at a contact point through the relay (seed 002's control requests), and gets TCP
 * streams as Node Duplex objects with end-to-end flow control. A reconnect starts a new relay
 * session: what the old one opened was closed by the relay, and its streams are reset here.
 */
export class Operator extends EventEmitter<OperatorEvents> {
  readonly client: PeerClient;
  private mux: StreamMux | undefined;
  private muxLink: Link | undefined;
  private readonly pending = new PendingRequests();
  private nextStream = 0;

  constructor(opts: OperatorOptions) {
    super();
    // `placement-1`: a cluster node may be asked where an office's tunnels are (locate()).
    this.client = new PeerClient({ ...opts, role: 'external', capabilities: [CAPABILITY_PLACEMENT], onOtherFrame: (f) => this.onFrame(f) });
    this.client.on('status', (s) => {
      if (s.state !== 'connected') this.dropLink('connection to the relay lost');
    });
  }

  start(): this {
    this.client.start();
    return this;
  }

  /** See PeerClient.ready(). */
  ready(timeoutMs?: number, opts?: { failOn?: readonly number[] }): Promise<void> {
    return this.client.ready(timeoutMs, opts);
  }

  async stop(): Promise<void> {
    this.dropLink('operator stopped');
    await this.client.stop();
  }

  /** Raw request; resolves with the answer (ok or refusal), never rejects. */
  request(cp: string | undefined, body: OperatorRequest, timeoutMs = OPERATOR_REQUEST_TIMEOUT_MS): Promise<PortResultBody> {
    const req = this.pending.id();
    const link = this.client.currentLink;
    if (!link) return Promise.resolve({ req, ok: false, code: Status.CONTACT_POINT_OFFLINE, reason: 'not connected to the relay' });
    // The relay replaces `operator` with this session's authenticated name.
    return this.pending.wait(req, timeoutMs, () =>
      link.sendControl(FrameType.PORT_REQUEST, { ...body, req, ...(cp ? { cp } : {}), operator: 'self' }),
    );
  }

  /** A public port on the relay forwarding to `host:port` on the LAN behind `cp`. Lives as long as this session. */
  async expose(cp: string, host: string, port: number, opts: { proto?: 'tcp' | 'udp'; publicPort?: number; maxConnections?: number } = {}): Promise<{ exposeId: number; publicPort: number }> {
    const r = await this.must(cp, {
      op: 'expose',
      proto: opts.proto ?? 'tcp',
      host,
      targetPort: port,
      ...(opts.publicPort ? { port: opts.publicPort } : {}),
      ...(opts.maxConnections ? { maxStreams: opts.maxConnections } : {}),
    });
    return { exposeId: r.portId!, publicPort: r.port! };
  }

  /**
   * Whether the relay this session is connected to answers locate() (a node of a relay cluster
   * that speaks placement, PROTOCOL.md 17.6). False before the session is up, and on a single relay.
   */
  get placementOffered(): boolean {
    return this.client.currentLink !== undefined && this.client.serverCapabilities.includes(CAPABILITY_PLACEMENT);
  }

  /**
   * Placement (PROTOCOL.md 17.6): the relay node this session is on (`node`), and the nodes
   * holding the tunnels of `cp` now, newest first, each with the URL it advertises for clients
   * when it has one (`places`, empty while the office is offline). Only where placementOffered.
   */
  async locate(cp: string): Promise<{ node: string; places: { node: string; url?: string }[] }> {
    const r = await this.must(cp, { op: 'locate' });
    return { node: r.node ?? '', places: r.places ?? [] };
  }

  /**
   * Placement for an operator program (PROTOCOL.md 17.6): an Operator for `cp` on the relay node
   * holding its tunnel, so its streams do not cross the cluster's engine. Connects to `opts.url`
   * (within `timeoutMs`; a failure there rejects, as ready() does) and asks where `cp` is; when
   * it is on another node that advertises a URL, connects there with the same options, checks
   * that it is that node, and stops the first. Everything else (a single relay, an office here
   * or offline, no URL, a URL that fails) resolves with the Operator on `opts.url`. Started and
   * ready either way; `placedAt` says where it went.
   */
  static async forOffice(opts: OperatorOptions, cp: string, timeoutMs = 10_000): Promise<{ op: Operator; placedAt: { node: string; url: string } | undefined }> {
    const home = new Operator(opts).start();
    await home.ready(timeoutMs);
    if (!home.placementOffered) return { op: home, placedAt: undefined };
    const where = await home.locate(cp).catch(() => undefined);
    if (!where || where.places.length === 0 || where.places.some((p) => p.node === where.node)) return { op: home, placedAt: undefined };
    for (const place of where.places) {
      if (place.url === undefined || !placementAllowed(opts.url, place.url)) continue;
      const there = new Operator({ ...opts, url: place.url }).start();
      try {
        await there.ready(Math.min(timeoutMs, PLACEMENT_DIAL_TIMEOUT_MS));
        const check = there.placementOffered ? await there.locate(cp) : undefined;
        if (check?.node === place.node && check.places.some((p) => p.node === place.node)) {
          await home.stop();
          return { op: there, placedAt: { node: place.node, url: place.url } };
        }
      } catch {
        // not reachable, or not that node: the next place, else home
      }
      await there.stop();
    }
    return { op: home, placedAt: undefined };
  }

  async unexpose(exposeId: number): Promise<void> {
    await this.must(undefined, { op: 'unexpose', portId: exposeId });
  }

  async open(cp: string, o: { proto: 'tcp' | 'udp'; port?: number; address?: string; importance?: 'desired' | 'obligatory' }): Promise<{ portId: number; port: number; address: string }> {
    const r = await this.must(cp, { op: 'open', ...o });
    return { portId: r.portId!, port: r.port!, address: r.address ?? '' };
  }

  async redirect(cp: string, portId: number): Promise<void> {
    await this.must(cp, { op: 'redirect', portId });
  }

  async listen(cp: string, portId: number): Promise<number> {
    return (await this.must(cp, { op: 'listen', portId })).port!;
  }

  async close(cp: string, portId: number): Promise<void> {
    await this.must(cp, { op: 'close', portId });
  }

  /** connect an opened TCP port to `host:port` on the LAN; resolves with the stream. */
  async connect(cp: string, portId: number, host: string, port: number): Promise<MuxStream> {
    const mux = this.currentMux();
    if (!mux) throw new MediationError(Status.CONTACT_POINT_OFFLINE, 'not connected to the relay');
    const streamId = this.allocStreamId(mux);
    const stream = mux.open(streamId);
    const r = await this.request(cp, { op: 'connect', portId, host, targetPort: port, streamId });
    if (!r.ok) {
      mux.forget(streamId);
      throw new MediationError(r.code ?? Status.INTERNAL, r.reason ?? '');
    }
    return stream;
  }

  /** A datagram out of a redirected UDP port, to `address:port` on the LAN. */
  sendDatagram(portId: number, address: string, port: number, payload: Uint8Array): boolean {
    return this.client.currentLink?.send(encodeDatagram({ portId, address, port, payload })) ?? false;
  }

  private async must(cp: string | undefined, body: OperatorRequest): Promise<PortResultBody> {
    const r = await this.request(cp, body);
    if (!r.ok) throw new MediationError(r.code ?? Status.INTERNAL, r.reason ?? '');
    return r;
  }

  private currentMux(): StreamMux | undefined {
    const link = this.client.currentLink;
    if (!link) return undefined;
    if (this.muxLink !== link) {
      this.mux?.resetAll('reconnected');
      this.mux = new StreamMux(link);
      this.muxLink = link;
    }
    return this.mux;
  }

  private dropLink(reason: string): void {
    this.mux?.resetAll(reason);
    this.mux = undefined;
    this.muxLink = undefined;
    this.pending.failAll(Status.CONTACT_POINT_OFFLINE, reason);
  }

  private onFrame(frame: Frame): boolean {
    switch (frame.type) {
      case FrameType.PORT_RESULT:
        this.pending.settle(decodeControl(frame, FrameType.PORT_RESULT));
        return true;
      case FrameType.PORT_EVENT: {
        const e = decodeControl(frame, FrameType.PORT_EVENT);
        const mux = this.currentMux();
        if (e.event === 'accepted' && e.streamId !== undefined && mux && !mux.get(e.streamId)) {
          const stream = mux.open(e.streamId);
          if (this.listenerCount('accepted') === 0) {
            stream.on('error', () => undefined);
            stream.destroy(new Error('no accepted listener'));
          } else this.emit('accepted', e, stream);
        } else if (e.event === 'closed') this.emit('closed', e);
        else if (e.event === 'refused') this.emit('refused', e);
        return true;
      }
      case FrameType.DATAGRAM:
        this.emit('datagram', decodeDatagram(frame));
        return true;
      default:
        return this.currentMux()?.handle(frame) ?? false;
    }
  }

  private allocStreamId(mux: StreamMux): number {
    do {
      this.nextStream = this.nextStream >= 0x7ffffffe ? 2 : this.nextStream + 2;
    } while (mux.get(this.nextStream));
    return this.nextStream;
  }
}
