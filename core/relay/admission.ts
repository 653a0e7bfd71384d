import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { decodeControl } from '../protocol/codec.js';
import { ProtocolError } from '../protocol/errors.js';
import { FrameType, frameTypeName, type HelloBody } from '../protocol/frames.js';
import { checkEveryMs, KeepaliveSweep, Link, type CloseInfo, type LinkOptions } from '../protocol/link.js';
import {
  HELLO_TIMEOUT_MS,
  MAX_FRAME_BYTES,
  MAX_HELLO_MESSAGE_BYTES,
  MAX_PENDING_HELLOS,
  MAX_PENDING_HELLOS_PER_ADDRESS,
  MAX_SESSIONS_PER_CREDENTIAL,
  PING_INTERVAL_MS,
  PONG_TIMEOUT_MS,
  PRESSURE_TIMEOUT_MS,
  RELAY_RTT_PING_MS,
  TAKEOVER_PROBE_MS,
} from '../protocol/limits.js';
import { negotiateVersion, RELAY_PATH } from '../protocol/version.js';
import { Status, type StatusCode } from '../protocol/status.js';
import { FairSlots, releaseOnClose, sourceKey, type EvictReason } from '../runtime/fair-slots.js';
import { refuseUpgrade } from '../runtime/http-guard.js';
import type { Logger } from '../runtime/logger.js';
import { KeyedBuckets } from '../runtime/token-bucket.js';
import type { CredentialKind, CredentialRecord, CredentialStore } from './credentials.js';
import { type RefusalSink } from './refusals.js';
import type { SessionRegistry, TunnelSession } from './sessions.js';
import type { HolderInfo } from './cluster.js';
import type { RelayStats } from './stats.js';
import { acceptWebSocket, type ServerWebSocket } from '../protocol/ws-server.js';

export { RELAY_PATH };
/** Failed hellos one remote address may make per minute (a token bucket, burst as many) before its upgrades are refused (429). */
export const MAX_AUTH_FAILURES_PER_MINUTE = 20;
/** Remote addresses whose hello failures are tracked at once (the least recently failed forgotten). */
const MAX_TRACKED_ADDRESSES = 10_000;

/** The relay's options admission reads (see RelayOptions). */
export interface AdmissionOptions {
  readonly credentials: CredentialStore;
  readonly helloTimeoutMs?: number;
  readonly maxPendingHellos?: number;
  readonly maxPendingHellosPerAddress?: number;
  readonly pressureTimeoutMs?: number;
  readonly pingIntervalMs?: number;
  readonly takeoverProbeMs?: number;
  readonly maxSessionsPerCredential?: number;
}

/** A hello that passed: what the relay needs to register its session. */
export interface Admitted {
  readonly link: Link;
  readonly hello: HelloBody;
  readonly kind: CredentialKind;
  readonly record: CredentialRecord;
  readonly remote: string;
  readonly version: number;
  /** the tunnel holding this contact point id, which this hello replaces */
  readonly holder: TunnelSession | undefined;
  /** that holder failed its liveness probe (another instance took over) */
  readonly deadHolder: TunnelSession | undefined;
}

export interface AdmissionHost {
  /** the relay's name: a contact point may not use it as its id */
  readonly name: string;
  readonly logger: Logger;
  readonly sessions: SessionRegistry;
  /** every open link, in its hello or admitted (the relay closes them all when it stops) */
  readonly links: Set<Link>;
  /** every refusal is reported here (logged once, kept for the status endpoint) */
  readonly refusals: RefusalSink;
  /** counts hello refusals and the bytes of links closed before admission */
  readonly stats: RelayStats;
  /** Registers the session, sends WELCOME and takes over the link's frames. */
  open(admitted: Admitted): void;
  /** false while this relay node is cut off from its cluster: contact points go to another node */
  acceptsTunnels(): boolean;
  /** Another node holds this contact point's tunnel: its probe, or undefined when there is nothing to contest (Cluster.contestTunnel). */
  contestElsewhere(cp: string, instance: string | undefined, probeMs: number): Promise<HolderInfo | undefined> | undefined;
}

/** A newcomer waits for its WELCOME at most HELLO_TIMEOUT_MS: the takeover probe must end before that. */
export function checkTakeoverProbe(probe: number | undefined): void {
  if (probe !== undefined && !(Number.isInteger(probe) && probe >= 1 && probe < HELLO_TIMEOUT_MS)) {
    throw new RangeError(`takeoverProbeMs ${probe}: expected a whole number of milliseconds from 1 to ${HELLO_TIMEOUT_MS - 1}`);
  }
}

/**
 * Admission to the relay (seed 000's relay server authenticating contact points and external
 * peers): the upgrade gate (path, failed-hello limit per address, fair pending-hello slots), the
 * hello deadline, version and credential checks, and the contest when another instance says
 * hello with a contact point id whose tunnel is up. A hello that passes goes to host.open().
 */
export class Admission {
  /** connections in their hello: capped per source, shared fairly (see FairSlots) */
  private readonly helloSlots: FairSlots;
  /** failed hellos per remote address */
  private readonly failures = KeyedBuckets.perMinute(MAX_AUTH_FAILURES_PER_MINUTE, MAX_TRACKED_ADDRESSES);
  /** when the last "pending hellos under pressure" warning was logged (at most one a minute) */
  private pressureLoggedAt = 0;
  private readonly logger: Logger;
  /** one keepalive timer for every link in its hello or admitted with fixed keepalive */
  private readonly sweep: KeepaliveSweep;
  /** every link's options: one object for all (the label names each far end when read) */
  private readonly linkOptions: LinkOptions;

  constructor(
    private readonly opts: AdmissionOptions,
    private readonly host: AdmissionHost,
  ) {
    this.logger = host.logger;
    this.sweep = new KeepaliveSweep(checkEveryMs(opts.pingIntervalMs ?? PING_INTERVAL_MS, PONG_TIMEOUT_MS));
    this.linkOptions = {
      role: 'server',
      logger: this.logger,
      label: 'relay<-',
      labelRemote: true,
      pingIntervalMs: opts.pingIntervalMs ?? PING_INTERVAL_MS,
      rttPingMs: RELAY_RTT_PING_MS,
      sweep: this.sweep,
    };
    this.helloSlots = new FairSlots({
      max: opts.maxPendingHellos ?? MAX_PENDING_HELLOS,
      maxPerKey: opts.maxPendingHellosPerAddress ?? MAX_PENDING_HELLOS_PER_ADDRESS,
      pressureAgeMs: opts.pressureTimeoutMs ?? PRESSURE_TIMEOUT_MS,
      label: 'relay pending hellos (maxPendingHellos, maxPendingHellosPerAddress, pressureTimeoutMs)',
    });
  }

  readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const remote = (socket as Socket).remoteAddress ?? 'unknown';
    const path = (req.url ?? '').split('?')[0];
    if (path !== RELAY_PATH) return refuseUpgrade(socket, 404, 'Not Found');
    if (!this.failures.has(sourceKey(remote))) {
      this.host.refusals.record({ kind: 'upgrade', code: Status.RATE_LIMITED, who: '-', address: remote, reason: `more than ${MAX_AUTH_FAILURES_PER_MINUTE} failed hellos a minute from this address (HTTP 429)` });
      return refuseUpgrade(socket, 429, 'Too Many Requests');
    }
    // A source at its own cap only competes with itself: refused. Anyone else gets a slot, if
    // need be the oldest pending hello of the source holding the most (a flood from some
    // addresses cannot keep a contact point's reconnect out).
    let link: Link | undefined;
    const slot = this.helloSlots.take(sourceKey(remote), (why) => this.evictPending(why, link, socket));
    if (!slot) {
      this.host.refusals.record({ kind: 'upgrade', code: Status.RESOURCE_LIMIT, who: '-', address: remote, reason: 'this address holds its share of connections in their hello (HTTP 503)' });
      return refuseUpgrade(socket, 503, 'Service Unavailable');
    }
    const release = releaseOnClose(socket, slot);
    // No closure here may name `req` or `head`: they would stay in memory as long as the connection lives.
    const ws = acceptWebSocket(req, socket, head, MAX_HELLO_MESSAGE_BYTES);
    if (ws) link = this.onConnection(ws, socket as Socket, remote, release);
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
    if (why === 'expired') this.refuse(link, Status.HELLO_TIMEOUT, '-', `no hello within ${this.opts.pressureTimeoutMs ?? PRESSURE_TIMEOUT_MS} ms while the relay is busy`);
    else this.refuse(link, Status.RESOURCE_LIMIT, '-', 'too many connections in their hello; this one gave its place to a newer one');
  }

  private onConnection(ws: ServerWebSocket, socket: Socket, remote: string, releaseSlot: () => void): Link {
    const link = new Link(ws, socket, this.linkOptions);
    this.host.links.add(link);
    let helloDone = false;
    const endPending = (): void => {
      if (helloDone) return;
      helloDone = true;
      releaseSlot();
      clearTimeout(timer);
    };
    const timer = setTimeout(() => this.refuse(link, Status.HELLO_TIMEOUT, '-', `no hello within ${this.opts.helloTimeoutMs ?? HELLO_TIMEOUT_MS} ms`), this.opts.helloTimeoutMs ?? HELLO_TIMEOUT_MS);
    timer.unref();

    link.setHandler({
      onFrame: (frame) => {
        if (frame.type !== FrameType.HELLO) {
          throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(frame.type)} before HELLO`);
        }
        const hello = decodeControl(frame, FrameType.HELLO);
        endPending();
        this.onHello(link, hello, remote);
        // Admitted, or waiting for a contest (it sends nothing before its WELCOME): full-size frames from now on.
        if (link.isOpen) ws.maxPayload = MAX_FRAME_BYTES;
      },
      onClose: (info) => {
        endPending();
        this.dropPending(link, info);
      },
    });
    return link;
  }

  /** A connection refused before or at its hello: reported (logged once, kept for status), then closed with `code`. */
  private refuse(link: Link, code: StatusCode, who: string, reason: string): void {
    this.host.refusals.record({ kind: 'hello', code, who, address: link.remote, reason });
    link.fault(code, reason);
  }

  /** A connection closed before it was admitted: counted as a hello refusal when the relay closed it with a status. */
  private dropPending(link: Link, info: CloseInfo): void {
    this.host.links.delete(link);
    this.host.stats.retire(link);
    if (info.local && info.status !== undefined) this.host.stats.helloRefused.add(info.status);
  }

  /**
   * Checks version and credentials; on success the host registers the session and sends
   * WELCOME. A contact point whose id another instance holds waits for contest() instead.
   * `deadHolder`: that holder failed its liveness probe, so this hello may replace it.
   */
  private onHello(link: Link, hello: HelloBody, remote: string, deadHolder?: TunnelSession, elsewhereChecked = false): void {
    const version = negotiateVersion(hello.versions);
    const who = `${hello.role} ${hello.id}`;
    if (version === undefined) return this.refuse(link, Status.VERSION_MISMATCH, who, `relay speaks protocol 1, client offered ${hello.versions.min}-${hello.versions.max}`);
    if (hello.role === 'peer') return this.refuse(link, Status.PROTOCOL_VIOLATION, who, 'internal peers connect to their contact point, not to the relay');
    const kind: CredentialKind = hello.role;
    const record = hello.secret !== undefined ? this.opts.credentials.verify(kind, hello.id, hello.secret) : undefined;
    if (!record || (kind === 'contact-point' && hello.id === this.host.name)) {
      this.failures.take(sourceKey(remote));
      return this.refuse(link, Status.BAD_CREDENTIALS, who, `no valid credential for ${kind} "${hello.id}"`);
    }
    if (kind === 'external') {
      // Several sessions of one credential live side by side (issue 18), up to the cap: the
      // newcomer over it is refused, the sessions that are there are not disturbed.
      const max = this.opts.maxSessionsPerCredential ?? MAX_SESSIONS_PER_CREDENTIAL;
      const open = this.host.sessions.externalsOf(hello.id).length;
      if (open >= max) {
        return this.refuse(link, Status.SESSION_LIMIT, who, `credential "${hello.id}" has ${open} session${open === 1 ? '' : 's'} at the relay, the most it may have at once`);
      }
    }
    if (kind === 'contact-point' && !this.host.acceptsTunnels()) {
      link.fault(Status.SHUTTING_DOWN, 'this relay node lost its cluster connection; connect to another node');
      return;
    }
    // Per slot (issue 12): a contact point's tunnel in another slot is not a holder of this one.
    const holder = kind === 'contact-point' ? this.host.sessions.tunnelIn(hello.id, hello.slot ?? 0) : undefined;
    // Only the same instance (a reconnect the holder's own side already gave up on) replaces a
    // holder at once. Another instance, or a client too old to say which it is, waits for a
    // liveness probe of the holder: two live contact points with one credential would otherwise
    // replace each other for ever.
    if (holder && holder !== deadHolder && (hello.instance === undefined || hello.instance !== holder.instance)) {
      this.contest(link, hello, remote, holder);
      return;
    }
    // The slots are one instance's two tunnels: another instance's (or an older client's) tunnel
    // in the other slot holds the id as well, and is probed the same way before this one may in.
    const rival = kind === 'contact-point' ? this.host.sessions.tunnelsOf(hello.id).find((t) => t !== holder && t !== deadHolder && (hello.instance === undefined || t.instance !== hello.instance)) : undefined;
    if (rival) {
      this.contest(link, hello, remote, rival);
      return;
    }
    // Another relay node holds it: the same contest, the probe made there (a silent holder is
    // then replaced by this newer claim, as a same-instance reconnect is at once).
    const far = kind === 'contact-point' && !holder && !elsewhereChecked ? this.host.contestElsewhere(hello.id, hello.instance, this.probeMs) : undefined;
    if (far) {
      this.holdFrames(link);
      void far.then((alive) => {
        if (!link.isOpen) return;
        if (alive) return this.refuse(link, Status.ID_IN_USE, `contact-point ${hello.id}`, idInUse(hello.id, alive));
        this.onHello(link, hello, remote, undefined, true);
      });
      return;
    }
    this.host.open({ link, hello, kind, record, remote, version, holder, deadHolder });
  }

  private get probeMs(): number {
    return this.opts.takeoverProbeMs ?? TAKEOVER_PROBE_MS;
  }

  /** A newcomer waiting for a contest sends nothing before its WELCOME. */
  private holdFrames(link: Link): void {
    link.setHandler({
      onFrame: (frame) => {
        throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(frame.type)} before WELCOME`);
      },
      onClose: (info) => this.dropPending(link, info),
    });
  }

  /** Another node asks whether this node's tunnel of `cp` is alive: the same probe as contest(). */
  async probeTunnel(cp: string): Promise<HolderInfo | undefined> {
    const holder = this.host.sessions.tunnels.get(cp);
    if (!holder || !(await this.probe(holder)) || this.host.sessions.tunnels.get(cp) !== holder) return undefined;
    return { remote: holder.remote, host: holder.env?.host, since: holder.since };
  }

  /** One liveness probe per holder, however many newcomers (here or on other nodes) wait. */
  private probe(holder: TunnelSession): Promise<boolean> {
    if (!holder.probe) {
      const probe = holder.link.probe(this.probeMs);
      holder.probe = probe;
      void probe.then(() => {
        if (holder.probe === probe) holder.probe = undefined;
      });
    }
    return holder.probe;
  }

  /**
   * A hello for a contact point id whose tunnel (in its slot or the other) another instance (or
   * a client without an instance id) holds: probe the holder, one probe per holder however many newcomers wait.
   * Alive: the newcomer is refused with ID_IN_USE, naming the holder's address and since when.
   * Silent within the deadline: onHello() again, which replaces it (or contests a newer holder).
   */
  private contest(link: Link, hello: HelloBody, remote: string, holder: TunnelSession): void {
    this.holdFrames(link);
    void this.probe(holder).then((alive) => {
      if (!link.isOpen) return; // the newcomer gave up meanwhile
      if (!alive) return this.onHello(link, hello, remote, holder);
      if (this.host.sessions.tunnelIn(hello.id, holder.slot) !== holder) return this.onHello(link, hello, remote); // it left meanwhile: decide again
      this.refuse(link, Status.ID_IN_USE, `contact-point ${hello.id}`, idInUse(hello.id, { remote: holder.remote, host: holder.env?.host, since: holder.since }));
    });
  }
}

/** ID_IN_USE's reason: who holds the id, from where and since when (and on which node, in a cluster). */
function idInUse(id: string, h: HolderInfo): string {
  const host = h.host ? ` (host "${h.host.slice(0, 48)}")` : '';
  const node = h.node !== undefined ? ` on relay node ${h.node}` : '';
  return `contact point id "${id}" is held by another instance at ${h.remote}${host}${node} since ${new Date(h.since).toISOString()}`;
}
