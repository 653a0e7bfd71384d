import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname, networkInterfaces } from 'node:os';
import type { Frame } from '../protocol/codec.js';
import type { DialErrorKind } from '../protocol/dial-failure.js';
import { Dialer } from '../protocol/dialer.js';
import { CAPABILITY_ADAPTIVE_KEEPALIVE, CAPABILITY_DIRECT, CAPABILITY_LOOKUP, CAPABILITY_REACHABLE, FrameType } from '../protocol/frames.js';
import { MAX_PEERS_PER_ANNOUNCE } from '../protocol/limits.js';
import type { Link } from '../protocol/link.js';
import type { MuxLink } from '../protocol/stream-mux.js';
import type { Timing } from '../protocol/timing.js';
import { OFFERED_VERSIONS } from '../protocol/version.js';
import type { Logger } from '../runtime/logger.js';
import type { TunnelState, TunnelView } from '../admin/contract.js';

export interface GatewayOptions {
  readonly relayUrl: string;
  readonly id: string;
  readonly secret: string;
  readonly logger: Logger;
  readonly software: string;
  /** HELLO env.capabilities beside `messages` and `reachable`: what this contact point has on (PROTOCOL.md, HELLO) */
  readonly capabilities?: readonly string[];
  /** names to announce after each (re)connect */
  readonly registeredNames: () => string[];
  readonly proxy?: string | null;
  readonly ca?: string | Buffer;
  /** keepalive, backoff, hello deadline and ID_IN_USE retry, handed whole to the dialer */
  readonly timing: Timing;
  /** Every frame the relay sends down the tunnel (after WELCOME), called straight from the dialer. */
  readonly onFrame: (frame: Frame) => void;
  /**
   * HELLO `instance`: this running contact point, as opposed to another one with the same
   * credential (a copied config, a restored VM). Drawn at random by default and never stored;
   * two tunnels of one instance (to two relay nodes) would share it.
   */
  readonly instance?: string;
  /** direct mode is on: the hello announces CAPABILITY_DIRECT */
  readonly direct?: boolean;
}

/** Tunnel state changes (rare); frames go to GatewayOptions.onFrame instead. */
export interface GatewayEvents {
  status: [TunnelView];
  up: [];
  down: [];
}

/** What messages and ACKs go up: the relay tunnel's gateway or direct mode's (contact-point.ts uplinkFor). */
export type Uplink = Pick<Gateway, 'send' | 'connected' | 'bufferedAmount'>;

/** IPv4/IPv6 addresses of this host's non-internal interfaces: the contact point's LAN environment. */
function lanAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((i) => i !== undefined && !i.internal)
    .map((i) => `${i!.address}/${i!.netmask}`)
    .slice(0, 32);
}

/**
 * The gateway interface (seed 000, 210): the ONE continuous outbound tunnel to the relay. It
 * says hello with the contact point's credential and environment, announces the registered
 * peers after every (re)connect, and keeps the link alive with pings well below NAT idle
 * timeouts; the dialer under it reconnects with jittered backoff.
 *
 * It is the tunnel's only owner: the rest of the contact point writes through it (send; port
 * mediation's streams use it as their MuxLink) and never holds the link itself, so nothing
 * writes on a link after the gateway has let go of it.
 */
export class Gateway extends EventEmitter<GatewayEvents> implements MuxLink {
  private readonly dialer: Dialer;
  private link: Link | undefined;
  private closedTotals = { bytesIn: 0, bytesOut: 0, framesIn: 0, framesOut: 0 };
  /** the dialer's last error, kept after the tunnel recovers: the admin asks what the outage was (issue 16, item 9) */
  private lastFault: { readonly error: string; readonly at: number | undefined; readonly kind: DialErrorKind | undefined } | undefined;
  /** HELLO `instance` (see GatewayOptions.instance) */
  readonly instance: string;

  constructor(private readonly opts: GatewayOptions) {
    super();
    const instance = (this.instance = opts.instance ?? randomBytes(12).toString('base64url'));
    this.dialer = new Dialer({
      url: opts.relayUrl,
      label: `tunnel:${opts.id}`,
      logger: opts.logger,
      stopOnRejection: false,
      timing: opts.timing,
      onFrame: opts.onFrame,
      hello: () => ({
        versions: OFFERED_VERSIONS,
        role: 'contact-point',
        id: opts.id,
        secret: opts.secret,
        env: { software: opts.software, host: hostname().slice(0, 255), addresses: lanAddresses(), capabilities: ['messages', CAPABILITY_REACHABLE, CAPABILITY_ADAPTIVE_KEEPALIVE, CAPABILITY_LOOKUP, ...(opts.direct ? [CAPABILITY_DIRECT] : []), ...(opts.capabilities ?? [])] },
        instance,
      }),
      ...(opts.proxy !== undefined ? { proxy: opts.proxy } : {}),
      ...(opts.ca ? { ca: opts.ca } : {}),
    });
    this.dialer.on('up', (link) => {
      this.link = link;
      this.announce('add', this.opts.registeredNames());
      this.opts.logger.info('tunnel up', { relay: opts.relayUrl });
      this.emit('up');
    });
    this.dialer.on('down', () => {
      const s = this.link?.stats;
      if (s) {
        this.closedTotals.bytesIn += s.bytesIn;
        this.closedTotals.bytesOut += s.bytesOut;
        this.closedTotals.framesIn += s.framesIn;
        this.closedTotals.framesOut += s.framesOut;
      }
      this.link = undefined;
      this.emit('down');
    });
    this.dialer.on('status', (d) => {
      if (d.lastError !== undefined) this.lastFault = { error: d.lastError, at: d.lastErrorAt, kind: d.lastErrorKind };
      this.emit('status', this.status());
    });
  }

  get connected(): boolean {
    return this.link?.isOpen ?? false;
  }

  /** The tunnel's keepalive: adaptive once the relay took the capability up (PROTOCOL.md 12.1); fixed while down. */
  get keepaliveMode(): 'adaptive' | 'fixed' {
    return this.link?.keepaliveMode ?? 'fixed';
  }

  get bufferedAmount(): number {
    return this.link?.bufferedAmount ?? 0;
  }

  start(): void {
    this.dialer.start();
  }

  stop(): void {
    this.dialer.stop();
  }

  reconnectNow(): void {
    this.dialer.reconnectNow();
  }

  /** Sends one frame down the tunnel; false (dropped) while it is down. */
  send(frame: Buffer): boolean {
    return this.link?.send(frame) ?? false;
  }

  /** STREAM_DATA without joining head and body first (Link.sendParts); false while down. */
  sendParts(head: Buffer, body: Buffer, offset: number, length: number): boolean {
    return this.link?.sendParts(head, body, offset, length) ?? false;
  }

  /** The tunnel is a client link, which copies (masks) every body it sends; nothing is kept while down. */
  get copiesBodies(): boolean {
    return this.link?.copiesBodies ?? true;
  }

  /** Runs `fn` once the tunnel's socket has drained (at once when it is not congested, or down). */
  whenWritable(fn: () => void): void {
    if (this.link) this.link.whenWritable(fn);
    else setImmediate(fn);
  }

  /** Tell the relay which peers this contact point now represents (or no longer does). */
  announce(op: 'add' | 'remove', names: readonly string[]): void {
    const link = this.link;
    if (!link) return; // the full list goes out on the next connect
    for (let i = 0; i < names.length; i += MAX_PEERS_PER_ANNOUNCE) {
      link.sendControl(FrameType.PEERS, { op, names: names.slice(i, i + MAX_PEERS_PER_ANNOUNCE) });
    }
  }

  status(): TunnelView {
    const d = this.dialer.status();
    const live = this.link?.stats;
    const state: TunnelState = d.state === 'idle' || d.state === 'stopped' ? 'offline' : d.state;
    return {
      state,
      stateSince: d.stateSince,
      everConnected: d.everConnected,
      relayUrl: d.url,
      session: d.session,
      connectedAt: d.connectedAt,
      lastError: d.lastError ?? this.lastFault?.error,
      lastErrorAt: d.lastError !== undefined ? d.lastErrorAt : this.lastFault?.at,
      lastErrorKind: d.lastError !== undefined ? d.lastErrorKind : this.lastFault?.kind,
      nextRetryAt: d.nextRetryAt,
      idInUse: d.idInUse,
      reconnects: d.reconnects,
      rttMs: live?.rttMs,
      bytesIn: this.closedTotals.bytesIn + (live?.bytesIn ?? 0),
      bytesOut: this.closedTotals.bytesOut + (live?.bytesOut ?? 0),
      framesIn: this.closedTotals.framesIn + (live?.framesIn ?? 0),
      framesOut: this.closedTotals.framesOut + (live?.framesOut ?? 0),
      peersServed: this.opts.registeredNames().length,
      keepaliveMs: this.opts.timing.pingIntervalMs,
      proxy: d.proxy,
    };
  }
}
