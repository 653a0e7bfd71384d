import { EventEmitter } from 'node:events';
import {
  ADMIN_CALLS,
  AdminError,
  isAdminMethod,
  unknownMethodMessage,
  type AdminHostApi,
  type AdminEventName,
  type AdminSurface,
  type AuditValue,
  type AdminEvents,
  type AdminMethod,
  type AdminParams,
  type AdminResults,
  type HistoryPage,
  type HistoryRetention,
  type PortView,
  type Snapshot,
  DEFAULT_HISTORY_RETENTION,
  HISTORY_OUTCOMES,
  MAX_HISTORY_DAYS,
  MAX_HISTORY_ENTRIES,
} from '../admin/contract.js';
import { join } from 'node:path';
import type { LaunchView } from '../admin/launch.js';
import type { Frame } from '../protocol/codec.js';
import { decodeControl, decodeMsg, encodeControl } from '../protocol/codec.js';
import { parseAddress } from '../protocol/address.js';
import type { LookupBody, UdpChannelBody } from '../protocol/frames.js';
import { ProtocolError } from '../protocol/errors.js';
import { CAPABILITY_MEDIATION, CAPABILITY_UDP_AEAD, FrameType, frameTypeName } from '../protocol/frames.js';
import { MAX_REGISTER_PER_MINUTE, TUNNEL_SLOTS } from '../protocol/limits.js';
import { SchemaError } from '../protocol/schema.js';
import { Status } from '../protocol/status.js';
import { resolveTiming, type Timing, type TimingOptions } from '../protocol/timing.js';
import type { Readiness } from '../runtime/health.js';
import { silentLogger, type Logger } from '../runtime/logger.js';
import type { HttpLimits } from '../runtime/http-guard.js';
import { VERSION } from '../version.js';
import { Collector } from './collector.js';
import { Distributor } from './distributor.js';
import { Outbound } from './outbound.js';
import { FLOW_BATCH_MS, FlowRecorder } from './flow-recorder.js';
import { HISTORY_DIR, HistoryStore } from './history-store.js';
import { Gateway, type Uplink } from './gateway.js';
import { DirectMode, openDirectCredentials, type DirectOptions } from './direct-mode.js';
import type { CredentialStore } from '../relay/credentials.js';
import { FloodMonitor } from './flood-monitor.js';
import { passOn, PeerPort, type PeerSession } from './peer-interface.js';
import { Registrar, type PlannedDecision, type RegistrarLimits } from './registrar.js';
import type { PeerRecord } from './state-store.js';
import { StateClosedError, StateSaveError, StateStore, type Decision, type PersistedState, type StateDraft } from './state-store.js';
import { AuditLog, type AuditRecord } from './audit-log.js';
import { PortPolicy, type PortPolicyConfig } from './port-policy.js';
import { DIRECT_PORT_IDS, PortMediator, TUNNEL_PORT_IDS } from './mediation.js';
import { UdpChannel } from './udp-channel.js';
import { UDP_VERSION } from '../protocol/udp-channel.js';
import { contactPointStats, type ContactPointStatsSnapshot } from './stats.js';
import { CodeCounts } from '../runtime/code-counts.js';
import { CONTACT_POINT_KEY_FILE, ContactPointKey } from '../protocol/key-statement.js';
import { SealGuard, type SealState } from './seal-guard.js';
import { AccessRules, NO_RULES, type AccessState } from './access-rules.js';
import { ContentGate } from './content-check.js';
import type { Reply } from './refusal.js';

export interface ContactPointOptions {
  /** this contact point's id at the relay: the domain of its peers' addresses (`acme-hq`) */
  readonly id: string;
  /** the relay to hold the tunnel to; undefined: none (direct mode only, `direct` is then required) */
  readonly relayUrl: string | undefined;
  /**
   * More relay URLs (issue 12, `serve --relay` given more than once): with any, two tunnels to
   * two different relay nodes as one logical session (gateway.ts). Absent: one tunnel to relayUrl.
   */
  readonly relayUrls?: readonly string[];
  /** the contact point credential's secret at the relay (unused without relayUrl) */
  readonly secret: string;
  /**
   * Direct mode (serve --direct-listen; seed 000 [0040]): external peers and operators connect
   * to the contact point itself on this listener, beside or instead of the relay (direct-mode.ts).
   */
  readonly direct?: DirectOptions;
  /** where peers and decisions persist; undefined keeps them in memory only */
  readonly stateDir?: string | undefined;
  readonly peerHost?: string;
  readonly peerPort?: number;
  readonly logger?: Logger;
  readonly proxy?: string | null;
  readonly ca?: string | Buffer;
  /** set by `contact-point start`: shown in the GUI as a local demo relay */
  readonly embeddedRelay?: boolean;
  /** how the CLI started it (serve, start), for the GUI's restart command; absent in the desktop app */
  readonly launch?: LaunchView;
  /** auto-approve policy given on the command line; replaces the stored one when set */
  readonly policy?: { readonly subnets?: readonly string[]; readonly joinCode?: string };
  /** port mediation allowlists given on the command line; replace the stored ones when set */
  readonly ports?: PortPolicyConfig;
  /**
   * Keepalive, reconnect backoff, hello deadline and ID_IN_USE retry (core/protocol/timing.ts);
   * checked by create() and handed whole to the gateway (and its dialer) and the peer port.
   */
  readonly timing?: TimingOptions;
  /** timeouts and connection caps of the peer port's plain HTTP side (see core/runtime/http-guard.ts) */
  readonly peerHttp?: HttpLimits;
  /** open the UDP channel the relay offers for mediated datagrams (default true; else they stay in the tunnel) */
  readonly udp?: boolean;
  /**
   * take port mediation requests (default true, within the port policy); false: the hello does
   * not list `mediation`, so the relay refuses operators at once (NOT_OFFERED), and so does this
   */
  readonly mediation?: boolean;
  /**
   * streams through this contact point at once (default MAX_STREAMS_PER_CONTACT_POINT), and
   * connections of one relay exposure at once (default MAX_STREAMS_PER_EXPOSURE)
   */
  readonly streamLimits?: { readonly maxStreams?: number; readonly maxStreamsPerExposure?: number };
  /**
   * How much message history to keep in <stateDir>/history (given on the command line: replaces
   * the stored setting); false keeps none. Without a stateDir there is no history.
   */
  readonly history?: Partial<HistoryRetention> | false;
  /** registration flood limits: undecided requests in total (MAX_UNDECIDED_PEERS) */
  readonly maxUndecidedPeers?: number;
  /** undecided requests per source address (MAX_UNDECIDED_PER_ADDRESS) */
  readonly maxUndecidedPerAddress?: number;
  /** new peer identities per source address a minute (NEW_PEERS_PER_ADDRESS_PER_MINUTE) */
  readonly newPeersPerAddressPerMinute?: number;
}

/** The registrar limits ContactPointOptions set (the rest keep their defaults). */
function registrarLimits(opts: ContactPointOptions): Partial<RegistrarLimits> {
  return {
    ...(opts.maxUndecidedPeers !== undefined ? { maxUndecided: opts.maxUndecidedPeers } : {}),
    ...(opts.maxUndecidedPerAddress !== undefined ? { maxUndecidedPerAddress: opts.maxUndecidedPerAddress } : {}),
    ...(opts.newPeersPerAddressPerMinute !== undefined ? { newPeersPerAddressPerMinute: opts.newPeersPerAddressPerMinute } : {}),
  };
}

/** A retention from options or flags, checked (a bad value fails create(), before anything starts). */
function checkRetention(r: HistoryRetention): HistoryRetention {
  if (!Number.isInteger(r.entries) || r.entries < 1 || r.entries > MAX_HISTORY_ENTRIES) throw new RangeError(`history.entries: expected 1 to ${MAX_HISTORY_ENTRIES}, got ${String(r.entries)}`);
  if (!Number.isInteger(r.days) || r.days < 0 || r.days > MAX_HISTORY_DAYS) throw new RangeError(`history.days: expected 0 to ${MAX_HISTORY_DAYS}, got ${String(r.days)}`);
  return { entries: r.entries, days: r.days };
}

/** How often tunnel status and changed peer counters go to admin subscribers. */
export const ADMIN_REFRESH_MS = 1_000;
/**
 * How often the open ports' byte, stream and refusal counters go to admin subscribers while they
 * move (issue 16: the Ports view showed the bytes of when a port opened): as often as the flow.
 */
export const PORT_COUNTERS_MS = FLOW_BATCH_MS;

/**
 * The internal contact point (seed 000, 160): one outbound tunnel (gateway), the LAN peer port,
 * the registrar, collector and distributor, and the admin API over all of it. The CLI host,
 * the Electron host and the tests build this same object.
 */
export class ContactPoint implements AdminHostApi {
  readonly registrar: Registrar;
  readonly gateway: Gateway;
  readonly peerPort: PeerPort;
  readonly flow: FlowRecorder;
  /** the persistent history of messages and port events (issue 16); undefined without a state folder */
  readonly history: HistoryStore | undefined;
  /** the history retention as the state file has it (undefined: never set, the defaults apply) */
  private historySetting: HistoryRetention | undefined;
  /** the ports as last seen, to record their opening and closing in the history */
  private portsSeen = new Map<number, PortView>();
  /** port mediation (seed 002): what the relay may open on the LAN, within the admin's policy */
  readonly ports: PortMediator;
  /** direct mode, when its options were given: the listener, its tunnel and its port mediator */
  readonly direct: DirectMode | undefined;
  /** registration requests the flood limits dropped, for the admin */
  readonly floods: FloodMonitor;
  /** who may reach whom and what may pass (issue 15) */
  readonly rules: AccessRules;
  /** the content check every message to a LAN peer passes, when the admin set one */
  readonly gate: ContentGate;
  /** sealed payloads: this contact point's key, the "sealed only" policy and key bindings (issue 14) */
  readonly seal: SealGuard;
  private readonly distributor: Distributor;
  private readonly outbound: Outbound;
  private readonly collector: Collector;
  private readonly store: StateStore;
  /** the audit trail of admin decisions, kept with the state */
  private readonly audit: AuditLog;
  /** stop() ran: the state file is closed for good */
  private stopped = false;
  private readonly events = new EventEmitter();
  private readonly logger: Logger;
  private refresh: NodeJS.Timeout | undefined;
  private portCounters: NodeJS.Timeout | undefined;
  /** the port counters last sent to admin subscribers, to send only when they moved */
  private portsSent = '';
  private startedAt = 0;
  private udp: UdpChannel | undefined;
  /** the tunnel whose relay node offered the UDP channel */
  private udpSlot = 0;
  private running = false;
  /** what the last PRESENCE hint said of each peer (2 registered + 1 online), to send one per change */
  private readonly presenceSent = new Map<string, number>();
  /** port mediation refusals recorded in the flow too (see stats.ts) */
  private readonly portRefusalsInFlow = new CodeCounts();

  private constructor(
    private readonly opts: ContactPointOptions,
    registrar: Registrar,
    portPolicy: PortPolicyConfig,
    timing: Timing,
    history: { store: HistoryStore | undefined; setting: HistoryRetention | undefined },
    audit: AuditLog,
    directCredentials: CredentialStore | undefined,
    access: AccessState,
    seal: { key: ContactPointKey; state: SealState | undefined },
  ) {
    this.logger = opts.logger ?? silentLogger;
    this.rules = new AccessRules(access);
    this.gate = new ContentGate(this.logger);
    this.gate.configure(access.check);
    this.history = history.store;
    this.historySetting = history.setting;
    this.flow = new FlowRecorder(history.store);
    this.registrar = registrar;
    this.ports = new PortMediator(new PortPolicy(portPolicy), this.logger, opts.streamLimits, TUNNEL_PORT_IDS, opts.mediation !== false);
    this.floods = new FloodMonitor(registrar.limits, this.logger);
    this.audit = audit;
    this.seal = new SealGuard(seal.key, opts.id, registrar, seal.state, () => this.store.changed());
    this.store = StateStore.create(opts.stateDir, () => this.persisted(registrar.persisted()), this.logger, audit, (e) => this.events.emit('audit:entry', e));
    this.gateway = new Gateway({
      relayUrl: opts.relayUrl ?? '',
      ...(opts.relayUrls ? { relayUrls: opts.relayUrls } : {}),
      direct: opts.direct !== undefined,
      id: opts.id,
      secret: opts.secret,
      logger: this.logger,
      software: `contact-point/${VERSION}`,
      capabilities: [...(opts.mediation !== false ? [CAPABILITY_MEDIATION] : []), ...(opts.udp !== false ? [CAPABILITY_UDP_AEAD] : [])],
      registeredNames: () => registrar.registeredNames(),
      timing,
      onFrame: (f, slot) => this.onTunnelFrame(f, slot),
      // Without a relay (direct mode only) it never dials: no proxy to look up for an empty URL.
      ...(opts.proxy !== undefined || opts.relayUrl === undefined ? { proxy: opts.relayUrl === undefined ? null : opts.proxy } : {}),
      ...(opts.ca ? { ca: opts.ca } : {}),
    });
    this.peerPort = new PeerPort({
      contactPointId: opts.id,
      host: opts.peerHost ?? '0.0.0.0',
      port: opts.peerPort ?? 0,
      logger: this.logger,
      timing,
      http: opts.peerHttp,
      cpKey: seal.key.publicKey,
      handler: {
        hello: (name, publicKey, remote, sealKey, sealAes, sealBundle) => {
          const r = registrar.hello(name, publicKey, remote, sealKey);
          if (r.ok) this.seal.noteAes(`${name}@${opts.id}`, sealKey !== undefined && sealAes === true, sealKey !== undefined && sealBundle === true);
          return r.ok ? { ok: true, state: r.record.state } : r;
        },
        up: (s) => registrar.setOnline(s.name, true),
        down: (s) => {
          this.distributor.sessionDown(s);
          registrar.setOnline(s.name, false);
        },
        frame: (s, f) => this.onPeerFrame(s, f),
      },
    });
    this.direct =
      opts.direct && directCredentials
        ? new DirectMode(opts.direct, {
            id: opts.id,
            logger: this.logger,
            timing,
            software: `contact-point/${VERSION}`,
            registeredNames: () => registrar.registeredNames(),
            policy: this.ports.policy,
            tunnelPorts: this.ports,
            portLimits: opts.streamLimits,
            mediation: this.ports.offered,
            onFrame: (f) => this.onTunnelFrame(f, 0, 'direct'),
            onUp: () => this.outbound.tunnelUp(this.direct?.gateway ?? NO_UPLINK),
            onDown: () => this.outbound.tunnelDown(this.direct?.gateway ?? NO_UPLINK),
          }, directCredentials)
        : undefined;
    const traffic = { id: opts.id, peers: this.peerPort, uplinkFor: this.uplinkFor, flow: this.flow, logger: this.logger, isRegistered: (name: string) => registrar.isRegistered(name) };
    this.distributor = new Distributor({ ...traffic, registrar, rules: this.rules, gate: this.gate });
    this.outbound = new Outbound(traffic);
    this.collector = new Collector({ ...traffic, registrar, distributor: this.distributor, outbound: this.outbound, seal: this.seal });

    this.gateway.on('up', () => this.outbound.tunnelUp(this.gateway));
    this.gateway.on('down', () => this.outbound.tunnelDown(this.gateway));
    // Port requests, their answers and streams stay on the tunnel they came on (issue 12).
    this.gateway.on('slotUp', (slot, link) => this.ports.attach(link, slot));
    this.gateway.on('slotDown', (slot) => {
      // Tunnel loss closes every mediated port of that tunnel and resets its streams: nothing stays listening.
      this.ports.detach('tunnel lost', slot);
      if (slot === this.udpSlot) this.closeUdp();
      if (this.running) this.outbound.slotDown(this.gateway, slot); // (stop(): every tunnel goes, 'down' follows)
    });
    for (const [mediator, domain] of [[this.ports, 'relay'], ...(this.direct ? [[this.direct.ports, this.direct.domain] as const] : [])] as const) {
      mediator.on('changed', () => {
        const list = this.portList();
        this.portHistory(list);
        this.emitPorts(list);
      });
      mediator.on('refused', (r) => {
        this.portRefusalsInFlow.add(r.code);
        this.flow.record(`port:${r.op}`, 'in', `${r.operator}@${domain}`, `port ${r.op} ${r.what}`, 0, r.code, r.reason);
      });
    }
    this.gateway.on('status', (s) => this.events.emit('tunnel:status', s));
    registrar.on('changed', (r, previous) => {
      this.store.changed();
      this.presenceHint(r.name);
      if (previous !== r.state) this.onDecision(r.name, previous, r.state, r.admittedBy);
      if (this.events.listenerCount('peer:changed') > 0) this.events.emit('peer:changed', registrar.view(r));
    });
    registrar.on('removed', (name) => {
      this.store.changed();
      this.announce('remove', [name]);
      this.peerPort.disconnect(name, Status.REVOKED, 'the admin removed this peer');
      this.rules.forget(name);
      this.seal.noteAes(`${name}@${this.opts.id}`, false);
      this.presenceHint(name);
      this.events.emit('peer:removed', { name });
    });
    registrar.on('evicted', (r, source, reason) => {
      // A request the admin never decided on, forgotten to make room (flood limit): saved like
      // any change, its session told why, every GUI drops the row; the flood summary counts it.
      this.store.changed();
      this.peerPort.disconnect(r.name, Status.RESOURCE_LIMIT, reason, 'debug');
      // Never registered, so no lookup's answer changes (no hint to send); what was noted of it goes.
      this.presenceSent.delete(r.name);
      this.seal.noteAes(`${r.name}@${this.opts.id}`, false);
      this.events.emit('peer:removed', { name: r.name });
      this.floodDrop(source, 'evicted');
    });
    registrar.on('refused', (source) => this.floodDrop(source, 'refused'));
    registrar.on('policy', (p) => {
      this.store.changed();
      this.events.emit('policy:changed', p);
    });
  }

  static async create(opts: ContactPointOptions): Promise<ContactPoint> {
    const timing = resolveTiming(opts.timing); // a bad value fails here, before anything is read or starts
    const state = await StateStore.load(opts.stateDir);
    const registrar = new Registrar(opts.id, state, Date.now, registrarLimits(opts));
    if (opts.policy) registrar.setPolicy(opts.policy.subnets ?? registrar.policy.subnets, opts.policy.joinCode);
    const ports = opts.ports ?? state.ports ?? { targets: [], listen: [] };
    const portsNow = new PortPolicy(ports).config; // a bad rule fails here, before anything starts
    for (const [k, v] of Object.entries(opts.streamLimits ?? {})) {
      if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new RangeError(`streamLimits.${k}: expected a positive integer, got ${String(v)}`);
    }
    const setting = opts.history ? checkRetention({ ...DEFAULT_HISTORY_RETENTION, ...state.history, ...opts.history }) : state.history;
    const store =
      opts.stateDir !== undefined && opts.history !== false
        ? await HistoryStore.open(join(opts.stateDir, HISTORY_DIR), setting ?? DEFAULT_HISTORY_RETENTION, opts.logger ?? silentLogger)
        : undefined;
    let audit: AuditLog;
    let key: ContactPointKey;
    try {
      audit = await AuditLog.open(opts.stateDir, state.audit, opts.logger ?? silentLogger);
      // Its long-term key, with the other identity material; without a state folder a new one each start.
      key = opts.stateDir !== undefined ? await ContactPointKey.loadOrCreate(join(opts.stateDir, CONTACT_POINT_KEY_FILE)) : ContactPointKey.generate();
    } catch (err: unknown) {
      await store?.close(); // its file and retention timer go with the failed create
      throw err;
    }
    let directCredentials: CredentialStore | undefined;
    let access: AccessState;
    try {
      if (!opts.direct && opts.relayUrl === undefined) throw new RangeError('a contact point needs a relay URL, direct mode, or both');
      access = state.access ?? NO_RULES;
      new AccessRules(access); // a bad pattern in the file fails here, before anything starts
      directCredentials = opts.direct ? await openDirectCredentials(opts.direct, opts.id, opts.stateDir) : undefined;
    } catch (err: unknown) {
      await store?.close();
      throw err;
    }
    const cp = new ContactPoint(opts, registrar, ports, timing, { store, setting }, audit, directCredentials, access, { key, state: state.seal });
    try {
      await cp.saveStartOptions(opts, state, portsNow);
    } catch (err: unknown) {
      await cp.stop(); // the history store and the state file close with the failed create
      throw err;
    }
    return cp;
  }

  /**
   * A policy, port rules or a history retention from the command line (serve, start) replace
   * the stored ones: saved now, like any decision, with an audit entry (surface cli) for each
   * that changed anything.
   */
  private async saveStartOptions(opts: ContactPointOptions, state: PersistedState, portsNow: PortPolicyConfig): Promise<void> {
    const registrar = this.registrar;
    const startAudits: AuditRecord[] = [];
    const policyNow = registrar.persisted().policy;
    if (opts.policy && JSON.stringify(policyNow) !== JSON.stringify(state.policy)) {
      startAudits.push({ at: Date.now(), surface: 'cli', action: 'policy:set', target: 'policy', before: policyAudit(state.policy), after: policyAudit(policyNow, state.policy) });
    }
    const portsBefore = state.ports ?? { targets: [], listen: [] };
    if (opts.ports && JSON.stringify({ targets: portsNow.targets, listen: portsNow.listen }) !== JSON.stringify(portsBefore)) {
      startAudits.push({ at: Date.now(), surface: 'cli', action: 'ports:policy', target: 'ports', before: { targets: [...portsBefore.targets], listen: [...portsBefore.listen] }, after: { targets: [...portsNow.targets], listen: [...portsNow.listen] } });
    }
    if (opts.history) {
      const before = state.history ?? DEFAULT_HISTORY_RETENTION;
      const after = this.historySetting ?? DEFAULT_HISTORY_RETENTION;
      if (before.entries !== after.entries || before.days !== after.days) {
        startAudits.push({ at: Date.now(), surface: 'cli', action: 'history:retention', target: 'history', before: { ...before }, after: { entries: after.entries, days: after.days } });
      }
    }
    // Queued together, they go to disk in one write (StateStore.commit batches what waits).
    await Promise.all(startAudits.map((audit) => this.decide(() => ({ apply: () => undefined, audit }))));
    if ((opts.policy || opts.history) && startAudits.length === 0) await this.decide(() => ({ apply: () => undefined }));
  }

  get id(): string {
    return this.opts.id;
  }

  get peerPortUrl(): string {
    return this.peerPort.url;
  }

  async start(): Promise<void> {
    if (this.running) return;
    if (this.stopped) throw new Error('a stopped contact point cannot start again: create a new one (its state file is closed)');
    await this.peerPort.start();
    this.running = true;
    this.startedAt = Date.now();
    this.flow.start();
    try {
      await this.direct?.start();
    } catch (err: unknown) {
      await this.direct?.stop();
      await this.peerPort.stop();
      this.running = false;
      throw err;
    }
    if (this.opts.relayUrl !== undefined) this.gateway.start();
    this.refresh = setInterval(() => this.refreshAdmin(), ADMIN_REFRESH_MS);
    this.refresh.unref();
    this.portCounters = setInterval(() => this.refreshPortCounters(), PORT_COUNTERS_MS);
    this.portCounters.unref();
    // Its host says "running" once everything it hosts listens too (issue 16, item 12).
    this.logger.debug('contact point started', { id: this.opts.id, relay: this.opts.relayUrl, peerPort: this.peerPort.url });
  }

  /** Stops what start() started, and closes the history and the state file (also after a failed or no start). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    const wasRunning = this.running;
    this.running = false;
    this.stopped = true;
    clearInterval(this.refresh);
    clearInterval(this.portCounters);
    this.flow.stop();
    if (wasRunning) {
      this.gateway.stop();
      this.ports.detach('contact point stopping');
      this.closeUdp();
      await this.direct?.stop();
      await this.peerPort.stop();
    }
    await this.gate.close();
    await this.history?.close();
    await this.store.close();
    this.events.removeAllListeners();
  }

  /**
   * Ready (GET /readyz 200 on the admin endpoint) while its tunnel to the relay is up: without
   * it the contact point takes LAN peers' messages but can deliver none outside, nor be reached.
   */
  readiness(): Readiness {
    if (!this.running) return { ready: false, reason: this.stopped ? 'stopping' : 'not started' };
    if (this.direct && !this.direct.gateway?.connected) return { ready: false, reason: 'direct mode: its listener is not serving' };
    if (this.opts.relayUrl === undefined || this.gateway.connected) return { ready: true };
    const t = this.gateway.status();
    const why = t.idInUse ?? t.lastError;
    return { ready: false, reason: `tunnel to the relay ${t.state}${why ? `: ${why}` : ''}` };
  }

  /** Tunnel, peers, messages and ports counters now (for /metrics; see stats.ts). */
  statsSnapshot(): ContactPointStatsSnapshot {
    return contactPointStats({ gateway: this.gateway, registrar: this.registrar, flow: this.flow, ports: this.direct ? [this.ports, this.direct.ports] : [this.ports], peerPort: this.peerPort, portRefusalsInFlow: this.portRefusalsInFlow });
  }

  // ---- admin API -------------------------------------------------------------------------

  snapshot(): Snapshot {
    return {
      contactPoint: {
        id: this.opts.id,
        version: VERSION,
        startedAt: this.startedAt,
        embeddedRelay: this.opts.embeddedRelay ?? false,
        peerPortUrl: this.peerPort.url,
        ...(this.opts.launch ? { launch: this.opts.launch } : {}),
      },
      tunnel: this.gateway.status(),
      peers: this.registrar.views(),
      policy: this.registrar.policyView(),
      flow: this.flow.totals(),
      ports: this.portList(),
      portPolicy: this.ports.policy.config,
      flood: this.floods.view(),
      ...(this.direct ? { direct: this.direct.view() } : {}),
      rules: this.rules.view(),
      seal: this.seal.view(),
    };
  }

  /** One admin call; `surface` is where it came from (the admin server and the desktop host say), for the audit trail. */
  async call<M extends AdminMethod>(method: M, params: AdminParams<M>, surface: AdminSurface = 'api'): Promise<AdminResults[M]> {
    if (!isAdminMethod(method)) throw new AdminError('UNKNOWN_METHOD', unknownMethodMessage(method));
    let p: unknown;
    try {
      p = ADMIN_CALLS[method].parse(params ?? {});
    } catch (err: unknown) {
      if (err instanceof SchemaError) throw new AdminError('INVALID_PARAMS', `${method}: ${err.message}`);
      throw err;
    }
    return this.dispatch(method, p as AdminParams<M>, surface) as AdminResults[M];
  }

  subscribe<E extends AdminEventName>(event: E, listener: (data: AdminEvents[E]) => void): () => void {
    if (event === 'flow:batch') return this.flow.subscribe(listener as (b: AdminEvents['flow:batch']) => void);
    this.events.on(event, listener);
    return () => void this.events.off(event, listener);
  }

  private dispatch(method: AdminMethod, p: AdminParams<AdminMethod>, surface: AdminSurface): AdminResults[AdminMethod] | Promise<AdminResults[AdminMethod]> {
    const r = this.registrar;
    const name = (p as { name?: string }).name ?? '';
    const record = (action: AuditRecord['action'], target: string, before: AuditValue, after: AuditValue): AuditRecord => ({ at: Date.now(), surface, action, target, before, after });
    /** a peer decision, audited with the record's state before and after */
    const onPeer = <T, R>(action: AuditRecord['action'], plan: (d: StateDraft) => PlannedDecision<T>, result: (value: T) => R): Promise<R> =>
      this.decideOnRegistrar((d) => {
        const before = peerAudit(d.peers.get(name));
        const planned = plan(d);
        return { planned, audit: record(action, name, before, peerAudit(d.peers.get(name))) };
      }, result);
    switch (method) {
      case 'snapshot:get':
        return this.snapshot();
      case 'peers:approve':
        return onPeer('peer:approve', (d) => r.planApprove(name, d, surface), (rec) => r.view(rec));
      case 'peers:reject':
        return onPeer('peer:reject', (d) => r.planReject(name, d, surface), (rec) => r.view(rec));
      case 'peers:revoke':
        return onPeer('peer:revoke', (d) => r.planRevoke(name, d, surface), (rec) => r.view(rec));
      case 'peers:forget':
        return onPeer('peer:forget', (d) => r.planForget(name, d), () => ({ name }));
      case 'policy:set': {
        const { subnets, joinCode } = p as AdminParams<'policy:set'>;
        return this.decideOnRegistrar((d) => {
          const was = d.policy;
          try {
            const planned = r.planPolicy(subnets, joinCode, d);
            return { planned, audit: record('policy:set', 'policy', policyAudit(was), policyAudit(d.policy, was)) };
          } catch (err: unknown) {
            throw new AdminError('INVALID_PARAMS', (err as Error).message);
          }
        }, (view) => view);
      }
      case 'tunnel:reconnect':
        this.gateway.reconnectNow();
        return this.gateway.status();
      case 'ports:close': {
        const { id } = p as AdminParams<'ports:close'>;
        // Nothing in the state file changes, but the close is audited: its entry is on disk before the port closes.
        return this.decide(() => {
          const port = this.portList().find((x) => x.id === id);
          if (!port) throw new AdminError('NOT_FOUND', `no open port with id ${id}`);
          const before = { proto: port.proto, local: `${port.address}:${port.port}`, state: port.state, operator: port.operator, target: port.target ?? '', bytesIn: port.bytesIn, bytesOut: port.bytesOut };
          return {
            audit: record('ports:close', `port ${id}`, before, null),
            apply: () => {
              if (!this.ports.close(id) && !this.direct?.ports.close(id)) throw new AdminError('NOT_FOUND', `port ${id} closed meanwhile`);
              return { id };
            },
          };
        });
      }
      case 'history:query':
        return this.historyPage(p as AdminParams<'history:query'>);
      case 'history:traffic': {
        const q = p as AdminParams<'history:traffic'>;
        if (this.history) return this.history.traffic(q);
        const zeros = new Array<number>(q.buckets).fill(0);
        return { since: q.since, bucketMs: Math.max(1, Math.ceil(((q.until ?? Date.now()) - q.since) / q.buckets)), delivered: zeros, refused: zeros, forwarded: zeros, enabled: false };
      }
      case 'history:retention': {
        const was = this.historySetting ?? DEFAULT_HISTORY_RETENTION;
        const next = p as AdminParams<'history:retention'>;
        return this.setHistoryRetention(next, record('history:retention', 'history', { ...was }, { entries: next.entries, days: next.days }));
      }
      case 'ports:policy': {
        const { targets, listen } = p as AdminParams<'ports:policy'>;
        return this.decide((draft) => {
          let config: PortPolicyConfig;
          try {
            config = new PortPolicy({ targets, listen }).config; // checks every rule; nothing changes on a bad one
          } catch (err: unknown) {
            throw new AdminError('INVALID_PARAMS', (err as Error).message);
          }
          const before = draft.ports ?? this.ports.policy.config;
          draft.ports = { targets: [...config.targets], listen: [...config.listen] };
          return {
            audit: record('ports:policy', 'ports', { targets: [...before.targets], listen: [...before.listen] }, { targets: [...config.targets], listen: [...config.listen] }),
            apply: () => {
              this.ports.policy.set(config);
              this.events.emit('ports:policy-changed', this.ports.policy.config);
              return this.ports.policy.config;
            },
          };
        });
      }
      case 'seal:policy': {
        const q = p as AdminParams<'seal:policy'>;
        return this.decide((draft) => {
          for (const n of q.peers) if (!draft.peers.has(n)) throw new AdminError('NOT_FOUND', `no peer named "${n}"`);
          const before = this.seal.view();
          const planned = this.seal.planPolicy(q.required, q.peers, q.forget ?? []);
          draft.seal = planned.state;
          return {
            audit: record('seal:policy', 'seal', { required: before.required, peers: [...before.peers] }, { required: q.required, peers: [...planned.state.peers], ...(q.forget?.length ? { forgot: [...q.forget] } : {}) }),
            apply: () => {
              const view = planned.apply();
              this.events.emit('seal:changed', view);
              return view;
            },
          };
        });
      }
      case 'audit:list': {
        const q = p as AdminParams<'audit:list'>;
        return this.audit.list({ target: q.target, beforeSeq: q.beforeSeq, limit: q.limit ?? 100 });
      }
      case 'rules:get':
        return this.rules.view();
      case 'rules:set': {
        const { peer, ...set } = p as AdminParams<'rules:set'>;
        return this.decideRules((was) => {
          const before = peer === undefined ? was.office : was.peers.find((x) => x.name === peer);
          const next = AccessRules.with(was, peer, set);
          const after = peer === undefined ? next.office : next.peers.find((x) => x.name === peer);
          return { next, audit: record('rules:set', peer ?? 'office', before ? { ...before } : null, after ? { ...after } : null) };
        });
      }
      case 'rules:check': {
        const { check } = p as AdminParams<'rules:check'>;
        return this.decideRules((was) => ({ next: { ...was, check }, audit: record('rules:check', 'content check', { ...was.check }, { ...check }) }));
      }
      case 'rules:refusals': {
        const { peer } = p as AdminParams<'rules:refusals'>;
        return this.rules.refusalsOf(peer);
      }
    }
  }

  /**
   * A change the host made (the desktop app's settings), audited like a decision: its entry is
   * on disk before this resolves. Nothing in the state file changes.
   */
  recordAudit(surface: AdminSurface, action: AuditRecord['action'], target: string, before: AuditValue, after: AuditValue): Promise<void> {
    return this.decide(() => ({ audit: { at: Date.now(), surface, action, target, before, after }, apply: () => undefined }));
  }

  // ---- decisions -------------------------------------------------------------------------

  /** The whole state file: the registrar's part, the port policy, the history setting and the access rules. */
  private persisted(registrar: PersistedState): PersistedState {
    const ports = this.ports.policy.config;
    const access = this.rules.view();
    const hasRules = access.peers.length > 0 || Object.keys(access.office).length > 0 || access.check.kind !== 'none';
    return {
      ...registrar,
      ports: { targets: [...ports.targets], listen: [...ports.listen] },
      ...(this.historySetting ? { history: { ...this.historySetting } } : {}),
      ...(hasRules ? { access } : {}),
      ...this.seal.persistedPart(),
    };
  }

  /**
   * An access rules decision (rules:set, rules:check): checked against the draft (a bad pattern
   * is INVALID_PARAMS and changes nothing), saved with its audit entry, then applied.
   */
  private decideRules(plan: (was: AccessState) => { next: AccessState; audit: AuditRecord }): Promise<AdminResults['rules:get']> {
    return this.decide((draft) => {
      let planned: { next: AccessState; audit: AuditRecord };
      try {
        planned = plan(draft.access ?? NO_RULES);
      } catch (err: unknown) {
        throw new AdminError('INVALID_PARAMS', (err as Error).message);
      }
      draft.access = planned.next;
      return {
        audit: planned.audit,
        apply: () => {
          const checkChanged = JSON.stringify(this.rules.check) !== JSON.stringify(planned.next.check);
          this.rules.load(planned.next);
          if (checkChanged) this.gate.configure(planned.next.check);
          const view = this.rules.view();
          this.events.emit('rules:changed', view);
          // Who may see which peer may have changed: every peer's subscribers are looked up again.
          // On both tunnels: direct mode's embedded relay has watchers too.
          for (const name of this.registrar.registeredNames()) this.sendPresence(name);
          return view;
        },
      };
    });
  }

  /** A registrar decision (approve, reject, revoke, forget, policy) and its audit entry, durable before it applies. */
  private decideOnRegistrar<T, R>(plan: (draft: StateDraft) => { planned: PlannedDecision<T>; audit: AuditRecord }, result: (value: T) => R): Promise<R> {
    return this.decide((draft) => {
      const { planned, audit } = plan(draft);
      return { apply: () => result(planned.apply()), abandon: () => planned.abandon(), audit };
    });
  }

  /**
   * Every admin decision goes through here: in order, checked when its turn comes, written
   * and fsynced (those that queue up during a write go together in the next one), and only
   * then applied (events, announcements, disconnects). A write that fails is the caller's
   * error (NOT_SAVED, with the reason) and changes nothing.
   */
  private async decide<T>(plan: (draft: StateDraft) => Decision<T>): Promise<T> {
    try {
      return await this.store.commit(plan);
    } catch (err: unknown) {
      if (err instanceof StateSaveError) {
        this.logger.error('an admin decision was not saved', { path: err.path, error: (err.cause as Error | undefined)?.message });
        throw new AdminError('NOT_SAVED', `nothing changed: ${err.message}`);
      }
      if (err instanceof StateClosedError) throw new AdminError('UNAVAILABLE', err.message);
      throw err;
    }
  }

  // ---- history ---------------------------------------------------------------------------

  private async historyPage(q: AdminParams<'history:query'>): Promise<HistoryPage> {
    if (this.history) return this.history.query(q);
    return {
      entries: [],
      matched: 0,
      counts: Object.fromEntries(HISTORY_OUTCOMES.map((o) => [o, 0])) as HistoryPage['counts'],
      enabled: false,
      retention: this.historySetting ?? DEFAULT_HISTORY_RETENTION,
      stored: { entries: 0, bytes: 0, segments: 0, oldestAt: undefined },
      lost: 0,
    };
  }

  /** A retention setting is a decision: saved in the state file, then applied (old segments may go). */
  private async setHistoryRetention(r: HistoryRetention, audit: AuditRecord): Promise<HistoryRetention> {
    const history = this.history;
    if (!history) throw new AdminError('UNAVAILABLE', 'this contact point keeps no history (it runs without a state folder)');
    const setting = { entries: r.entries, days: r.days };
    await this.decide((draft) => {
      draft.history = setting;
      return { audit, apply: () => void (this.historySetting = setting) };
    });
    await history.setRetention(setting);
    return setting;
  }

  /** Records ports that opened or closed since the last change (the history's port events). */
  private portHistory(list: readonly PortView[]): void {
    const history = this.history;
    if (!history) return;
    const now = Date.now();
    const entry = (p: PortView, outcome: 'opened' | 'closed'): void =>
      history.append({
        at: now,
        id: `port:${p.id}`,
        dir: 'in',
        from: `${p.operator}@${this.direct && p.id >= DIRECT_PORT_IDS.first ? this.direct.domain : 'relay'}`,
        to: `${p.proto} ${p.address}:${p.port}${p.target ? ` -> ${p.target}` : ''}`,
        size: outcome === 'closed' ? p.bytesIn + p.bytesOut : 0,
        outcome,
        code: 0,
        reason: '',
      });
    const seen = new Map(list.map((p) => [p.id, p]));
    for (const p of list) if (!this.portsSeen.has(p.id)) entry(p, 'opened');
    for (const [id, p] of this.portsSeen) if (!seen.has(id)) entry(p, 'closed');
    this.portsSeen = seen;
  }

  // ---- traffic ---------------------------------------------------------------------------

  /** The tunnel a message for `domain` goes up: direct mode's for its domain, the relay's for every other. */
  private readonly uplinkFor = (domain: string): Uplink => {
    if (this.direct && domain === this.direct.domain) return this.direct.gateway ?? NO_UPLINK;
    return this.gateway;
  };

  /** Answers up relay tunnel `slot` (an ACK goes back the way its message came: issue 12), made once. */
  private readonly slotReplies: Reply[] = Array.from({ length: TUNNEL_SLOTS }, (_, slot) => (f: Buffer): void => void this.gateway.sendOn(slot, f));
  /** Answers up direct mode's tunnel. */
  private readonly directReply: Reply = (f) => void (this.direct?.gateway ?? NO_UPLINK).send(f);

  /** Every mediated port: the relay tunnel's and direct mode's. */
  private portList(): PortView[] {
    return this.direct ? [...this.ports.list(), ...this.direct.ports.list()] : this.ports.list();
  }

  /**
   * A frame down relay tunnel `slot`, or (`via` 'direct') down direct mode's tunnel from its
   * embedded relay (the same protocol).
   */
  private onTunnelFrame(frame: Frame, slot: number, via: 'relay' | 'direct' = 'relay'): void {
    const reply = via === 'direct' ? this.directReply : (this.slotReplies[slot] ?? this.slotReplies[0]!);
    switch (frame.type) {
      case FrameType.MSG:
        return this.collector.fromTunnel(frame, reply);
      case FrameType.ACK:
        return this.outbound.ackFromTunnel(frame);
      case FrameType.KEYS_REQUEST:
        return this.collector.keysFromTunnel(frame, reply);
      case FrameType.KEYS_ANSWER: {
        // Another contact point's answer to one of our peers (its request went up the tunnel): passed on as it is.
        const to = parseAddress(decodeMsg(frame).to);
        if (to?.domain === this.opts.id) passOn(this.peerPort.get(to.name), this.registrar.isRegistered(to.name), frame.raw);
        return;
      }
      case FrameType.REACHABLE:
        return this.outbound.reachable(decodeControl(frame, FrameType.REACHABLE));
      case FrameType.LOOKUP:
        return this.answerLookup(decodeControl(frame, FrameType.LOOKUP), reply);
      case FrameType.GOAWAY:
        this.logger.info(via === 'direct' ? 'direct listener is going away' : 'relay is going away', { reason: decodeControl(frame, FrameType.GOAWAY).reason });
        return;
      case FrameType.UDP_CHANNEL: {
        if (via === 'direct') throw new ProtocolError(Status.PROTOCOL_VIOLATION, 'UDP_CHANNEL on the direct tunnel (its relay runs without UDP)');
        const offer = decodeControl(frame, FrameType.UDP_CHANNEL);
        if (this.opts.udp === false) return;
        if (offer.version !== UDP_VERSION) {
          if (slot === this.udpSlot) this.closeUdp();
          // An older relay's channel (HMAC only, datagrams in clear): not used, datagrams stay in the tunnel.
          this.logger.info('udp channel: the relay offers an unencrypted UDP channel (an older relay); datagrams stay in the tunnel', { version: offer.version ?? 1 });
          return;
        }
        // One channel, to one relay node: a node keeps sending over a channel it was greeted on
        // until it times out (UDP_DEAD_AFTER_MS), so a channel in use is not swapped for another
        // node's offer while its tunnel is up. That node, never greeted, keeps its datagrams in
        // its tunnel; the next offer after this channel's tunnel went is taken up.
        if (this.udp && this.udpSlot !== slot && this.gateway.isSlotUp(this.udpSlot)) return;
        this.openUdp(slot, offer);
        return;
      }
      case FrameType.ERROR: {
        const e = decodeControl(frame, FrameType.ERROR);
        this.logger.warn('relay reported an error', { code: e.code, reason: e.reason });
        return;
      }
      default:
        if (via === 'direct' ? this.direct?.ports.handleFrame(frame) : this.ports.handleFrame(frame, slot)) return;
        throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(frame.type)} not expected on the tunnel`);
    }
  }

  private onPeerFrame(session: PeerSession, frame: Frame): void {
    switch (frame.type) {
      case FrameType.MSG:
        return this.collector.fromPeer(session, frame);
      case FrameType.ACK:
        return this.distributor.ackFromPeer(session, frame);
      case FrameType.KEYS_REQUEST:
        return this.collector.keysFromPeer(session, frame);
      case FrameType.REGISTER: {
        const body = decodeControl(frame, FrameType.REGISTER);
        if (!session.registerBucket.take()) {
          // REGISTER has no ACK to carry a refusal, and ERROR means "fault, then close"
          // (PROTOCOL.md 10): a peer this far over the limit is closed 4015; its request stands,
          // and the SDK reconnects with backoff like after any RATE_LIMITED.
          session.link.fault(Status.RATE_LIMITED, `at most ${MAX_REGISTER_PER_MINUTE} registration requests a minute`);
          return;
        }
        const rec = this.registrar.requestRegistration(session.name, body.joinCode);
        // Tell the peer where it stands even when nothing changed (already pending, revoked).
        if (rec) this.peerPort.sendState(session.name, rec.state, rec.admittedBy);
        return;
      }
      default:
        throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(frame.type)} not expected from a peer`);
    }
  }

  private onDecision(name: string, previous: string | undefined, state: string, by: string | undefined): void {
    // While a registration flood is on, new and pending requests log at debug: the flood's one
    // warning and its summary speak for them. Decisions always log at info.
    const request = (previous === undefined || previous === 'unregistered') && (state === 'unregistered' || state === 'pending');
    this.logger[request && this.floods.active ? 'debug' : 'info']('peer registration changed', { peer: name, from: previous ?? 'new', to: state, by });
    if (state === 'registered') this.announce('add', [name]);
    else if (previous === 'registered') this.announce('remove', [name]);
    if (state === 'revoked') {
      // Revocation is immediate: no more deliveries, and the live session is closed.
      this.peerPort.sendState(name, 'revoked', undefined);
      this.peerPort.disconnect(name, Status.REVOKED, 'the admin revoked this peer');
    } else if (previous !== undefined) {
      this.peerPort.sendState(name, state as 'unregistered' | 'pending' | 'registered', by);
    }
  }

  /** Tells the relay, and direct mode's embedded relay, which peers this contact point represents now. */
  private announce(op: 'add' | 'remove', names: readonly string[]): void {
    this.gateway.announce(op, names);
    this.direct?.gateway?.announce(op, names);
  }

  /**
   * A lookup the relay forwards (docs/PROTOCOL.md 9.7): what `from` may learn of one of our
   * peers. A sender the peer's allow list (or the office default's) does not let in hears
   * `hidden`, for every name alike; the others hear online, offline (registered, not connected)
   * or unregistered (also for pending, revoked and unknown names: what a sender learns).
   */
  private answerLookup(body: LookupBody, reply: Reply): void {
    const to = parseAddress(body.address);
    const name = to?.domain === this.opts.id ? to.name : undefined;
    let peer: 'online' | 'offline' | 'unregistered' | 'hidden';
    if (name === undefined) peer = 'unregistered';
    else if (body.from === undefined || !this.rules.allows(name, body.from)) peer = 'hidden';
    else if (!this.registrar.isRegistered(name)) peer = 'unregistered';
    else peer = this.registrar.isOnline(name) ? 'online' : 'offline';
    reply(encodeControl(FrameType.LOOKUP_RESULT, { req: body.req, address: body.address, office: 'connected', peer }));
  }

  /**
   * Tells the relay that what a lookup of `name` answers may have changed (registered, online):
   * a PRESENCE hint, at most once per change, so the relay looks it up again for its subscribers.
   */
  private presenceHint(name: string): void {
    const now = (this.registrar.isRegistered(name) ? 2 : 0) + (this.registrar.isOnline(name) ? 1 : 0); // a small integer: no string per peer
    if (this.presenceSent.get(name) === now) return;
    if (this.registrar.get(name)) this.presenceSent.set(name, now);
    else this.presenceSent.delete(name);
    this.sendPresence(name);
  }

  /** A PRESENCE hint for `name` up the relay tunnel and direct mode's: each relay looks it up again for its subscribers. */
  private sendPresence(name: string): void {
    const hint = encodeControl(FrameType.PRESENCE, { address: `${name}@${this.opts.id}` });
    this.gateway.send(hint);
    this.direct?.gateway?.send(hint);
  }

  /** The UDP channel to the relay, while one is offered (for status and tests). */
  get udpChannel(): UdpChannel | undefined {
    return this.udp;
  }

  /** Opens the UDP channel tunnel `slot`'s relay node offered, replacing any other. */
  private openUdp(slot: number, offer: UdpChannelBody): void {
    this.closeUdp();
    const udp = new UdpChannel(new URL(this.gateway.urlOf(slot)).hostname, offer, offer.port, (d) => this.ports.datagramIn(d), this.logger);
    this.udp = udp;
    this.udpSlot = slot;
    this.ports.setUdpChannel(udp, slot);
    void udp.start();
  }

  private closeUdp(): void {
    this.udp?.close();
    this.udp = undefined;
    this.ports.setUdpChannel(undefined);
  }

  /** Counts a dropped request; the first of a flood goes to the GUIs at once, the rest with the next refresh. */
  private floodDrop(source: string, kind: 'evicted' | 'refused'): void {
    if (this.floods.drop(source, kind) && this.floods.takeChanged()) this.events.emit('peers:flood', this.floods.view());
  }

  /** The port list to admin subscribers (a port opened, changed state or closed, or its counters moved). */
  private emitPorts(list = this.portList()): void {
    this.portsSent = portCounters(list);
    this.events.emit('ports:changed', list);
  }

  /** Bytes move without a port event: send the list when its counters changed since the last one sent. */
  private refreshPortCounters(): void {
    if (this.events.listenerCount('ports:changed') === 0) return;
    const list = this.portList();
    if (portCounters(list) !== this.portsSent) this.emitPorts(list);
  }

  private refreshAdmin(): void {
    if (this.floods.takeChanged()) this.events.emit('peers:flood', this.floods.view());
    if (this.events.listenerCount('tunnel:status') > 0) this.events.emit('tunnel:status', this.gateway.status());
    if (this.direct && this.events.listenerCount('direct:status') > 0) this.events.emit('direct:status', this.direct.view());
    if (this.events.listenerCount('peer:changed') === 0) return;
    // Message counters change too often for an event each; changed peers go out once a second.
    for (const name of this.registrar.drainCounted()) {
      const rec = this.registrar.get(name);
      if (rec) this.events.emit('peer:changed', this.registrar.view(rec));
    }
  }
}

/** The direct tunnel before it exists: down, like a gateway whose tunnel is down. */
const NO_UPLINK: Uplink = { send: () => false, connected: false, bufferedAmount: 0, sendingSlot: undefined };

/** A peer record as the audit trail shows it before or after a decision (null: no record). */
function peerAudit(r: PeerRecord | undefined): AuditValue {
  if (!r) return null;
  return { state: r.state, ...(r.admittedBy ? { admittedBy: r.admittedBy } : {}), ...(r.lanAddress ? { lanAddress: r.lanAddress } : {}) };
}

/** The registration policy as the audit trail shows it: never the join code (nor its hash), only whether one is set and whether it changed. */
function policyAudit(p: PersistedState['policy'], before?: PersistedState['policy']): AuditValue {
  const changed = before !== undefined && p.joinCodeHash !== undefined && p.joinCodeHash !== before.joinCodeHash;
  return { subnets: [...p.subnets], joinCode: p.joinCodeHash !== undefined, ...(changed ? { joinCodeChanged: true } : {}) };
}

/** What of the port list moves between port events: each port's counters. */
function portCounters(list: readonly PortView[]): string {
  return list.map((p) => `${p.id}:${p.bytesIn}:${p.bytesOut}:${p.streams}:${p.refused}`).join(' ');
}
