import { randomBytes } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { decodeControl, type Frame } from '../protocol/codec.js';
import { ProtocolError } from '../protocol/errors.js';
import { CAPABILITY_REACHABLE, FrameType, frameTypeName, type HelloBody } from '../protocol/frames.js';
import { Link, type CloseInfo } from '../protocol/link.js';
import {
  HELLO_TIMEOUT_MS,
  MAX_FRAME_BYTES,
  MAX_MESSAGE_BYTES,
  MAX_PENDING_HELLOS,
  MAX_PENDING_HELLOS_PER_ADDRESS,
  MAX_PEERS_PER_CONTACT_POINT,
  PING_INTERVAL_MS,
  PRESSURE_TIMEOUT_MS,
  RELAY_RATE_PER_SENDER,
  TAKEOVER_PROBE_MS,
} from '../protocol/limits.js';
import { negotiateVersion } from '../protocol/version.js';
import { Status } from '../protocol/status.js';
import { FairSlots, sourceKey, type EvictReason } from '../runtime/fair-slots.js';
import { createGuardedServer, refuseUpgrade, type HttpLimits } from '../runtime/http-guard.js';
import { silentLogger, type Logger } from '../runtime/logger.js';
import { KeyedBuckets, TokenBucket } from '../runtime/token-bucket.js';
import { closeServer, listen } from '../runtime/server-lifecycle.js';
import type { CredentialKind, CredentialStore } from './credentials.js';
import type { ControlChannel } from './control.js';
import { ControlServer } from './control-server.js';
import type { Exposer, Exposure, ExposeSpec, ExposureView } from './expose.js';
import { Router } from './routing.js';
import type { ExternalSession, RelaySession, TunnelSession } from './sessions.js';
import type { RelayUdpService } from './udp-service.js';

/** The ws path every client connects to. */
export const RELAY_PATH = '/v1';
/** Failed hellos one remote address may make per minute (a token bucket, burst as many) before its upgrades are refused (429). */
export const MAX_AUTH_FAILURES_PER_MINUTE = 20;
/** Remote addresses whose hello failures are tracked at once (the least recently failed forgotten). */
const MAX_TRACKED_ADDRESSES = 10_000;

export interface RelayOptions {
  readonly credentials: CredentialStore;
  readonly host?: string;
  readonly port?: number;
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** Domain of external peers' addresses (`alice@relay`). A contact point may not use this id. */
  readonly name?: string;
  readonly logger?: Logger;
  readonly helloTimeoutMs?: number;
  /** connections in their hello, in total and per source (defaults MAX_PENDING_HELLOS, MAX_PENDING_HELLOS_PER_ADDRESS) */
  readonly maxPendingHellos?: number;
  readonly maxPendingHellosPerAddress?: number;
  /** under pressure, pending hellos older than this are closed for newcomers (default PRESSURE_TIMEOUT_MS) */
  readonly pressureTimeoutMs?: number;
  /** timeouts and connection caps of the plain HTTP side (see core/runtime/http-guard.ts) */
  readonly http?: HttpLimits;
  readonly pingIntervalMs?: number;
  readonly maxMessageBytes?: number;
  readonly ratePerSender?: number;
  /** address exposed ports listen on (default: the relay's own listen host) */
  readonly exposeHost?: string;
  /** run the UDP service port for contact points' UDP channels (default true; same port number as ws when free) */
  readonly udp?: boolean;
  /** port announced to contact points for the UDP channel, when a firewall/NAT maps it differently */
  readonly udpAdvertisePort?: number;
  /** how often a file-backed credential store is checked for changes (default 2 s) */
  readonly credentialsPollMs?: number;
  /** how long a contact point's tunnel has to answer a liveness probe when another instance says hello with its id (default TAKEOVER_PROBE_MS) */
  readonly takeoverProbeMs?: number;
  /** TCP connections one exposure carries at once (default MAX_STREAMS_PER_EXPOSURE) */
  readonly maxExposeConnections?: number;
  /** TCP connections of all exposures of one contact point at once (default MAX_STREAMS_PER_CONTACT_POINT) */
  readonly maxExposeConnectionsPerContactPoint?: number;
}

export interface RelayStatus {
  readonly name: string;
  readonly url: string;
  readonly tunnels: number;
  readonly externals: number;
  readonly sockets: number;
  readonly routed: number;
  readonly refused: number;
  /** ACKs not routed: a `to` that is not an address */
  readonly droppedAcks: number;
}

/**
 * The public relay (seed 000's relay server; seed 002's control server). It authenticates
 * contact points and external peers, keeps one tunnel per contact point id, learns which peers
 * each tunnel represents (for its status and name service), and routes MSG/ACK frames
 * between them by address. It holds no
 * message state: senders retry, receivers dedupe, so a relay restart loses nothing.
 */
export class Relay {
  private server: Server | undefined;
  private readonly wss: WebSocketServer;
  private readonly tunnels = new Map<string, TunnelSession>();
  private readonly externals = new Map<string, ExternalSession>();
  private readonly links = new Set<Link>();
  /** connections in their hello: capped per source, shared fairly (see FairSlots) */
  private readonly helloSlots: FairSlots;
  /** failed hellos per remote address */
  private readonly failures = KeyedBuckets.perMinute(MAX_AUTH_FAILURES_PER_MINUTE, MAX_TRACKED_ADDRESSES);
  /** when the last "pending hellos under pressure" warning was logged (at most one a minute) */
  private pressureLoggedAt = 0;
  private unwatch: (() => void) | undefined;
  /** MSG/ACK routing and REACHABLE waiters (routing.ts) */
  private readonly router: Router;
  private boundUrl = '';
  readonly name: string;
  private readonly logger: Logger;
  private readonly maxMessageBytes: number;
  /** seed 002's control server: control channels, operators, port owners, exposures (control-server.ts) */
  private readonly controlServer: ControlServer;
  readonly exposer: Exposer;
  /** the UDP service port (seed 002's UDP channels), when enabled */
  readonly udp: RelayUdpService | undefined;

  constructor(private readonly opts: RelayOptions) {
    const probe = opts.takeoverProbeMs;
    // A newcomer waits for its WELCOME at most HELLO_TIMEOUT_MS: the probe must end before that.
    if (probe !== undefined && !(Number.isInteger(probe) && probe >= 1 && probe < HELLO_TIMEOUT_MS)) {
      throw new RangeError(`takeoverProbeMs ${probe}: expected a whole number of milliseconds from 1 to ${HELLO_TIMEOUT_MS - 1}`);
    }
    this.name = opts.name ?? 'relay';
    this.logger = opts.logger ?? silentLogger;
    this.maxMessageBytes = opts.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    this.router = new Router({ name: this.name, credentials: opts.credentials, logger: this.logger, maxMessageBytes: this.maxMessageBytes, sessions: { tunnels: this.tunnels, externals: this.externals } });
    this.controlServer = new ControlServer({
      credentials: opts.credentials,
      logger: this.logger,
      sessions: { tunnels: this.tunnels, externals: this.externals },
      exposeHost: opts.exposeHost ?? opts.host ?? '127.0.0.1',
      udp: opts.udp,
      udpAdvertisePort: opts.udpAdvertisePort,
      maxExposeConnections: opts.maxExposeConnections,
      maxExposeConnectionsPerContactPoint: opts.maxExposeConnectionsPerContactPoint,
    });
    this.udp = this.controlServer.udp;
    this.exposer = this.controlServer.exposer;
    this.wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: false });
    this.helloSlots = new FairSlots({
      max: opts.maxPendingHellos ?? MAX_PENDING_HELLOS,
      maxPerKey: opts.maxPendingHellosPerAddress ?? MAX_PENDING_HELLOS_PER_ADDRESS,
      pressureAgeMs: opts.pressureTimeoutMs ?? PRESSURE_TIMEOUT_MS,
      label: 'relay pending hellos (maxPendingHellos, maxPendingHellosPerAddress, pressureTimeoutMs)',
    });
  }

  get url(): string {
    return this.boundUrl;
  }

  async start(): Promise<string> {
    const server = createGuardedServer({ tls: this.opts.tls, limits: this.opts.http, onRequest: this.onRequest, onUpgrade: this.onUpgrade });
    this.server = server;
    const { address: addr, urlHost } = await listen(server, this.opts.port ?? 0, this.opts.host ?? '127.0.0.1');
    this.boundUrl = `${this.opts.tls ? 'wss' : 'ws'}://${urlHost}:${addr.port}${RELAY_PATH}`;
    await this.udp?.start(addr.address, addr.port);
    this.unwatch = this.opts.credentials.watch(
      () => this.recheckSessions(),
      this.opts.credentialsPollMs ?? 2_000,
      (err) => this.logger.error('credentials file unreadable; keeping the last good set', { error: err.message }),
    );
    this.logger.info('relay listening', { url: this.boundUrl, name: this.name });
    return this.boundUrl;
  }

  async stop(): Promise<void> {
    this.unwatch?.();
    this.exposer.closeAll();
    this.udp?.stop();
    for (const link of this.links) {
      link.sendControl(FrameType.GOAWAY, { reason: 'relay shutting down' });
      link.close(1001, 'relay shutting down');
    }
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await closeServer(server);
    for (const link of this.links) link.terminate();
    this.links.clear();
  }

  status(): RelayStatus {
    const { routed, refused, droppedAcks } = this.router.counts();
    return {
      name: this.name,
      url: this.boundUrl,
      tunnels: this.tunnels.size,
      externals: this.externals.size,
      sockets: this.links.size,
      routed,
      refused,
      droppedAcks,
    };
  }

  /**
   * After the credential store changed: every session whose credential was removed or replaced
   * (or lost the mediate right it uses) is closed with REVOKED. An operator's ports and
   * exposures close with its session.
   */
  recheckSessions(): void {
    for (const s of [...this.tunnels.values(), ...this.externals.values()]) {
      const r = this.opts.credentials.record(s.kind, s.id);
      if (r && r.hash === s.credentialHash && (s.kind !== 'external' || !s.operator || r.rights.includes('mediate'))) continue;
      this.logger.warn('credential revoked; closing its session', { kind: s.kind, id: s.id });
      s.link.fault(Status.REVOKED, 'this credential was revoked at the relay');
    }
  }

  /** The control channel to a connected contact point (port mediation), if its tunnel is up. */
  control(contactPointId: string): ControlChannel | undefined {
    return this.controlServer.channel(contactPointId);
  }

  /** A public port on the relay forwarding to a LAN target behind `spec.cp` (see expose.ts). */
  expose(spec: ExposeSpec): Promise<Exposure> {
    return this.exposer.expose(spec);
  }

  unexpose(id: number): boolean {
    return this.exposer.unexpose(id);
  }

  exposures(): ExposureView[] {
    return this.exposer.list();
  }

  /** Peers a tunnel currently represents (for tests and the status endpoint). */
  peersOf(contactPointId: string): string[] {
    return [...(this.tunnels.get(contactPointId)?.peers ?? [])].sort();
  }

  private readonly onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method === 'GET' && req.url === '/healthz') {
      const s = this.status();
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify({ ok: true, name: s.name, tunnels: s.tunnels, externals: s.externals, sockets: s.sockets }));
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end(`contact-point relay: connect with a WebSocket to ${RELAY_PATH}\n`);
  };

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const remote = (socket as Socket).remoteAddress ?? 'unknown';
    const path = (req.url ?? '').split('?')[0];
    if (path !== RELAY_PATH) return refuseUpgrade(socket, 404, 'Not Found');
    if (!this.failures.has(remote)) return refuseUpgrade(socket, 429, 'Too Many Requests');
    // A source at its own cap only competes with itself: refused. Anyone else gets a slot, if
    // need be the oldest pending hello of the source holding the most (a flood from some
    // addresses cannot keep a contact point's reconnect out).
    let link: Link | undefined;
    const slot = this.helloSlots.take(sourceKey(remote), (why) => this.evictPending(why, link, socket));
    if (!slot) return refuseUpgrade(socket, 503, 'Service Unavailable');
    socket.once('close', () => slot.release()); // also when the ws handshake itself fails
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      link = this.onConnection(ws, req.socket, remote, () => slot.release());
    });
  };

  /** A pending hello lost its slot to a newcomer: it was idle past the pressure deadline, or the table was full. */
  private evictPending(why: EvictReason, link: Link | undefined, socket: Duplex): void {
    const now = Date.now();
    if (now - this.pressureLoggedAt >= 60_000) {
      this.pressureLoggedAt = now;
      this.logger.warn('many connections in their hello: idle ones are closed to make room (a flood?)', {
        pending: this.helloSlots.size,
        closedIdle: this.helloSlots.evictions.expired,
        closedForRoom: this.helloSlots.evictions.evicted,
      });
    }
    if (!link) return void socket.destroy();
    if (why === 'expired') link.fault(Status.HELLO_TIMEOUT, `no hello within ${this.opts.pressureTimeoutMs ?? PRESSURE_TIMEOUT_MS} ms while the relay is busy`);
    else link.fault(Status.RESOURCE_LIMIT, 'too many connections in their hello; this one gave its place to a newer one');
  }

  private onConnection(ws: WebSocket, socket: Socket, remote: string, releaseSlot: () => void): Link {
    const link = new Link(ws, socket, {
      role: 'server',
      logger: this.logger,
      label: `relay<-${remote}`,
      pingIntervalMs: this.opts.pingIntervalMs ?? PING_INTERVAL_MS,
    });
    this.links.add(link);
    let helloDone = false;
    const endPending = (): void => {
      if (helloDone) return;
      helloDone = true;
      releaseSlot();
      clearTimeout(timer);
    };
    const timer = setTimeout(() => link.fault(Status.HELLO_TIMEOUT, `no hello within ${this.opts.helloTimeoutMs ?? HELLO_TIMEOUT_MS} ms`), this.opts.helloTimeoutMs ?? HELLO_TIMEOUT_MS);
    timer.unref();

    link.setHandler({
      onFrame: (frame) => {
        if (frame.type !== FrameType.HELLO) {
          throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(frame.type)} before HELLO`);
        }
        const hello = decodeControl(frame, FrameType.HELLO);
        endPending();
        this.onHello(link, hello, remote);
      },
      onClose: () => {
        endPending();
        this.links.delete(link);
      },
    });
    return link;
  }

  private onHello(link: Link, hello: HelloBody, remote: string, deadHolder?: TunnelSession): void {
    const session = this.admit(link, hello, remote, deadHolder);
    if (session) link.setHandler(this.handlerFor(session));
  }

  /**
   * Checks version and credentials; on success registers the session and sends WELCOME. A
   * contact point whose id another instance holds waits for contest() instead (undefined).
   * `deadHolder`: that holder failed its liveness probe, so this hello may replace it.
   */
  private admit(link: Link, hello: HelloBody, remote: string, deadHolder?: TunnelSession): RelaySession | undefined {
    const version = negotiateVersion(hello.versions);
    if (version === undefined) {
      link.fault(Status.VERSION_MISMATCH, `relay speaks protocol 1, client offered ${hello.versions.min}-${hello.versions.max}`);
      return undefined;
    }
    if (hello.role === 'peer') {
      link.fault(Status.PROTOCOL_VIOLATION, 'internal peers connect to their contact point, not to the relay');
      return undefined;
    }
    const kind: CredentialKind = hello.role;
    const record = hello.secret !== undefined ? this.opts.credentials.verify(kind, hello.id, hello.secret) : undefined;
    if (!record || (kind === 'contact-point' && hello.id === this.name)) {
      this.failures.take(remote);
      this.logger.warn('hello refused: bad credentials', { role: kind, id: hello.id, remote });
      link.fault(Status.BAD_CREDENTIALS, `no valid credential for ${kind} "${hello.id}"`);
      return undefined;
    }
    const holder = kind === 'contact-point' ? this.tunnels.get(hello.id) : undefined;
    // Only the same instance (a reconnect the holder's own side already gave up on) replaces a
    // holder at once. Another instance, or a client too old to say which it is, waits for a
    // liveness probe of the holder: two live contact points with one credential would otherwise
    // replace each other for ever.
    if (holder && holder !== deadHolder && (hello.instance === undefined || hello.instance !== holder.instance)) {
      this.contest(link, hello, remote, holder);
      return undefined;
    }
    const reachable = hello.env?.capabilities?.includes(CAPABILITY_REACHABLE) ?? false;
    const waitKey = `${kind === 'external' ? 'e' : 'c'}:${hello.id}`;
    const base = { id: hello.id, link, session: randomBytes(9).toString('base64url'), rights: record.rights, credentialHash: record.hash, since: Date.now(), reachable, waitKey };
    let session: RelaySession;
    if (kind === 'contact-point') {
      const control = this.controlServer.openChannel(hello.id, link);
      session = { ...base, kind, peers: new Set<string>(), env: hello.env, control, instance: hello.instance, remote: link.remote ?? remote, probe: undefined, senders: new Set<string>() };
      if (holder) this.router.sendersWait(holder);
      this.tunnels.set(hello.id, session);
      if (holder === deadHolder) holder?.link.fault(Status.REPLACED, 'no answer to a liveness probe; another instance took over this contact point id');
      else holder?.link.fault(Status.REPLACED, 'a newer tunnel of this same contact point instance connected');
    } else {
      const address = `${hello.id}@${this.name}`;
      session = { ...base, kind, address, bucket: new TokenBucket(this.opts.ratePerSender ?? RELAY_RATE_PER_SENDER), operator: undefined };
      const old = this.externals.get(hello.id);
      this.externals.set(hello.id, session);
      old?.link.fault(Status.REPLACED, 'a newer session for this peer connected');
    }
    link.sendControl(FrameType.WELCOME, {
      version,
      session: session.session,
      address: session.kind === 'external' ? session.address : session.id,
      limits: { maxMessageBytes: this.maxMessageBytes, pingIntervalMs: this.opts.pingIntervalMs ?? PING_INTERVAL_MS },
    });
    if (session.kind === 'contact-point') this.controlServer.offerUdp(session);
    this.logger.info(kind === 'contact-point' ? 'tunnel up' : 'external peer connected', { id: hello.id, session: session.session, remote });
    // Whoever waits for this contact point, or for this external peer, may send now.
    if (kind === 'contact-point') this.router.tellReachable(hello.id, { domain: hello.id });
    else this.router.tellReachable(`${hello.id}@${this.name}`, { domain: this.name, name: hello.id });
    return session;
  }

  /**
   * A hello for a contact point id whose tunnel another instance (or a client without an
   * instance id) holds: probe the holder, one probe per holder however many newcomers wait.
   * Alive: the newcomer is refused with ID_IN_USE, naming the holder's address and since when.
   * Silent within the deadline: admit() again, which replaces it (or contests a newer holder).
   */
  private contest(link: Link, hello: HelloBody, remote: string, holder: TunnelSession): void {
    link.setHandler({
      onFrame: (frame) => {
        throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(frame.type)} before WELCOME`);
      },
      onClose: () => this.links.delete(link),
    });
    if (!holder.probe) {
      const probe = holder.link.probe(this.opts.takeoverProbeMs ?? TAKEOVER_PROBE_MS);
      holder.probe = probe;
      void probe.then(() => {
        if (holder.probe === probe) holder.probe = undefined;
      });
    }
    void holder.probe.then((alive) => {
      if (!link.isOpen) return; // the newcomer gave up meanwhile
      if (!alive) return this.onHello(link, hello, remote, holder);
      if (this.tunnels.get(hello.id) !== holder) return this.onHello(link, hello, remote); // it left meanwhile: decide again
      const host = holder.env?.host ? ` (host "${holder.env.host.slice(0, 48)}")` : '';
      const reason = `contact point id "${hello.id}" is held by another instance at ${holder.remote}${host} since ${new Date(holder.since).toISOString()}`;
      this.logger.warn('hello refused: another live instance holds this contact point id', { id: hello.id, remote: link.remote ?? remote, holder: holder.remote });
      link.fault(Status.ID_IN_USE, reason);
    });
  }

  private handlerFor(s: RelaySession): { onFrame: (f: Frame) => void; onClose: (i: CloseInfo) => void } {
    return {
      onFrame: (frame) => {
        switch (frame.type) {
          case FrameType.MSG:
            return this.router.onMsg(s, frame);
          case FrameType.ACK:
            return this.router.onAck(s, frame);
          case FrameType.PEERS: {
            if (s.kind !== 'contact-point') throw new ProtocolError(Status.PROTOCOL_VIOLATION, 'only contact points announce peers');
            const body = decodeControl(frame, FrameType.PEERS);
            for (const n of body.names) {
              if (body.op === 'add') s.peers.add(n);
              else s.peers.delete(n);
            }
            if (s.peers.size > MAX_PEERS_PER_CONTACT_POINT) {
              throw new ProtocolError(Status.RESOURCE_LIMIT, `more than ${MAX_PEERS_PER_CONTACT_POINT} peers announced`);
            }
            this.logger.debug('peers announced', { cp: s.id, op: body.op, count: body.names.length });
            return;
          }
          default:
            if (s.kind === 'contact-point' ? s.control.handleFrame(frame) : this.controlServer.operatorFrame(s, frame)) return;
            throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(frame.type)} not expected after WELCOME`);
        }
      },
      onClose: (info) => {
        this.links.delete(s.link);
        if (s.kind === 'contact-point') {
          if (this.tunnels.get(s.id) === s) {
            this.tunnels.delete(s.id);
            this.router.sendersWait(s);
          }
          // Tunnel loss: pending requests fail, every stream through it is reset at once.
          s.control.close('tunnel lost');
          this.logger.info('tunnel down', { id: s.id, code: info.code, reason: info.reason });
        } else {
          if (this.externals.get(s.id) === s) this.externals.delete(s.id);
          s.operator?.close();
        }
      },
    };
  }
}
