import { parseAddress } from '../protocol/address.js';
import { encodeMsg, type AckFrame, type MsgFrame } from '../protocol/codec.js';
import { FLAG_SEAL_AES, FLAG_SEAL_BUNDLE, FrameType } from '../protocol/frames.js';
import { checkStatement, keysAnswerSchema, type KeysRequest } from '../protocol/key-statement.js';
import { SEAL_VERSION, SEAL_VERSION_AES, SealError, type SealKey, type SealVersion } from '../protocol/seal.js';
import { describeStatus, isRetryable, Status } from '../protocol/status.js';
import type { KeyPins } from './key-pins.js';

/** How long a peer waits for a KEYS answer before it treats the address as having no key. */
export const KEYS_TIMEOUT_MS = 5_000;
/** Addresses whose key (or lack of one) a peer keeps; the oldest is forgotten first. */
export const MAX_CACHED_KEYS = 4_096;
/** How long "this address has no sealing key" is believed before asking again. */
export const NO_KEY_TTL_MS = 10_000;
/**
 * How long before a cached answer runs out a peer that uses it asks again in the background, at
 * most: a quarter of the answer's life, so a key statement of an hour is renewed in its last
 * minute and "no key" (10 s) in its last 2.5 s. A busy sender then never waits for a lookup.
 */
export const REFRESH_AHEAD_MAX_MS = 60_000;

/** A resolved address: its key, none (send plain), or not now (a transient refusal: ask again later). */
export type KeyLookup = Buffer | 'none' | 'retry';

export interface KeyDirectoryOptions {
  readonly role: 'external' | 'peer';
  readonly sealKey: SealKey;
  readonly pins: KeyPins;
  /** sends a frame on the current link; false when there is none */
  readonly send: (frame: Buffer) => boolean;
  /** this peer's address, once connected */
  readonly address: () => string | undefined;
  readonly nextId: () => string;
  readonly timeoutMs?: number;
  /** how long "no key" is believed (NO_KEY_TTL_MS) */
  readonly noKeyTtlMs?: number;
  /** the time the cache goes by (Date.now) */
  readonly clock?: () => number;
}

interface Cached {
  readonly key: Buffer | undefined;
  /** when the answer runs out (a statement's notAfter) */
  readonly until: number;
  /** from when a use of it asks again in the background (once: set to `until` when it does) */
  refreshAt: number;
  /** its statement came with FLAG_SEAL_AES (it opens seal version 2) */
  readonly aes: boolean;
  /** with FLAG_SEAL_BUNDLE too (it opens version 3) */
  readonly bundle: boolean;
}

interface Waiting {
  readonly to: string;
  readonly resolve: (k: KeyLookup) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * Where a peer gets the sealing keys of the addresses it talks to (PROTOCOL.md 19.4): KEYS
 * requests, answered with a statement a contact point signed, checked against the pinned
 * contact point key before the key is used. An external peer asks the contact point of the
 * address; an internal peer asks its own (which answers for its peers and for the addresses it
 * has bound, and passes the rest on).
 */
export class KeyDirectory {
  private readonly cache = new Map<string, Cached>();
  private readonly asking = new Map<string, Promise<KeyLookup>>();
  private readonly waiting = new Map<string, Waiting>();
  /** the last transient refusal of a request for each address still waited on (its code and reason go to the messages) */
  private readonly refusals = new Map<string, { code: number; reason: string }>();
  /** the key of this internal peer's own contact point (from WELCOME), trusted for any address it vouches for */
  private ownContactPointKey: string | undefined;

  constructor(private readonly o: KeyDirectoryOptions) {}

  private now(): number {
    return this.o.clock ? this.o.clock() : Date.now();
  }

  setOwnContactPointKey(cpKey: string | undefined): void {
    this.ownContactPointKey = cpKey;
  }

  /** The key of `address` if a valid statement for it is cached (one near its end is renewed in the background). */
  cached(address: string, now = this.now()): Buffer | undefined {
    const hit = this.cache.get(address);
    if (!hit || hit.until <= now) return undefined;
    if (now >= hit.refreshAt) this.refresh(address, hit);
    return hit.key;
  }

  /** The seal version to use for `address`: 2 (AES-256-GCM) when its statement said it opens it, else 1. */
  version(address: string): SealVersion {
    return this.cache.get(address)?.aes === true ? SEAL_VERSION_AES : SEAL_VERSION;
  }

  /** Whether several messages for `address` may go as one sealed bundle (version 3): its statement came with FLAG_SEAL_AES and FLAG_SEAL_BUNDLE. */
  bundles(address: string): boolean {
    const hit = this.cache.get(address);
    return hit?.aes === true && hit.bundle;
  }

  /** The key of `address`: cached, else asked for (one request per address at a time). Rejects SealError on a bad or changed key. */
  lookup(address: string, fresh = false): Promise<KeyLookup> {
    const now = this.now();
    const hit = this.cache.get(address);
    if (!fresh && hit && hit.until > now) {
      if (now >= hit.refreshAt) this.refresh(address, hit);
      return Promise.resolve(hit.key ?? 'none');
    }
    return this.asking.get(address) ?? this.start(address, false);
  }

  /**
   * Asks again for an answer still in use that nears its end, while the senders go on using it.
   * Once per answer: a transient failure leaves it in use until it runs out, when a lookup waits
   * for a fresh one as before. A refusal (a changed key, a statement that fails its check) drops
   * it, so that the next message's lookup gets that refusal.
   */
  private refresh(address: string, hit: Cached): void {
    hit.refreshAt = hit.until;
    if (this.asking.has(address)) return;
    this.start(address, true).catch(() => {
      if (this.cache.get(address) === hit) this.cache.delete(address);
    });
  }

  private start(address: string, refreshing: boolean): Promise<KeyLookup> {
    const p = this.ask(address, refreshing).finally(() => this.asking.delete(address));
    this.asking.set(address, p);
    return p;
  }

  /** `refreshing`: a key still held is not replaced by "no key" when no answer comes in time (only by an answer). */
  private ask(address: string, refreshing: boolean): Promise<KeyLookup> {
    const from = this.o.address();
    if (from === undefined) return Promise.resolve('retry');
    const id = this.o.nextId();
    const body: KeysRequest = this.o.role === 'external' ? { key: this.o.sealKey.publicKey } : {};
    return new Promise<KeyLookup>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        const now = this.now();
        const held = this.cache.get(address);
        if (refreshing && held?.key !== undefined && held.until > now) return resolve('retry');
        this.remember(address, undefined, now + (this.o.noKeyTtlMs ?? NO_KEY_TTL_MS));
        resolve('none');
      }, this.o.timeoutMs ?? KEYS_TIMEOUT_MS);
      timer.unref();
      this.waiting.set(id, { to: address, resolve, reject, timer });
      if (!this.o.send(encodeMsg({ id, to: address, from, payload: Buffer.from(JSON.stringify(body), 'utf8') }, FLAG_SEAL_AES | FLAG_SEAL_BUNDLE, FrameType.KEYS_REQUEST))) {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve('retry');
      }
    });
  }

  /** A KEYS answer: true when it answered one of our requests (checked; its waiter settled). */
  onAnswer(msg: MsgFrame): boolean {
    const w = this.waiting.get(msg.id);
    if (!w || msg.from !== w.to) return false;
    this.waiting.delete(msg.id);
    clearTimeout(w.timer);
    this.check(w.to, msg.payload).then(
      (key) => {
        this.remember(w.to, key.key, key.until, (msg.flags & FLAG_SEAL_AES) !== 0, (msg.flags & FLAG_SEAL_BUNDLE) !== 0);
        w.resolve(key.key);
      },
      (err: unknown) => w.reject(err instanceof Error ? err : new Error(String(err))),
    );
    return true;
  }

  /** An ACK refusing one of our KEYS requests: true when it was one. */
  onAck(ack: AckFrame): boolean {
    const w = this.waiting.get(ack.id);
    if (!w || ack.from !== w.to) return false;
    this.waiting.delete(ack.id);
    clearTimeout(w.timer);
    if (ack.status === Status.KEY_CHANGED) {
      w.reject(new SealError(Status.KEY_CHANGED, ack.reason || describeStatus(ack.status)));
      return true;
    }
    if (isRetryable(ack.status)) {
      if (this.refusals.size >= MAX_CACHED_KEYS) this.refusals.clear();
      this.refusals.set(w.to, { code: ack.status, reason: ack.reason || describeStatus(ack.status) });
      w.resolve('retry');
      return true;
    }
    this.remember(w.to, undefined, this.now() + (this.o.noKeyTtlMs ?? NO_KEY_TTL_MS));
    w.resolve('none');
    return true;
  }

  /** Why the last lookup of `address` was 'retry' (a transient refusal of its request), if one said. */
  refusal(address: string): { code: number; reason: string } | undefined {
    return this.refusals.get(address);
  }

  /** Forgets what is cached for `address`: the next lookup asks again. */
  forget(address: string): void {
    this.cache.delete(address);
  }

  /** Stops waiting for every answer (their lookups resolve 'retry', with no refusal: ask again at once). */
  close(): void {
    this.refusals.clear();
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.resolve('retry');
    }
    this.waiting.clear();
  }

  private async check(address: string, payload: Buffer): Promise<{ key: Buffer; until: number }> {
    let answer;
    try {
      answer = keysAnswerSchema.parse(JSON.parse(payload.toString('utf8')));
    } catch (err: unknown) {
      throw new SealError(Status.BAD_SEAL, `malformed key statement for ${address}: ${(err as Error).message}`);
    }
    // Who may vouch: an internal peer's own contact point for anyone; otherwise the address's contact point, pinned.
    if (answer.cpKey !== this.ownContactPointKey) await this.o.pins.accept(parseAddress(address)?.domain ?? address, answer.cpKey);
    const key = checkStatement(answer, address);
    return { key, until: answer.notAfter };
  }

  private remember(address: string, key: Buffer | undefined, until: number, aes = false, bundle = false): void {
    this.refusals.delete(address);
    this.cache.delete(address);
    if (this.cache.size >= MAX_CACHED_KEYS) this.cache.delete(this.cache.keys().next().value!);
    const now = this.now();
    this.cache.set(address, { key, until, refreshAt: until - Math.min(REFRESH_AHEAD_MAX_MS, Math.max(0, until - now) / 4), aes, bundle });
  }
}
