import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname, networkInterfaces } from 'node:os';
import type { Frame } from '../protocol/codec.js';
import type { DialErrorKind } from '../protocol/dial-failure.js';
import { Dialer, type DialerStatus } from '../protocol/dialer.js';
import { CAPABILITY_ADAPTIVE_KEEPALIVE, CAPABILITY_BATCH, CAPABILITY_HEARTBEAT, CAPABILITY_DIRECT, CAPABILITY_LOOKUP, CAPABILITY_NODE, CAPABILITY_REACHABLE, FrameType } from '../protocol/frames.js';
import { MAX_PEERS_PER_ANNOUNCE, TUNNEL_SLOTS } from '../protocol/limits.js';
import { Backoff } from '../runtime/backoff.js';
import type { Link } from '../protocol/link.js';
import type { MuxLink } from '../protocol/stream-mux.js';
import type { Timing } from '../protocol/timing.js';
import { OFFERED_VERSIONS } from '../protocol/version.js';
import type { Logger } from '../runtime/logger.js';
import type { TunnelState, TunnelView } from '../admin/contract.js';

export interface GatewayOptions {
  readonly relayUrl: string;
  /**
   * More relay URLs (issue 12): with any, the contact point holds two tunnels (slots 0 and 1) to
   * two different relay nodes as one logical session; each tries the URLs in turn, slot 1
   * starting from the second. Absent or empty: one tunnel to relayUrl, as ever.
   */
  readonly relayUrls?: readonly string[];
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
  /** Every frame the relay sends down a tunnel (after WELCOME), with the tunnel's slot, called straight from the dialer. */
  readonly onFrame: (frame: Frame, slot: number) => void;
  /**
   * HELLO `instance`: this running contact point, as opposed to another one with the same
   * credential (a copied config, a restored VM). Drawn at random by default and never stored;
   * the two tunnels of one instance (to two relay nodes) share it.
   */
  readonly instance?: string;
  /** direct mode is on: the hello announces CAPABILITY_DIRECT */
  readonly direct?: boolean;
}

/**
 * With two tunnels up, reconnectNow() drops the second only once the first it dropped is back, and
 * waits at most this long for it (ms, default 15 s); if it is not back by then, the other tunnel
 * is left up: an admin's reconnect never leaves the office without a tunnel.
 */
export const RECONNECT_ROLL_TIMEOUT_MS = 15_000;

/** Tunnel state changes (rare); frames go to GatewayOptions.onFrame instead. */
export interface GatewayEvents {
  status: [TunnelView];
  /** the first tunnel is up (none was) */
  up: [];
  /** the last tunnel is down */
  down: [];
  /** tunnel `slot` is up: port requests may come on it, and their answers and streams go back on `link` */
  slotUp: [slot: number, link: MuxLink];
  /** tunnel `slot` is down: what came on it (ports, streams) ends */
  slotDown: [slot: number];
}

/** What messages and ACKs go up: the relay tunnel's gateway or direct mode's (contact-point.ts uplinkFor). */
export type Uplink = Pick<Gateway, 'send' | 'connected' | 'bufferedAmount' | 'sendingSlot'>;

/** IPv4/IPv6 addresses of this host's non-internal interfaces: the contact point's LAN environment. */
function lanAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((i) => i !== undefined && !i.internal)
    .map((i) => `${i!.address}/${i!.netmask}`)
    .slice(0, 32);
}

/** One tunnel of the gateway (one slot) and what it knows of its relay node. */
class TunnelSlot implements MuxLink {
  link: Link | undefined;
  /** told to the rest of the contact point as up (slotUp): not while it is leaving a node at once */
  announced = false;
  /** the relay node it is connected to (WELCOME `node`), while up */
  node: string | undefined;
  /** why it left a node (its other tunnel's), shown until it is up elsewhere */
  note: string | undefined;
  totals = { bytesIn: 0, bytesOut: 0, framesIn: 0, framesOut: 0 };

  constructor(
    readonly index: number,
    readonly dialer: Dialer,
  ) {}

  get isUp(): boolean {
    return this.announced && (this.link?.isOpen ?? false);
  }

  send(frame: Buffer): boolean {
    return this.link?.send(frame) ?? false;
  }

  sendParts(head: Buffer, body: Buffer, offset: number, length: number): boolean {
    return this.link?.sendParts(head, body, offset, length) ?? false;
  }

  get copiesBodies(): boolean {
    return this.link?.copiesBodies ?? true;
  }

  get bufferedAmount(): number {
    return this.link?.bufferedAmount ?? 0;
  }

  whenWritable(fn: () => void): void {
    if (this.link) this.link.whenWritable(fn);
    else setImmediate(fn);
  }

  /** The link's counters are added to the slot's totals when it closes. */
  retire(): void {
    const s = this.link?.stats;
    if (s) {
      this.totals.bytesIn += s.bytesIn;
      this.totals.bytesOut += s.bytesOut;
      this.totals.framesIn += s.framesIn;
      this.totals.framesOut += s.framesOut;
    }
    this.link = undefined;
    this.node = undefined;
    this.announced = false;
  }
}

/**
 * The gateway interface (seed 000, 210): the continuous outbound tunnel to the relay (with two
 * or more relay URLs, two tunnels to two different relay nodes, issue 12). It says hello with
 * the contact point's credential and environment, announces the registered peers after every
 * (re)connect, and keeps each link alive with pings well below NAT idle timeouts; the dialer
 * under each reconnects with jittered backoff.
 *
 * It is the tunnels' only owner: the rest of the contact point writes through it (send, or
 * sendOn the tunnel a message came on; port mediation's streams use a slot as their MuxLink)
 * and never holds a link itself, so nothing writes on a link after the gateway let go of it.
 */
export class Gateway extends EventEmitter<GatewayEvents> implements MuxLink {
  private readonly slots: TunnelSlot[];
  /** 'up' was emitted and 'down' not since */
  private up = false;
  /** the dialer's last error, kept after the tunnel recovers: the admin asks what the outage was (issue 16, item 9) */
  private lastFault: { readonly error: string; readonly at: number | undefined; readonly kind: DialErrorKind | undefined } | undefined;
  /** delay before slot 1 leaves a node slot 0 is on, growing while it keeps landing there */
  private readonly sameNode: Backoff;
  /** relay URLs that failed in a way retrying cannot fix (dial-failure.ts `url`) and never carried a tunnel: URL -> why */
  private readonly unusable = new Map<string, string>();
  /** relay URLs a tunnel came up on */
  private readonly worked = new Set<string>();
  /** every relay URL given, in order */
  readonly urls: readonly string[];
  /** a reconnectNow() of two tunnels waiting for the first to be back: cancels it */
  private rolling: (() => void) | undefined;
  /** HELLO `instance` (see GatewayOptions.instance) */
  readonly instance: string;

  constructor(private readonly opts: GatewayOptions) {
    super();
    const instance = (this.instance = opts.instance ?? randomBytes(12).toString('base64url'));
    this.sameNode = new Backoff(opts.timing.backoffBaseMs, opts.timing.backoffMaxMs);
    const urls = (this.urls = [opts.relayUrl, ...(opts.relayUrls ?? [])]);
    const count = urls.length > 1 ? TUNNEL_SLOTS : 1;
    this.slots = [];
    for (let i = 0; i < count; i++) {
      // Slot i starts at the i-th URL and goes round the list from there.
      const mine = [...urls.slice(i % urls.length), ...urls.slice(0, i % urls.length)];
      const dialer = new Dialer({
        url: mine[0]!,
        alternates: mine.slice(1),
        label: count > 1 ? `tunnel:${opts.id}#${i}` : `tunnel:${opts.id}`,
        logger: opts.logger,
        stopOnRejection: false,
        timing: opts.timing,
        onFrame: (f) => opts.onFrame(f, i),
        hello: () => ({
          versions: OFFERED_VERSIONS,
          role: 'contact-point',
          id: opts.id,
          secret: opts.secret,
          env: { software: opts.software, host: hostname().slice(0, 255), addresses: lanAddresses(), capabilities: ['messages', CAPABILITY_REACHABLE, CAPABILITY_NODE, CAPABILITY_ADAPTIVE_KEEPALIVE, CAPABILITY_HEARTBEAT, CAPABILITY_LOOKUP, CAPABILITY_BATCH, ...(opts.direct ? [CAPABILITY_DIRECT] : []), ...(opts.capabilities ?? [])] },
          instance,
          // Slot 0 says nothing: its HELLO is the one-tunnel HELLO any relay takes.
          ...(i > 0 ? { slot: i } : {}),
        }),
        ...(opts.proxy !== undefined ? { proxy: opts.proxy } : {}),
        ...(opts.ca ? { ca: opts.ca } : {}),
      });
      const slot = new TunnelSlot(i, dialer);
      this.slots.push(slot);
      dialer.on('up', (link, welcome) => this.slotUp(slot, link, welcome.node));
      dialer.on('down', () => {
        const was = slot.announced;
        slot.retire();
        if (was) this.emit('slotDown', i);
        if (this.up && !this.slots.some((s) => s.announced)) {
          this.up = false;
          this.emit('down');
        }
      });
      dialer.on('status', (d) => {
        if (d.lastError !== undefined) this.lastFault = { error: d.lastError, at: d.lastErrorAt, kind: d.lastErrorKind };
        if (d.lastErrorKind === 'url' && d.lastErrorUrl !== undefined && !this.worked.has(d.lastErrorUrl)) this.unusable.set(d.lastErrorUrl, d.lastError ?? 'wrong URL');
        this.emit('status', this.status());
      });
    }
  }

  private slotUp(slot: TunnelSlot, link: Link, node: string | undefined): void {
    this.worked.add(slot.dialer.url);
    this.unusable.delete(slot.dialer.url);
    slot.link = link;
    slot.node = node;
    const other = this.slots.find((s) => s !== slot && s.isUp);
    if (node !== undefined && other?.node === node) {
      // Both tunnels on one node: that node's death would take both. The one that just came
      // (the other carries traffic, its streams and ports) leaves and tries the next URL (a load
      // balancer's next pick), waiting longer each time it lands there again. Not announced as up.
      const delay = Math.round(this.sameNode.next());
      slot.note = `reached relay node ${node}, which the other tunnel is on; trying another node in ${delay} ms`;
      this.opts.logger.info('both tunnels reached one relay node; the second tries another', { node, slot: slot.index, retryInMs: delay });
      return slot.dialer.moveOn(slot.note, delay);
    } else if (node !== undefined && other?.node !== undefined) {
      this.sameNode.reset();
      for (const s of this.slots) s.note = undefined;
    } else {
      slot.note = undefined;
    }
    this.announceOn(link, 'add', this.opts.registeredNames());
    this.opts.logger.info('tunnel up', { relay: slot.dialer.url, ...(node !== undefined ? { node } : {}), ...(this.slots.length > 1 ? { slot: slot.index } : {}) });
    slot.announced = true;
    this.emit('slotUp', slot.index, slot);
    if (!this.up) {
      this.up = true;
      this.emit('up');
    }
  }

  /** The tunnel sends go on: the lowest slot that is up. */
  private primary(): TunnelSlot | undefined {
    return this.slots.find((s) => s.isUp);
  }

  get connected(): boolean {
    return this.slots.some((s) => s.isUp);
  }

  /** Tunnel `slot` is up (and told as up: slotUp). */
  isSlotUp(slot: number): boolean {
    return this.slots[slot]?.isUp ?? false;
  }

  /** The slot send() goes on now (undefined while every tunnel is down). */
  get sendingSlot(): number | undefined {
    return this.primary()?.index;
  }

  /** The tunnel's keepalive: heartbeat or adaptive once the relay took the capabilities up (PROTOCOL.md 12.2, 12.1); fixed while down. */
  get keepaliveMode(): 'heartbeat' | 'adaptive' | 'fixed' {
    return this.primary()?.link?.keepaliveMode ?? 'fixed';
  }

  get bufferedAmount(): number {
    return this.primary()?.link?.bufferedAmount ?? 0;
  }

  /** The relay URL tunnel `slot` is connected to (or dials next). */
  urlOf(slot: number): string {
    return (this.slots[slot] ?? this.slots[0]!).dialer.url;
  }

  /** The link sends go on now (the benchmarks read its socket's wire counters). */
  get currentLink(): Link | undefined {
    return this.primary()?.link;
  }

  /**
   * Relay URLs found unusable: each failed in a way retrying cannot fix (a wrong path, scheme or
   * host: dial-failure.ts `url`) and never carried a tunnel. URL -> why.
   */
  get unusableUrls(): ReadonlyMap<string, string> {
    return this.unusable;
  }

  /** How many tunnels it holds at most: 2 with two or more relay URLs, else 1. */
  get slotCount(): number {
    return this.slots.length;
  }

  start(): void {
    for (const s of this.slots) s.dialer.start();
  }

  stop(): void {
    this.rolling?.();
    for (const s of this.slots) s.dialer.stop();
  }

  /**
   * Drops the tunnels and dials at once, skipping the backoff (admin `tunnel:reconnect`). With two
   * tunnels up, one at a time: first the one sends do not go on, then the other once the first is
   * back (see RECONNECT_ROLL_TIMEOUT_MS), so the office stays reachable throughout. A tunnel that
   * is down dials at once.
   */
  reconnectNow(): void {
    this.rolling?.();
    const up = this.slots.filter((s) => s.isUp);
    if (up.length < 2) {
      for (const s of this.slots) s.dialer.reconnectNow();
      return;
    }
    const [carrying, first] = up as [TunnelSlot, TunnelSlot];
    const onUp = (slot: number): void => {
      if (slot !== first.index) return;
      done();
      carrying.dialer.reconnectNow();
    };
    const timer = setTimeout(() => {
      done();
      this.opts.logger.warn('reconnect: a tunnel did not come back in time; the other is left up', { slot: first.index, kept: carrying.index, waitedMs: RECONNECT_ROLL_TIMEOUT_MS });
    }, RECONNECT_ROLL_TIMEOUT_MS);
    timer.unref();
    const done = (): void => {
      clearTimeout(timer);
      this.off('slotUp', onUp);
      this.rolling = undefined;
    };
    this.rolling = done;
    this.on('slotUp', onUp);
    first.dialer.reconnectNow();
  }

  /** Sends one frame down a tunnel; false (dropped) while every tunnel is down. */
  send(frame: Buffer): boolean {
    return this.primary()?.send(frame) ?? false;
  }

  /** Sends on tunnel `slot` (an ACK goes back the way its message came), or on another while that one is down. */
  sendOn(slot: number, frame: Buffer): boolean {
    const s = this.slots[slot];
    return s?.isUp ? s.send(frame) : this.send(frame);
  }

  /** STREAM_DATA without joining head and body first (Link.sendParts); false while down. */
  sendParts(head: Buffer, body: Buffer, offset: number, length: number): boolean {
    return this.primary()?.sendParts(head, body, offset, length) ?? false;
  }

  /** The tunnel is a client link, which copies (masks) every body it sends; nothing is kept while down. */
  get copiesBodies(): boolean {
    return this.primary()?.copiesBodies ?? true;
  }

  /** Runs `fn` once the tunnel's socket has drained (at once when it is not congested, or down). */
  whenWritable(fn: () => void): void {
    const p = this.primary();
    if (p) p.whenWritable(fn);
    else setImmediate(fn);
  }

  /** Tell the relay which peers this contact point now represents (or no longer does), on every tunnel. */
  announce(op: 'add' | 'remove', names: readonly string[]): void {
    for (const s of this.slots) if (s.link) this.announceOn(s.link, op, names); // the full list goes out on the next connect
  }

  private announceOn(link: Link, op: 'add' | 'remove', names: readonly string[]): void {
    for (let i = 0; i < names.length; i += MAX_PEERS_PER_ANNOUNCE) {
      link.sendControl(FrameType.PEERS, { op, names: names.slice(i, i + MAX_PEERS_PER_ANNOUNCE) });
    }
  }

  status(): TunnelView {
    // The tunnel shown is the one sends go on, else slot 0; counters are every tunnel's.
    const main = this.primary() ?? this.slots[0]!;
    const d = main.dialer.status();
    const live = main.link?.stats;
    const state = (x: DialerStatus): TunnelState => (x.state === 'idle' || x.state === 'stopped' ? 'offline' : x.state);
    const sum = (k: 'bytesIn' | 'bytesOut' | 'framesIn' | 'framesOut'): number => this.slots.reduce((n, s) => n + s.totals[k] + (s.link?.stats[k] ?? 0), 0);
    return {
      state: state(d),
      stateSince: d.stateSince,
      everConnected: this.slots.some((s) => s.dialer.status().everConnected),
      relayUrl: d.url,
      session: d.session,
      connectedAt: d.connectedAt,
      lastError: d.lastError ?? this.lastFault?.error,
      lastErrorAt: d.lastError !== undefined ? d.lastErrorAt : this.lastFault?.at,
      lastErrorKind: d.lastError !== undefined ? d.lastErrorKind : this.lastFault?.kind,
      nextRetryAt: d.nextRetryAt,
      idInUse: d.idInUse,
      reconnects: this.slots.reduce((n, s) => n + s.dialer.status().reconnects, 0),
      rttMs: live?.rttMs,
      bytesIn: sum('bytesIn'),
      bytesOut: sum('bytesOut'),
      framesIn: sum('framesIn'),
      framesOut: sum('framesOut'),
      peersServed: this.opts.registeredNames().length,
      keepaliveMs: this.opts.timing.pingIntervalMs,
      ...(main.link ? { keepalive: { mode: main.link.keepaliveMode, noticeIdleMs: main.link.keepaliveNotice.idleMs, noticeBusyMs: main.link.keepaliveNotice.busyMs } } : {}),
      proxy: d.proxy,
      ...(main.node !== undefined ? { node: main.node } : {}),
      ...(this.slots.length > 1
        ? {
            tunnels: this.slots.map((s) => {
              const x = s.dialer.status();
              return { slot: s.index, state: state(x), relayUrl: x.url, node: s.isUp ? s.node : undefined, note: s.note ?? (s.isUp ? undefined : (x.idInUse ?? x.lastError)) };
            }),
          }
        : {}),
    };
  }
}
