import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { bridge } from '../protocol/bridge.js';
import { Status, statusName } from '../protocol/status.js';
import type { Logger } from '../runtime/logger.js';
import type { ControlChannel } from './control.js';

/** A UDP client of an exposed port that stays silent this long loses its mapping (and the LAN port). */
export const UDP_MAPPING_IDLE_MS = 60_000;
/** Distinct UDP clients one exposure maps at once. */
export const MAX_UDP_MAPPINGS = 256;

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
}

export interface ExposureView {
  readonly id: number;
  readonly cp: string;
  readonly proto: 'tcp' | 'udp';
  readonly target: string;
  readonly publicPort: number;
  readonly operator: string;
  readonly connections: number;
  readonly refused: number;
}

interface UdpMapping {
  /** the client on the public side */
  readonly address: string;
  readonly port: number;
  /** its LAN port at the contact point; 0 while being set up */
  portId: number;
  lastSeen: number;
}

/**
 * "Expose a LAN target through the relay": a public TCP or UDP port on the relay host whose
 * every incoming connection becomes open + connect at the contact point (TCP), or whose
 * every client address gets its own redirected UDP port there. Refusals reset the client's
 * connection at once and are counted.
 */
export class Exposure {
  private server: Server | undefined;
  private udp: UdpSocket | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly mappings = new Map<string, UdpMapping>();
  /** the same mappings by LAN port id: every datagram back from the LAN is looked up here */
  private readonly byPort = new Map<number, UdpMapping>();
  private sweeper: NodeJS.Timeout | undefined;
  connections = 0;
  refused = 0;
  publicPort = 0;

  constructor(
    readonly id: number,
    readonly spec: ExposeSpec,
    private readonly channel: () => ControlChannel | undefined,
    private readonly logger: Logger,
  ) {}

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
      udp.on('message', (msg, rinfo) => void this.onUdp(msg, rinfo.address, rinfo.port));
      this.udp = udp;
      this.publicPort = udp.address().port;
      this.sweeper = setInterval(() => this.sweepUdp(), UDP_MAPPING_IDLE_MS / 4);
      this.sweeper.unref();
    }
    this.logger.info('exposed', { cp: this.spec.cp, target: `${this.spec.host}:${this.spec.port}`, proto: this.spec.proto, publicPort: this.publicPort });
    return this.publicPort;
  }

  close(): void {
    clearInterval(this.sweeper);
    this.server?.close();
    for (const s of this.sockets) s.resetAndDestroy();
    this.udp?.close();
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
    this.udp?.send(payload, m.port, m.address);
    return true;
  }

  private async onTcp(socket: Socket): Promise<void> {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    const ch = this.channel();
    if (!ch) {
      this.refused++;
      socket.resetAndDestroy();
      return;
    }
    const r = await ch.openStream(this.spec.operator, this.spec.host, this.spec.port);
    if (!r.ok) {
      this.refused++;
      this.logger.info('exposed connection refused', { cp: this.spec.cp, code: statusName(r.code), reason: r.reason });
      socket.resetAndDestroy();
      return;
    }
    if (socket.destroyed) {
      r.stream.destroy(new Error('client went away'));
      return;
    }
    this.connections++;
    bridge(socket, r.stream);
  }

  private async onUdp(payload: Buffer, address: string, port: number): Promise<void> {
    const key = `${address}|${port}`;
    let m = this.mappings.get(key);
    const ch = this.channel();
    if (!ch) return;
    if (!m) {
      if (this.mappings.size >= MAX_UDP_MAPPINGS) {
        this.refused++;
        return;
      }
      m = { address, port, portId: 0, lastSeen: Date.now() };
      this.mappings.set(key, m);
      const opened = await ch.request({ op: 'open', operator: this.spec.operator, proto: 'udp', port: 0 });
      const redirected = opened.ok && opened.portId !== undefined ? await ch.request({ op: 'redirect', operator: this.spec.operator, portId: opened.portId }) : opened;
      if (!redirected.ok || opened.portId === undefined) {
        this.mappings.delete(key);
        this.refused++;
        this.logger.info('exposed udp refused', { cp: this.spec.cp, code: statusName(redirected.code ?? Status.INTERNAL), reason: redirected.reason });
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

  constructor(
    private readonly channels: (cp: string) => ControlChannel | undefined,
    private readonly defaultHost: string,
    private readonly logger: Logger,
  ) {}

  async expose(spec: ExposeSpec): Promise<Exposure> {
    const e = new Exposure(this.nextId++, spec, () => this.channels(spec.cp), this.logger);
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
