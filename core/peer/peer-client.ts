import { EventEmitter } from 'node:events';
import { parseAddress } from '../protocol/address.js';
import { decodeAck, decodeControl, decodeMsg, encodeAck, encodeMsg, type Frame, type MsgFrame } from '../protocol/codec.js';
import { Dialer, type DialerStatus } from '../protocol/dialer.js';
import { DeliveryError, ProtocolError } from '../protocol/errors.js';
import { CAPABILITY_REACHABLE, FLAG_RETRY, FrameType, frameTypeName, type LookupResultBody, type PeerState, type PresenceBody, type ReachableBody, type RegisterBody } from '../protocol/frames.js';
import {
  ACK_TIMEOUT_MAX_MS,
  ACK_TIMEOUT_MS,
  DEDUPE_WINDOW,
  DELIVERY_DEADLINE_MS,
  MAX_MESSAGE_BYTES,
  MAX_OUTBOX,
} from '../protocol/limits.js';
import type { Link } from '../protocol/link.js';
import { describeStatus, isRetryable, Status } from '../protocol/status.js';
import { resolveTiming, type TimingOptions } from '../protocol/timing.js';
import { OFFERED_VERSIONS } from '../protocol/version.js';
import { silentLogger, type Logger } from '../runtime/logger.js';
import { DedupeWindow } from './dedupe.js';
import { MessageIds } from './message-ids.js';
import type { PeerIdentity } from './identity.js';

export interface InboundMessage {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  /** the payload bytes, a view into the received frame (not copied) */
  readonly payload: Buffer;
  /** the MSG frame's flags: FLAG_RETRY (1) when the sender marked it a retransmission */
  readonly flags: number;
}

export interface Receipt {
  readonly id: string;
  readonly to: string;
  /** from first transmission to the receiver's acknowledgement */
  readonly elapsedMs: number;
  readonly attempts: number;
}

interface CommonOptions {
  /** ws URL: the relay for external peers, the contact point's peer port for internal ones */
  readonly url: string;
  /** external: the credential's id; internal: the peer name to register */
  readonly name: string;
  readonly logger?: Logger;
  readonly proxy?: string | null;
  readonly ca?: string | Buffer;
  /** keepalive, reconnect backoff, hello deadline (core/protocol/timing.ts); checked here, a bad value throws */
  readonly timing?: TimingOptions;
  readonly ackTimeoutMs?: number;
  readonly deliveryDeadlineMs?: number;
  readonly maxOutbox?: number;
  readonly dedupeWindow?: number;
  /** Runs for each new message; the ACK goes back when it returns (or its promise resolves). */
  readonly onMessage?: (msg: InboundMessage) => void | Promise<void>;
  /** Extension point (the operator SDK): frames other than messages; return true when handled. */
  readonly onOtherFrame?: (frame: Frame) => boolean;
}
export interface ExternalPeerOptions extends CommonOptions {
  readonly role: 'external';
  readonly secret: string;
}
export interface InternalPeerOptions extends CommonOptions {
  readonly role: 'peer';
  readonly identity: PeerIdentity;
}
export type PeerClientOptions = ExternalPeerOptions | InternalPeerOptions;

export interface PeerClientEvents {
  message: [InboundMessage];
  status: [DialerStatus];
  registration: [PeerState];
  error: [Error];
}

interface Pending {
  readonly id: string;
  readonly to: string;
  readonly payload: Buffer;
  readonly deadline: number;
  readonly resolve: (r: Receipt) => void;
  readonly reject: (e: DeliveryError) => void;
  attempts: number;
  firstSentAt: number;
  /** when to transmit again if no ACK came; 0 while waiting for a connection */
  dueAt: number;
  lastCode: number;
  lastReason: string;
}

/**
 * The peer SDK, for both sides of the firewall. External peers dial the relay with a
 * credential; internal peers dial their contact point's peer port and prove their key.
 *
 * Delivery is at-least-once: every message has an id and stays in a bounded outbox until its
 * ACK arrives; it is sent again on ACK timeout, after reconnecting, and (until the deadline)
 * after a transient refusal. Receivers remember recent (sender, id) pairs and re-ACK
 * duplicates without handing them to the application again.
 */
/** How long lookup() waits for the relay's answer by default (ms): the relay's own wait for a contact point plus a margin. */
export const LOOKUP_WAIT_MS = 8_000;

/** What a lookup answers (docs/PROTOCOL.md 9.7): the office's state, and the peer's unless hidden or unknown. */
export type LookupResult = Omit<LookupResultBody, 'req'>;

export class PeerClient extends EventEmitter<PeerClientEvents> {
  private readonly dialer: Dialer;
  private nextLookup = 1;
  private readonly lookups = new Map<number, { resolve: (r: LookupResult) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  /** presence subscriptions: address -> listeners (SUBSCRIBE is sent again after every reconnect) */
  private readonly presence = new Map<string, Set<(p: PresenceBody) => void>>();
  private readonly outbox = new Map<string, Pending>();
  private readonly dedupe: DedupeWindow;
  private readonly processing = new Set<string>();
  private readonly logger: Logger;
  private readonly ids = new MessageIds();
  private sweeper: NodeJS.Timeout | undefined;
  private link: Link | undefined;
  private addr: string | undefined;
  private state: PeerState | undefined;
  private maxMessageBytes = MAX_MESSAGE_BYTES;
  private readyWaiters: { resolve: () => void; reject: (e: Error) => void; failOn: readonly number[] }[] = [];
  private readonly ackTimeoutMs: number;
  private readonly deadlineMs: number;
  private readonly maxOutbox: number;
  private handler: ((m: InboundMessage) => void | Promise<void>) | undefined;
  /**
   * strayAcks: ACKs dropped because they did not come from the address the message was sent to
   * (forged, or misrouted); they neither complete nor fail a send.
   * reachable: REACHABLE frames received (a contact point we waited for is back).
   * unmatchedAcks: ACKs for no message in the outbox: a duplicate of one already settled (after
   * a retransmission), or an ACK meant for another session of this credential (a misroute).
   */
  readonly stats = { sent: 0, retransmits: 0, delivered: 0, received: 0, duplicates: 0, refused: 0, strayAcks: 0, unmatchedAcks: 0, reachable: 0 };

  constructor(private readonly opts: PeerClientOptions) {
    super();
    this.logger = opts.logger ?? silentLogger;
    this.dedupe = new DedupeWindow(opts.dedupeWindow ?? DEDUPE_WINDOW);
    this.ackTimeoutMs = opts.ackTimeoutMs ?? ACK_TIMEOUT_MS;
    this.deadlineMs = opts.deliveryDeadlineMs ?? DELIVERY_DEADLINE_MS;
    this.maxOutbox = opts.maxOutbox ?? MAX_OUTBOX;
    this.handler = opts.onMessage;
    const identity = opts.role === 'peer' ? opts.identity : undefined;
    this.dialer = new Dialer({
      url: opts.url,
      label: `${opts.role}:${opts.name}`,
      logger: this.logger,
      stopOnRejection: true,
      timing: resolveTiming(opts.timing),
      onFrame: (frame) => this.onFrame(frame),
      hello: () => ({
        versions: OFFERED_VERSIONS,
        role: opts.role,
        id: opts.name,
        ...(opts.role === 'external' ? { secret: opts.secret } : { publicKey: identity!.publicKey }),
        // `reachable`: this client understands REACHABLE (0x12), so servers may send it.
        env: { software: 'contact-point-sdk/0.1', capabilities: [CAPABILITY_REACHABLE] },
      }),
      ...(identity ? { sign: (nonce: string) => identity.signChallenge(opts.name, nonce) } : {}),
      ...(opts.proxy !== undefined ? { proxy: opts.proxy } : {}),
      ...(opts.ca ? { ca: opts.ca } : {}),
    });
    this.dialer.on('status', (s) => {
      this.emit('status', s);
      if (s.state === 'stopped' && s.lastError) this.failReady(new Error(s.lastError));
      else if (s.state === 'reconnecting' && s.lastErrorCode !== undefined && s.lastError) this.failReady(new Error(s.lastError), s.lastErrorCode);
    });
    this.dialer.on('up', (link, welcome) => {
      this.link = link;
      this.addr = welcome.address;
      this.maxMessageBytes = welcome.limits.maxMessageBytes;
      if (welcome.state) this.setRegistration(welcome.state);
      for (const w of this.readyWaiters.splice(0)) w.resolve();
      for (const address of this.presence.keys()) link.sendControl(FrameType.SUBSCRIBE, { op: 'add', address });
      this.flushOutbox();
    });
    this.dialer.on('down', () => {
      this.link = undefined;
      for (const p of this.outbox.values()) p.dueAt = 0;
    });
  }

  /** This peer's address once connected (`alice@relay`, `printer@acme-hq`). */
  get address(): string | undefined {
    return this.addr;
  }

  /** Internal peers: registration state at the contact point. */
  get registration(): PeerState | undefined {
    return this.state;
  }

  get connected(): boolean {
    return this.link?.isOpen ?? false;
  }

  /** The live link (for extensions that send their own frames), if connected. */
  get currentLink(): Link | undefined {
    return this.link;
  }

  get outboxSize(): number {
    return this.outbox.size;
  }

  status(): DialerStatus {
    return this.dialer.status();
  }

  start(): this {
    this.dialer.start();
    if (!this.sweeper) {
      this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.min(250, this.ackTimeoutMs / 4)));
      this.sweeper.unref();
    }
    return this;
  }

  /**
   * Resolves once connected (WELCOME received); rejects if the far side refuses us for good, or
   * refuses an attempt with one of the codes in `failOn` (e.g. SESSION_LIMIT, which the client
   * otherwise retries slowly: a one-shot command would rather say so at once).
   */
  ready(timeoutMs = 10_000, opts: { failOn?: readonly number[] } = {}): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not connected to ${this.opts.url} within ${timeoutMs} ms: ${this.dialer.status().lastError ?? 'no answer'}`)), timeoutMs);
      timer.unref();
      this.readyWaiters.push({
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
        failOn: opts.failOn ?? [],
      });
    });
  }

  async stop(): Promise<void> {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    this.dialer.stop();
    for (const p of this.outbox.values()) p.reject(new DeliveryError(Status.SHUTTING_DOWN, 'the client stopped before an acknowledgement arrived', p.id));
    this.outbox.clear();
    for (const [req, l] of this.lookups) {
      clearTimeout(l.timer);
      this.lookups.delete(req);
      l.reject(new Error('client stopped'));
    }
    this.failReady(new Error('client stopped'));
    await new Promise((r) => setImmediate(r));
  }

  /**
   * External peers: asks the relay what is known of `address` (docs/PROTOCOL.md 9.7): whether its
   * office is connected and whether the peer is online, offline, unregistered, or hidden from
   * this peer by the office's access rules.
   */
  lookup(address: string, timeoutMs = LOOKUP_WAIT_MS): Promise<LookupResult> {
    if (this.opts.role !== 'external') return Promise.reject(new Error('lookups are for external peers (the relay answers them)'));
    const link = this.link;
    if (!link) return Promise.reject(new Error('not connected'));
    const req = this.nextLookup;
    this.nextLookup = this.nextLookup >= 0xffffffff ? 1 : this.nextLookup + 1;
    return new Promise<LookupResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.lookups.delete(req);
        reject(new Error(`no answer to the lookup of ${address} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.lookups.set(req, { resolve, reject, timer });
      link.sendControl(FrameType.LOOKUP, { req, address });
    });
  }

  /**
   * External peers: `listener` hears the state of `address` now and every change after (PRESENCE),
   * across reconnects. Returns the unsubscribe.
   */
  subscribePresence(address: string, listener: (p: PresenceBody) => void): () => void {
    if (this.opts.role !== 'external') throw new Error('presence subscriptions are for external peers (the relay pushes them)');
    let set = this.presence.get(address);
    if (!set) {
      this.presence.set(address, (set = new Set()));
      this.link?.sendControl(FrameType.SUBSCRIBE, { op: 'add', address });
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size > 0 || this.presence.get(address) !== set) return;
      this.presence.delete(address);
      this.link?.sendControl(FrameType.SUBSCRIBE, { op: 'remove', address });
    };
  }

  /** Replace the message handler (the constructor's onMessage). Without one, 'message' events fire. */
  setMessageHandler(fn: ((m: InboundMessage) => void | Promise<void>) | undefined): void {
    this.handler = fn;
  }

  /** Internal peers: ask the contact point's admin to register this peer. */
  register(body: RegisterBody = {}): void {
    if (this.opts.role !== 'peer') throw new Error('only internal peers register with a contact point');
    if (!this.link) throw new Error('not connected');
    this.link.sendControl(FrameType.REGISTER, body);
  }

  /** Resolves when the registration reaches `state` (internal peers). */
  waitForRegistration(state: PeerState, timeoutMs = 10_000): Promise<void> {
    if (this.state === state) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onState = (s: PeerState): void => {
        if (s !== state) return;
        clearTimeout(timer);
        this.off('registration', onState);
        resolve();
      };
      const timer = setTimeout(() => {
        this.off('registration', onState);
        reject(new Error(`registration did not become ${state} within ${timeoutMs} ms (it is ${this.state ?? 'unknown'})`));
      }, timeoutMs);
      timer.unref();
      this.on('registration', onState);
    });
  }

  /**
   * Sends `data` to `to` and resolves when the receiver acknowledged it. Rejects with a
   * DeliveryError carrying the status code and reason: at once for permanent refusals, after
   * the deadline for transient ones (offline, rate limited, congested).
   */
  send(to: string, data: Uint8Array | string, opts: { deadlineMs?: number } = {}): Promise<Receipt> {
    const id = this.ids.next();
    const payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (!parseAddress(to)) return Promise.reject(new DeliveryError(Status.BAD_ADDRESS, `"${to}" is not name@domain`, id));
    if (payload.length > this.maxMessageBytes) {
      return Promise.reject(new DeliveryError(Status.TOO_LARGE, `${payload.length} bytes; the limit is ${this.maxMessageBytes}`, id));
    }
    if (this.outbox.size >= this.maxOutbox) {
      return Promise.reject(new DeliveryError(Status.QUEUE_FULL, `${this.outbox.size} messages await acknowledgement`, id));
    }
    return new Promise<Receipt>((resolve, reject) => {
      const p: Pending = {
        id,
        to,
        payload,
        deadline: Date.now() + (opts.deadlineMs ?? this.deadlineMs),
        resolve,
        reject,
        attempts: 0,
        firstSentAt: 0,
        dueAt: 0,
        lastCode: Status.CONTACT_POINT_OFFLINE,
        lastReason: 'not connected',
      };
      this.outbox.set(id, p);
      this.transmit(p);
    });
  }

  private transmit(p: Pending): void {
    const link = this.link;
    if (!link || !this.addr) return; // sent on the next WELCOME
    const now = Date.now();
    link.send(encodeMsg({ id: p.id, to: p.to, from: this.addr, payload: p.payload }, p.attempts > 0 ? FLAG_RETRY : 0));
    if (p.attempts === 0) {
      p.firstSentAt = now;
      this.stats.sent++;
    } else {
      this.stats.retransmits++;
    }
    p.attempts++;
    p.dueAt = now + Math.min(ACK_TIMEOUT_MAX_MS, this.ackTimeoutMs * 2 ** Math.min(p.attempts - 1, 8));
  }

  private flushOutbox(): void {
    for (const p of this.outbox.values()) this.transmit(p);
  }

  private sweep(): void {
    const now = Date.now();
    for (const p of this.outbox.values()) {
      if (now >= p.deadline) {
        this.outbox.delete(p.id);
        this.stats.refused++;
        const code = p.attempts === 0 || p.lastCode !== Status.OK ? p.lastCode : Status.TIMEOUT;
        p.reject(new DeliveryError(code, `${p.lastReason} (gave up after ${p.attempts} attempts)`, p.id));
      } else if (p.dueAt !== 0 && now >= p.dueAt) {
        p.lastCode = Status.TIMEOUT;
        p.lastReason = describeStatus(Status.TIMEOUT);
        this.transmit(p);
      }
    }
  }

  private onFrame(frame: Frame): void {
    switch (frame.type) {
      case FrameType.MSG:
        return this.onMsg(decodeMsg(frame));
      case FrameType.ACK:
        return this.onAck(frame);
      case FrameType.PEER_STATE:
        return this.setRegistration(decodeControl(frame, FrameType.PEER_STATE).state);
      case FrameType.REACHABLE:
        return this.onReachable(decodeControl(frame, FrameType.REACHABLE));
      case FrameType.LOOKUP_RESULT: {
        const { req, ...result } = decodeControl(frame, FrameType.LOOKUP_RESULT);
        const l = this.lookups.get(req);
        if (!l) return; // after its timeout
        this.lookups.delete(req);
        clearTimeout(l.timer);
        return l.resolve(result);
      }
      case FrameType.PRESENCE: {
        const p = decodeControl(frame, FrameType.PRESENCE);
        for (const listener of this.presence.get(p.address) ?? []) listener(p);
        return;
      }
      case FrameType.GOAWAY:
        return;
      case FrameType.ERROR: {
        const e = decodeControl(frame, FrameType.ERROR);
        this.logger.warn('error from far side', { code: e.code, reason: e.reason });
        return;
      }
      default:
        if (this.opts.onOtherFrame?.(frame)) return;
        throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(frame.type)} not expected by a peer`);
    }
  }

  private onAck(frame: Frame): void {
    const ack = decodeAck(frame);
    const p = this.outbox.get(ack.id);
    if (!p) {
      this.stats.unmatchedAcks++; // a late duplicate of something already settled, or a misroute
      return;
    }
    // A receipt (delivered or refused) counts only from the address the message was sent to:
    // every hop that refuses writes the message's `to` there, the receiver its own address, and
    // the relay and contact points check that the link an ACK arrives on owns its `from`.
    if (ack.from !== p.to) {
      this.stats.strayAcks++;
      if ((this.stats.strayAcks & (this.stats.strayAcks - 1)) === 0) {
        // 1st, 2nd, 4th, 8th ...: visible without letting a flood of them flood the log.
        this.logger.warn('dropped an ACK that did not come from the message\'s recipient', { id: ack.id, to: p.to, from: ack.from, status: ack.status, dropped: this.stats.strayAcks });
      }
      return;
    }
    if (ack.status === Status.OK) {
      this.outbox.delete(p.id);
      this.stats.delivered++;
      p.resolve({ id: p.id, to: p.to, elapsedMs: Date.now() - p.firstSentAt, attempts: p.attempts });
      return;
    }
    p.lastCode = ack.status;
    p.lastReason = ack.reason || describeStatus(ack.status);
    if (isRetryable(ack.status)) {
      // Transient: try again after a short pause; the sweep gives up at the deadline.
      p.dueAt = Date.now() + Math.min(this.ackTimeoutMs, 100 * 2 ** Math.min(p.attempts, 5));
      return;
    }
    this.outbox.delete(p.id);
    this.stats.refused++;
    p.reject(new DeliveryError(ack.status, p.lastReason, p.id));
  }

  /**
   * REACHABLE {domain[, name]}: the relay (or our contact point) refused one of our messages for
   * `domain` with CONTACT_POINT_OFFLINE (or for `name@domain` with PEER_OFFLINE), or it may have
   * been lost in a tunnel that died, and now says the way there is back. Send every message for
   * it that went out before at once, instead of waiting out its backoff. Receivers dedupe, so
   * one that got through after all costs only a re-ACK.
   */
  private onReachable(body: ReachableBody): void {
    this.stats.reachable++;
    const suffix = `@${body.domain}`;
    const exact = body.name !== undefined ? body.name + suffix : undefined;
    let resent = 0;
    for (const p of this.outbox.values()) {
      if (p.attempts > 0 && (exact !== undefined ? p.to === exact : p.to.endsWith(suffix))) {
        this.transmit(p);
        resent++;
      }
    }
    this.logger.debug('reachable again', { domain: body.domain, name: body.name, resent });
  }

  private onMsg(msg: MsgFrame): void {
    const link = this.link;
    if (!link) return;
    if (msg.to !== this.addr) {
      link.send(encodeAck({ id: msg.id, to: msg.from, from: msg.to, status: Status.BAD_ADDRESS, reason: `this is ${this.addr ?? 'nobody'}` }));
      return;
    }
    if (this.dedupe.has(msg.from, msg.id)) {
      this.stats.duplicates++;
      link.send(encodeAck({ id: msg.id, to: msg.from, from: msg.to, status: Status.OK, reason: '' }));
      return;
    }
    // A retry while the handler still runs: its ACK is coming.
    if (this.processing.size > 0 && this.processing.has(`${msg.from}\n${msg.id}`)) return;
    // The decoded frame is the InboundMessage (no copy; it also carries `flags`). The ACK below
    // uses the id and addresses as they arrived, whatever the handler does with the object.
    const { id, from, to } = msg;
    let result: void | Promise<void>;
    try {
      result = this.handler ? this.handler(msg) : void this.emit('message', msg);
    } catch (err: unknown) {
      this.settle(id, from, to, false, err);
      return;
    }
    if (result instanceof Promise) {
      const key = `${from}\n${id}`;
      this.processing.add(key);
      result
        .then(
          () => this.settle(id, from, to, true, undefined, key),
          (err: unknown) => this.settle(id, from, to, false, err ?? new Error('handler rejected'), key),
        )
        .catch((err: unknown) => this.logger.warn('could not acknowledge a message', { id, from, error: err instanceof Error ? err.message : String(err) }));
    } else {
      this.settle(id, from, to, true, undefined);
    }
  }

  /** The handler finished with message `id`: remember it if it succeeded, and ACK it either way. */
  private settle(id: string, from: string, to: string, ok: boolean, err: unknown, key?: string): void {
    if (key !== undefined) this.processing.delete(key);
    if (ok) {
      this.dedupe.add(from, id);
      this.stats.received++;
    }
    this.link?.send(
      encodeAck({
        id,
        to: from,
        from: to,
        status: ok ? Status.OK : Status.RECEIVER_FAILED,
        reason: ok ? '' : `receiver failed: ${err instanceof Error ? err.message : 'handler threw'}`,
      }),
    );
  }

  private setRegistration(state: PeerState): void {
    if (this.state === state) return;
    this.state = state;
    this.emit('registration', state);
  }

  /** Rejects the ready() waiters: all of them, or (`code`) those that fail on that refusal. */
  private failReady(err: Error, code?: number): void {
    if (code === undefined) {
      for (const w of this.readyWaiters.splice(0)) w.reject(err);
      return;
    }
    const failing = this.readyWaiters.filter((w) => w.failOn.includes(code));
    if (failing.length === 0) return;
    this.readyWaiters = this.readyWaiters.filter((w) => !failing.includes(w));
    for (const w of failing) w.reject(err);
  }
}
