import { EventEmitter } from 'node:events';
import { parseAddress } from '../protocol/address.js';
import { decodeAck, decodeControl, decodeMsg, encodeAck, msgHeaderLength, writeMsgHeader, type Frame, type FrameFill, type MsgFrame } from '../protocol/codec.js';
import { Dialer, type DialerStatus } from '../protocol/dialer.js';
import { DeliveryError, ProtocolError } from '../protocol/errors.js';
import { CAPABILITY_BATCH, CAPABILITY_PROOF_2, CAPABILITY_REACHABLE, CAPABILITY_SEAL_AES, CAPABILITY_SEAL_BUNDLE, CAPABILITY_SEALED, FLAG_RETRY, FLAG_SEALED, FrameType, frameTypeName, type LookupResultBody, type PeerState, type PresenceBody, type ReachableBody, type RegisterBody } from '../protocol/frames.js';
import { BUNDLE_ENTRY_OVERHEAD, BUNDLE_MAX_MESSAGES, BUNDLE_SEND_BYTES, BUNDLE_OVERHEAD, bundleLength, envelopeSenderKey, SEAL_OVERHEAD, SEAL_MAX_AGE_MS, SEAL_VERSION_BUNDLE, SealError, SealKey, type BundleEntry, type SealVersion } from '../protocol/seal.js';
import { KeyDirectory } from './key-directory.js';
import { KeyPins } from './key-pins.js';
import { fingerprint, normalizeFingerprint } from '../protocol/key-statement.js';
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
import { ChurnTable } from '../runtime/churn-table.js';
import { DedupeWindow } from './dedupe.js';
import { MessageIds } from './message-ids.js';
import type { PeerIdentity } from './identity.js';

/**
 * Positions (48 B each) each of a client's tables of messages in flight keeps while it empties:
 * room for a window of 256 messages (bench throughput's closed loop) at a quarter full.
 */
const TABLE_KEEP_POSITIONS = 1024;

/** What takeSettlers() took from the promise being made (read at once by send()). */
let takenResolve: ((r: Receipt) => void) | undefined;
let takenReject: ((e: DeliveryError) => void) | undefined;

/** The executor of every send()'s promise: it keeps the settle functions for send(), no closure made. */
function takeSettlers(resolve: (r: Receipt) => void, reject: (e: DeliveryError) => void): void {
  takenResolve = resolve;
  takenReject = reject;
}

export interface InboundMessage {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  /** the payload bytes, a view into the received frame (not copied) */
  readonly payload: Buffer;
  /** the MSG frame's flags: FLAG_RETRY (1) when the sender marked it a retransmission, FLAG_SEALED (2) */
  readonly flags: number;
  /** true when the payload arrived sealed (and was opened here): only the sender could have written it */
  readonly sealed?: boolean;
  /** the id of the MSG that carried it, when it came in a sealed bundle with others (PROTOCOL.md 19.6) */
  readonly bundle?: string;
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
  /** Extension point (the operator SDK): more HELLO capabilities; which the server took up is `serverCapabilities`. */
  readonly capabilities?: readonly string[];
  /**
   * Sealed payloads (PROTOCOL.md 19): 'auto' (default) seals for every receiver that has a
   * sealing key and sends plain to the rest; 'required' never sends nor accepts a plain
   * payload; 'off' neither seals nor asks for keys.
   */
  readonly seal?: 'auto' | 'required' | 'off';
  /**
   * This peer's X25519 sealing key (default: a new one each start). External peers keep theirs
   * (SealKey.loadOrCreate): a contact point binds an external address to its first key.
   */
  readonly sealKey?: SealKey;
  /** the contact point keys trusted (KeyPins.open with a file and --pin); default: first use, in memory */
  readonly pins?: KeyPins;
  /** sealed messages older than this are refused BAD_SEAL (default SEAL_MAX_AGE_MS) */
  readonly sealMaxAgeMs?: number;
}
export interface ExternalPeerOptions extends CommonOptions {
  readonly role: 'external';
  readonly secret: string;
}
export interface InternalPeerOptions extends CommonOptions {
  readonly role: 'peer';
  readonly identity: PeerIdentity;
  /** the fingerprint its contact point's key must have (`contact-point fingerprint`); another is KEY_CHANGED and the client stops */
  readonly contactPointFingerprint?: string;
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
  readonly deadline: number;
  readonly resolve: (r: Receipt) => void;
  readonly reject: (e: DeliveryError) => void;
  /**
   * 'todo' until the receiver's key is looked up and the payload sealed (or left plain): 'done'.
   * 'queued': waiting for the end of the turn, to be sealed with the turn's other messages for the
   * same receiver as one bundle (or alone if it is the only one).
   */
  seal: 'todo' | 'resolving' | 'queued' | 'done';
  /** the bundle it went in (its wire id, bytes and retries are the bundle's), while it is in one */
  bundle: Bundle | undefined;
  /** FLAG_SEALED once sealed */
  flags: number;
  /**
   * Sealed: the receiver's key and the envelope version. Each transmission seals `plain` anew
   * (a new nonce and time, the same id) where the link writes the frame (Link.send of a
   * FrameFill), so no sealed copy is kept between transmissions (PROTOCOL.md 19.1).
   */
  sealedFor: { readonly key: Buffer; readonly version: SealVersion } | undefined;
  /** the application's bytes */
  readonly plain: Buffer;
  /** sealed again once already, after the receiver refused the first seal (BAD_SEAL) */
  resealed: boolean;
  attempts: number;
  firstSentAt: number;
  /** when to transmit again if no ACK came; 0 while waiting for a connection */
  dueAt: number;
  lastCode: number;
  lastReason: string;
}

/**
 * Several messages for one receiver sealed as one (seal version 3, PROTOCOL.md 19.6): one MSG,
 * with an id of its own, retransmitted (sealed anew) until its ACK; that ACK settles every
 * message in it.
 */
interface Bundle {
  /** the wire id (the MSG's) */
  readonly id: string;
  readonly to: string;
  /** its messages, in order; each still in the outbox under its own id */
  readonly members: Pending[];
  /** its messages' ids and bodies, sealed anew for `key` on each transmission (as Pending.sealedFor) */
  readonly entries: readonly BundleEntry[];
  readonly key: Buffer;
  /** the earliest of its messages' deadlines */
  readonly deadline: number;
  attempts: number;
  firstSentAt: number;
  dueAt: number;
  lastCode: number;
  lastReason: string;
}

/** A RECEIVER_FAILED reason for a bundle names which of its messages failed (1-based, PROTOCOL.md 19.6). */
const BUNDLE_FAILED = /^bundle messages ([0-9]+(?:,[0-9]+)*) of ([0-9]+) failed/;

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
  /**
   * messages awaiting their ACK, by id (a ChurnTable, not a Map: see core/runtime/churn-table.ts).
   * It and the other tables of messages in flight keep their arrays while they empty (up to
   * TABLE_KEEP_POSITIONS): a window of messages acknowledged in one BATCH empties them many
   * times a second.
   */
  private readonly outbox = new ChurnTable<Pending>({ keepPositions: TABLE_KEEP_POSITIONS });
  private readonly dedupe: DedupeWindow;
  private readonly processing = new ChurnTable<true>({ keepPositions: TABLE_KEEP_POSITIONS });
  private readonly logger: Logger;
  private readonly ids = new MessageIds();
  private sweeper: NodeJS.Timeout | undefined;
  private link: Link | undefined;
  /** the capabilities of this client's HELLO that the server took up in its last WELCOME */
  serverCapabilities: readonly string[] = [];
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
  readonly stats = { sent: 0, retransmits: 0, delivered: 0, received: 0, duplicates: 0, refused: 0, strayAcks: 0, unmatchedAcks: 0, reachable: 0, sealed: 0, badSeals: 0, bundlesSent: 0, bundlesReceived: 0 };
  private readonly sealMode: 'auto' | 'required' | 'off';
  /** this peer's sealing key */
  readonly sealKey: SealKey;
  private readonly keys: KeyDirectory;
  private readonly sealMaxAgeMs: number;
  /** the contact point's key did not match the pin: nothing is sealed or sent until a new client */
  private keyFailure: SealError | undefined;
  /** The refusal that stopped this client for good (until start() again): later sends fail with it at once. */
  private refusal: { code: number; reason: string } | undefined;
  /** sealed bundles awaiting their ACK, by wire id */
  private readonly bundles = new ChurnTable<Bundle>({ keepPositions: TABLE_KEEP_POSITIONS });
  /**
   * Messages of this turn to be sealed at its end, by receiver (bundled when there are several).
   * A new Map each turn, never clear(): V8 links a cleared Map's old table to its new one, so
   * once a table is in the old generation every later turn's table, with the messages in it,
   * stays reachable from it through each scavenge until a full GC. Measured on a paced sealed
   * sender: ~600 KB surviving each scavenge instead of ~30 KB, and a mark-compact every ~0.5 s.
   */
  private sealTurn = new Map<string, Pending[]>();
  private sealTurnQueued = false;

  constructor(private readonly opts: PeerClientOptions) {
    super();
    this.logger = opts.logger ?? silentLogger;
    this.dedupe = new DedupeWindow(opts.dedupeWindow ?? DEDUPE_WINDOW);
    this.ackTimeoutMs = opts.ackTimeoutMs ?? ACK_TIMEOUT_MS;
    this.deadlineMs = opts.deliveryDeadlineMs ?? DELIVERY_DEADLINE_MS;
    this.maxOutbox = opts.maxOutbox ?? MAX_OUTBOX;
    this.handler = opts.onMessage;
    this.sealMode = opts.seal ?? 'auto';
    this.sealKey = opts.sealKey ?? SealKey.generate();
    this.sealMaxAgeMs = opts.sealMaxAgeMs ?? SEAL_MAX_AGE_MS;
    const pins = opts.pins ?? KeyPins.memory();
    const expected = opts.role === 'peer' && opts.contactPointFingerprint !== undefined ? normalizeFingerprint(opts.contactPointFingerprint) : undefined;
    if (opts.role === 'peer' && opts.contactPointFingerprint !== undefined && expected === undefined) {
      throw new Error(`contactPointFingerprint "${opts.contactPointFingerprint}" is not a key fingerprint (64 hex digits)`);
    }
    this.keys = new KeyDirectory({
      role: opts.role,
      sealKey: this.sealKey,
      pins,
      send: (f) => (this.link ? (this.link.send(f), true) : false),
      address: () => this.addr,
      nextId: () => this.ids.next(),
    });
    const identity = opts.role === 'peer' ? opts.identity : undefined;
    const sealing = this.sealMode !== 'off';
    // The sealing key's signature is the same on every hello (Ed25519 is deterministic): made once.
    let sealKeySig: string | undefined;
    const sealFields = identity && sealing ? (): { sealKey: string; sealKeySig: string } => ({ sealKey: this.sealKey.publicKey, sealKeySig: (sealKeySig ??= identity.signSealKey(opts.name, this.sealKey.publicKey)) }) : undefined;
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
        ...(sealFields ? sealFields() : {}),
        // `reachable`: this client understands REACHABLE (0x12), so servers may send it; `sealed`: it seals; `seal-aes`: it opens seal version 2; `seal-bundle`: version 3 (bundles); `batch`: BATCH (0x17); `proof-2`: an internal peer signs proof text 2.
        env: {
          software: 'contact-point-sdk/0.1',
          capabilities: [...(sealing ? [CAPABILITY_REACHABLE, CAPABILITY_SEALED, CAPABILITY_SEAL_AES, CAPABILITY_SEAL_BUNDLE, CAPABILITY_BATCH] : [CAPABILITY_REACHABLE, CAPABILITY_BATCH]), ...(identity ? [CAPABILITY_PROOF_2] : []), ...(opts.capabilities ?? [])],
        },
      }),
      // Proof 2 covers the sealing key this HELLO sent (none when sealing is off).
      ...(identity ? { sign: (nonce: string, proof: 1 | 2) => (proof === 2 ? identity.signChallenge2(opts.name, nonce, sealFields ? this.sealKey.publicKey : undefined) : identity.signChallenge(opts.name, nonce)) } : {}),
      ...(opts.proxy !== undefined ? { proxy: opts.proxy } : {}),
      ...(opts.ca ? { ca: opts.ca } : {}),
    });
    this.dialer.on('status', (s) => {
      this.emit('status', s);
      if (s.state === 'stopped' && s.lastError) this.failReady(new Error(s.lastError));
      else if (s.state === 'reconnecting' && s.lastErrorCode !== undefined && s.lastError) this.failReady(new Error(s.lastError), s.lastErrorCode);
    });
    // A refusal retrying cannot fix (REVOKED mid-session, BAD_CREDENTIALS at a hello): the
    // dialer stops for good, so what waits for an acknowledgement can never be delivered. It
    // fails now, with the refusal, instead of at its deadline.
    this.dialer.on('rejected', (code: number, why: string) => {
      this.refusal = { code, reason: `not sent: the connection was refused for good (${why})` };
      this.stats.refused += this.outbox.size;
      this.failPending(this.refusal.code, this.refusal.reason);
    });
    this.dialer.on('up', (link, welcome) => {
      if (welcome.address !== undefined && !parseAddress(welcome.address)) {
        // Every frame this client writes carries it as `from`: a server that gives a malformed one is faulted, not written after.
        link.fault(Status.PROTOCOL_VIOLATION, `WELCOME address "${welcome.address.slice(0, 64)}" is not name@domain`);
        return;
      }
      this.link = link;
      this.serverCapabilities = welcome.capabilities ?? [];
      this.addr = welcome.address;
      this.maxMessageBytes = welcome.limits.maxMessageBytes;
      if (welcome.state) this.setRegistration(welcome.state);
      const domain = welcome.address !== undefined ? parseAddress(welcome.address)?.domain : undefined;
      if (welcome.cpKey !== undefined && domain !== undefined && sealing) {
        // An internal peer: its contact point's key, pinned or trusted on first use; a changed one stops this client.
        const cpKey = welcome.cpKey;
        const given = expected !== undefined && fingerprint(cpKey) !== expected ? new SealError(Status.KEY_CHANGED, `contact point ${domain} presented key ${fingerprint(cpKey)}, but ${expected} is pinned (--pin): refusing it`) : undefined;
        (given ? Promise.reject(given) : expected !== undefined ? Promise.resolve() : pins.accept(domain, cpKey)).then(
          () => {
            this.keys.setOwnContactPointKey(cpKey);
            this.welcomed();
          },
          (err: unknown) => this.failKeys(err instanceof SealError ? err : new SealError(Status.KEY_CHANGED, String(err))),
        );
        return;
      }
      this.welcomed();
    });
    this.dialer.on('down', () => {
      this.link = undefined;
      // Key requests sent on the lost link get no answer: their messages ask again on the next one.
      this.keys.close();
      for (const p of this.outbox.values()) p.dueAt = 0;
      for (const b of this.bundles.values()) b.dueAt = 0;
    });
  }

  private welcomed(): void {
    for (const w of this.readyWaiters.splice(0)) w.resolve();
    for (const address of this.presence.keys()) this.link?.sendControl(FrameType.SUBSCRIBE, { op: 'add', address });
    this.flushOutbox();
  }

  /** The contact point's key is not the pinned one: say so loudly and stop. */
  private failKeys(err: SealError): void {
    this.keyFailure = err;
    this.logger.error('contact point key refused', { reason: err.reason });
    this.failReady(err);
    this.bundles.clear();
    for (const p of [...this.outbox.values()]) this.fail(p, err.code, err.reason);
    this.dialer.stop();
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
    this.refusal = undefined;
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
    this.keys.close();
    this.failPending(Status.SHUTTING_DOWN, 'the client stopped before an acknowledgement arrived');
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
   * the deadline for transient ones (offline, rate limited, congested). `data` (a Uint8Array)
   * is not copied: it is read when the frame is written (at the end of this event-loop turn)
   * and again for each retry, sealed anew each time, so it must not change until the promise
   * settles.
   */
  send(to: string, data: Uint8Array | string, opts?: { deadlineMs?: number }): Promise<Receipt> {
    const id = this.ids.next();
    if (this.keyFailure) return Promise.reject(new DeliveryError(this.keyFailure.code, this.keyFailure.reason, id));
    if (this.refusal) return Promise.reject(new DeliveryError(this.refusal.code, this.refusal.reason, id));
    const payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (!parseAddress(to)) return Promise.reject(new DeliveryError(Status.BAD_ADDRESS, `"${to}" is not name@domain`, id));
    if (payload.length > this.maxMessageBytes) {
      return Promise.reject(new DeliveryError(Status.TOO_LARGE, `${payload.length} bytes; the limit is ${this.maxMessageBytes}`, id));
    }
    if (this.outbox.size >= this.maxOutbox) {
      return Promise.reject(new DeliveryError(Status.QUEUE_FULL, `${this.outbox.size} messages await acknowledgement`, id));
    }
    // The promise's settle functions, taken by one shared executor: an executor of its own would
    // be a closure and a context per message (~140 B of the ~600 B a send allocates).
    const promise = new Promise<Receipt>(takeSettlers);
    const p: Pending = {
      id,
      to,
      deadline: Date.now() + (opts?.deadlineMs ?? this.deadlineMs),
      resolve: takenResolve!,
      reject: takenReject!,
      seal: this.sealMode === 'off' ? 'done' : 'todo',
      bundle: undefined,
      flags: 0,
      sealedFor: undefined,
      plain: payload,
      resealed: false,
      attempts: 0,
      firstSentAt: 0,
      dueAt: 0,
      lastCode: Status.CONTACT_POINT_OFFLINE,
      lastReason: 'not connected',
    };
    takenResolve = takenReject = undefined;
    this.outbox.set(id, p);
    try {
      this.transmit(p);
    } catch (err: unknown) {
      // as an executor's exception would: the promise rejects (the sweep settles nothing twice)
      p.reject(err as DeliveryError);
    }
    return promise;
  }

  private transmit(p: Pending): void {
    if (p.bundle) return; // its bundle goes (transmitBundle)
    const link = this.link;
    if (!link || !this.addr) return; // sent on the next WELCOME
    if (p.seal !== 'done') return this.prepareSeal(p);
    const now = Date.now();
    link.send(this.msgFill(p, p.flags | (p.attempts > 0 ? FLAG_RETRY : 0)));
    if (p.attempts === 0) {
      p.firstSentAt = now;
      this.stats.sent++;
    } else {
      this.stats.retransmits++;
    }
    p.attempts++;
    p.dueAt = now + Math.min(ACK_TIMEOUT_MAX_MS, this.ackTimeoutMs * 2 ** Math.min(p.attempts - 1, 8));
  }

  /**
   * Seals `p` for its receiver's key (looked up once per address, then cached) and sends it;
   * plain when the receiver has none (mode 'auto'). Each transmission seals anew (msgFill).
   */
  private prepareSeal(p: Pending): void {
    if (p.seal === 'resolving' || p.seal === 'queued') return;
    const key = this.keys.cached(p.to);
    if (key) {
      if (this.mayBundle(p)) return this.queueSeal(p);
      if (this.sealPending(p, key)) this.transmit(p);
      return;
    }
    p.seal = 'resolving';
    this.keys.lookup(p.to).then(
      (k) => {
        p.seal = 'todo';
        if (this.outbox.get(p.id) !== p) return;
        if (k === 'retry') {
          // Not now (no connection, or the way to its contact point is down): the sweep tries again.
          // The refusal of the key request (offline, rate limited) is what the message gets if it comes to that.
          const why = this.keys.refusal(p.to);
          // Refused for now: back off. Its link went, or the way is back (REACHABLE): at the next sweep.
          p.dueAt = Date.now() + (why ? Math.min(this.ackTimeoutMs, 500) : 1);
          p.lastCode = why?.code ?? Status.CONTACT_POINT_OFFLINE;
          p.lastReason = why?.reason ?? `could not get the sealing key of ${p.to} yet`;
          return;
        }
        if (k === 'none') {
          if (this.sealMode === 'required') return this.fail(p, Status.SEAL_REQUIRED, `${p.to} has no sealing key, and this client sends sealed payloads only`);
          p.seal = 'done';
          return this.transmit(p);
        }
        if (this.mayBundle(p)) return this.queueSeal(p);
        if (this.sealPending(p, k)) this.transmit(p);
      },
      (err: unknown) => {
        p.seal = 'todo';
        if (this.outbox.get(p.id) !== p) return;
        if (err instanceof SealError) return this.fail(p, err.code, err.reason);
        this.fail(p, Status.BAD_SEAL, err instanceof Error ? err.message : String(err));
      },
    );
  }

  /**
   * Marks `p` sealed for `key`: the seal itself is written with the frame, on each transmission
   * (msgFill). The key is checked usable here, so writing the frame cannot fail.
   */
  private sealPending(p: Pending, key: Buffer): boolean {
    const length = SEAL_OVERHEAD + p.plain.length;
    if (length > this.maxMessageBytes) {
      this.fail(p, Status.TOO_LARGE, `${length} bytes sealed; the limit is ${this.maxMessageBytes}`);
      return false;
    }
    const unusable = this.unusableKey(key);
    if (unusable !== undefined) {
      this.fail(p, Status.BAD_SEAL, `the sealing key of ${p.to} is not usable: ${unusable}`);
      return false;
    }
    p.sealedFor = { key, version: this.keys.version(p.to) };
    p.flags = FLAG_SEALED;
    p.seal = 'done';
    this.stats.sealed++;
    return true;
  }

  /** Why `key` (a receiver's) gives no pair key (a low-order point, say); undefined when it does. */
  private unusableKey(key: Buffer): string | undefined {
    try {
      this.sealKey.checkRecipient(key);
      return undefined;
    } catch (err: unknown) {
      return err instanceof Error ? err.message : String(err);
    }
  }

  /** A first transmission to a receiver that opens bundles: it may share a seal with the turn's other messages for it. */
  private mayBundle(p: Pending): boolean {
    // Only a first send: a message of a refused bundle, or one resealed, has been sent (its attempts go on from there).
    return p.attempts === 0 && this.keys.bundles(p.to);
  }

  /** Seals `p` at the end of this turn, with the turn's other messages for its receiver (see flushSealTurn). */
  private queueSeal(p: Pending): void {
    p.seal = 'queued';
    const list = this.sealTurn.get(p.to);
    if (list) list.push(p);
    else this.sealTurn.set(p.to, [p]);
    if (this.sealTurnQueued) return;
    this.sealTurnQueued = true;
    // After the callbacks of this turn so far (a burst of ACKs resolves many sends, each sending the next).
    process.nextTick(this.flushSealTurn);
  }

  /**
   * The end of a turn: each receiver's queued messages are sealed, two or more as bundles (at most
   * BUNDLE_MAX_MESSAGES messages and BUNDLE_SEND_BYTES of entries each, and within maxMessageBytes),
   * a lone one as today. One AEAD operation per bundle instead of one per message.
   */
  private readonly flushSealTurn = (): void => {
    this.sealTurnQueued = false;
    const turn = this.sealTurn;
    this.sealTurn = new Map();
    for (const [to, queued] of turn) {
      const live = queued.filter((p) => this.outbox.get(p.id) === p && p.seal === 'queued');
      for (const p of live) p.seal = 'todo';
      const key = this.keys.cached(to);
      if (!key || !this.link || !this.addr || !this.keys.bundles(to)) {
        for (const p of live) this.transmit(p);
        continue;
      }
      const limit = Math.min(BUNDLE_SEND_BYTES, this.maxMessageBytes - BUNDLE_OVERHEAD);
      for (let i = 0; i < live.length; ) {
        let j = i;
        let bytes = 0;
        while (j < live.length && j - i < BUNDLE_MAX_MESSAGES) {
          const entry = BUNDLE_ENTRY_OVERHEAD + live[j]!.id.length + live[j]!.plain.length;
          if (bytes + entry > limit) break;
          bytes += entry;
          j++;
        }
        if (j - i < 2) {
          // Alone (the only one, or too big to share a bundle): sealed as before.
          const p = live[i]!;
          if (this.sealPending(p, key)) this.transmit(p);
          i = Math.max(j, i + 1);
          continue;
        }
        this.sendBundle(to, live.slice(i, j), key);
        i = j;
      }
    }
  };

  private sendBundle(to: string, members: Pending[], key: Buffer): void {
    const unusable = this.unusableKey(key);
    if (unusable !== undefined) {
      for (const p of members) this.fail(p, Status.BAD_SEAL, `the sealing key of ${to} is not usable: ${unusable}`);
      return;
    }
    const id = this.ids.next();
    const entries: BundleEntry[] = members.map((p) => ({ id: p.id, body: p.plain }));
    let deadline = Infinity;
    for (const p of members) deadline = Math.min(deadline, p.deadline);
    const b: Bundle = { id, to, members, entries, key, deadline, attempts: 0, firstSentAt: 0, dueAt: 0, lastCode: Status.CONTACT_POINT_OFFLINE, lastReason: 'not connected' };
    for (const p of members) {
      p.bundle = b;
      p.seal = 'done';
    }
    this.bundles.set(id, b);
    this.stats.sealed += members.length;
    this.stats.bundlesSent++;
    this.transmitBundle(b);
  }

  private transmitBundle(b: Bundle): void {
    const link = this.link;
    if (!link || !this.addr) return; // sent on the next WELCOME
    const now = Date.now();
    link.send(this.bundleFill(b, FLAG_SEALED | (b.attempts > 0 ? FLAG_RETRY : 0)));
    if (b.attempts === 0) {
      b.firstSentAt = now;
      this.stats.sent += b.members.length;
    } else {
      this.stats.retransmits++;
    }
    b.attempts++;
    b.dueAt = now + Math.min(ACK_TIMEOUT_MAX_MS, this.ackTimeoutMs * 2 ** Math.min(b.attempts - 1, 8));
  }

  /**
   * `p`'s MSG frame (FrameFill) for this transmission, written where the link writes it: the
   * application's bytes as they are, or sealed there (a new nonce each time).
   */
  private msgFill(p: Pending, flags: number): FrameFill {
    const fields = { id: p.id, to: p.to, from: this.addr! };
    const body = p.plain;
    const sealed = p.sealedFor;
    const head = msgHeaderLength(fields);
    if (!sealed) {
      return {
        type: FrameType.MSG,
        length: head + body.length,
        put: (out, at) => {
          const o = writeMsgHeader(out, at, fields, flags);
          return o + body.copy(out, o);
        },
      };
    }
    const sealKey = this.sealKey;
    return {
      type: FrameType.MSG,
      length: head + SEAL_OVERHEAD + body.length,
      put: (out, at) => sealKey.sealAt(out, writeMsgHeader(out, at, fields, flags), fields, body, sealed.key, sealed.version),
    };
  }

  /** `b`'s MSG frame (FrameFill) for this transmission: its entries sealed as one bundle where the link writes it. */
  private bundleFill(b: Bundle, flags: number): FrameFill {
    const fields = { id: b.id, to: b.to, from: this.addr! };
    const sealKey = this.sealKey;
    return {
      type: FrameType.MSG,
      length: msgHeaderLength(fields) + bundleLength(b.entries),
      put: (out, at) => sealKey.sealBundleAt(out, writeMsgHeader(out, at, fields, flags), fields, b.entries, b.key),
    };
  }

  /** How long before sending again after a transient refusal (RATE_LIMITED and the like): 100 ms doubling, at most the ACK timeout. */
  private refusedRetryMs(attempts: number): number {
    return Math.min(this.ackTimeoutMs, 100 * 2 ** Math.min(attempts, 5));
  }

  /**
   * The outcome of a bundle. OK: every message in it was delivered. RECEIVER_FAILED: those its
   * reason names failed (all, if it names none), the rest were delivered. A transient refusal
   * other than RATE_LIMITED: the same bundle again later. Anything else (a seal refused, too
   * large or too many for a hop's limits, or refused for another reason): nothing in it was
   * delivered, and its messages go again each alone, to meet the refusal or pass on their own.
   */
  private onBundleAck(b: Bundle, code: number, reason: string): void {
    const text = reason || describeStatus(code);
    if (code === Status.OK || code === Status.RECEIVER_FAILED) {
      this.bundles.delete(b.id);
      let failed: Set<number> | undefined;
      if (code === Status.RECEIVER_FAILED) {
        const m = BUNDLE_FAILED.exec(text);
        failed = m ? new Set(m[1]!.split(',').map((n) => Number(n) - 1)) : new Set(b.members.map((_, i) => i));
      }
      const now = Date.now();
      b.members.forEach((p, i) => {
        if (this.outbox.get(p.id) !== p) return;
        if (failed?.has(i)) return this.fail(p, code, text);
        this.outbox.delete(p.id);
        this.stats.delivered++;
        p.resolve({ id: p.id, to: p.to, elapsedMs: now - b.firstSentAt, attempts: b.attempts });
      });
      return;
    }
    b.lastCode = code;
    b.lastReason = text;
    if (isRetryable(code) && code !== Status.RATE_LIMITED) {
      b.dueAt = Date.now() + this.refusedRetryMs(b.attempts);
      return;
    }
    this.dissolve(b, code, text);
  }

  /** Its messages go on each alone (never bundled again); `code` is why. */
  private dissolve(b: Bundle, code: number, reason: string): void {
    this.bundles.delete(b.id);
    // Refused BAD_SEAL: the receiver may have a new key; each message is sealed once more for the one asked for again (a second refusal is final).
    if (code === Status.BAD_SEAL) this.keys.forget(b.to);
    const later = code === Status.RATE_LIMITED ? Date.now() + this.refusedRetryMs(b.attempts) : 0;
    for (const p of b.members) {
      if (this.outbox.get(p.id) !== p) continue;
      p.bundle = undefined;
      p.seal = 'todo';
      if (code === Status.BAD_SEAL) p.resealed = true;
      p.attempts = b.attempts;
      p.firstSentAt = b.firstSentAt;
      p.lastCode = code;
      p.lastReason = reason;
      p.dueAt = later;
      if (later === 0) this.transmit(p);
    }
  }

  /** Fails every message that awaits its acknowledgement (the client stops, or can no longer deliver any). */
  private failPending(code: number, reason: string): void {
    for (const p of this.outbox.values()) p.reject(new DeliveryError(code, reason, p.id));
    this.outbox.clear();
    this.bundles.clear();
    this.sealTurn.clear();
  }

  /** Gives up on `p` with a refusal of this end's own. */
  private fail(p: Pending, code: number, reason: string): void {
    this.outbox.delete(p.id);
    this.stats.refused++;
    p.reject(new DeliveryError(code, reason, p.id));
  }

  private flushOutbox(): void {
    for (const p of this.outbox.values()) this.transmit(p);
    for (const b of this.bundles.values()) this.transmitBundle(b);
  }

  private sweep(): void {
    const now = Date.now();
    for (const b of this.bundles.values()) {
      if (now >= b.deadline) {
        this.bundles.delete(b.id);
        const code = b.lastCode !== Status.OK ? b.lastCode : Status.TIMEOUT;
        for (const p of b.members) if (this.outbox.get(p.id) === p) this.fail(p, code, `${b.lastReason} (gave up after ${b.attempts} attempts, in a bundle)`);
      } else if (b.dueAt !== 0 && now >= b.dueAt) {
        b.lastCode = Status.TIMEOUT;
        b.lastReason = describeStatus(Status.TIMEOUT);
        this.transmitBundle(b);
      }
    }
    for (const p of this.outbox.values()) {
      if (p.bundle) continue; // its bundle's deadline and retries, above
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
      case FrameType.KEYS_ANSWER:
        this.keys.onAnswer(decodeMsg(frame));
        return;
      case FrameType.KEYS_REQUEST: {
        const req = decodeMsg(frame);
        this.link?.send(encodeAck({ id: req.id, to: req.from, from: req.to, status: Status.UNKNOWN_PEER, reason: 'peers answer no key requests; their contact point does' }));
        return;
      }
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
    if (!p && this.bundles.size > 0) {
      const b = this.bundles.get(ack.id);
      if (b) {
        if (ack.from !== b.to) {
          this.stats.strayAcks++;
          return;
        }
        return this.onBundleAck(b, ack.status, ack.reason);
      }
    }
    if (!p && this.keys.onAck(ack)) return;
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
    if (ack.status === Status.BAD_SEAL && p.flags === FLAG_SEALED && !p.resealed) {
      // Sealed for a key the receiver no longer has (it restarted with a new one while ours was
      // cached): ask for its key again and seal once more. A second refusal is final.
      p.resealed = true;
      p.seal = 'todo';
      p.flags = 0;
      p.sealedFor = undefined;
      this.keys.forget(p.to);
      this.transmit(p);
      return;
    }
    if (isRetryable(ack.status)) {
      // Transient: try again after a short pause; the sweep gives up at the deadline.
      p.dueAt = Date.now() + this.refusedRetryMs(p.attempts);
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
    // Key requests that went into the dead way get no answer: ask again now.
    this.keys.close();
    const suffix = `@${body.domain}`;
    const exact = body.name !== undefined ? body.name + suffix : undefined;
    let resent = 0;
    const there = (to: string): boolean => (exact !== undefined ? to === exact : to.endsWith(suffix));
    for (const p of this.outbox.values()) {
      if (!p.bundle && (p.attempts > 0 || p.seal === 'todo') && there(p.to)) {
        this.transmit(p);
        resent++;
      }
    }
    for (const b of this.bundles.values()) {
      if (there(b.to)) {
        this.transmitBundle(b);
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
    // A retry while the handler still runs: its ACK is coming.
    if (this.processing.size > 0 && this.processing.has(`${msg.from}\n${msg.id}`)) return;
    // A sealed one is opened first, so a replay older than the seal's age limit is refused with
    // the reason even while its id is still in the dedupe window.
    if ((msg.flags & FLAG_SEALED) !== 0) return this.onSealed(msg);
    if (this.sealMode === 'required') return this.refuseMsg(msg, Status.SEAL_REQUIRED, `${msg.to} accepts sealed payloads only`);
    this.handle(msg);
  }

  /** A message already handed to the application: ACKed again, not delivered twice. */
  private duplicate(msg: InboundMessage): boolean {
    if (!this.dedupe.has(msg.from, msg.id)) return false;
    this.stats.duplicates++;
    this.link?.send(encodeAck({ id: msg.id, to: msg.from, from: msg.to, status: Status.OK, reason: '' }));
    return true;
  }

  /**
   * A sealed message: the sender's key must be the one vouched for (an internal peer's contact
   * point checked it on the way; an external peer checks it against a statement), then the seal
   * must open. What does not is refused with the reason (BAD_SEAL, KEY_CHANGED) and not delivered.
   */
  private onSealed(msg: MsgFrame): void {
    let senderKey: Buffer;
    try {
      senderKey = envelopeSenderKey(msg.payload);
    } catch (err: unknown) {
      return this.refuseSeal(msg, err);
    }
    if (this.opts.role === 'external') {
      const known = this.keys.cached(msg.from);
      if (!known?.equals(senderKey)) {
        const key = `${msg.from}\n${msg.id}`;
        this.processing.set(key, true);
        this.keys.lookup(msg.from, known !== undefined).then(
          (k) => {
            this.processing.delete(key);
            if (k === 'retry') return this.refuseMsg(msg, Status.TIMEOUT, `could not get a statement for ${msg.from}'s key yet`);
            if (k === 'none') return this.refuseMsg(msg, Status.BAD_SEAL, `no contact point vouches for a sealing key of ${msg.from}`);
            if (!k.equals(senderKey)) return this.refuseMsg(msg, Status.KEY_CHANGED, `sealed with a key the statement for ${msg.from} does not name`);
            this.openSealed(msg);
          },
          (err: unknown) => {
            this.processing.delete(key);
            this.refuseSeal(msg, err);
          },
        );
        return;
      }
    }
    this.openSealed(msg);
  }

  private openSealed(msg: MsgFrame): void {
    if (msg.payload[0] === SEAL_VERSION_BUNDLE) return this.openBundle(msg);
    let payload: Buffer;
    try {
      payload = this.sealKey.open(msg, msg.payload, Date.now(), this.sealMaxAgeMs);
    } catch (err: unknown) {
      return this.refuseSeal(msg, err);
    }
    this.handle({ id: msg.id, from: msg.from, to: msg.to, payload, flags: msg.flags, sealed: true });
  }

  /** A sealed bundle: opened (or refused whole, with the reason), then its messages handled in order. */
  private openBundle(msg: MsgFrame): void {
    let entries: BundleEntry[];
    try {
      entries = this.sealKey.openBundle(msg, msg.payload, Date.now(), this.sealMaxAgeMs);
    } catch (err: unknown) {
      return this.refuseSeal(msg, err);
    }
    this.stats.bundlesReceived++;
    this.handleBundle(msg, entries);
  }

  /**
   * Hands a bundle's messages to the application in order, each once (a message whose own id is
   * in the dedupe window was delivered before, by an earlier copy of the bundle), and ACKs the
   * bundle's id when all handlers are done: OK, or RECEIVER_FAILED naming those that failed (they
   * are not remembered, so a copy of the bundle that comes again retries only them).
   */
  private handleBundle(msg: MsgFrame, entries: readonly BundleEntry[]): void {
    const { id, from, to } = msg;
    const failed: number[] = [];
    let firstError: unknown;
    const done = (i: number, ok: boolean, err?: unknown): void => {
      if (ok) {
        this.dedupe.add(from, entries[i]!.id);
        this.stats.received++;
      } else {
        failed.push(i + 1);
        firstError ??= err;
      }
    };
    let waiting: Promise<void>[] | undefined;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (this.dedupe.has(from, e.id)) {
        this.stats.duplicates++;
        continue;
      }
      let result: void | Promise<void>;
      try {
        const m: InboundMessage = { id: e.id, from, to, payload: e.body, flags: msg.flags, sealed: true, bundle: id };
        result = this.handler ? this.handler(m) : void this.emit('message', m);
      } catch (err: unknown) {
        done(i, false, err);
        continue;
      }
      if (result instanceof Promise) {
        (waiting ??= []).push(
          result.then(
            () => done(i, true),
            (err: unknown) => done(i, false, err ?? new Error('handler rejected')),
          ),
        );
      } else {
        done(i, true);
      }
    }
    const ack = (): void => {
      failed.sort((a, b) => a - b);
      const why = firstError instanceof Error ? firstError.message : 'handler threw';
      this.link?.send(
        encodeAck({
          id,
          to: from,
          from: to,
          status: failed.length === 0 ? Status.OK : Status.RECEIVER_FAILED,
          reason: failed.length === 0 ? '' : `bundle messages ${failed.join(',')} of ${entries.length} failed: receiver failed: ${why}`,
        }),
      );
    };
    if (!waiting) return ack();
    const key = `${from}\n${id}`;
    this.processing.set(key, true);
    void Promise.all(waiting).then(() => {
      this.processing.delete(key);
      ack();
    });
  }

  private refuseSeal(msg: MsgFrame, err: unknown): void {
    if (!(err instanceof SealError)) throw err;
    this.refuseMsg(msg, err.code, err.reason);
  }

  /** Refuses a received message with a reason (not delivered, not remembered). */
  private refuseMsg(msg: MsgFrame, code: number, reason: string): void {
    if (code === Status.BAD_SEAL || code === Status.KEY_CHANGED) {
      this.stats.badSeals++;
      this.logger.warn('refused a sealed message', { id: msg.id, from: msg.from, code, reason });
    }
    this.link?.send(encodeAck({ id: msg.id, to: msg.from, from: msg.to, status: code, reason }));
  }

  /** Hands a message to the application; the ACK goes back when it is done. */
  private handle(msg: InboundMessage): void {
    if (this.duplicate(msg)) return;
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
      this.processing.set(key, true);
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
