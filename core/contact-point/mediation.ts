import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { EventEmitter } from 'node:events';
import { connect, createServer, isIP, type Server, type Socket } from 'node:net';
import { bridge, DirectRead } from '../protocol/bridge.js';
import { decodeControl, encodeControl, type Frame } from '../protocol/codec.js';
import { decodeDatagram, encodeDatagram, type Datagram, type OutgoingDatagram } from '../protocol/datagram.js';
import { FrameType, type PortRequestBody, type PortResultBody } from '../protocol/frames.js';
import { cpPortRequestSchema, type CpPortOp, type CpPortRequest } from '../protocol/port-requests.js';
import { dispatch, SchemaError, type Handlers } from '../protocol/schema.js';
import { describeStatus, Status, statusName, type StatusCode } from '../protocol/status.js';
import { StreamMux, type MuxLink } from '../protocol/stream-mux.js';
import { MAX_STREAMS_PER_CONTACT_POINT, MAX_STREAMS_PER_EXPOSURE } from '../protocol/limits.js';
import type { Logger } from '../runtime/logger.js';
import { CodeCounts } from '../runtime/code-counts.js';
import { RefusalTally } from '../runtime/refusal-tally.js';
import type { PortView } from '../admin/contract.js';
import { canonicalAddress, type BindRefusal, type PortPolicy } from './port-policy.js';

/** Ports one contact point keeps open at once, and per operator. An exposure is one port, whatever its connections. */
export const MAX_OPEN_PORTS = 256;
export const MAX_PORTS_PER_OPERATOR = 64;
/** Refused connections of one port are logged (at warn) at most once per this interval, with their count. */
export const REFUSAL_LOG_INTERVAL_MS = 1_000;
/** Stream churn on an exposed port tells admin subscribers at most this often (state changes at once). */
export const PORTS_CHANGED_COALESCE_MS = 250;

export interface PortLimits {
  /** ports open at once (PORT_LIMIT) */
  readonly maxPorts: number;
  /** ports open at once for one operator name (PORT_LIMIT) */
  readonly maxPerOperator: number;
  /** streams through this contact point at once, of every kind (STREAM_LIMIT) */
  readonly maxStreams: number;
  /** connections of one exposed port at once (STREAM_LIMIT) */
  readonly maxStreamsPerExposure: number;
}

export const DEFAULT_PORT_LIMITS: PortLimits = {
  maxPorts: MAX_OPEN_PORTS,
  maxPerOperator: MAX_PORTS_PER_OPERATOR,
  maxStreams: MAX_STREAMS_PER_CONTACT_POINT,
  maxStreamsPerExposure: MAX_STREAMS_PER_EXPOSURE,
};
/** Port ids a mediator hands out: the tunnel's mediator and direct mode's take disjoint halves, so the admin's port list and ports:close name each port once. */
export interface PortIdRange {
  readonly first: number;
  readonly last: number;
}
export const TUNNEL_PORT_IDS: PortIdRange = { first: 1, last: 0x3fffffff };
export const DIRECT_PORT_IDS: PortIdRange = { first: 0x40000000, last: 0x7fffffff };
/** A connect to a LAN target that has not completed by then fails with CONNECT_FAILED. */
export const CONNECT_TIMEOUT_MS = 10_000;

export type PortState = PortView['state'];

export interface PortRefusal {
  readonly at: number;
  readonly operator: string;
  readonly op: string;
  readonly what: string;
  readonly code: number;
  readonly reason: string;
}

interface PortEntry {
  readonly id: number;
  readonly proto: 'tcp' | 'udp';
  readonly address: string;
  port: number;
  state: PortState;
  readonly operator: string;
  target: string | undefined;
  readonly createdAt: number;
  readonly streams: Set<number>;
  /** exposed ports: connects under way (not yet streams), counted against the limits */
  connecting: number;
  /** connections refused on this port (connects refused, accepted connections reset) */
  readonly refusals: RefusalTally;
  bytesIn: number;
  bytesOut: number;
  server?: Server;
  udp?: UdpSocket;
  sockets: Set<Socket>;
  /** the tunnel its request came on: its answers, events and streams stay there (issue 12) */
  readonly tunnel: Tunnel;
}

/** One tunnel to the relay (a contact point with two relay nodes has two, issue 12) and its streams. */
interface Tunnel {
  readonly slot: number;
  readonly link: MuxLink;
  readonly mux: StreamMux;
}

/** What an operation answers besides `req` and `ok`. */
type PortAnswer = Omit<PortResultBody, 'req' | 'ok' | 'code' | 'reason'>;

export interface PortMediatorEvents {
  changed: [];
  refused: [PortRefusal];
}

class RequestError extends Error {
  constructor(
    readonly code: StatusCode,
    reason?: string,
  ) {
    super(reason ?? describeStatus(code));
  }
}

/**
 * The mediation system (seed 002): on the relay's request it opens, redirects, connects,
 * listens on and closes TCP/UDP ports on the LAN, and relays bytes, datagrams and the
 * connect/FIN/RST events through the tunnel, only within the admin's PortPolicy. When the
 * tunnel goes, every port closes and every stream is reset: nothing stays listening.
 */
export class PortMediator extends EventEmitter<PortMediatorEvents> {
  private readonly ports = new Map<number, PortEntry>();
  /** the tunnels up now, by slot */
  private readonly tunnels = new Map<number, Tunnel>();
  /** the slot whose relay node the UDP channel goes to */
  private udpSlot = 0;
  private nextId: number;
  /** the mediator sharing this one's contact point limits (shareLimitsWith) */
  private sibling: PortMediator | undefined;
  /** the UDP channel to the relay while it is alive; datagrams fall back to the tunnel */
  private udp: { send(d: OutgoingDatagram): boolean } | undefined;
  private nextStream = -1;
  /** connects under way, over all ports (each holds a place under the stream limit until it is a stream) */
  private connecting = 0;
  /** `slot:streamId` of the connects under way (their streams are opened once dialled) */
  private readonly reserved = new Set<string>();
  /** opens under way (each bound, or probed, before it is in the table), by operator */
  private readonly pendingOpens = new Map<string, number>();
  /** ids of ports whose listen is binding */
  private readonly listensUnderWay = new Set<number>();
  private changedTimer: NodeJS.Timeout | undefined;
  private readonly limits: PortLimits;
  /** every refusal (requests, accepted connections, datagrams), by status code, for metrics */
  readonly refusedByCode = new CodeCounts();
  /** bytes of ports that have closed, and of streams that ended after their port (open ports are summed from list()) */
  private readonly closedBytes = { in: 0, out: 0 };
  /** The operations the relay may ask for, each given exactly its request's fields and the tunnel it came on. */
  private operations(t: Tunnel): Handlers<CpPortRequest, 'op', Promise<PortAnswer>> {
    return {
      open: (r) => this.open(r, t),
      redirect: async (r) => this.redirect(r),
      connect: (r) => this.connectPort(r, t),
      listen: (r) => this.listen(r),
      close: async (r) => this.closeRequested(r),
      expose: (r) => this.exposePort(r, t),
    };
  }

  constructor(
    readonly policy: PortPolicy,
    private readonly logger: Logger,
    limits: Partial<PortLimits> = {},
    private readonly ids: PortIdRange = TUNNEL_PORT_IDS,
    /** false (`serve --no-mediation`): every request is answered NOT_OFFERED, and the hello does not list `mediation` */
    readonly offered = true,
  ) {
    super();
    this.nextId = ids.first;
    this.limits = { ...DEFAULT_PORT_LIMITS, ...limits };
  }

  /**
   * Direct mode's mediator and the relay tunnel's count against one set of contact point limits
   * (maxPorts, maxStreams: "at this contact point"): each counts the other's ports and streams.
   */
  shareLimitsWith(other: PortMediator): void {
    this.sibling = other;
    other.sibling = this;
  }

  /** Streams of the mediator this one shares its limits with (0 without one). */
  private siblingStreams(): number {
    const s = this.sibling;
    return s ? s.streamCount + s.connecting : 0;
  }

  /** Tunnel `slot` is up: requests may come on it. */
  attach(link: MuxLink, slot = 0): void {
    this.detach('tunnel replaced', slot);
    this.tunnels.set(slot, { slot, link, mux: new StreamMux(link) });
  }

  /** The UDP channel to the relay node of tunnel `slot` (undefined: none; datagrams go in the tunnels). */
  setUdpChannel(udp: typeof this.udp, slot = 0): void {
    this.udp = udp;
    this.udpSlot = slot;
  }

  /** A tunnel is gone (`slot`; every one when absent): close its ports, reset its streams. */
  detach(reason: string, slot?: number): void {
    for (const t of [...this.tunnels.values()]) {
      if (slot !== undefined && t.slot !== slot) continue;
      for (const p of [...this.ports.values()]) if (p.tunnel === t) this.closePort(p, reason);
      t.mux.resetAll(reason);
      this.tunnels.delete(t.slot);
    }
  }

  /** ports open now */
  get size(): number {
    return this.ports.size;
  }

  get streamCount(): number {
    let n = 0;
    for (const t of this.tunnels.values()) n += t.mux.size;
    return n;
  }

  list(): PortView[] {
    return [...this.ports.values()].map((p) => ({
      id: p.id,
      proto: p.proto,
      address: p.address,
      port: p.port,
      state: p.state,
      operator: p.operator,
      target: p.target,
      streams: p.streams.size,
      refused: p.refusals.total,
      bytesIn: p.bytesIn + this.streamBytes(p, 'in'),
      bytesOut: p.bytesOut + this.streamBytes(p, 'out'),
      createdAt: p.createdAt,
    }));
  }

  /** Bytes through every port since start, closed ones included (for metrics; walks the open ports). */
  byteTotals(): { bytesIn: number; bytesOut: number } {
    let bytesIn = this.closedBytes.in;
    let bytesOut = this.closedBytes.out;
    for (const p of this.ports.values()) {
      bytesIn += p.bytesIn + this.streamBytes(p, 'in');
      bytesOut += p.bytesOut + this.streamBytes(p, 'out');
    }
    return { bytesIn, bytesOut };
  }

  /** Handles a mediation frame from tunnel `slot`; false when `frame` is not one. */
  handleFrame(frame: Frame, slot = 0): boolean {
    const t = this.tunnels.get(slot);
    if (frame.type === FrameType.PORT_REQUEST) {
      const req = decodeControl(frame, FrameType.PORT_REQUEST);
      if (t) void this.execute(req, t).then((result) => t.link.send(encodeControl(FrameType.PORT_RESULT, result)));
      return true;
    }
    if (frame.type === FrameType.DATAGRAM) {
      this.datagramFromRelay(frame);
      return true;
    }
    return t?.mux.handle(frame) ?? false;
  }

  /** Admin command: close a port (and reset its streams). */
  close(id: number, reason = 'closed by the admin'): boolean {
    const p = this.ports.get(id);
    if (!p) return false;
    this.closePort(p, reason);
    return true;
  }

  closeAll(reason: string): void {
    for (const p of [...this.ports.values()]) this.closePort(p, reason);
    for (const t of this.tunnels.values()) t.mux.resetAll(reason);
  }

  private async execute(req: PortRequestBody, t: Tunnel): Promise<PortResultBody> {
    try {
      if (!this.offered) throw new RequestError(Status.NOT_OFFERED);
      const answer = await dispatch(cpPortRequestSchema, this.operations(t), req, () => {
        throw new RequestError(Status.BAD_REQUEST, `${req.op} is for the relay, not a contact point`);
      });
      return { req: req.req, ok: true, ...answer };
    } catch (err: unknown) {
      const e =
        err instanceof RequestError ? err
        : err instanceof SchemaError ? new RequestError(Status.BAD_REQUEST, err.message)
        : new RequestError(Status.INTERNAL, (err as Error).message);
      this.refusedByCode.add(e.code);
      if (e.code === Status.PERMISSION_DENIED || e.code === Status.UNSAFE_TARGET || e.code === Status.NOT_OFFERED) {
        this.emit('refused', { at: Date.now(), operator: req.operator, op: req.op, what: describeRequest(req), code: e.code, reason: e.message });
      }
      const port = req.op === 'connect' && req.portId !== undefined ? this.ports.get(req.portId) : undefined;
      // A refused connection of an exposure: counted on its port, logged at most once a second.
      if (port?.state === 'exposed') port.refusals.add(e.code, e.message);
      else this.logger.info('port request refused', { op: req.op, operator: req.operator, code: e.code, reason: e.message });
      return { req: req.req, ok: false, code: e.code, reason: e.message.slice(0, 256) };
    }
  }

  private must(req: { op: string; portId: number }, proto?: 'tcp' | 'udp'): PortEntry {
    const p = this.ports.get(req.portId);
    if (!p) throw new RequestError(Status.UNKNOWN_PORT, `no port with id ${req.portId}`);
    if (proto && p.proto !== proto) throw new RequestError(Status.WRONG_STATE, `port ${p.id} is ${p.proto}, ${req.op} needs ${proto}`);
    return p;
  }

  private closeRequested(req: CpPortOp<'close'>): PortAnswer {
    const p = this.must(req);
    this.closePort(p, `closed by ${req.operator}`);
    return { portId: p.id };
  }

  private async open(req: CpPortOp<'open'>, t: Tunnel): Promise<{ portId: number; port: number; address: string }> {
    const proto = req.proto;
    // The address is checked and bound in its canonical form (::ffff:127.0.0.1 is 127.0.0.1).
    const canon = req.address !== undefined && isIP(req.address) !== 0 ? canonicalAddress(req.address) : undefined;
    if (req.address !== undefined && !canon) throw new RequestError(Status.BAD_REQUEST, `address "${req.address}" is not an IP address (without a zone id)`);
    const address = canon?.address ?? '0.0.0.0';
    this.checkPortLimits(req.operator);
    // Counted from here to its answer: opens that arrive together each see the others (they all
    // passed the limits before any was in the table, 1,000 past the 64 an operator may hold).
    this.pendingOpens.set(req.operator, (this.pendingOpens.get(req.operator) ?? 0) + 1);
    try {
      return await this.openChecked(req, t, proto, canon, address);
    } finally {
      const left = this.pendingOpens.get(req.operator)! - 1;
      if (left === 0) this.pendingOpens.delete(req.operator);
      else this.pendingOpens.set(req.operator, left);
    }
  }

  private async openChecked(req: CpPortOp<'open'>, t: Tunnel, proto: 'tcp' | 'udp', canon: { address: string } | undefined, address: string): Promise<{ portId: number; port: number; address: string }> {
    const wanted = req.port ?? 0;
    const bindAddr = canon?.address;
    const candidates =
      req.importance === 'desired' && wanted !== 0 ? [...this.policy.candidatePorts(proto, bindAddr, wanted)] : [wanted];
    if (proto === 'tcp' && wanted === 0) {
      // Nothing is bound: port 0 is just an ephemeral source port for a later connect. A later
      // listen on it binds, and is checked then.
    } else if (req.importance !== 'desired' || wanted === 0) {
      const problem = this.policy.bindProblem(proto, bindAddr, wanted);
      if (problem) throw bindRefused(problem);
    } else if (candidates.length === 0) {
      throw bindRefused(this.policy.bindProblem(proto, bindAddr, wanted) ?? { unsafe: false, reason: 'no allowed port' });
    }
    let lastErr: NodeJS.ErrnoException | undefined;
    for (const port of candidates) {
      try {
        const entry = this.newEntry(proto, address, port, 'open', req.operator, undefined, t);
        if (proto === 'udp') {
          entry.udp = await bindUdp(address, port);
          entry.port = entry.udp.address().port;
          entry.udp.on('message', (msg, rinfo) => this.datagramFromLan(entry, msg, rinfo.address, rinfo.port));
        } else if (port !== 0) {
          // TCP cannot hold a port without listening; check it is free now (connect binds it later).
          await probeTcp(address, port);
        }
        this.ports.set(entry.id, entry);
        this.emit('changed');
        return { portId: entry.id, port: entry.port, address };
      } catch (err: unknown) {
        lastErr = err as NodeJS.ErrnoException;
        if (lastErr.code !== 'EADDRINUSE' && lastErr.code !== 'EACCES') break;
      }
    }
    if (lastErr?.code === 'EADDRINUSE') {
      throw new RequestError(Status.PORT_IN_USE, req.importance === 'desired' ? `no free allowed port from ${wanted}` : `port ${wanted} is in use`);
    }
    throw new RequestError(Status.PORT_IN_USE, `cannot bind ${proto} ${address}:${wanted}: ${lastErr?.code ?? lastErr?.message ?? 'error'}`);
  }

  /** Opens under way at this mediator, over all operators. */
  private pendingOpenCount(): number {
    let n = 0;
    for (const c of this.pendingOpens.values()) n += c;
    return n;
  }

  private checkPortLimits(operator: string): void {
    if (this.ports.size + this.pendingOpenCount() + (this.sibling ? this.sibling.ports.size + this.sibling.pendingOpenCount() : 0) >= this.limits.maxPorts) {
      throw new RequestError(Status.PORT_LIMIT, `${this.limits.maxPorts} ports are open`);
    }
    let mine = this.pendingOpens.get(operator) ?? 0;
    for (const p of this.ports.values()) if (p.operator === operator) mine++;
    if (mine >= this.limits.maxPerOperator) throw new RequestError(Status.PORT_LIMIT, `${operator} has ${mine} ports open`);
  }

  private newEntry(proto: 'tcp' | 'udp', address: string, port: number, state: PortState, operator: string, target: string | undefined, tunnel: Tunnel): PortEntry {
    const id = this.allocId();
    const entry: PortEntry = {
      id,
      proto,
      address,
      port,
      state,
      operator,
      target,
      createdAt: Date.now(),
      streams: new Set(),
      connecting: 0,
      refusals: new RefusalTally(REFUSAL_LOG_INTERVAL_MS, (counts) => {
        for (const c of counts) {
          const fields = { port: id, operator, target: entry.target, refused: c.count, code: statusName(c.code), reason: c.reason, total: entry.refusals.total };
          if (c.code === Status.STREAM_LIMIT) this.logger.warn('connections refused: stream limit reached', fields);
          else this.logger.info('connections refused', fields);
        }
        this.changedSoon();
      }),
      bytesIn: 0,
      bytesOut: 0,
      sockets: new Set(),
      tunnel,
    };
    return entry;
  }

  /**
   * A relay exposure's port: one port (one row for the admin, one against the operator's port
   * limit) whose every connection is a stream: the relay sends one connect per connection to
   * the same target. Streams are capped per exposure and per contact point (STREAM_LIMIT).
   */
  private async exposePort(req: CpPortOp<'expose'>, t: Tunnel): Promise<{ portId: number; port: number }> {
    if ((req.proto ?? 'tcp') !== 'tcp') throw new RequestError(Status.BAD_REQUEST, 'only TCP exposures have a port of their own');
    this.checkPortLimits(req.operator);
    // Checked now so a refusal shows when the exposure starts; checked again at every connect.
    const target = await this.policy.resolveTarget(req.host, req.targetPort);
    if (!target.ok) throw new RequestError(target.unsafe ? Status.UNSAFE_TARGET : Status.PERMISSION_DENIED, target.reason);
    this.checkPortLimits(req.operator);
    const entry = this.newEntry('tcp', '0.0.0.0', 0, 'exposed', req.operator, `${req.host}:${req.targetPort}`, t);
    this.ports.set(entry.id, entry);
    this.emit('changed');
    return { portId: entry.id, port: 0 };
  }

  private redirect(req: CpPortOp<'redirect'>): { portId: number; port: number } {
    const p = this.must(req, 'udp');
    p.state = 'redirecting';
    this.emit('changed');
    return { portId: p.id, port: p.port };
  }

  private async connectPort(req: CpPortOp<'connect'>, t: Tunnel): Promise<{ portId: number; streamId: number; port: number }> {
    const p = this.must(req, 'tcp');
    if (p.tunnel !== t) throw new RequestError(Status.WRONG_STATE, `port ${p.id} belongs to another tunnel`);
    if (p.state === 'exposed') return this.connectExposed(p, req);
    if (p.state !== 'open') throw new RequestError(Status.WRONG_STATE, `port ${p.id} is ${p.state}`);
    const streamId = req.streamId;
    if (streamId % 2 !== 0) throw new RequestError(Status.BAD_REQUEST, 'connect needs an even streamId chosen by the relay');
    this.checkStreamFree(p.tunnel, streamId);
    if (this.streamCount + this.connecting + this.siblingStreams() >= this.limits.maxStreams) throw new RequestError(Status.STREAM_LIMIT, `${this.limits.maxStreams} streams are open at this contact point`);
    // Taken before the first await: a second connect on this port, or for this stream id, in the
    // same batch of requests is refused here instead of dialling too (it left an untracked socket).
    p.state = 'connecting';
    const release = this.reserve(p.tunnel, streamId);
    try {
      const target = await this.policy.resolveTarget(req.host, req.targetPort);
      if (!target.ok) throw new RequestError(target.unsafe ? Status.UNSAFE_TARGET : Status.PERMISSION_DENIED, target.reason);
      p.target = `${req.host}:${req.targetPort}`;
      this.emit('changed');
      const direct = new DirectRead();
      const socket = await this.dial(p, target, req.targetPort, direct).catch((err: NodeJS.ErrnoException) => {
        throw new RequestError(Status.CONNECT_FAILED, `${p.target}: ${err.code ?? err.message}`);
      });
      if (!this.ports.has(p.id)) {
        socket.resetAndDestroy();
        throw new RequestError(Status.WRONG_STATE, 'the port was closed while connecting');
      }
      this.attachOrReset(p, socket, streamId, direct);
      p.state = 'connected';
      this.emit('changed');
      return { portId: p.id, streamId, port: socket.localPort ?? p.port };
    } catch (err: unknown) {
      // Whatever failed (the target refused, the dial, the stream), the port may connect again.
      if (p.state === 'connecting') {
        p.state = 'open';
        this.emit('changed');
      }
      throw err;
    } finally {
      release();
    }
  }

  /** BAD_REQUEST when `streamId` is open on `t`'s mux, or a connect for it is under way. */
  private checkStreamFree(t: Tunnel, streamId: number): void {
    if (t.mux.get(streamId) || this.reserved.has(`${t.slot}:${streamId}`)) throw new RequestError(Status.BAD_REQUEST, `stream ${streamId} is in use`);
  }

  /** Holds `streamId` on `t` (and a place under the stream limit) while a connect for it is under way. */
  private reserve(t: Tunnel, streamId: number): () => void {
    const key = `${t.slot}:${streamId}`;
    this.reserved.add(key);
    this.connecting++;
    return () => {
      this.reserved.delete(key);
      this.connecting--;
    };
  }

  /** attachStream, or, if that fails, the dialled socket reset rather than left open and unwatched. */
  private attachOrReset(p: PortEntry, socket: Socket, streamId: number, direct: DirectRead): void {
    try {
      this.attachStream(p, socket, streamId, direct);
    } catch (err: unknown) {
      socket.on('error', () => undefined);
      socket.resetAndDestroy();
      throw err;
    }
  }

  /** One more connection of an exposure: a stream to the exposure's target, within the stream limits. */
  private async connectExposed(p: PortEntry, req: CpPortOp<'connect'>): Promise<{ portId: number; streamId: number; port: number }> {
    if (`${req.host}:${req.targetPort}` !== p.target) throw new RequestError(Status.BAD_REQUEST, `port ${p.id} is an exposure of ${p.target}`);
    const streamId = req.streamId;
    if (streamId % 2 !== 0) throw new RequestError(Status.BAD_REQUEST, 'connect needs an even streamId chosen by the relay');
    this.checkStreamFree(p.tunnel, streamId);
    if (p.streams.size + p.connecting >= this.limits.maxStreamsPerExposure) {
      throw new RequestError(Status.STREAM_LIMIT, `${this.limits.maxStreamsPerExposure} connections of this exposure are open at the contact point`);
    }
    if (this.streamCount + this.connecting + this.siblingStreams() >= this.limits.maxStreams) throw new RequestError(Status.STREAM_LIMIT, `${this.limits.maxStreams} streams are open at this contact point`);
    p.connecting++;
    const release = this.reserve(p.tunnel, streamId);
    try {
      const target = await this.policy.resolveTarget(req.host, req.targetPort);
      if (!target.ok) throw new RequestError(target.unsafe ? Status.UNSAFE_TARGET : Status.PERMISSION_DENIED, target.reason);
      const direct = new DirectRead();
      const socket = await this.dial(p, target, req.targetPort, direct).catch((err: NodeJS.ErrnoException) => {
        throw new RequestError(Status.CONNECT_FAILED, `${p.target}: ${err.code ?? err.message}`);
      });
      if (this.ports.get(p.id) !== p) {
        socket.resetAndDestroy();
        throw new RequestError(Status.WRONG_STATE, 'the exposure was closed while connecting');
      }
      this.attachOrReset(p, socket, streamId, direct);
      this.changedSoon();
      return { portId: p.id, streamId, port: socket.localPort ?? 0 };
    } finally {
      p.connecting--;
      release();
    }
  }

  private dial(p: PortEntry, target: { address: string; family: number }, port: number, direct: DirectRead): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      const s = connect({
        onread: direct.onread,
        host: target.address,
        port,
        family: target.family,
        allowHalfOpen: true,
        noDelay: true,
        timeout: CONNECT_TIMEOUT_MS,
        ...(p.port !== 0 ? { localPort: p.port } : {}),
        ...(p.address !== '0.0.0.0' ? { localAddress: p.address } : {}),
      });
      s.once('connect', () => {
        s.setTimeout(0);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('timeout', () => s.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
      s.once('error', reject);
    });
  }

  private async listen(req: CpPortOp<'listen'>): Promise<{ portId: number; port: number }> {
    const p = this.must(req, 'tcp');
    if (p.state !== 'open' || this.listensUnderWay.has(p.id)) throw new RequestError(Status.WRONG_STATE, `port ${p.id} is ${p.state === 'open' ? 'about to listen' : p.state}`);
    const problem = this.policy.bindProblem('tcp', p.address, p.port);
    if (problem) throw bindRefused(problem);
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accepted(p, socket));
    this.listensUnderWay.add(p.id);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(p.port, p.address, () => {
          server.off('error', reject);
          resolve();
        });
      }).catch((err: NodeJS.ErrnoException) => {
        throw new RequestError(Status.PORT_IN_USE, `cannot listen on ${p.address}:${p.port}: ${err.code ?? err.message}`);
      });
    } finally {
      this.listensUnderWay.delete(p.id);
    }
    if (this.ports.get(p.id) !== p || p.state !== 'open') {
      // Closed (or its tunnel gone) while binding: a listener nobody holds, unseen by the admin, is not left behind.
      server.close();
      throw new RequestError(Status.WRONG_STATE, `port ${p.id} was closed while it was being bound`);
    }
    const addr = server.address();
    if (addr && typeof addr === 'object') p.port = addr.port;
    p.server = server;
    p.state = 'listening';
    this.emit('changed');
    return { portId: p.id, port: p.port };
  }

  private accepted(p: PortEntry, socket: Socket): void {
    if (this.streamCount + this.connecting + this.siblingStreams() >= this.limits.maxStreams) {
      socket.resetAndDestroy();
      this.refusedByCode.add(Status.STREAM_LIMIT);
      p.refusals.add(Status.STREAM_LIMIT, `${this.limits.maxStreams} streams are open at this contact point`);
      return;
    }
    const streamId = this.allocStreamId(p.tunnel);
    // Event relay: a LAN host completed the handshake on a listening port. Sent before the
    // stream's first byte, so the relay knows the id when data arrives.
    p.tunnel.link.send(
      encodeControl(FrameType.PORT_EVENT, {
        portId: p.id,
        event: 'accepted',
        streamId,
        ...(socket.remoteAddress ? { remoteAddress: socket.remoteAddress } : {}),
        ...(socket.remotePort ? { remotePort: socket.remotePort } : {}),
      }),
    );
    this.attachStream(p, socket, streamId);
    this.emit('changed');
  }

  private attachStream(p: PortEntry, socket: Socket, streamId: number, direct?: DirectRead): void {
    const stream = p.tunnel.mux.open(streamId);
    p.streams.add(streamId);
    p.sockets.add(socket);
    bridge(socket, stream, () => {
      p.bytesIn += stream.bytesIn;
      p.bytesOut += stream.bytesOut;
      if (this.ports.get(p.id) !== p) {
        this.closedBytes.in += stream.bytesIn;
        this.closedBytes.out += stream.bytesOut;
      }
      p.streams.delete(streamId);
      p.sockets.delete(socket);
      // A connected port is done when its one connection is; a listening port lives on.
      if (p.state === 'connected' && this.ports.get(p.id) === p) this.closePort(p, 'connection closed');
      else if (p.state === 'exposed') this.changedSoon();
      else this.emit('changed');
    }, direct);
  }

  private datagramFromLan(p: PortEntry, payload: Buffer, address: string, port: number): void {
    if (p.state !== 'redirecting') return; // not redirected: nobody asked for these packets
    p.bytesOut += payload.length; // out: from the LAN towards the relay, as for TCP streams
    const d = { portId: p.id, address, port, payload };
    // The UDP channel goes to one relay node: a port of the other tunnel keeps its datagrams in that tunnel.
    if (p.tunnel.slot !== this.udpSlot || !this.udp?.send(d)) p.tunnel.link.send(encodeDatagram(d));
  }

  private datagramFromRelay(frame: Frame): void {
    this.datagramIn(decodeDatagram(frame));
  }

  /** A datagram from the relay (tunnel or UDP channel) to send out of one of our UDP ports. */
  datagramIn(d: Datagram): void {
    const p = this.ports.get(d.portId);
    if (!p?.udp) return;
    const canon = canonicalAddress(d.address);
    const problem = !canon ? 'not an address' : d.port < 1 || d.port > 65_535 ? `port ${d.port} is no UDP destination` : this.policy.targetProblem(canon.address, canon.family, d.port);
    if (problem) {
      this.refusedByCode.add(Status.PERMISSION_DENIED);
      this.emit('refused', { at: Date.now(), operator: p.operator, op: 'datagram', what: `${d.address}:${d.port}`, code: Status.PERMISSION_DENIED, reason: problem });
      return;
    }
    p.bytesIn += d.payload.length; // in: from the relay towards the LAN, as for TCP streams
    p.udp.send(d.payload, d.port, canon!.address);
  }

  /** Stream churn on exposed ports: one 'changed' per PORTS_CHANGED_COALESCE_MS at most. */
  private changedSoon(): void {
    if (this.changedTimer) return;
    this.changedTimer = setTimeout(() => {
      this.changedTimer = undefined;
      this.emit('changed');
    }, PORTS_CHANGED_COALESCE_MS);
    this.changedTimer.unref();
  }

  private closePort(p: PortEntry, reason: string): void {
    if (!this.ports.delete(p.id)) return;
    this.closedBytes.in += p.bytesIn;
    this.closedBytes.out += p.bytesOut;
    p.refusals.flush();
    p.refusals.dispose();
    p.server?.close();
    p.udp?.close();
    for (const id of p.streams) p.tunnel.mux.get(id)?.destroy(new Error(reason));
    for (const s of p.sockets) if (!s.destroyed) s.resetAndDestroy();
    p.tunnel.link.send(encodeControl(FrameType.PORT_EVENT, { portId: p.id, event: 'closed', reason: reason.slice(0, 256) }));
    this.emit('changed');
  }

  private streamBytes(p: PortEntry, dir: 'in' | 'out'): number {
    let n = 0;
    for (const id of p.streams) {
      const s = p.tunnel.mux.get(id);
      if (s) n += dir === 'in' ? s.bytesIn : s.bytesOut;
    }
    return n;
  }

  /** Odd ids for connections accepted here; the relay uses even ones for its connects. */
  private allocStreamId(t: Tunnel): number {
    do {
      this.nextStream = this.nextStream >= 0x7ffffffd ? 1 : this.nextStream + 2;
    } while (t.mux.get(this.nextStream));
    return this.nextStream;
  }

  private allocId(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= this.ids.last ? this.ids.first : this.nextId + 1;
    return id;
  }
}

/** A special local address no listen rule names is UNSAFE_TARGET, as for connect targets. */
function bindRefused(r: BindRefusal): RequestError {
  return new RequestError(r.unsafe ? Status.UNSAFE_TARGET : Status.PERMISSION_DENIED, r.reason);
}

function describeRequest(r: PortRequestBody): string {
  if (r.op === 'connect') return `${r.host ?? '?'}:${r.targetPort ?? '?'}`;
  if (r.op === 'open') return `${r.proto ?? '?'} ${r.address ?? '*'}:${r.port ?? 0}`;
  return `port ${r.portId ?? '?'}`;
}

function bindUdp(address: string, port: number): Promise<UdpSocket> {
  const sock = createSocket({ type: isIP(address) === 6 ? 'udp6' : 'udp4' });
  return new Promise((resolve, reject) => {
    sock.once('error', (err) => {
      sock.close();
      reject(err);
    });
    sock.bind(port, address, () => {
      sock.removeAllListeners('error');
      sock.on('error', () => undefined);
      resolve(sock);
    });
  });
}

function probeTcp(address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, address, () => s.close(() => resolve()));
  });
}
