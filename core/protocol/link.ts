import type { Socket } from 'node:net';
import { WebSocket, type RawData } from 'ws';
import { FrameSlabs } from './frame-slabs.js';
import { framePieces, wsFrame, wsHeaderLength } from './ws-frame.js';
import { LINK_SLOT, type ServerWebSocket } from './ws-server.js';
import { batchLength, decodeFrame, encodeControl, putFill, splitBatch, writeBatch, type Frame, type FrameFill } from './codec.js';
import { ProtocolError } from './errors.js';
import { FrameType, type ControlBodies, type ControlType } from './frames.js';
import {
  ADAPTIVE_BUSY_PING_MS,
  ADAPTIVE_BUSY_PONG_TIMEOUT_MS,
  ADAPTIVE_BUSY_TICK_MS,
  ADAPTIVE_IDLE_PINGS,
  ADAPTIVE_IDLE_TICK_MS,
  ADAPTIVE_OWED_FORGET_MS,
  ADAPTIVE_SILENCE_SLACK_MS,
  BATCH_FRAME_MAX_BYTES,
  BATCH_MAX_BYTES,
  HEARTBEAT_CLIENT_PINGS,
  HEARTBEAT_CLIENT_TICK_MS,
  HEARTBEAT_GRACE_MS,
  HEARTBEAT_PINGS,
  HEARTBEAT_SERVER_TICK_MS,
  MAX_UNREAD_BYTES,
  PING_INTERVAL_MS,
  PONG_TIMEOUT_MS,
} from './limits.js';
import { closeCodeFor, describeStatus, Status, statusFromCloseCode, type StatusCode } from './status.js';
import type { Logger } from '../runtime/logger.js';

export interface LinkHandler {
  /** One decoded frame. Throwing a ProtocolError faults the link with that code. */
  onFrame(frame: Frame): void;
  onClose(info: CloseInfo): void;
}

export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
  /** our status code when the close carried one (4000 + status) */
  readonly status: number | undefined;
  /** true when we closed it (fault, stop), false when the other side or the network did */
  readonly local: boolean;
}

export interface LinkOptions {
  /** 'client' pings on an interval and measures round trips; 'server' only watches for silence. */
  readonly role: 'client' | 'server';
  readonly logger: Logger;
  /** names the link in logs */
  readonly label: string;
  /**
   * The far end's `host:port` goes after `label` when the label is read (a server's links: one
   * options object can then serve them all, where a label of its own cost each LAN peer or
   * tunnel its options object and string, ~100 B).
   */
  readonly labelRemote?: boolean;
  readonly pingIntervalMs?: number;
  readonly pongTimeoutMs?: number;
  /**
   * 'server': also send a timestamped ping this often (the first one at the first check), to
   * measure the round trip for status views. Undefined: a server never pings.
   */
  readonly rttPingMs?: number;
  /**
   * Server role: run this link's keepalive check from a timer shared with its siblings (built
   * with checkEveryMs() of the same ping interval and pong timeout) instead of one of its own.
   */
  readonly sweep?: KeepaliveSweep;
}

/** How often a link with fixed keepalive checks its timers. */
export function checkEveryMs(pingIntervalMs: number, pongTimeoutMs: number): number {
  return Math.min(pingIntervalMs, pongTimeoutMs) / 2;
}

/**
 * A keepalive tick that fires this much later than it was due found its own process stalled
 * (GC, a long callback, a starved CPU): what it reads as the peer's silence may be data still
 * unread in the socket, since timers run before the poll phase that would read it. Such a tick
 * does not drop a link; the next one, after a poll phase, decides. Never two ticks in a row, so
 * a process that is late at every tick still drops dead links, one tick later.
 */
export const TICK_LATE_MS = 50;

/** The fixed keepalive's ticks, every `everyMs`: each says whether it came late (TICK_LATE_MS) and may spare. */
class FixedTicks {
  private lastAt = Date.now();
  /** the last tick spared a link it would have dropped (so this one may not) */
  private spared = false;

  constructor(private readonly everyMs: number) {}

  /** One tick: `check(mayWait)` returns whether it spared a link. */
  tick(check: (mayWait: boolean) => boolean): void {
    const now = Date.now();
    const mayWait = !this.spared && now - this.lastAt > this.everyMs + TICK_LATE_MS;
    this.lastAt = now;
    this.spared = check(mayWait);
  }
}

/**
 * One timer for the fixed keepalive of many server-role links (a peer port's thousands of LAN
 * peers, a relay's sessions), instead of one timer each. It runs while it has links: the last
 * link closing stops it, so an owner that closes its links leaves nothing running.
 */
export class KeepaliveSweep {
  private readonly links = new Set<Link>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly everyMs: number) {}

  get size(): number {
    return this.links.size;
  }

  /** whether its timer runs (it does while it has links) */
  get running(): boolean {
    return this.timer !== undefined;
  }

  add(link: Link): void {
    this.links.add(link);
    if (this.timer) return;
    const ticks = new FixedTicks(this.everyMs);
    const checkAll = (mayWait: boolean): boolean => {
      let spared = false;
      for (const l of this.links) if (l.check(mayWait)) spared = true;
      return spared;
    };
    this.timer = setInterval(() => ticks.tick(checkAll), this.everyMs);
    this.timer.unref();
  }

  delete(link: Link): void {
    if (!this.links.delete(link) || this.links.size > 0 || !this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

export interface LinkStats {
  bytesIn: number;
  bytesOut: number;
  framesIn: number;
  framesOut: number;
  /** ws messages that were BATCHes (PROTOCOL.md 3.3), each of several of the frames counted above */
  batchesIn: number;
  batchesOut: number;
  rttMs: number | undefined;
  readonly openedAt: number;
}

/**
 * Bytes corked in one event-loop turn after which a link flushes at the end of the current
 * callback rather than after the poll phase (see Link). A bulk STREAM_DATA frame (up to 64 KiB)
 * or a socket read's worth of 1 KiB messages reaches it; a few small requests do not.
 */
export const FLUSH_AFTER_BYTES = 16 * 1024;

/**
 * The adaptive keepalive's timers for a link with ping interval `pingIntervalMs` and pong timeout
 * `pongTimeoutMs` (PROTOCOL.md 12.1), and with the heartbeat on top (12.2) when `heartbeat`.
 */
export interface AdaptiveTimers {
  readonly heartbeat: boolean;
  /** client, nothing waiting: ping after this much silence (heartbeat: after this long without sending anything) */
  readonly idlePingMs: number;
  /** server, nothing waiting: drop a client silent this long */
  readonly silenceLimitMs: number;
  /** heartbeat: the server sends one after this long without sending anything (0: no heartbeat) */
  readonly beatMs: number;
  /** heartbeat: the client pings once it heard nothing this long, and gives up after busyPongTimeoutMs */
  readonly lateMs: number;
  /** the server's check interval while nothing waits (heartbeat: it times the heartbeats) */
  readonly serverIdleTickMs: number;
  /** either end, MSGs waiting for their ACK: ping after this much silence */
  readonly busyPingMs: number;
  /** MSGs waiting: a ping unanswered this long means the link is dead */
  readonly busyPongTimeoutMs: number;
  /** check interval while ACKs or a pong are awaited */
  readonly busyTickMs: number;
  /** the client's check interval otherwise (and the server's, without heartbeat) */
  readonly idleTickMs: number;
  /**
   * Worst case from the moment the far end goes silent to the moment this end drops the link:
   * while MSGs wait for their ACK (busy), and when nothing waits (idle; client end / server end).
   */
  readonly noticeBusyMs: number;
  readonly noticeIdleClientMs: number;
  readonly noticeIdleServerMs: number;
}

export function adaptiveTimers(pingIntervalMs = PING_INTERVAL_MS, pongTimeoutMs = PONG_TIMEOUT_MS, heartbeat = false): AdaptiveTimers {
  const busyPingMs = Math.min(ADAPTIVE_BUSY_PING_MS, pingIntervalMs);
  const busyPongTimeoutMs = Math.min(ADAPTIVE_BUSY_PONG_TIMEOUT_MS, pongTimeoutMs);
  const busyTickMs = Math.min(ADAPTIVE_BUSY_TICK_MS, pingIntervalMs / 2);
  // silence reaches the ping threshold, a check sees it, the pong deadline passes, a check sees that
  const noticeBusyMs = busyPingMs + busyTickMs + busyPongTimeoutMs + busyTickMs;
  if (!heartbeat) {
    const idlePingMs = ADAPTIVE_IDLE_PINGS * pingIntervalMs;
    const silenceLimitMs = idlePingMs + pongTimeoutMs + ADAPTIVE_SILENCE_SLACK_MS;
    const idleTickMs = Math.min(ADAPTIVE_IDLE_TICK_MS, pingIntervalMs / 2);
    return {
      heartbeat,
      idlePingMs,
      silenceLimitMs,
      beatMs: 0,
      lateMs: 0,
      serverIdleTickMs: idleTickMs,
      busyPingMs,
      busyPongTimeoutMs,
      busyTickMs,
      idleTickMs,
      noticeBusyMs,
      noticeIdleClientMs: idlePingMs + idleTickMs + pongTimeoutMs + busyTickMs,
      noticeIdleServerMs: silenceLimitMs + idleTickMs,
    };
  }
  const beatMs = HEARTBEAT_PINGS * pingIntervalMs;
  const serverIdleTickMs = Math.min(HEARTBEAT_SERVER_TICK_MS, pingIntervalMs / 2);
  // The server's heartbeat goes out at most a tick after beatMs of its silence.
  const lateMs = beatMs + serverIdleTickMs + HEARTBEAT_GRACE_MS;
  const idleTickMs = Math.min(HEARTBEAT_CLIENT_TICK_MS, pingIntervalMs / 4);
  const idlePingMs = HEARTBEAT_CLIENT_PINGS * pingIntervalMs;
  const silenceLimitMs = idlePingMs + pongTimeoutMs + ADAPTIVE_SILENCE_SLACK_MS;
  return {
    heartbeat,
    idlePingMs,
    silenceLimitMs,
    beatMs,
    lateMs,
    serverIdleTickMs,
    busyPingMs,
    busyPongTimeoutMs,
    busyTickMs,
    idleTickMs,
    noticeBusyMs,
    // the client: nothing heard for lateMs, a check sees it and pings, the short deadline passes, a check sees that
    noticeIdleClientMs: lateMs + idleTickMs + busyPongTimeoutMs + idleTickMs,
    noticeIdleServerMs: silenceLimitMs + serverIdleTickMs,
  };
}

/** An adaptive client's ping payload: its last round trip in whole microseconds, uint32 BE (0: none yet). */
function rttPayload(rttMs: number | undefined): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(rttMs === undefined ? 0 : Math.min(0xffffffff, Math.max(1, Math.round(rttMs * 1000))));
  return b;
}

/**
 * The buffers large frames (a BATCH of many frames, a sealed bundle) are written from, reused once
 * their socket has written them (its write callback). A busy link sends a batch of up to ~40 KiB
 * every loop turn; a new buffer each time is memory outside V8's heap that the GC counts and
 * collects, and that churn makes it collect more often. Large enough for a sealed bundle
 * (BUNDLE_MAX_BYTES of entries, PROTOCOL.md 19.6, plus its headers): at 48 KiB a sender's
 * closed loop wrote most of its ~55 KiB bundles through ws, which masks each into a new buffer,
 * and that memory outside the heap (~1 KiB per message) is what started its mark-compacts
 * ("external memory pressure", every 30-50 ms). A frame that does not fit gets a buffer of its
 * own. At most BATCH_BUFFERS_KEPT wait for reuse (per process: 16 x 72 KiB). Frames of up to
 * SMALL_FRAME_BYTES are carved from smallFrames' slabs instead (frame-slabs.ts).
 */
const BATCH_BUFFER_BYTES = 72 * 1024;
/** the longest ws frame header: 2 bytes, a 64-bit length, a mask key */
const WS_HEADER_MAX_BYTES = 14;
const BATCH_BUFFERS_KEPT = 16;
const batchBuffers: Buffer[] = [];
/** A whole ws frame (header included) up to this size is carved from a slab of smallFrames. */
const SMALL_FRAME_BYTES = 8 * 1024;
/** per process: 64 KiB slabs, at most 8 free ones kept (512 KiB) */
const smallFrames = new FrameSlabs(64 * 1024, SMALL_FRAME_BYTES, 8);

/** How many slabs writeFrame has made: how often none was free to reuse (tests). */
export function frameBufferCounts(): { slabsMade: number } {
  return { slabsMade: smallFrames.made };
}

/**
 * adaptiveTimers() made once per setting and shared by the links that use it: a relay's
 * tunnels all have the same (a 128-byte object each, per office, before). A handful of settings
 * exist in a process; the cache starts over past 64.
 */
const timersCache = new Map<string, AdaptiveTimers>();
function sharedAdaptiveTimers(pingIntervalMs: number, pongTimeoutMs: number, heartbeat: boolean): AdaptiveTimers {
  const key = `${pingIntervalMs}/${pongTimeoutMs}/${heartbeat}`;
  let t = timersCache.get(key);
  if (t === undefined) {
    if (timersCache.size >= 64) timersCache.clear();
    t = Object.freeze(adaptiveTimers(pingIntervalMs, pongTimeoutMs, heartbeat));
    timersCache.set(key, t);
  }
  return t;
}

/**
 * What a link's probe callers and its batch hold while there are none, shared by every link (an
 * empty array each costs a contact point 32 B per LAN peer, a relay as much per tunnel). Frozen:
 * they are replaced, never pushed to, while they are this.
 */
const NOTHING = Object.freeze([]) as unknown as never[];
type LinkedWs = WebSocket & { [LINK_SLOT]: Link };

/**
 * The WebSocket a Link runs on: ws's on a client, or on the relay and the peer port the server
 * end of ws-server.ts, which offers the same members under the same names (what the Link uses of them).
 */
export type LinkWebSocket = WebSocket | ServerWebSocket;

/**
 * After a peer's frame was handled: a peer with more than MAX_UNREAD_BYTES of ours unread that
 * still sends is cut off (SLOW_CONSUMER), so what we answer it cannot pile up without end. For
 * the links of peers (the peer port's, a relay's or direct listener's external peers), not a
 * tunnel, whose streams may hold more in flight by their windows.
 */
export function closeIfNotReading(link: Link): void {
  if (link.bufferedAmount > MAX_UNREAD_BYTES) link.fault(Status.SLOW_CONSUMER, `more than ${MAX_UNREAD_BYTES >> 20} MiB sent to it unread while it keeps sending`);
}

/** A faulted link's handler: frames that still arrive are dropped; the close reaches the handler it had. */
class Faulted implements LinkHandler {
  constructor(private readonly was: LinkHandler | undefined) {}

  onFrame(): void {}

  onClose(info: CloseInfo): void {
    this.was?.onClose(info);
  }
}

/** ws close reasons are limited to 123 bytes (RFC 6455 §5.5). */
const CLOSE_REASON_BYTES = 123;

/**
 * `reason` cut to CLOSE_REASON_BYTES of UTF-8, at a character's end. The reason may come from
 * the far end (a schema error names the unknown key it sent), so the work is linear in its
 * length: cutting a character at a time from the whole string and measuring it again each
 * time held the event loop 0.7 s for one 64 KiB HELLO, before any proof.
 */
export function clip(reason: string): string {
  if (Buffer.byteLength(reason) <= CLOSE_REASON_BYTES) return reason;
  // A character is at least one byte: no more than CLOSE_REASON_BYTES of them fit.
  let r = reason.slice(0, CLOSE_REASON_BYTES);
  while (Buffer.byteLength(r) > CLOSE_REASON_BYTES || isHighSurrogate(r.charCodeAt(r.length - 1))) r = r.slice(0, -1);
  return r;
}

/** The first half of a UTF-16 surrogate pair: cut after it, it would be a broken character. */
function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

/**
 * One ws connection carrying our frames, on either end. It owns the keepalive timers, turns
 * peer faults into an ERROR frame plus a 4000+code close, and coalesces the frames written in
 * one event-loop turn into one socket write (cork until setImmediate): at tens of thousands of
 * small frames a second the write syscalls, not the bytes, are what cost (many connections'
 * small frames, e.g. the HTTP requests of 32 keep-alive connections through an exposure, then
 * share one write). Once a turn has corked FLUSH_AFTER_BYTES, the link flushes at the end of
 * the current callback instead (process.nextTick), so a relay or contact point passes on each
 * big chunk it has read while the next hop is already working on the previous one, instead of
 * storing and forwarding everything that arrived in that turn.
 */
export class Link {
  readonly stats: LinkStats;
  private handler: LinkHandler | undefined;
  private corked = false;
  /** bytes sent since the socket was corked */
  private corkedBytes = 0;
  /** a flush is queued for the end of the current callback */
  private flushSoon = false;
  /** a flush is queued for after the poll phase */
  private flushQueued = false;
  private closed = false;
  private localClose = false;
  private keepalive: NodeJS.Timeout | undefined;
  private lastHeard = Date.now();
  private pingSentAt = 0;
  /** adaptive keepalive (PROTOCOL.md 12.1) taken up by both ends; fixed-interval pings otherwise */
  private adaptive = false;
  /** MSGs sent on this link whose ACK has not come back on it */
  private owed = 0;
  /** a MSG was sent since the last keepalive check (when the last one was sent, to the check's precision) */
  private msgSent = false;
  private lastMsgAt = 0;
  /** performance.now() of the adaptive ping in flight, for the round trip */
  private pingSentPerf = 0;
  /** adaptive: how long the ping in flight may go unanswered (a busy or late link shortens it) */
  private pingWaitMs = 0;
  /** heartbeat (PROTOCOL.md 12.2): something was sent since the last check, and when the last one was (to the check's precision) */
  private sentSince = false;
  private lastSentAt = 0;
  private timers: AdaptiveTimers | undefined;
  /** adaptive: when the keepalive tick is due (a late one finds this process stalled: TICK_LATE_MS) */
  private tickDueAt = 0;
  /** adaptive: the last tick spared the link for coming late (so this one may not) */
  private spared = false;
  private readonly pingIntervalMs: number;
  private readonly pongTimeoutMs: number;
  /** probe() callers waiting for a sign of life */
  private probes: ((alive: boolean) => void)[] = NOTHING;
  /** when the last round-trip ping went out (server role with rttPingMs) */
  private rttPingAt = 0;
  /** both ends speak BATCH (PROTOCOL.md 3.3): frames sent in one turn go out together */
  private batching = false;
  /** frames of this turn waiting to go out as one BATCH (batching on) */
  private batch: (Buffer | FrameFill)[] = NOTHING;
  /** their bytes */
  private batchBytes = 0;

  readonly ws: WebSocket;

  constructor(
    ws: LinkWebSocket,
    private readonly socket: Socket | undefined,
    private readonly opts: LinkOptions,
  ) {
    this.pingIntervalMs = opts.pingIntervalMs ?? PING_INTERVAL_MS;
    this.pongTimeoutMs = opts.pongTimeoutMs ?? PONG_TIMEOUT_MS;
    this.stats = { bytesIn: 0, bytesOut: 0, framesIn: 0, framesOut: 0, batchesIn: 0, batchesOut: 0, rttMs: undefined, openedAt: Date.now() };
    // Typed as ws's WebSocket from here on: a ServerWebSocket takes the same listeners (called
    // with itself as `this`) and has every member used below, under the same name and meaning.
    const w = (this.ws = ws as WebSocket);
    w.binaryType = 'nodebuffer';
    // w.close goes through the link (closeThroughLink: what was batched goes out first). The
    // listeners are shared by every link (ws calls them with the ws as `this`, which knows its
    // link): a function object per link and listener cost a contact point ~0.5 KB per registered
    // peer, and a relay as much per tunnel (bench footprint).
    if ((w as Partial<LinkedWs>)[LINK_SLOT] !== undefined) throw new Error('this ws already carries a Link');
    (w as LinkedWs)[LINK_SLOT] = this;
    /* eslint-disable @typescript-eslint/unbound-method -- unbound on purpose: ws calls them with the ws as `this` */
    w.close = Link.closeThroughLink;
    w.on('message', Link.onWsMessage);
    w.on('pong', Link.onWsPong);
    w.on('ping', Link.onWsPing);
    w.on('close', Link.onWsClose);
    w.on('error', Link.onWsError);
    /* eslint-enable @typescript-eslint/unbound-method */
    if (opts.sweep) opts.sweep.add(this);
    else {
      const every = checkEveryMs(this.pingIntervalMs, this.pongTimeoutMs);
      const ticks = new FixedTicks(every);
      const check = (mayWait: boolean): boolean => this.check(mayWait);
      this.keepalive = setInterval(() => ticks.tick(check), every);
      this.keepalive.unref();
    }
  }

  get label(): string {
    return this.opts.labelRemote ? `${this.opts.label}${this.remote ?? '?'}` : this.opts.label;
  }

  /** The far end's address as `host:port` (`[v6]:port`), if the link has a socket. */
  get remote(): string | undefined {
    const s = this.socket;
    if (!s?.remoteAddress) return undefined;
    return `${s.remoteFamily === 'IPv6' ? `[${s.remoteAddress}]` : s.remoteAddress}:${s.remotePort ?? '?'}`;
  }

  /**
   * Is the far end alive? Sends a ws ping (every ws implementation answers it) and resolves
   * true on the pong or any other traffic within `timeoutMs`, false on silence or close.
   */
  probe(timeoutMs: number): Promise<boolean> {
    if (!this.isOpen) return Promise.resolve(false);
    return new Promise((resolve) => {
      const settle = (alive: boolean): void => {
        clearTimeout(timer);
        const left = this.probes.filter((p) => p !== settle);
        this.probes = left.length > 0 ? left : NOTHING;
        resolve(alive);
      };
      const timer = setTimeout(() => settle(false), timeoutMs);
      timer.unref();
      this.probes = [...this.probes, settle];
      this.ws.ping();
    });
  }

  /**
   * Switch to the adaptive keepalive (PROTOCOL.md 12.1), once both ends said they speak it (a
   * client passes the server's ping interval from WELCOME). While
   * MSGs sent here wait for their ACK, either end pings after a second of silence and gives up
   * 2.5 s later; otherwise only the client pings, after two ping intervals of silence, carrying
   * its last round trip so the server can show it without pinging itself; the server drops a
   * client silent for longer than that plus a pong timeout and some slack (adaptiveTimers()).
   *
   * With `heartbeat` (both ends listed capability `heartbeat`, PROTOCOL.md 12.2) the idle link is
   * turned around: the server sends an empty ws pong after 2.5 ping intervals of sending nothing,
   * which the client's kernel ACKs and nobody answers (two TCP segments, where a ping answered is
   * three); the client pings only when that heartbeat is overdue (and gives up after 2.5 s), or
   * after 20 ping intervals of sending nothing so the server hears from it.
   */
  adaptiveKeepalive(serverPingIntervalMs?: number, heartbeat = false): void {
    if (this.adaptive || this.closed) return;
    this.adaptive = true;
    this.opts.sweep?.delete(this);
    // A client follows the server's interval when it is shorter (WELCOME.limits.pingIntervalMs), so
    // its idle pings come before the server's silence limit and it expects heartbeats at the
    // server's pace; a shorter interval of its own makes it ping sooner than the heartbeats come.
    this.timers = sharedAdaptiveTimers(Math.min(this.pingIntervalMs, serverPingIntervalMs ?? Infinity), this.pongTimeoutMs, heartbeat);
    clearInterval(this.keepalive);
    // One ping at the start, so each end knows the round trip at once (later the client's pings carry it).
    this.ping(Date.now(), this.pongTimeoutMs);
    this.schedule();
  }

  /**
   * From now on, frames sent in one event-loop turn go out as one BATCH (PROTOCOL.md 3.3): called
   * once both ends said they speak it (capability `batch`; a server after its WELCOME, a client
   * on it). Needs the raw socket, whose cork marks the turn; without one frames go alone.
   */
  enableBatching(): void {
    if (this.socket && !this.closed) this.batching = true;
  }

  /** Whether frames are batched (status, tests). */
  get batchingOn(): boolean {
    return this.batching;
  }

  /**
   * How long this end takes at worst to notice a silent far end (status): `busyMs` while MSGs
   * wait for their ACK, `idleMs` when nothing waits. Fixed keepalive: two intervals and a pong
   * timeout either way.
   */
  get keepaliveNotice(): { readonly idleMs: number; readonly busyMs: number } {
    const t = this.timers;
    if (!t) return { idleMs: this.fixedSilenceLimitMs, busyMs: this.fixedSilenceLimitMs };
    return { idleMs: this.opts.role === 'client' ? t.noticeIdleClientMs : t.noticeIdleServerMs, busyMs: t.noticeBusyMs };
  }

  /** Fixed keepalive: a far end heard from not at all for this long is dead (check()). */
  private get fixedSilenceLimitMs(): number {
    return 2 * this.pingIntervalMs + this.pongTimeoutMs;
  }

  /** Whether the adaptive keepalive is on (status, tests). */
  get keepaliveMode(): 'heartbeat' | 'adaptive' | 'fixed' {
    return this.timers?.heartbeat ? 'heartbeat' : this.adaptive ? 'adaptive' : 'fixed';
  }

  private ping(now: number, waitMs: number): void {
    this.pingSentAt = now;
    this.pingWaitMs = waitMs;
    this.pingSentPerf = performance.now();
    this.lastSentAt = now;
    this.ws.ping(this.opts.role === 'client' ? rttPayload(this.stats.rttMs) : undefined);
  }

  private owe(): void {
    this.msgSent = true;
    // The first MSG waiting: check soon, not at the idle pace.
    if (this.owed++ === 0 && this.adaptive && this.pingSentAt === 0) this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    clearTimeout(this.keepalive);
    const t = this.timers!;
    const waiting = this.owed > 0 || this.pingSentAt !== 0;
    let ms: number;
    if (this.opts.role === 'server') ms = waiting ? t.busyTickMs : t.serverIdleTickMs;
    else if (waiting) ms = Math.min(t.busyTickMs, t.idleTickMs);
    // A heartbeat client wakes when the next heartbeat would be late, and at least every
    // serverIdleTickMs (1 s), which keeps its record of when it last sent that precise.
    else if (t.heartbeat) ms = Math.min(t.serverIdleTickMs, Math.max(1, this.lastHeard + t.lateMs - Date.now()));
    else ms = t.idleTickMs;
    this.tickDueAt = Date.now() + ms;
    this.keepalive = setTimeout(Link.adaptiveTickOf, ms, this); // no closure per link and tick
    this.keepalive.unref();
  }

  private adaptiveTick(): void {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return;
    const now = Date.now();
    const t = this.timers!;
    if (this.msgSent) {
      this.msgSent = false;
      this.lastMsgAt = now;
    }
    if (this.sentSince) {
      this.sentSince = false;
      this.lastSentAt = now;
    }
    // ACKs that never came (their senders gave up and retry with new MSGs) are not waited for forever.
    if (this.owed > 0 && now - this.lastMsgAt > ADAPTIVE_OWED_FORGET_MS) this.owed = 0;
    const busy = this.owed > 0;
    const silent = now - this.lastHeard;
    const client = this.opts.role === 'client';
    // heartbeat, client: the server's heartbeat is overdue
    const late = t.heartbeat && client && silent >= t.lateMs;
    // This tick came late: this process stalled, and what looks like silence may be unread (TICK_LATE_MS).
    const mayWait = !this.spared && now - this.tickDueAt > TICK_LATE_MS;
    this.spared = false;
    if (this.pingSentAt !== 0) {
      if (this.lastHeard >= this.pingSentAt) this.pingSentAt = 0; // answered, by the pong or other traffic
      else if (now - this.pingSentAt > (busy || late ? Math.min(this.pingWaitMs, t.busyPongTimeoutMs) : this.pingWaitMs)) {
        if (mayWait) return this.spare();
        this.opts.logger.info('link silent after ping; dropping it', { link: this.label, waitedMs: now - this.pingSentAt, waitingAcks: this.owed });
        this.terminate();
        return;
      }
    }
    if (this.pingSentAt === 0) {
      if (busy && silent >= t.busyPingMs) {
        this.ping(now, t.busyPongTimeoutMs);
      } else if (client && (late || (t.heartbeat ? now - this.lastSentAt >= t.idlePingMs : silent >= t.idlePingMs))) {
        // heartbeat: late, or for the server's sake (it hears nothing else from an idle client)
        this.ping(now, late ? t.busyPongTimeoutMs : this.pongTimeoutMs);
      } else if (!client && silent > t.silenceLimitMs) {
        if (mayWait) return this.spare();
        this.opts.logger.info('client silent; dropping it', { link: this.label });
        this.terminate();
        return;
      } else if (!client && t.heartbeat && now - this.lastSentAt >= t.beatMs) {
        // An unsolicited pong: the client's ws takes it as a sign of life and answers nothing (RFC 6455 5.5.3).
        this.lastSentAt = now;
        this.ws.pong();
      }
    }
    this.schedule();
  }

  /** adaptive: a late tick keeps the link it would drop; the next tick, soon, decides */
  private spare(): void {
    this.spared = true;
    clearTimeout(this.keepalive);
    this.tickDueAt = Date.now() + this.timers!.busyTickMs;
    this.keepalive = setTimeout(Link.adaptiveTickOf, this.timers!.busyTickMs, this);
    this.keepalive.unref();
  }

  get isOpen(): boolean {
    return !this.closed && this.ws.readyState === WebSocket.OPEN;
  }

  /** Bytes queued for this socket and not yet handed to the kernel (a batch still being filled included). */
  get bufferedAmount(): number {
    return this.ws.bufferedAmount + this.batchBytes;
  }

  setHandler(handler: LinkHandler): void {
    this.handler = handler;
  }

  send(frame: Buffer | FrameFill): boolean {
    if (!this.isOpen) return false;
    const length = frame.length;
    this.corkTurn(length);
    this.sentSince = true;
    if ((frame instanceof Uint8Array ? frame[0] : frame.type) === FrameType.MSG) this.owe();
    this.stats.bytesOut += length;
    this.stats.framesOut++;
    if (this.batching && length <= BATCH_FRAME_MAX_BYTES) {
      // Written when the turn's cork comes off (uncork), or now once the batch is full.
      if (this.batch === NOTHING) this.batch = [frame];
      else this.batch.push(frame);
      this.batchBytes += length;
      if (this.batchBytes >= BATCH_MAX_BYTES) this.flushBatch();
      return true;
    }
    this.flushBatch(); // frames keep their order
    if (!this.isOpen) return false; // a frame of that batch could not be written: the link is closing
    this.sendOne(frame);
    return true;
  }

  /**
   * One frame alone. A client masks what it sends, and ws masks into a new buffer per frame:
   * here the client writes it masked into a reused buffer instead (writeFrame), one buffer
   * less per message for the GC; a FrameFill (a MSG the SDK seals or encodes in place) is
   * written there directly, so it never has a buffer of its own. A server's frame goes through
   * ws, which writes it as it is.
   */
  private sendOne(frame: Buffer | FrameFill): void {
    const buffer = frame instanceof Uint8Array;
    if (this.opts.role === 'client' && this.socket && frame.length <= BATCH_BUFFER_BYTES - WS_HEADER_MAX_BYTES) {
      this.writeFrame(frame.length, buffer ? (o, at) => void frame.copy(o, at) : (o, at) => putFill(frame, o, at));
      return;
    }
    let bytes: Buffer;
    if (buffer) bytes = frame;
    else {
      bytes = Buffer.allocUnsafe(frame.length);
      try {
        putFill(frame, bytes, 0);
      } catch (err: unknown) {
        return this.writeFailed(err);
      }
    }
    this.ws.send(bytes, { binary: true, compress: false });
  }

  /**
   * Writes one ws frame of `length` payload bytes, which `fill` writes, between ws's own frames
   * on the same socket (as sendParts does): a small frame from a slab of smallFrames, a larger
   * one from a buffer of batchBuffers when it fits. Either goes back once the socket has
   * written it.
   */
  private writeFrame(length: number, fill: (out: Buffer, at: number) => void): void {
    const masked = this.opts.role === 'client';
    const size = wsHeaderLength(length, masked) + length;
    // Where the frame is written, and what gives that memory back once the socket wrote it.
    let into: Buffer | undefined;
    let written: (() => void) | undefined;
    if (size <= SMALL_FRAME_BYTES) {
      const slab = smallFrames.slabFor(size);
      into = smallFrames.carved(slab, size);
      written = slab.release;
    } else if (length <= BATCH_BUFFER_BYTES - WS_HEADER_MAX_BYTES) {
      const buffer = batchBuffers.pop() ?? Buffer.allocUnsafeSlow(BATCH_BUFFER_BYTES);
      into = buffer;
      written = () => void (batchBuffers.length < BATCH_BUFFERS_KEPT && batchBuffers.push(buffer));
    }
    let out: Buffer;
    try {
      out = wsFrame(length, masked, fill, into);
    } catch (err: unknown) {
      written?.();
      return this.writeFailed(err);
    }
    this.socket!.write(out, written);
  }

  /**
   * A FrameFill threw (a bug: it must check what it writes before it is made). Nothing of the
   * frame, or of the BATCH it was in, reached the socket; the link closes (1011) rather than
   * leave a gap in what the far end expects, and the frames' owners send them again on the next
   * link (a client's outbox does, as after any lost link).
   */
  private writeFailed(err: unknown): void {
    this.opts.logger.error('a frame could not be written; closing the link', { link: this.label, error: err instanceof Error ? err.message : String(err) });
    this.batch = NOTHING;
    this.batchBytes = 0;
    this.close(1011, 'internal error: a frame could not be written');
  }

  /** Writes the frames batched so far: one alone as it is, more as one BATCH. */
  private flushBatch(): void {
    const frames = this.batch;
    if (frames.length === 0) return;
    const bytes = this.batchBytes;
    this.batch = NOTHING;
    this.batchBytes = 0;
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (frames.length === 1) return this.sendOne(frames[0]!);
    this.stats.batchesOut++;
    // batching needs the socket
    this.writeFrame(batchLength(frames.length, bytes), (o, at) => writeBatch(o, at, frames));
  }

  /**
   * True when sendParts is done with `body` once it returns (it copies it: the client masks
   * into a new buffer, and a link without a raw socket joins head and body), so the caller may
   * reuse that memory at once. False on the server side, which writes the body as it is.
   */
  get copiesBodies(): boolean {
    return this.opts.role === 'client' || !this.socket;
  }

  /**
   * Sends the frame `head` + `body[offset, offset + length)` (STREAM_DATA) without first copying
   * it into one buffer: the ws frame is written here (ws-frame.ts), between ws's own frames on the
   * same socket, in order (ws writes at once too: no compression, nothing queued).
   */
  sendParts(head: Buffer, body: Buffer, offset: number, length: number): boolean {
    if (!this.isOpen) return false;
    const socket = this.socket;
    const total = head.length + length;
    if (!socket) return this.send(Buffer.concat([head, body.subarray(offset, offset + length)]));
    this.corkTurn(total);
    this.sentSince = true;
    this.flushBatch(); // frames keep their order
    for (const piece of framePieces(head, body, offset, length, this.opts.role === 'client')) socket.write(piece);
    this.stats.bytesOut += total;
    this.stats.framesOut++;
    return true;
  }

  private corkTurn(bytes: number): void {
    const socket = this.socket;
    if (!socket) return;
    if (!this.corked) {
      this.corked = true;
      this.corkedBytes = 0;
      socket.cork();
      if (!this.flushQueued) {
        this.flushQueued = true;
        setImmediate(Link.flushTurn, this);
      }
    }
    this.corkedBytes += bytes;
    if (!this.flushSoon && this.corkedBytes >= FLUSH_AFTER_BYTES) {
      this.flushSoon = true;
      process.nextTick(Link.uncorkLink, this);
    }
  }

  sendControl<T extends ControlType>(type: T, body: ControlBodies[T], channel = 0): boolean {
    return this.send(encodeControl(type, body, channel));
  }

  /**
   * Tell the other side what went wrong, with a stable code, then close. `logLevel` debug is for
   * closes made in bulk that are summed up elsewhere (a registration flood's evictions).
   */
  fault(code: StatusCode, detail?: string, logLevel: 'info' | 'debug' = 'info'): void {
    if (this.closed || this.handler instanceof Faulted) return;
    // The detail may quote what the far end sent: log and send at most 256 characters of it.
    const reason = (detail ?? describeStatus(code)).slice(0, 256);
    this.opts.logger[logLevel]('closing link', { link: this.label, status: code, reason });
    this.sendControl(FrameType.ERROR, { code, reason });
    this.close(closeCodeFor(code), reason);
    // Until the socket closes (the far end's answer, or the 1 s cut-off) nothing it sends is
    // handled: a refused HELLO's next HELLO is not checked again, a bad frame's followers do not
    // each fault and log again. The handler still hears the close.
    this.handler = new Faulted(this.handler);
  }

  close(code = 1000, reason = ''): void {
    if (this.closed) return;
    this.localClose = true;
    this.uncork();
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(code, clip(reason));
      // A peer that never answers the close handshake is cut off rather than waited for.
      setTimeout(() => this.ws.terminate(), 1_000).unref();
    }
  }

  /**
   * Run `fn` once this link can take more: at once when its socket is not congested, else on
   * the socket's next 'drain'. Stream senders use it to wait instead of buffering without end.
   */
  whenWritable(fn: () => void): void {
    const socket = this.socket;
    if (!socket || this.ws.bufferedAmount === 0 || this.closed) {
      setImmediate(fn);
      return;
    }
    socket.once('drain', fn);
  }

  /** Drop the connection without a close handshake (dead peer). */
  terminate(): void {
    this.localClose = true;
    this.ws.terminate();
  }

  private uncork(): void {
    this.flushSoon = false;
    if (!this.corked) return;
    this.flushBatch();
    this.corked = false;
    this.socket?.uncork();
  }

  private static adaptiveTickOf(this: void, link: Link): void {
    link.adaptiveTick();
  }

  private static uncorkLink(this: void, link: Link): void {
    link.uncork();
  }

  private static flushTurn(this: void, link: Link): void {
    link.flushQueued = false;
    link.uncork();
  }

  /**
   * ws's close(), called by ws itself too when it answers the far end's close frame (and on a
   * bad ws frame), at once, in the turn it reads it: frames batched earlier in that turn (the
   * ACKs of the MSGs read just before that close) go out first, not dropped after the close frame.
   */
  private static closeThroughLink(this: WebSocket, code?: number, data?: string | Buffer): void {
    (this as LinkedWs)[LINK_SLOT].flushBatch();
    // the class's own close (ws's, or ws-server.ts's), which the constructor shadowed
    (Object.getPrototypeOf(this) as { close(this: WebSocket, code?: number, data?: string | Buffer): void }).close.call(this, code, data);
  }

  private static onWsMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
    (this as LinkedWs)[LINK_SLOT].onMessage(data, isBinary);
  }

  private static onWsPing(this: WebSocket, data: Buffer): void {
    (this as LinkedWs)[LINK_SLOT].onPing(data);
  }

  private static onWsPong(this: WebSocket, data: Buffer): void {
    (this as LinkedWs)[LINK_SLOT].onPong(data);
  }

  private static onWsClose(this: WebSocket, code: number, reason: Buffer): void {
    (this as LinkedWs)[LINK_SLOT].onClose(code, reason);
  }

  private static onWsError(this: WebSocket, err: Error): void {
    const link = (this as LinkedWs)[LINK_SLOT];
    link.opts.logger.debug('link error', { link: link.label, error: err.message });
  }

  private onPing(data: Buffer): void {
    // ws answers it with a pong by itself, now: something sent (the heartbeat's clock restarts)
    this.lastHeard = this.lastSentAt = Date.now();
    if (this.probes.length > 0) this.answerProbes(true);
    // An adaptive client's ping carries its round trip in microseconds (0: not measured yet).
    if (this.adaptive && this.opts.role === 'server' && data.length === 4) {
      const us = data.readUInt32BE(0);
      if (us > 0) this.stats.rttMs = us / 1000;
    }
  }

  private answerProbes(alive: boolean): void {
    for (const settle of [...this.probes]) settle(alive);
  }

  private onPong(data: Buffer): void {
    this.lastHeard = Date.now();
    if (this.probes.length > 0) this.answerProbes(true);
    if (this.adaptive) {
      // A client's pings carry 4 bytes that the pong echoes; an empty pong to a client is a heartbeat (12.2), not an answer.
      if (this.pingSentAt !== 0 && (this.opts.role === 'server' || data.length === 4)) this.stats.rttMs = performance.now() - this.pingSentPerf;
      return;
    }
    if (data.length === 8 && this.pingSentAt) {
      this.stats.rttMs = Number(process.hrtime.bigint() - data.readBigUInt64BE(0)) / 1e6;
      this.pingSentAt = 0;
    }
  }

  /** A ping payload: 8 bytes of monotonic nanoseconds, read back from the pong for the round trip. */
  private stamp(): Buffer {
    const stamp = Buffer.allocUnsafe(8);
    stamp.writeBigUInt64BE(process.hrtime.bigint());
    return stamp;
  }

  /**
   * The fixed keepalive's check (its own timer or a KeepaliveSweep runs it). `mayWait`: this
   * tick came late (TICK_LATE_MS), so a link it would drop is spared until the next; true when
   * one was.
   */
  check(mayWait = false): boolean {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN || this.adaptive) return false;
    const now = Date.now();
    if (this.opts.role === 'client') {
      if (this.pingSentAt && now - this.pingSentAt > this.pongTimeoutMs && this.lastHeard < this.pingSentAt) {
        if (mayWait) return true;
        this.opts.logger.info('link silent after ping; dropping it', { link: this.label, waitedMs: now - this.pingSentAt });
        this.terminate();
        return false;
      }
      if (!this.pingSentAt && now - this.lastHeard >= this.pingIntervalMs) {
        this.pingSentAt = now;
        this.ws.ping(this.stamp());
      } else if (this.pingSentAt && this.lastHeard >= this.pingSentAt && now - this.pingSentAt > this.pongTimeoutMs) {
        this.pingSentAt = 0; // traffic arrived though the pong did not: the link is alive
      }
    } else if (now - this.lastHeard > this.fixedSilenceLimitMs) {
      // Server side: a client pings every pingInterval; total silence means it is gone.
      if (mayWait) return true;
      this.opts.logger.info('client silent; dropping it', { link: this.label });
      this.terminate();
    } else if (this.opts.rttPingMs !== undefined && now - this.rttPingAt >= this.opts.rttPingMs) {
      // Only a measurement (status views): liveness stays the client's pings' business.
      this.rttPingAt = now;
      this.pingSentAt = now;
      this.ws.ping(this.stamp());
    }
    return false;
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    this.lastHeard = Date.now();
    if (this.probes.length > 0) this.answerProbes(true);
    if (this.closed || this.handler instanceof Faulted) return;
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    if (!isBinary) {
      this.fault(Status.MALFORMED_FRAME, 'text ws messages are not part of the protocol');
      return;
    }
    try {
      if (!this.handler) throw new ProtocolError(Status.PROTOCOL_VIOLATION, 'frame before the link was set up');
      const frame = decodeFrame(buf);
      if (frame.type !== FrameType.BATCH) return this.onFrame(frame);
      // Accepted whatever was agreed (PROTOCOL.md 3.3); checked whole before any frame of it is handled.
      const frames = splitBatch(frame);
      this.stats.batchesIn++;
      // A frame of it that faults or closes the link stops the rest; a close this end began
      // before (frames still arriving while the far end answers it) does not, as for a frame alone.
      const closing = this.localClose;
      for (const f of frames) {
        if (this.closed || this.localClose !== closing) return;
        this.onFrame(decodeFrame(f));
      }
    } catch (err: unknown) {
      if (err instanceof ProtocolError) {
        this.fault(err.code, err.message);
      } else {
        this.opts.logger.error('frame handler failed', { link: this.label, error: String(err instanceof Error ? err.stack : err) });
        this.fault(Status.INTERNAL, 'internal error');
      }
    }
  }

  private onFrame(frame: Frame): void {
    if (frame.type === FrameType.ACK && this.owed > 0) this.owed--;
    this.stats.bytesIn += frame.raw.length;
    this.stats.framesIn++;
    this.handler!.onFrame(frame);
  }

  private onClose(code: number, reasonBuf: Buffer): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepalive);
    clearTimeout(this.keepalive);
    this.opts.sweep?.delete(this);
    if (this.probes.length > 0) this.answerProbes(false);
    this.uncork();
    const info: CloseInfo = { code, reason: reasonBuf.toString('utf8'), status: statusFromCloseCode(code), local: this.localClose };
    this.handler?.onClose(info);
  }
}
