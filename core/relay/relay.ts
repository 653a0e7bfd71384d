import { randomText } from '../runtime/random-pool.js';
import type { RelayStatusView } from '../admin/relay-contract.js';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { decodeControl, type Frame } from '../protocol/codec.js';
import { ProtocolError } from '../protocol/errors.js';
import { CAPABILITY_ADAPTIVE_KEEPALIVE, CAPABILITY_BATCH, CAPABILITY_HEARTBEAT, CAPABILITY_NODE, CAPABILITY_PLACEMENT, CAPABILITY_REACHABLE, CAPABILITY_SEALED, FrameType, frameTypeName } from '../protocol/frames.js';
import { NameService } from './name-service.js';
import { closeIfNotReading, type CloseInfo, type Link, type LinkHandler } from '../protocol/link.js';
import { MAX_MESSAGE_BYTES, MAX_PEERS_PER_CONTACT_POINT, PING_INTERVAL_MS, RELAY_RATE_PER_SENDER } from '../protocol/limits.js';
import { Status } from '../protocol/status.js';
import { answerHealth, isHealthRequest, type Readiness } from '../runtime/health.js';
import { createGuardedServer, type HttpLimits } from '../runtime/http-guard.js';
import { silentLogger, type Logger } from '../runtime/logger.js';
import { TokenBucket } from '../runtime/token-bucket.js';
import { closeServer, listen } from '../runtime/server-lifecycle.js';
import { Admission, checkTakeoverProbe, RELAY_PATH, type Admitted } from './admission.js';
import type { Cluster } from './cluster.js';
import { LocalCluster } from './cluster-local.js';
import type { CredentialStore } from './credentials.js';
import type { ControlChannel } from './control.js';
import { ControlServer } from './control-server.js';
import type { Exposer, Exposure, ExposeSpec, ExposureView } from './expose.js';
import { RefusalLog } from './refusals.js';
import { Router } from './routing.js';
import { SessionRegistry, type RelaySession } from './sessions.js';
import { RelayStats, type RelayStatsSnapshot } from './stats.js';
import { statusSnapshot } from './status.js';
import type { RelayUdpService } from './udp-service.js';

export { MAX_AUTH_FAILURES_PER_MINUTE, RELAY_PATH } from './admission.js';

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
  /** sessions one external or operator credential may hold at once; one more is refused SESSION_LIMIT (default MAX_SESSIONS_PER_CREDENTIAL) */
  readonly maxSessionsPerCredential?: number;
  /**
   * Makes this relay a node of a cluster (cluster-nats.ts): a factory given the relay's session
   * maps. Default: a single relay (cluster-local.ts). The relay starts and stops it.
   */
  readonly cluster?: (sessions: SessionRegistry) => Cluster;
  /**
   * Also listen on 127.0.0.1 (a random port, plain ws; loopbackUrl) for a client in this same
   * process: a direct-mode contact point's own tunnel to its embedded relay (direct-mode.ts),
   * which could not check the public listener's certificate against the name it was issued
   * for. Same admission and credentials as the main listener. Default false.
   */
  readonly loopbackListener?: boolean;
}

export interface RelayStatus {
  readonly name: string;
  readonly url: string;
  readonly tunnels: number;
  /** external (and operator) sessions; a credential may hold several */
  readonly externals: number;
  readonly sockets: number;
  readonly routed: number;
  /** MSG frames passed on to another cluster node (routed or refused there) */
  readonly forwarded: number;
  readonly refused: number;
  /** ACKs not routed: a `to` that is not an address */
  readonly droppedAcks: number;
}

/**
 * The public relay (seed 000's relay server; seed 002's control server). It authenticates
 * contact points and external peers (admission.ts), keeps one tunnel per contact point id and
 * up to maxSessionsPerCredential sessions per external credential (sessions.ts), learns which
 * peers each tunnel represents (for its status and name service), routes MSG/ACK frames
 * between them by address (routing.ts), and hands mediation frames to the control server
 * (control-server.ts). This class composes them: options, start/stop, the sessions,
 * status. It keeps no messages: senders retry, receivers dedupe, so a relay restart loses
 * nothing.
 */
export class Relay {
  private server: Server | undefined;
  /** the loopbackListener's server, when asked for */
  private loopbackServer: Server | undefined;
  private boundLoopbackUrl = '';
  /** every admitted session: the one place that lists them (status, credential recheck) */
  readonly sessions = new SessionRegistry();
  private readonly links = new Set<Link>();
  /** upgrade gating, pending hellos, failed-hello limits, hello checks, same-id contest (admission.ts) */
  private readonly admission: Admission;
  private unwatch: (() => void) | undefined;
  /** MSG/ACK routing and REACHABLE waiters (routing.ts) */
  private readonly router: Router;
  /** lookups and presence subscriptions (issue 15 part 2, docs/PROTOCOL.md 9.7) */
  private readonly names: NameService;
  /** where tunnels and sessions are: this process only, or a cluster of relay nodes (cluster.ts) */
  readonly cluster: Cluster;
  private boundUrl = '';
  /** set while the credentials file cannot be read or parsed (the last good set stays in use) */
  private credentialsProblem: string | undefined;
  private stopping = false;
  readonly name: string;
  private readonly logger: Logger;
  private readonly maxMessageBytes: number;
  /** seed 002's control server: control channels, operators, port owners, exposures (control-server.ts) */
  private readonly controlServer: ControlServer;
  readonly exposer: Exposer;
  /** the UDP service port (seed 002's UDP channels), when enabled */
  readonly udp: RelayUdpService | undefined;
  /** every refusal: logged once (rate-limited), the last RECENT_REFUSALS kept for the status endpoint */
  readonly refusals: RefusalLog;
  private startedAt = 0;
  /** counters for status, /metrics and the status view (stats.ts) */
  readonly stats = new RelayStats();

  constructor(private readonly opts: RelayOptions) {
    checkTakeoverProbe(opts.takeoverProbeMs);
    checkSessionCap(opts.maxSessionsPerCredential);
    this.name = opts.name ?? 'relay';
    this.logger = opts.logger ?? silentLogger;
    this.maxMessageBytes = opts.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    this.refusals = new RefusalLog(this.logger);
    this.cluster = opts.cluster?.(this.sessions) ?? new LocalCluster(this.sessions);
    this.names = new NameService({ name: this.name, sessions: this.sessions, cluster: this.cluster, credentials: opts.credentials, logger: this.logger });
    this.router = new Router({ name: this.name, credentials: opts.credentials, logger: this.logger, maxMessageBytes: this.maxMessageBytes, sessions: this.sessions, refusals: this.refusals, cluster: this.cluster, stats: this.stats });
    this.controlServer = new ControlServer({
      credentials: opts.credentials,
      logger: this.logger,
      sessions: this.sessions,
      exposeHost: opts.exposeHost ?? opts.host ?? '127.0.0.1',
      udp: opts.udp,
      udpAdvertisePort: opts.udpAdvertisePort,
      maxExposeConnections: opts.maxExposeConnections,
      maxExposeConnectionsPerContactPoint: opts.maxExposeConnectionsPerContactPoint,
      refusals: this.refusals,
      cluster: this.cluster,
    });
    this.udp = this.controlServer.udp;
    this.exposer = this.controlServer.exposer;
    this.admission = new Admission(opts, {
      name: this.name,
      logger: this.logger,
      sessions: this.sessions,
      links: this.links,
      refusals: this.refusals,
      stats: this.stats,
      open: (admitted) => this.open(admitted),
      acceptsTunnels: () => this.cluster.available,
      contestElsewhere: (cp, instance, probeMs) => this.cluster.contestTunnel(cp, instance, probeMs),
    });
  }

  get url(): string {
    return this.boundUrl;
  }

  /** ws:// URL of the loopbackListener ('' without one, or before start). */
  get loopbackUrl(): string {
    return this.boundLoopbackUrl;
  }

  async start(): Promise<string> {
    await this.cluster.start({
      deliver: (raw, reply) => this.router.onForwarded(raw, reply),
      reachableElsewhere: (kind, id) => {
        if (kind === 'contact-point') this.router.tellReachable(id, { domain: id });
        else this.router.tellReachable(`${id}@${this.name}`, { domain: this.name, name: id });
        this.names.changedElsewhere(kind, id);
      },
      goneElsewhere: (kind, id) => this.names.changedElsewhere(kind, id),
      probeTunnel: (cp) => this.admission.probeTunnel(cp),
      tunnelMoved: (cp, node, slot) => this.sessions.tunnelIn(cp, slot)?.link.fault(Status.REPLACED, `a newer tunnel of this contact point connected to relay node ${node}`),
      dropTunnels: (reason) => {
        for (const t of [...this.sessions.allTunnels()]) t.link.fault(Status.SHUTTING_DOWN, reason);
      },
    });
    const server = createGuardedServer({ tls: this.opts.tls, limits: this.opts.http, onRequest: this.onRequest, onUpgrade: this.admission.onUpgrade });
    this.server = server;
    const { address: addr, urlHost } = await listen(server, this.opts.port ?? 0, this.opts.host ?? '127.0.0.1');
    this.boundUrl = `${this.opts.tls ? 'wss' : 'ws'}://${urlHost}:${addr.port}${RELAY_PATH}`;
    this.startedAt = Date.now();
    if (this.opts.loopbackListener) {
      const loopback = createGuardedServer({ limits: this.opts.http, onRequest: this.onRequest, onUpgrade: this.admission.onUpgrade });
      this.loopbackServer = loopback;
      const bound = await listen(loopback, 0, '127.0.0.1');
      this.boundLoopbackUrl = `ws://${bound.urlHost}:${bound.address.port}${RELAY_PATH}`;
    }
    await this.udp?.start(addr.address, addr.port);
    this.unwatch = this.opts.credentials.watch(
      () => {
        if (this.credentialsProblem !== undefined) this.logger.info('credentials file readable again');
        this.credentialsProblem = undefined;
        this.recheckSessions();
      },
      this.opts.credentialsPollMs ?? 2_000,
      (err) => {
        this.credentialsProblem = err.message;
        this.logger.error('credentials file unreadable; keeping the last good set', { error: err.message });
      },
    );
    this.logger.info('relay listening', { url: this.boundUrl, name: this.name });
    return this.boundUrl;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.unwatch?.();
    this.refusals.stop();
    this.names.stop();
    this.exposer.closeAll();
    this.udp?.stop();
    for (const link of this.links) {
      link.sendControl(FrameType.GOAWAY, { reason: 'relay shutting down' });
      link.close(1001, 'relay shutting down');
    }
    const server = this.server;
    this.server = undefined;
    const loopback = this.loopbackServer;
    this.loopbackServer = undefined;
    if (loopback) await closeServer(loopback);
    if (server) {
      await closeServer(server);
      for (const link of this.links) link.terminate();
      this.links.clear();
    }
    await this.cluster.stop();
  }

  status(): RelayStatus {
    return {
      name: this.name,
      url: this.boundUrl,
      tunnels: this.sessions.tunnels.size,
      externals: this.sessions.size.externals,
      sockets: this.links.size,
      routed: this.stats.routed,
      forwarded: this.stats.forwarded,
      refused: this.stats.refused.total,
      droppedAcks: this.stats.droppedAcks,
    };
  }

  /** Offices, sessions, exposures and recent refusals, for the status endpoint (status.ts). */
  statusSnapshot(): RelayStatusView {
    return statusSnapshot({
      name: this.name,
      url: this.boundUrl,
      startedAt: this.startedAt,
      udpPort: this.udp?.port,
      sessions: this.sessions,
      sockets: this.links.size,
      routed: this.stats.routed,
      forwarded: this.stats.forwarded,
      refused: this.stats.refused.total,
      exposures: this.exposer.list(),
      refusals: this.refusals,
      cluster: this.cluster.view(),
    });
  }


  /** Every counter and gauge of stats.ts, read now (for /metrics and status views; walks the links and sessions). */
  statsSnapshot(): RelayStatsSnapshot {
    return this.stats.snapshot({
      sessions: this.sessions,
      links: this.links,
      exposer: this.exposer,
      udp: this.udp,
      officesKnown: () => this.opts.credentials.count('contact-point'),
    });
  }

  /**
   * Ready (GET /readyz 200) while listening and its credentials file last read well: a relay
   * whose file is unreadable or corrupt keeps the last good set, but credentials added since
   * are not in it, so a load balancer should prefer another instance until the file is fixed.
   * The reason stays generic (the endpoint is public); the log has the file's error.
   */
  readiness(): Readiness {
    if (this.stopping || !this.server) return { ready: false, reason: this.stopping ? 'stopping' : 'not listening' };
    if (this.credentialsProblem !== undefined) return { ready: false, reason: 'the credentials file cannot be read; the relay keeps the last good set (its log says why)' };
    if (!this.cluster.available) return { ready: false, reason: 'this relay node is cut off from its cluster (NATS); it turns contact points away' };
    return { ready: true };
  }

  /**
   * After the credential store changed: every session whose credential was removed or replaced
   * (or lost the mediate right it uses) is closed with REVOKED, all sessions of one credential
   * at once. An operator's ports and exposures close with its session.
   */
  recheckSessions(): void {
    for (const s of [...this.sessions.all()]) {
      const r = this.opts.credentials.record(s.kind, s.id);
      if (r && r.hash === s.credentialHash && (s.kind !== 'external' || !s.operator || r.rights.includes('mediate'))) continue;
      this.logger.warn('credential revoked; closing its session', { kind: s.kind, id: s.id, session: s.session });
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
    return [...(this.sessions.tunnels.get(contactPointId)?.peers ?? [])].sort();
  }

  private readonly onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (isHealthRequest(req)) {
      answerHealth(req, res, {
        readiness: () => this.readiness(),
        details: () => {
          const s = this.status();
          const node = this.cluster.node !== undefined ? { node: this.cluster.node, cluster: this.cluster.available ? 'connected' : 'cut off' } : {};
          return { name: s.name, tunnels: s.tunnels, externals: s.externals, sockets: s.sockets, ...node };
        },
      });
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end(`contact-point relay: connect with a WebSocket to ${RELAY_PATH}\n`);
  };

  /** A hello passed admission: the session is registered, WELCOMEd, and its frames handled here. */
  private open({ link, hello, kind, record, remote, version, holder, deadHolder }: Admitted): void {
    const reachable = hello.env?.capabilities?.includes(CAPABILITY_REACHABLE) ?? false;
    const sealed = hello.env?.capabilities?.includes(CAPABILITY_SEALED) ?? false;
    const waitKey = `${kind === 'external' ? 'e' : 'c'}:${hello.id}`;
    // Object.assign onto `base`, not a spread: a spread here gave each session its own hidden class (~0.5 KB per office).
    const base = { id: hello.id, link, session: randomText(9, 'base64url'), rights: record.rights, credentialHash: record.hash, since: Date.now(), remote: link.remote ?? remote, reachable, sealed, waitKey };
    let session: RelaySession;
    if (kind === 'contact-point') {
      const control = this.controlServer.openChannel(hello.id, link);
      session = Object.assign(base, { kind, peers: new Set<string>(), env: hello.env, control, instance: hello.instance, slot: hello.slot ?? 0, probe: undefined, senders: undefined });
      if (holder) this.router.sendersWait(holder);
      this.sessions.setTunnel(session);
      this.stats.tunnelsOpened++;
      if (holder === deadHolder) holder?.link.fault(Status.REPLACED, 'no answer to a liveness probe; another instance took over this contact point id');
      else holder?.link.fault(Status.REPLACED, 'a newer tunnel of this same contact point instance connected');
      // A silent other instance in the other slot goes too: messages would still be routed to it.
      if (deadHolder && deadHolder !== holder) deadHolder.link.fault(Status.REPLACED, 'no answer to a liveness probe; another instance took over this contact point id');
    } else {
      // Another session of this credential stays as it is: each has its own ACKs, port requests
      // and exposures (admission.ts refused this one if the credential was at its cap).
      const address = `${hello.id}@${this.name}`;
      const group = this.sessions.groupFor(hello.id, address, () => new TokenBucket(this.opts.ratePerSender ?? RELAY_RATE_PER_SENDER));
      session = Object.assign(base, { kind, address, env: hello.env, group, operator: undefined, lastTo: undefined });
      this.sessions.addExternal(session);
      this.stats.externalsOpened++;
    }
    this.cluster.opened(session);
    const adaptive = hello.env?.capabilities?.includes(CAPABILITY_ADAPTIVE_KEEPALIVE) ?? false;
    // heartbeat only on top of the adaptive keepalive (PROTOCOL.md 12.2)
    const heartbeat = adaptive && (hello.env?.capabilities?.includes(CAPABILITY_HEARTBEAT) ?? false);
    const batch = hello.env?.capabilities?.includes(CAPABILITY_BATCH) ?? false;
    // `placement-1`: an operator may ask this cluster node where an office's tunnels are (PROTOCOL.md 17.6).
    const placement = kind === 'external' && this.cluster.places !== undefined && (hello.env?.capabilities?.includes(CAPABILITY_PLACEMENT) ?? false);
    const taken = [...(adaptive ? [CAPABILITY_ADAPTIVE_KEEPALIVE] : []), ...(heartbeat ? [CAPABILITY_HEARTBEAT] : []), ...(batch ? [CAPABILITY_BATCH] : []), ...(placement ? [CAPABILITY_PLACEMENT] : [])];
    link.sendControl(FrameType.WELCOME, {
      version,
      session: session.session,
      address: session.kind === 'external' ? session.address : session.id,
      // A cluster node names itself to a contact point that can tell its two tunnels' nodes apart (issue 12).
      ...(this.cluster.node !== undefined && (hello.slot !== undefined || hello.env?.capabilities?.includes(CAPABILITY_NODE)) ? { node: this.cluster.node } : {}),
      limits: { maxMessageBytes: this.maxMessageBytes, pingIntervalMs: this.opts.pingIntervalMs ?? PING_INTERVAL_MS },
      ...(taken.length > 0 ? { capabilities: taken } : {}),
    });
    if (adaptive) link.adaptiveKeepalive(undefined, heartbeat);
    if (batch) link.enableBatching();
    if (session.kind === 'contact-point') this.controlServer.offerUdp(session);
    this.logger.info(kind === 'contact-point' ? 'tunnel up' : 'external peer connected', { id: hello.id, session: session.session, remote });
    // Whoever waits for this contact point, or for this external peer, may send now.
    if (kind === 'contact-point') this.router.tellReachable(hello.id, { domain: hello.id });
    else this.router.tellReachable(`${hello.id}@${this.name}`, { domain: this.name, name: hello.id });
    link.setHandler(new SessionHandler(this, session));
    if (session.kind === 'contact-point') this.names.officeChanged(session.id);
    else this.names.externalChanged(session, false);
  }

  /** @internal A session's frame after its WELCOME (SessionHandler.onFrame). */
  sessionFrame(s: RelaySession, frame: Frame): void {
    switch (frame.type) {
      // Key statements travel like messages (PROTOCOL.md 19.4): signed by the contact point, passed on as they are.
      case FrameType.MSG:
      case FrameType.KEYS_REQUEST:
        return this.router.onMsg(s, frame);
      case FrameType.KEYS_ANSWER:
        return this.router.onKeysAnswer(s, frame);
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
      case FrameType.LOOKUP:
      case FrameType.SUBSCRIBE: {
        if (s.kind !== 'external') throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(frame.type)} is for external peers`);
        if (frame.type === FrameType.LOOKUP) return this.names.lookup(s, decodeControl(frame, FrameType.LOOKUP));
        return this.names.subscribe(s, decodeControl(frame, FrameType.SUBSCRIBE));
      }
      case FrameType.LOOKUP_RESULT:
      case FrameType.PRESENCE: {
        if (s.kind !== 'contact-point') throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(frame.type)} is for contact points`);
        this.names.fromTunnel(s, frame.type, decodeControl(frame, frame.type));
        return;
      }
      default:
        if (s.kind === 'contact-point' ? s.control.handleFrame(frame) : this.controlServer.operatorFrame(s, frame)) return;
        throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(frame.type)} not expected after WELCOME`);
    }
  }

  /** @internal A session's link closed (SessionHandler.onClose): not for other callers (it tears the session down). */
  sessionClosed(s: RelaySession, info: CloseInfo): void {
    this.links.delete(s.link);
    this.stats.retire(s.link);
    if (s.kind === 'contact-point') {
      if (this.sessions.removeTunnel(s)) {
        this.cluster.closed(s);
        this.router.sendersWait(s);
      }
      // Tunnel loss: pending requests fail, every stream through it is reset at once.
      s.control.close('tunnel lost');
      this.names.tunnelClosed(s);
      this.names.officeChanged(s.id);
      this.logger.info('tunnel down', { id: s.id, code: info.code, reason: info.reason });
    } else {
      this.sessions.removeExternal(s);
      this.cluster.closed(s);
      s.operator?.close();
      this.names.externalChanged(s, true);
      this.logger.info('external peer disconnected', { id: s.id, session: s.session, code: info.code, reason: info.reason });
    }
  }
}

/**
 * A session's link handler after its WELCOME: prototype methods rather than a handler object of
 * two closures per session (bench footprint: a relay's memory per office).
 */
class SessionHandler implements LinkHandler {
  constructor(
    private readonly relay: Relay,
    private readonly s: RelaySession,
  ) {}

  onFrame(frame: Frame): void {
    this.relay.sessionFrame(this.s, frame);
    if (this.s.kind === 'external') closeIfNotReading(this.s.link);
  }

  onClose(info: CloseInfo): void {
    this.relay.sessionClosed(this.s, info);
  }
}

/** maxSessionsPerCredential: a whole number from 1 (a credential's sessions never live side by side) up. */
function checkSessionCap(max: number | undefined): void {
  if (max !== undefined && !(Number.isInteger(max) && max >= 1)) throw new RangeError(`relay option maxSessionsPerCredential: expected a positive integer, got ${max}`);
}
