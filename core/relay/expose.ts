import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { bridge } from '../protocol/bridge.js';
import { MAX_STREAMS_PER_CONTACT_POINT, MAX_STREAMS_PER_EXPOSURE } from '../protocol/limits.js';
import { Status } from '../protocol/status.js';
import type { ExposureView } from '../admin/relay-contract.js';
import type { Logger } from '../runtime/logger.js';
import { RefusalTally, type RefusalCount } from '../runtime/refusal-tally.js';
import type { ControlChannel } from './control.js';
import { RefusalLog, type RefusalSink } from './refusals.js';

/** A UDP client of an exposed port that stays silent this long loses its mapping (and the LAN port). */
export const UDP_MAPPING_IDLE_MS = 60_000;
/** Distinct UDP clients one exposure maps at once. */
export const MAX_UDP_MAPPINGS = 256;
/** Refused connections of one exposure are logged (warn) and reported to its operator at most once per this interval, with their count. */
export const EXPOSE_REFUSAL_REPORT_MS = 1_000;

export interface ExposeLimits {
  /** TCP connections one exposure carries at once (STREAM_LIMIT beyond) */
  readonly maxConnections: number;
  /** TCP connections of all exposures of one contact point at once (STREAM_LIMIT beyond) */
  readonly maxConnectionsPerContactPoint: number;
}

export const DEFAULT_EXPOSE_LIMITS: ExposeLimits = {
  maxConnections: MAX_STREAMS_PER_EXPOSURE,
  maxConnectionsPerContactPoint: MAX_STREAMS_PER_CONTACT_POINT,
};

/** The slots of one contact point's exposed connections, shared by its exposures. */
interface ContactPointSlots {
  take(cp: string): boolean;
  release(cp: string): void;
}

export interface ExposeSpec {
  readonly cp: string;
  readonly proto: 'tcp' | 'udp';
  /** LAN target as the contact point sees it; for UDP an IP address */
  readonly host: string;
  readonly port: number;
  /** who asked (operator name), checked against the contact point's limits */
  readonly operator: string;
  /** relay-side port; 0 = any free one */
  readonly publicPort?: number;
  readonly publicHost?: string;
  /** TCP: at most this many connections at once (the relay's own limit caps it) */
  readonly maxConnections?: number;
  /** refused connections, at most once per EXPOSE_REFUSAL_REPORT_MS with their counts (e.g. to the operator) */
  readonly onRefused?: (counts: readonly RefusalCount[], exposureId: number) => void;
}

export type { ExposureView };

interface UdpMapping {
  /** the client on the public side */
  readonly address: string;
  readonly port: number;
  /** its LAN port at the contact point; 0 while being set up */
  portId: number;
  lastSeen: number;
}

/**
 * "Expose a LAN target through the relay": a public TCP or UDP port on the relay host. TCP:
 * the exposure has one port at the contact point (op expose), and every incoming connection
 * is a stream through it (one connect each), within the per-exposure and per-contact-point
 * connection limits. UDP: every client address gets its own redirected UDP port there.
 * Refusals reset the client's connection at once (the others go on), are counted, reported to
 * the relay's refusal log (warn) and to the operator, at most once a second with their counts.
 */
export class Exposure {
  private server: Server | undefined;
  private udp: UdpSocket | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly mappings = new Map<string, UdpMapping>();
  /** the same mappings by LAN port id: every datagram back from the LAN is looked up here */
  private readonly byPort = new Map<number, UdpMapping>();
  private sweeper: NodeJS.Timeout | undefined;
  /** TCP: this exposure's port at the contact point, per tunnel (asked for at the first connection) */
  private cpPort: { readonly ch: ControlChannel; readonly id: Promise<number | { code: number; reason: string }> } | undefined;
  private readonly refusals: RefusalTally;
  private closed = false;
  readonly maxConnections: number;
  /** TCP connections open now (from accept to close, set-up included) */
  active = 0;
  connections = 0;
  publicPort = 0;

  constructor(
    readonly id: number,
    readonly spec: ExposeSpec,
    private readonly channel: () => ControlChannel | undefined,
    private readonly logger: Logger,
    limits: ExposeLimits = DEFAULT_EXPOSE_LIMITS,
    private readonly slots: ContactPointSlots = { take: () => true, release: () => undefined },
    sink: RefusalSink = new RefusalLog(logger),
  ) {
    this.maxConnections = Math.min(spec.maxConnections ?? limits.maxConnections, limits.maxConnections);
    this.refusals = new RefusalTally(EXPOSE_REFUSAL_REPORT_MS, (counts) => {
      for (const c of counts) {
        sink.record({
          kind: 'exposure',
          code: c.code,
          who: `operator ${spec.operator}`,
          reason: c.reason,
          count: c.count,
          fields: { cp: spec.cp, exposure: id, publicPort: this.publicPort, total: this.refusals.total },
        });
      }
      spec.onRefused?.(counts, id);
    });
  }

  get refused(): number {
    return this.refusals.total;
  }

  view(): ExposureView {
    return {
      id: this.id,
      cp: this.spec.cp,
      proto: this.spec.proto,
      target: `${this.spec.host}:${this.spec.port}`,
      publicPort: this.publicPort,
      operator: this.spec.operator,
      connections: this.connections,
      refused: this.refused,
      active: this.active,
      maxConnections: this.maxConnections,
    };
  }

  async start(defaultHost: string): Promise<number> {
    const host = this.spec.publicHost ?? defaultHost;
    if (this.spec.proto === 'tcp') {
      // Not pauseOnConnect: a socket that is not reading while open + connect run would see a
      // client's RST later as a plain EOF (a half-close), and never reset the LAN side. Node
      // reads into the socket's own bounded buffer meanwhile; the pipe takes over after.
      const server = createServer({ allowHalfOpen: true, noDelay: true }, (s) => void this.onTcp(s));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.spec.publicPort ?? 0, host, () => resolve());
      });
      this.server = server;
      this.publicPort = (server.address() as AddressInfo).port;
    } else {
      const udp = createSocket(host.includes(':') ? 'udp6' : 'udp4');
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(this.spec.publicPort ?? 0, host, () => resolve());
      });
      // Source port 0 is no client anyone can answer (the kernel delivers it, sendto refuses it):
      // dropped before it makes a mapping whose replies would throw.
      udp.on('message', (msg, rinfo) => {
        if (rinfo.port === 0) return;
        // A datagram that cannot be passed on is lost, as UDP may lose it: never an unhandled rejection.
        this.onUdp(msg, rinfo.address, rinfo.port).catch((err: unknown) => this.logger.debug('exposure UDP datagram not passed on', { cp: this.spec.cp, error: err instanceof Error ? err.message : String(err) }));
      });
      udp.on('error', (err) => this.logger.warn('exposure UDP socket error', { cp: this.spec.cp, publicPort: this.publicPort, error: err.message }));
      this.udp = udp;
      this.publicPort = udp.address().port;
      this.sweeper = setInterval(() => this.sweepUdp(), UDP_MAPPING_IDLE_MS / 4);
      this.sweeper.unref();
    }
    this.logger.info('exposed', { cp: this.spec.cp, target: `${this.spec.host}:${this.spec.port}`, proto: this.spec.proto, publicPort: this.publicPort });
    return this.publicPort;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    this.refusals.flush();
    this.refusals.dispose();
    this.server?.close();
    for (const s of this.sockets) s.resetAndDestroy();
    this.udp?.close();
    const port = this.cpPort;
    this.cpPort = undefined;
    if (port && !port.ch.isClosed) {
      void port.id.then((id) => {
        if (typeof id === 'number') void port.ch.request({ op: 'close', operator: this.spec.operator, portId: id });
      });
    }
    const ch = this.channel();
    for (const m of this.mappings.values()) void ch?.request({ op: 'close', operator: this.spec.operator, portId: m.portId });
    this.mappings.clear();
    this.byPort.clear();
  }

  /** Datagrams the contact point relayed back from the LAN target, for one of our mappings. */
  fromLan(portId: number, payload: Buffer): boolean {
    const m = this.byPort.get(portId);
    if (!m) return false;
    m.lastSeen = Date.now();
    try {
      this.udp?.send(payload, m.port, m.address);
    } catch (err: unknown) {
      // A socket closed meanwhile, an address the kernel will not take: this datagram is lost, as UDP may lose it.
      this.logger.debug('exposure UDP reply not sent', { cp: this.spec.cp, error: err instanceof Error ? err.message : String(err) });
    }
    return true;
  }

  /** The contact point closed a port: when it was ours, the next connection asks for a new one. */
  portClosed(ch: ControlChannel, portId: number): void {
    const port = this.cpPort;
    if (port?.ch !== ch) return;
    void port.id.then((id) => {
      if (id === portId && this.cpPort === port) this.cpPort = undefined;
    });
  }

  private refuse(socket: Socket, code: number, reason: string): void {
    this.refusals.add(code, reason);
    socket.resetAndDestroy();
  }

  /** This exposure's port at the contact point behind `ch`, or the refusal (not kept: the next connection asks again). */
  private portAt(ch: ControlChannel): Promise<number | { code: number; reason: string }> {
    if (this.cpPort?.ch !== ch) {
      const id = ch.exposePort(this.spec.operator, this.spec.host, this.spec.port).then((r) =>
        r.ok && r.portId !== undefined ? r.portId : { code: r.code ?? Status.INTERNAL, reason: r.reason ?? '' },
      );
      const port = { ch, id };
      this.cpPort = port;
      void id.then((v) => {
        if (typeof v !== 'number' && this.cpPort === port) this.cpPort = undefined;
      });
    }
    return this.cpPort.id;
  }

  private async onTcp(socket: Socket): Promise<void> {
    socket.on('error', () => undefined);
    const cp = this.spec.cp;
    const ch = this.channel();
    if (!ch) return this.refuse(socket, Status.CONTACT_POINT_OFFLINE, `${cp} is offline`);
    if (this.active >= this.maxConnections) return this.refuse(socket, Status.STREAM_LIMIT, `${this.maxConnections} connections of this exposure are open`);
    if (!this.slots.take(cp)) return this.refuse(socket, Status.STREAM_LIMIT, `the relay's limit of connections to the exposures of ${cp} is reached`);
    this.active++;
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.active--;
      this.slots.release(cp);
    });
    for (let attempt = 0; ; attempt++) {
      if (this.closed || socket.destroyed) return; // closed meanwhile: no new port at the contact point
      const portId = await this.portAt(ch);
      if (socket.destroyed) return;
      if (typeof portId !== 'number') return this.refuse(socket, portId.code, portId.reason);
      const r = await ch.connectExposed(this.spec.operator, portId, this.spec.host, this.spec.port);
      if (!r.ok) {
        // Our port went away at the contact point (its admin closed it): once more, on a new one.
        if (r.code === Status.UNKNOWN_PORT && attempt === 0) {
          const current = this.cpPort;
          if (current?.ch === ch && (await current.id) === portId && this.cpPort === current) this.cpPort = undefined;
          continue;
        }
        if (socket.destroyed) return;
        return this.refuse(socket, r.code, r.reason);
      }
      if (socket.destroyed) {
        r.stream.on('error', () => undefined);
        r.stream.destroy(new Error('client went away'));
        return;
      }
      this.connections++;
      bridge(socket, r.stream);
      return;
    }
  }

  private async onUdp(payload: Buffer, address: string, port: number): Promise<void> {
    const key = `${address}|${port}`;
    let m = this.mappings.get(key);
    const ch = this.channel();
    if (!ch) return;
    if (!m) {
      if (this.mappings.size >= MAX_UDP_MAPPINGS) {
        this.refusals.add(Status.STREAM_LIMIT, `${MAX_UDP_MAPPINGS} UDP clients of this exposure are mapped`);
        return;
      }
      m = { address, port, portId: 0, lastSeen: Date.now() };
      this.mappings.set(key, m);
      const opened = await ch.request({ op: 'open', operator: this.spec.operator, proto: 'udp', port: 0 });
      const redirected = opened.ok && opened.portId !== undefined && !this.closed ? await ch.request({ op: 'redirect', operator: this.spec.operator, portId: opened.portId }) : opened;
      if (!redirected.ok || opened.portId === undefined || this.closed) {
        this.mappings.delete(key);
        // A port the contact point opened for this mapping is closed again: the redirect failed,
        // or the exposure closed while it was being set up (its close() did not know the port).
        if (opened.ok && opened.portId !== undefined) void ch.request({ op: 'close', operator: this.spec.operator, portId: opened.portId });
        if (!this.closed) this.refusals.add(redirected.code ?? Status.INTERNAL, redirected.reason ?? '');
        return;
      }
      m.portId = opened.portId;
      this.byPort.set(m.portId, m);
      this.connections++;
    }
    if (m.portId === 0) return; // still being set up: this datagram is dropped, as UDP may
    m.lastSeen = Date.now();
    ch.sendDatagram({ portId: m.portId, address: this.spec.host, port: this.spec.port, payload });
  }

  private sweepUdp(): void {
    const now = Date.now();
    const ch = this.channel();
    for (const [key, m] of this.mappings) {
      if (now - m.lastSeen < UDP_MAPPING_IDLE_MS) continue;
      this.mappings.delete(key);
      this.byPort.delete(m.portId);
      if (m.portId) void ch?.request({ op: 'close', operator: this.spec.operator, portId: m.portId });
    }
  }
}

/** Owns a relay's exposures. */
export class Exposer {
  private readonly exposures = new Map<number, Exposure>();
  private nextId = 1;
  /** exposed TCP connections open now, per contact point */
  private readonly perCp = new Map<string, number>();
  /** tunnels whose closed ports we watch (an exposure's port closed by the contact point's admin) */
  private readonly watched = new WeakSet<ControlChannel>();
  private readonly slots = {
    take: (cp: string): boolean => {
      const n = this.perCp.get(cp) ?? 0;
      if (n >= this.limits.maxConnectionsPerContactPoint) return false;
      this.perCp.set(cp, n + 1);
      return true;
    },
    release: (cp: string): void => {
      const n = (this.perCp.get(cp) ?? 1) - 1;
      if (n > 0) this.perCp.set(cp, n);
      else this.perCp.delete(cp);
    },
  };

  constructor(
    private readonly channels: (cp: string) => ControlChannel | undefined,
    private readonly defaultHost: string,
    private readonly logger: Logger,
    readonly limits: ExposeLimits = DEFAULT_EXPOSE_LIMITS,
    /** refused connections go here (logged once, kept for the relay's status) */
    private readonly refusals: RefusalSink = new RefusalLog(logger),
  ) {}

  async expose(spec: ExposeSpec): Promise<Exposure> {
    const channel = (): ControlChannel | undefined => {
      const ch = this.channels(spec.cp);
      if (ch && !this.watched.has(ch)) {
        this.watched.add(ch);
        ch.on('closed', (e) => {
          for (const x of this.exposures.values()) if (x.spec.cp === spec.cp) x.portClosed(ch, e.portId);
        });
      }
      return ch;
    };
    const e = new Exposure(this.nextId++, spec, channel, this.logger, this.limits, this.slots, this.refusals);
    await e.start(this.defaultHost);
    this.exposures.set(e.id, e);
    return e;
  }

  unexpose(id: number): boolean {
    const e = this.exposures.get(id);
    if (!e) return false;
    e.close();
    this.exposures.delete(id);
    return true;
  }

  list(): ExposureView[] {
    return [...this.exposures.values()].map((e) => e.view());
  }

  /** A datagram from a contact point: hand it to the exposure that owns its port. */
  datagram(cp: string, portId: number, payload: Buffer): void {
    for (const e of this.exposures.values()) if (e.spec.cp === cp && e.fromLan(portId, payload)) return;
  }

  closeAll(): void {
    for (const e of this.exposures.values()) e.close();
    this.exposures.clear();
  }
}
