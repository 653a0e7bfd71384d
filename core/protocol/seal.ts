import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomFillSync,
  type KeyObject,
} from 'node:crypto';
import { loadOrCreatePrivateKey } from '../runtime/key-file.js';
import { FLAG_SEALED } from './frames.js';
import { Status, type StatusCode } from './status.js';

/**
 * Sealed message payloads (issue 14; docs/PROTOCOL.md 19): a peer seals the MSG payload for
 * the recipient's X25519 key, so the relay and the contact point see the addresses, id, size
 * and flags, never the body. The envelope (SEAL_VERSION 1):
 *
 *   0        1                    33                41           53
 *   +--------+--------------------+-----------------+------------+------------------------------+
 *   | v = 1  | sender X25519 (32) | recipient id (8)| nonce (12) | ChaCha20-Poly1305(t ‖ body)  |
 *   +--------+--------------------+-----------------+------------+------------------------------+
 *
 * t is the sealing time (u64 BE, ms since the epoch). The pair key is
 * HKDF-SHA256(X25519(own, other), salt = SEAL_SALT, info = SEAL_INFO ‖ lower key ‖ higher key),
 * the same both ways, derived once per pair of keys and cached. The AAD binds the envelope's
 * header and the MSG's id, to and from (each length-prefixed), so a hop that re-addresses,
 * renumbers or re-keys a message makes it fail to open. Primitives are node:crypto's only.
 *
 * Version 2 is the same envelope with AES-256-GCM in place of ChaCha20-Poly1305, under its own
 * pair key (SEAL_INFO_V2). A sender uses it for a receiver whose KEYS answer carries
 * FLAG_SEAL_AES: on hosts with AES-NI it costs about half as much CPU per message, and OpenSSL's
 * AVX-512 ChaCha20 made every other thing the process did slower too (issue 14, sealing speed).
 *
 * Version 3 is a bundle: several messages of one sender to one recipient under ONE AES-256-GCM
 * seal, carried by one MSG (PROTOCOL.md 19.6). Node's AEAD costs ~5 µs per operation whatever its
 * size and only ~0.3 µs per further KiB, so a busy sender that seals each 1 KiB message alone
 * spends more on cipher set-up than on anything else; one seal per turn's messages does not.
 */
export const SEAL_VERSION = 1;
/** AES-256-GCM (PROTOCOL.md 19.1) */
export const SEAL_VERSION_AES = 2;
export type SealVersion = typeof SEAL_VERSION | typeof SEAL_VERSION_AES;
/** a bundle of messages under one AES-256-GCM seal (PROTOCOL.md 19.6) */
export const SEAL_VERSION_BUNDLE = 3;
type KeyVersion = SealVersion | typeof SEAL_VERSION_BUNDLE;
/** Messages one bundle carries at most. */
export const BUNDLE_MAX_MESSAGES = 64;
/** Bytes of a bundle's entries (each id, its length bytes and its body) at most. */
export const BUNDLE_MAX_BYTES = 64 * 1024;
/**
 * Bytes of entries the SDK puts in one bundle (receivers take up to BUNDLE_MAX_BYTES). Every hop
 * forwards a bundle only once it has all of it, so a closed loop's 256 messages in ~5 bundles of
 * ~55 KiB left most of a longer path idle: across two relay nodes and NATS (bench
 * cluster-messages --quick, three alternating pairs) 16 KiB bundles gave 14-27 % more msgs/s
 * and 9-12 % less CPU per message than 64 KiB ones (the same-node baseline alike: 0.76-0.90 of
 * it against 0.64-0.73); on one relay (bench sealing) the same throughput and CPU per message.
 */
export const BUNDLE_SEND_BYTES = 16 * 1024;
/** What each message adds to a bundle besides its id and body: the id's length byte and the body's u32 length. */
export const BUNDLE_ENTRY_OVERHEAD = 5;
export const SEAL_KEY_BYTES = 32;
export const SEAL_KEY_ID_BYTES = 8;
export const SEAL_NONCE_BYTES = 12;
export const SEAL_TAG_BYTES = 16;
const TIME_BYTES = 8;
/** version, sender key, recipient key id, nonce */
export const SEAL_HEADER_BYTES = 1 + SEAL_KEY_BYTES + SEAL_KEY_ID_BYTES + SEAL_NONCE_BYTES;
/** What sealing adds to a payload: header, sealed time and tag (77 bytes). */
export const SEAL_OVERHEAD = SEAL_HEADER_BYTES + TIME_BYTES + SEAL_TAG_BYTES;
/** A bundle's clear header: a single envelope's, then the count of messages (u8). */
export const BUNDLE_HEADER_BYTES = SEAL_HEADER_BYTES + 1;
/** What a bundle adds besides its entries (78 bytes). */
export const BUNDLE_OVERHEAD = BUNDLE_HEADER_BYTES + TIME_BYTES + SEAL_TAG_BYTES;
const SEAL_SALT = Buffer.from('contact-point seal salt v1', 'latin1');
const SEAL_INFO = Buffer.from('contact-point seal v1', 'latin1');
/** version 2's pair key: another HKDF output, so no key is used with two ciphers */
const SEAL_INFO_V2 = Buffer.from('contact-point seal v2', 'latin1');
/** version 3's (bundles): the same cipher as version 2, but its own key all the same */
const SEAL_INFO_V3 = Buffer.from('contact-point seal v3', 'latin1');
const AAD_LABEL = Buffer.from('contact-point seal aad v1\0', 'latin1');
/** aadInto's buffer: the label, a bundle's header and three fields of at most 255 characters fit. */
const AAD_SCRATCH = Buffer.allocUnsafeSlow(1024);

/**
 * A receiver refuses a sealed message older than this (its sealed time; BAD_SEAL): replays
 * within it are dropped by the receiver's dedupe window, older ones by this. The SDK's delivery
 * deadline (60 s) plus a minute of clock difference between the two ends.
 */
export const SEAL_MAX_AGE_MS = 120_000;
/** ... or sealed this far in the future by the receiver's clock. */
export const SEAL_MAX_SKEW_MS = 60_000;
/** Pair keys one end keeps derived (least recently used forgotten first). */
export const MAX_PAIR_KEYS = 4_096;

/** PKCS#8 DER prefix of an X25519 private key (RFC 8410), before its 32 raw bytes. */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
/** SPKI DER prefix of an X25519 public key (RFC 8410). */
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

/** A seal refused with a stable code: SEAL_REQUIRED, BAD_SEAL or KEY_CHANGED. */
export class SealError extends Error {
  override readonly name = 'SealError';
  constructor(
    readonly code: StatusCode,
    readonly reason: string,
  ) {
    super(reason);
  }
}

export function x25519PublicKey(raw: Buffer): KeyObject {
  if (raw.length !== SEAL_KEY_BYTES) throw new SealError(Status.BAD_SEAL, `an X25519 key is ${SEAL_KEY_BYTES} bytes, not ${raw.length}`);
  return createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** The first 8 bytes of SHA-256 of a raw public key: how an envelope names its recipient's key. */
export function sealKeyId(rawPublic: Buffer): Buffer {
  return createHash('sha256').update(rawPublic).digest().subarray(0, SEAL_KEY_ID_BYTES);
}

/** What one end keeps for each key it seals to or opens from: derived once, then reused per message. */
interface Pair {
  /** the pair key of each version (HKDF outputs) */
  readonly keys: Record<KeyVersion, Buffer>;
  /** the other key's id (sealKeyId), written into every envelope sealed for it */
  readonly otherId: Buffer;
}

/** Bytes of randomness drawn at once for nonces (341 nonces). */
const NONCE_POOL_BYTES = 4_096;

/**
 * Random bytes for nonces, drawn from the system generator 4 KiB at a time: a randomBytes(12)
 * call per message cost more than the cipher (issue 14, sealing speed). Each nonce is copied out
 * of the pool once and the pool is refilled, never reused.
 */
class NoncePool {
  private readonly pool = Buffer.allocUnsafeSlow(NONCE_POOL_BYTES);
  private at = NONCE_POOL_BYTES;

  /** Writes a fresh nonce into `out` at `offset`. */
  fill(out: Buffer, offset: number): void {
    if (this.at + SEAL_NONCE_BYTES > NONCE_POOL_BYTES) {
      randomFillSync(this.pool);
      this.at = 0;
    }
    this.pool.copy(out, offset, this.at, this.at + SEAL_NONCE_BYTES);
    this.at += SEAL_NONCE_BYTES;
  }
}
/** A peer's static X25519 key pair for sealing, with its cache of pair keys. */
export class SealKey {
  /** the raw 32-byte public key */
  readonly publicRaw: Buffer;
  readonly keyId: Buffer;
  /** by the other raw key as a latin1 string (cheaper to make than base64 for each message) */
  private readonly pairs = new Map<string, Pair>();
  private readonly nonces = new NoncePool();
  /**
   * The pair last sealed for or opened from, with its raw key: a sender writes to one receiver
   * many times in a row, and a receiver hears from one sender, so most messages skip making a
   * cache key and moving the map entry (issue 14, sealing speed).
   */
  private lastSeal: { raw: Buffer; pair: Pair } | undefined;
  private lastOpen: { raw: Buffer; pair: Pair } | undefined;

  private constructor(private readonly privateKey: KeyObject) {
    const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
    this.publicRaw = Buffer.from(spki.subarray(spki.length - SEAL_KEY_BYTES));
    this.keyId = sealKeyId(this.publicRaw);
  }

  static generate(): SealKey {
    return new SealKey(generateKeyPairSync('x25519').privateKey);
  }

  /** From the raw 32-byte private key (test vectors). */
  static fromRaw(raw: Buffer): SealKey {
    if (raw.length !== SEAL_KEY_BYTES) throw new Error(`an X25519 private key is ${SEAL_KEY_BYTES} bytes`);
    return new SealKey(createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' }));
  }

  /** Loads the key at `path`, or creates one there (mode 0600) the first time. */
  static async loadOrCreate(path: string): Promise<SealKey> {
    return new SealKey(await loadOrCreatePrivateKey(path, 'x25519'));
  }

  get publicKey(): string {
    return this.publicRaw.toString('base64');
  }

  /** The key shared with the holder of `otherRaw` (derived once, then cached). */
  pairKey(otherRaw: Buffer, version: KeyVersion = SEAL_VERSION): Buffer {
    return this.pair(otherRaw, otherRaw.toString('latin1')).keys[version];
  }

  private pair(otherRaw: Buffer, cacheKey: string): Pair {
    const hit = this.pairs.get(cacheKey);
    if (hit) {
      // Least recently used first: move it to the end.
      this.pairs.delete(cacheKey);
      this.pairs.set(cacheKey, hit);
      return hit;
    }
    const [v1, v2, v3] = derivePairKeys(this.privateKey, this.publicRaw, otherRaw);
    const pair: Pair = { keys: { [SEAL_VERSION]: v1, [SEAL_VERSION_AES]: v2, [SEAL_VERSION_BUNDLE]: v3 }, otherId: sealKeyId(otherRaw) };
    if (this.pairs.size >= MAX_PAIR_KEYS) this.pairs.delete(this.pairs.keys().next().value!);
    this.pairs.set(cacheKey, pair);
    return pair;
  }

  /** Seals `body` of message `id` from `from` to `to` for the recipient key `recipientRaw`, in envelope `version`. */
  seal(msg: SealedFields, body: Uint8Array, recipientRaw: Buffer, now = Date.now(), nonce?: Buffer, version: SealVersion = SEAL_VERSION): Buffer {
    const out = Buffer.allocUnsafe(SEAL_OVERHEAD + body.length);
    this.sealAt(out, 0, msg, body, recipientRaw, version, now, nonce);
    return out;
  }

  /**
   * As seal(), written at out[at] (SEAL_OVERHEAD + body.length bytes from there): the caller's
   * buffer, e.g. where a link writes the MSG frame that carries the envelope. Returns where the
   * envelope ends.
   */
  sealAt(out: Buffer, at: number, msg: SealedFields, body: Uint8Array, recipientRaw: Buffer, version: SealVersion = SEAL_VERSION, now = Date.now(), nonce?: Buffer): number {
    const pair = this.sealPair(recipientRaw);
    return sealInto(out, at, version, pair.keys[version], this.publicRaw, pair.otherId, msg, body, now, nonce ?? this.nonces);
  }

  /**
   * Seals `entries` (1 to BUNDLE_MAX_MESSAGES messages, each with its own id) as one bundle
   * (version 3) carried by the MSG `msg` (its own id, the wire id). Throws a RangeError when the
   * entries break the bundle's bounds (a caller's mistake, not the far end's).
   */
  sealBundle(msg: SealedFields, entries: readonly BundleEntry[], recipientRaw: Buffer, now = Date.now(), nonce?: Buffer): Buffer {
    const out = Buffer.allocUnsafe(bundleLength(entries));
    this.sealBundleAt(out, 0, msg, entries, recipientRaw, now, nonce);
    return out;
  }

  /** As sealBundle(), written at out[at] (bundleLength(entries) bytes from there); returns where it ends. */
  sealBundleAt(out: Buffer, at: number, msg: SealedFields, entries: readonly BundleEntry[], recipientRaw: Buffer, now = Date.now(), nonce?: Buffer): number {
    const pair = this.sealPair(recipientRaw);
    return sealBundleInto(out, at, pair.keys[SEAL_VERSION_BUNDLE], this.publicRaw, pair.otherId, msg, entries, now, nonce ?? this.nonces);
  }

  /**
   * Finds (or derives) what sealAt() and sealBundleAt() will use for `recipientRaw`, through the
   * same last-recipient shortcut; throws when it is not a usable X25519 key. So a frame sealed
   * later, where its link writes it, cannot fail on its key.
   */
  checkRecipient(recipientRaw: Buffer): void {
    this.sealPair(recipientRaw);
  }

  private sealPair(recipientRaw: Buffer): Pair {
    const last = this.lastSeal;
    if (last?.raw === recipientRaw) return last.pair;
    const pair = this.pair(recipientRaw, recipientRaw.toString('latin1'));
    this.lastSeal = { raw: recipientRaw, pair };
    return pair;
  }

  /** The pair of the sender key in `envelope` (checked long enough); BAD_SEAL when it is not a usable key. */
  private openPair(envelope: Buffer): Pair {
    const last = this.lastOpen;
    if (last && last.raw.compare(envelope, SENDER_AT, SENDER_AT + SEAL_KEY_BYTES) === 0) return last.pair;
    let pair: Pair;
    try {
      pair = this.pair(envelope.subarray(SENDER_AT, SENDER_AT + SEAL_KEY_BYTES), envelope.toString('latin1', SENDER_AT, SENDER_AT + SEAL_KEY_BYTES));
    } catch {
      throw new SealError(Status.BAD_SEAL, "the sender's key is not a usable X25519 key");
    }
    this.lastOpen = { raw: Buffer.from(envelope.subarray(SENDER_AT, SENDER_AT + SEAL_KEY_BYTES)), pair };
    return pair;
  }

  /**
   * Opens a sealed payload addressed to this key; throws SealError BAD_SEAL (with what is wrong)
   * when it is not for this key, was changed on the way, or is too old or too new.
   */
  open(msg: SealedFields, envelope: Buffer, now = Date.now(), maxAgeMs = SEAL_MAX_AGE_MS): Buffer {
    const version = checkEnvelope(envelope);
    if (version === SEAL_VERSION_BUNDLE) throw new SealError(Status.BAD_SEAL, 'a bundle of messages (seal version 3), opened with openBundle');
    if (this.keyId.compare(envelope, RECIPIENT_AT, RECIPIENT_AT + SEAL_KEY_ID_BYTES) !== 0) throw new SealError(Status.BAD_SEAL, 'sealed for another key');
    const plain = openWith(this.openPair(envelope).keys[version], msg, envelope);
    checkAge(plain, now, maxAgeMs);
    return plain.subarray(TIME_BYTES);
  }

  /**
   * Opens a bundle (version 3) addressed to this key: its messages in order, each body a view
   * into one buffer. BAD_SEAL (the bundle refused whole) when it is not for this key, does not
   * verify, is too old or too new, or its entries are not exactly the count its header says.
   */
  openBundle(msg: SealedFields, envelope: Buffer, now = Date.now(), maxAgeMs = SEAL_MAX_AGE_MS): BundleEntry[] {
    if (checkEnvelope(envelope) !== SEAL_VERSION_BUNDLE) throw new SealError(Status.BAD_SEAL, `seal version ${envelope[0]} is not a bundle`);
    if (this.keyId.compare(envelope, RECIPIENT_AT, RECIPIENT_AT + SEAL_KEY_ID_BYTES) !== 0) throw new SealError(Status.BAD_SEAL, 'sealed for another key');
    const plain = decipher(this.openPair(envelope).keys[SEAL_VERSION_BUNDLE], msg, envelope, BUNDLE_HEADER_BYTES, true);
    checkAge(plain, now, maxAgeMs);
    return readEntries(plain, envelope[SEAL_HEADER_BYTES]!);
  }
}

/** One message of a bundle: its own id (the sender's, bound by the seal) and body. */
export interface BundleEntry {
  readonly id: string;
  readonly body: Buffer;
}

/** BAD_SEAL unless the sealed time at the start of `plain` is within the age limit and the skew. */
function checkAge(plain: Buffer, now: number, maxAgeMs: number): void {
  const sealedAt = plain.readUInt32BE(0) * 2 ** 32 + plain.readUInt32BE(4);
  if (now - sealedAt > maxAgeMs) throw new SealError(Status.BAD_SEAL, `sealed ${Math.round((now - sealedAt) / 1000)} s ago, over the ${maxAgeMs / 1000} s limit (a replay?)`);
  if (sealedAt - now > SEAL_MAX_SKEW_MS) throw new SealError(Status.BAD_SEAL, `sealed ${Math.round((sealedAt - now) / 1000)} s in the future`);
}

/** A bundle's entries after the sealed time: exactly `count` of them, filling the rest; BAD_SEAL otherwise. */
function readEntries(plain: Buffer, count: number): BundleEntry[] {
  const bad = (why: string): SealError => new SealError(Status.BAD_SEAL, `malformed bundle: ${why}`);
  if (count < 1 || count > BUNDLE_MAX_MESSAGES) throw bad(`${count} messages; a bundle carries 1 to ${BUNDLE_MAX_MESSAGES}`);
  const out: BundleEntry[] = [];
  const ids = new Set<string>();
  let o = TIME_BYTES;
  for (let i = 0; i < count; i++) {
    if (o + BUNDLE_ENTRY_OVERHEAD > plain.length) throw bad(`message ${i + 1} of ${count} runs past the end`);
    const idLength = plain[o]!;
    if (idLength < 1 || idLength > MAX_BUNDLED_ID_LENGTH || o + 1 + idLength + 4 > plain.length) throw bad(`message ${i + 1} has a bad id length`);
    for (let k = o + 1; k <= o + idLength; k++) if (plain[k]! < 0x21 || plain[k]! > 0x7e) throw bad(`message ${i + 1}'s id is not printable ASCII`);
    const id = plain.toString('latin1', o + 1, o + 1 + idLength);
    if (ids.has(id)) throw bad(`id ${id} twice`);
    ids.add(id);
    o += 1 + idLength;
    const length = plain.readUInt32BE(o);
    o += 4;
    if (length > plain.length - o) throw bad(`message ${i + 1}'s body runs past the end`);
    out.push({ id, body: plain.subarray(o, o + length) });
    o += length;
  }
  if (o !== plain.length) throw bad(`${plain.length - o} bytes after its ${count} messages`);
  return out;
}

/** Ids inside a bundle: as a MSG's (1 to 64 printable ASCII characters). */
const MAX_BUNDLED_ID_LENGTH = 64;

/**
 * How many messages a MSG carries, for whoever counts messages (rate limits, counters): the
 * count in a sealed bundle's clear header (at least 1), else 1. The count is bound by the seal,
 * so a sender that states fewer than it sealed has its bundle refused by the receiver.
 */
export function messageCount(flags: number, payload: Buffer): number {
  if ((flags & FLAG_SEALED) === 0 || payload.length < BUNDLE_OVERHEAD || payload[0] !== SEAL_VERSION_BUNDLE) return 1;
  return Math.max(1, payload[SEAL_HEADER_BYTES]!);
}

/** What of a MSG the seal binds besides its own header. */
export interface SealedFields {
  readonly id: string;
  readonly to: string;
  readonly from: string;
}

export interface EnvelopeHeader {
  readonly version: number;
  readonly senderKey: Buffer;
  readonly recipientId: Buffer;
  readonly nonce: Buffer;
}

const SENDER_AT = 1;
const RECIPIENT_AT = SENDER_AT + SEAL_KEY_BYTES;
const NONCE_AT = RECIPIENT_AT + SEAL_KEY_ID_BYTES;

/** Its version; BAD_SEAL unless `envelope` is long enough and of a version this build reads. */
function checkEnvelope(envelope: Buffer): KeyVersion {
  if (envelope.length < SEAL_OVERHEAD) throw new SealError(Status.BAD_SEAL, `a sealed payload is at least ${SEAL_OVERHEAD} bytes, not ${envelope.length}`);
  const version = envelope[0]!;
  if (version === SEAL_VERSION_BUNDLE) {
    if (envelope.length < BUNDLE_OVERHEAD) throw new SealError(Status.BAD_SEAL, `a sealed bundle is at least ${BUNDLE_OVERHEAD} bytes, not ${envelope.length}`);
    return version;
  }
  if (version !== SEAL_VERSION && version !== SEAL_VERSION_AES) throw new SealError(Status.BAD_SEAL, `seal version ${version}; this build reads ${SEAL_VERSION}, ${SEAL_VERSION_AES} and ${SEAL_VERSION_BUNDLE}`);
  return version;
}

/** The clear part of an envelope; BAD_SEAL when it is not one. */
export function readEnvelopeHeader(envelope: Buffer): EnvelopeHeader {
  return {
    version: checkEnvelope(envelope),
    senderKey: envelope.subarray(SENDER_AT, RECIPIENT_AT),
    recipientId: envelope.subarray(RECIPIENT_AT, NONCE_AT),
    nonce: envelope.subarray(NONCE_AT, SEAL_HEADER_BYTES),
  };
}

/** The sender's raw key in an envelope (what the contact point and an external receiver check, per message); BAD_SEAL when it is not one. */
export function envelopeSenderKey(envelope: Buffer): Buffer {
  checkEnvelope(envelope);
  return envelope.subarray(SENDER_AT, RECIPIENT_AT);
}

/** HKDF over the X25519 shared secret, bound to both public keys (in byte order, so both ends agree): the pair keys of versions 1, 2 and 3. */
export function derivePairKeys(own: KeyObject, ownRaw: Buffer, otherRaw: Buffer): [Buffer, Buffer, Buffer] {
  const shared = diffieHellman({ privateKey: own, publicKey: x25519PublicKey(otherRaw) });
  // RFC 7748 6.1: an all-zero result means a low-order point; refuse it rather than use a known key.
  if (shared.every((b) => b === 0)) throw new SealError(Status.BAD_SEAL, 'the other key is a low-order point');
  const [lo, hi] = Buffer.compare(ownRaw, otherRaw) <= 0 ? [ownRaw, otherRaw] : [otherRaw, ownRaw];
  const derive = (info: Buffer): Buffer => Buffer.from(hkdfSync('sha256', shared, SEAL_SALT, Buffer.concat([info, lo, hi]), 32));
  return [derive(SEAL_INFO), derive(SEAL_INFO_V2), derive(SEAL_INFO_V3)];
}

/** The additional data: a label, the envelope header, and id, to, from (each with a u8 length). */
export function sealAad(header: Buffer, msg: SealedFields): Buffer {
  return Buffer.from(aadInto(header, msg));
}

/**
 * The additional data in a buffer the process reuses (setAAD copies it at once): this runs for
 * every message sealed or opened, and a buffer per message is garbage the GC must sweep.
 */
function aadInto(header: Buffer, msg: SealedFields): Buffer {
  const length = AAD_LABEL.length + header.length + 3 + msg.id.length + msg.to.length + msg.from.length;
  const out = length <= AAD_SCRATCH.length ? AAD_SCRATCH.subarray(0, length) : Buffer.allocUnsafe(length);
  let o = AAD_LABEL.copy(out, 0);
  o += header.copy(out, o);
  o = writeField(out, o, msg.id);
  o = writeField(out, o, msg.to);
  writeField(out, o, msg.from);
  return out;
}

function writeField(out: Buffer, o: number, field: string): number {
  out[o] = field.length;
  return o + 1 + out.write(field, o + 1, 'latin1');
}

/** The envelope for `body`, with a given pair key, nonce and time (sealKey.seal draws the nonce). */
export function sealWith(pairKey: Buffer, senderRaw: Buffer, recipientId: Buffer, msg: SealedFields, body: Uint8Array, now: number, nonce: Buffer, version: SealVersion = SEAL_VERSION): Buffer {
  const out = Buffer.allocUnsafe(SEAL_OVERHEAD + body.length);
  sealInto(out, 0, version, pairKey, senderRaw, recipientId, msg, body, now, nonce);
  return out;
}

/**
 * The plaintext handed to cipher.update (time ‖ body, or a bundle's time and entries) is built in
 * one buffer the process reuses, since update copies its input at once: a sealed message then
 * costs the GC only its envelope and the cipher's output, not a third copy. Zeroed after each
 * use, so no payload stays in it. Plaintexts above its size get a buffer of their own.
 */
const PLAIN_SCRATCH_BYTES = 128 * 1024;
let plainScratch: Buffer | undefined;

function plainBuffer(length: number): Buffer {
  if (length > PLAIN_SCRATCH_BYTES) return Buffer.allocUnsafe(length);
  plainScratch ??= Buffer.allocUnsafeSlow(PLAIN_SCRATCH_BYTES);
  return plainScratch.subarray(0, length);
}

/** The envelope's clear header at out[at]: version, sender key, recipient key id, a nonce. */
function writeSealHeader(out: Buffer, at: number, version: number, senderRaw: Buffer, recipientId: Buffer, nonce: Buffer | NoncePool): void {
  out[at] = version;
  senderRaw.copy(out, at + SENDER_AT);
  recipientId.copy(out, at + RECIPIENT_AT);
  if (nonce instanceof NoncePool) nonce.fill(out, at + NONCE_AT);
  else nonce.copy(out, at + NONCE_AT);
}

/** u64 BE milliseconds at plain[0], written as two u32 (no BigInt per message). */
function writeTime(plain: Buffer, now: number): void {
  plain.writeUInt32BE(Math.floor(now / 2 ** 32), 0);
  plain.writeUInt32BE(now >>> 0, 4);
}

/**
 * Enciphers `plain` behind the clear header out[at, at + headerBytes) (the AAD's, with `msg`),
 * writing ciphertext and tag after it; then zeroes `plain` (it may be the scratch buffer).
 */
function encipherAfter(out: Buffer, at: number, headerBytes: number, aes: boolean, pairKey: Buffer, msg: SealedFields, plain: Buffer): number {
  const nonce = out.subarray(at + NONCE_AT, at + SEAL_HEADER_BYTES);
  const tag = { authTagLength: SEAL_TAG_BYTES };
  try {
    const cipher = aes ? createCipheriv('aes-256-gcm', pairKey, nonce, tag) : createCipheriv('chacha20-poly1305', pairKey, nonce, tag);
    cipher.setAAD(aadInto(out.subarray(at, at + headerBytes), msg), { plaintextLength: plain.length });
    let o = at + headerBytes;
    o += cipher.update(plain).copy(out, o);
    o += cipher.final().copy(out, o);
    return o + cipher.getAuthTag().copy(out, o);
  } finally {
    plain.fill(0);
  }
}

/**
 * Writes the envelope of `body` at out[at] (out has at least SEAL_OVERHEAD + body.length bytes from at):
 * the header in place, `t ‖ body` enciphered with one update, then the tag. The caller's buffer
 * may be where a link writes the MSG frame that carries it (PeerClient), so the envelope is never
 * a buffer of its own.
 */
function sealInto(out: Buffer, at: number, version: SealVersion, pairKey: Buffer, senderRaw: Buffer, recipientId: Buffer, msg: SealedFields, body: Uint8Array, now: number, nonce: Buffer | NoncePool): number {
  if (out.length - at < SEAL_OVERHEAD + body.length) throw new RangeError(`an envelope of a ${body.length}-byte body takes ${SEAL_OVERHEAD + body.length} bytes; ${out.length - at} are left`);
  writeSealHeader(out, at, version, senderRaw, recipientId, nonce);
  const plain = plainBuffer(TIME_BYTES + body.length);
  writeTime(plain, now);
  plain.set(body, TIME_BYTES);
  return encipherAfter(out, at, SEAL_HEADER_BYTES, version === SEAL_VERSION_AES, pairKey, msg, plain);
}

/** The sealed time and body (the envelope's version, already checked, picks the cipher); BAD_SEAL when the tag does not verify. */
export function openWith(pairKey: Buffer, msg: SealedFields, envelope: Buffer): Buffer {
  return decipher(pairKey, msg, envelope, SEAL_HEADER_BYTES, envelope[0] !== SEAL_VERSION);
}

/** The plaintext after a clear header of `headerBytes` (the AAD's), with AES-256-GCM or ChaCha20-Poly1305; BAD_SEAL when the tag does not verify. */
function decipher(pairKey: Buffer, msg: SealedFields, envelope: Buffer, headerBytes: number, aes: boolean): Buffer {
  const tagAt = envelope.length - SEAL_TAG_BYTES;
  const nonce = envelope.subarray(NONCE_AT, SEAL_HEADER_BYTES);
  const tag = { authTagLength: SEAL_TAG_BYTES };
  const d = aes ? createDecipheriv('aes-256-gcm', pairKey, nonce, tag) : createDecipheriv('chacha20-poly1305', pairKey, nonce, tag);
  d.setAAD(aadInto(envelope.subarray(0, headerBytes), msg), { plaintextLength: tagAt - headerBytes });
  d.setAuthTag(envelope.subarray(tagAt));
  const plain = d.update(envelope.subarray(headerBytes, tagAt));
  try {
    d.final();
  } catch {
    throw new SealError(Status.BAD_SEAL, 'the seal did not verify: changed on the way, re-addressed, renumbered or for another key');
  }
  return plain;
}

/** The length of a bundle's envelope (version 3) carrying `entries`; a RangeError when they break the bundle's bounds. */
export function bundleLength(entries: readonly BundleEntry[]): number {
  if (entries.length < 1 || entries.length > BUNDLE_MAX_MESSAGES) throw new RangeError(`a bundle carries 1 to ${BUNDLE_MAX_MESSAGES} messages, not ${entries.length}`);
  let length = BUNDLE_OVERHEAD;
  for (const e of entries) {
    if (e.id.length < 1 || e.id.length > MAX_BUNDLED_ID_LENGTH) throw new RangeError(`bundled id "${e.id}": 1 to ${MAX_BUNDLED_ID_LENGTH} characters`);
    length += BUNDLE_ENTRY_OVERHEAD + e.id.length + e.body.length;
  }
  return length;
}

/** A bundle's envelope (version 3) with a given pair key, nonce and time (sealKey.sealBundle draws the nonce). */
export function sealBundleWith(pairKey: Buffer, senderRaw: Buffer, recipientId: Buffer, msg: SealedFields, entries: readonly BundleEntry[], now: number, nonce: Buffer | NoncePool): Buffer {
  const out = Buffer.allocUnsafe(bundleLength(entries));
  sealBundleInto(out, 0, pairKey, senderRaw, recipientId, msg, entries, now, nonce);
  return out;
}

/** Writes a bundle's envelope at out[at] (out has at least bundleLength(entries) bytes from at), as sealInto does for one message. */
function sealBundleInto(out: Buffer, at: number, pairKey: Buffer, senderRaw: Buffer, recipientId: Buffer, msg: SealedFields, entries: readonly BundleEntry[], now: number, nonce: Buffer | NoncePool): number {
  const length = bundleLength(entries);
  if (out.length - at < length) throw new RangeError(`this bundle's envelope takes ${length} bytes; ${out.length - at} are left`);
  writeSealHeader(out, at, SEAL_VERSION_BUNDLE, senderRaw, recipientId, nonce);
  out[at + SEAL_HEADER_BYTES] = entries.length;
  const plain = plainBuffer(length - BUNDLE_HEADER_BYTES - SEAL_TAG_BYTES);
  writeTime(plain, now);
  let o = TIME_BYTES;
  for (const e of entries) {
    plain[o] = e.id.length;
    o += 1 + plain.write(e.id, o + 1, 'latin1');
    plain.writeUInt32BE(e.body.length, o);
    o += 4;
    plain.set(e.body, o);
    o += e.body.length;
  }
  return encipherAfter(out, at, BUNDLE_HEADER_BYTES, true, pairKey, msg, plain);
}
