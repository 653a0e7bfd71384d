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
 */
export const SEAL_VERSION = 1;
/** AES-256-GCM (PROTOCOL.md 19.1) */
export const SEAL_VERSION_AES = 2;
export type SealVersion = typeof SEAL_VERSION | typeof SEAL_VERSION_AES;
export const SEAL_KEY_BYTES = 32;
export const SEAL_KEY_ID_BYTES = 8;
export const SEAL_NONCE_BYTES = 12;
export const SEAL_TAG_BYTES = 16;
const TIME_BYTES = 8;
/** version, sender key, recipient key id, nonce */
export const SEAL_HEADER_BYTES = 1 + SEAL_KEY_BYTES + SEAL_KEY_ID_BYTES + SEAL_NONCE_BYTES;
/** What sealing adds to a payload: header, sealed time and tag (77 bytes). */
export const SEAL_OVERHEAD = SEAL_HEADER_BYTES + TIME_BYTES + SEAL_TAG_BYTES;
const SEAL_SALT = Buffer.from('contact-point seal salt v1', 'latin1');
const SEAL_INFO = Buffer.from('contact-point seal v1', 'latin1');
/** version 2's pair key: another HKDF output, so no key is used with two ciphers */
const SEAL_INFO_V2 = Buffer.from('contact-point seal v2', 'latin1');
const AAD_LABEL = Buffer.from('contact-point seal aad v1\0', 'latin1');

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
  readonly keys: Record<SealVersion, Buffer>;
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
  pairKey(otherRaw: Buffer, version: SealVersion = SEAL_VERSION): Buffer {
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
    const [v1, v2] = derivePairKeys(this.privateKey, this.publicRaw, otherRaw);
    const pair: Pair = { keys: { [SEAL_VERSION]: v1, [SEAL_VERSION_AES]: v2 }, otherId: sealKeyId(otherRaw) };
    if (this.pairs.size >= MAX_PAIR_KEYS) this.pairs.delete(this.pairs.keys().next().value!);
    this.pairs.set(cacheKey, pair);
    return pair;
  }

  /** Seals `body` of message `id` from `from` to `to` for the recipient key `recipientRaw`, in envelope `version`. */
  seal(msg: SealedFields, body: Uint8Array, recipientRaw: Buffer, now = Date.now(), nonce?: Buffer, version: SealVersion = SEAL_VERSION): Buffer {
    const pair = this.pair(recipientRaw, recipientRaw.toString('latin1'));
    return sealInto(version, pair.keys[version], this.publicRaw, pair.otherId, msg, body, now, nonce ?? this.nonces);
  }

  /**
   * Opens a sealed payload addressed to this key; throws SealError BAD_SEAL (with what is wrong)
   * when it is not for this key, was changed on the way, or is too old or too new.
   */
  open(msg: SealedFields, envelope: Buffer, now = Date.now(), maxAgeMs = SEAL_MAX_AGE_MS): Buffer {
    const version = checkEnvelope(envelope);
    if (this.keyId.compare(envelope, RECIPIENT_AT, RECIPIENT_AT + SEAL_KEY_ID_BYTES) !== 0) throw new SealError(Status.BAD_SEAL, 'sealed for another key');
    let pair: Pair;
    try {
      pair = this.pair(envelope.subarray(SENDER_AT, SENDER_AT + SEAL_KEY_BYTES), envelope.toString('latin1', SENDER_AT, SENDER_AT + SEAL_KEY_BYTES));
    } catch {
      throw new SealError(Status.BAD_SEAL, "the sender's key is not a usable X25519 key");
    }
    const plain = openWith(pair.keys[version], msg, envelope);
    const sealedAt = plain.readUInt32BE(0) * 2 ** 32 + plain.readUInt32BE(4);
    if (now - sealedAt > maxAgeMs) throw new SealError(Status.BAD_SEAL, `sealed ${Math.round((now - sealedAt) / 1000)} s ago, over the ${maxAgeMs / 1000} s limit (a replay?)`);
    if (sealedAt - now > SEAL_MAX_SKEW_MS) throw new SealError(Status.BAD_SEAL, `sealed ${Math.round((sealedAt - now) / 1000)} s in the future`);
    return plain.subarray(TIME_BYTES);
  }
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
function checkEnvelope(envelope: Buffer): SealVersion {
  if (envelope.length < SEAL_OVERHEAD) throw new SealError(Status.BAD_SEAL, `a sealed payload is at least ${SEAL_OVERHEAD} bytes, not ${envelope.length}`);
  const version = envelope[0]!;
  if (version !== SEAL_VERSION && version !== SEAL_VERSION_AES) throw new SealError(Status.BAD_SEAL, `seal version ${version}; this build reads ${SEAL_VERSION} and ${SEAL_VERSION_AES}`);
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

/** HKDF over the X25519 shared secret, bound to both public keys (in byte order, so both ends agree): version 1's and version 2's pair keys. */
export function derivePairKeys(own: KeyObject, ownRaw: Buffer, otherRaw: Buffer): [Buffer, Buffer] {
  const shared = diffieHellman({ privateKey: own, publicKey: x25519PublicKey(otherRaw) });
  // RFC 7748 6.1: an all-zero result means a low-order point; refuse it rather than use a known key.
  if (shared.every((b) => b === 0)) throw new SealError(Status.BAD_SEAL, 'the other key is a low-order point');
  const [lo, hi] = Buffer.compare(ownRaw, otherRaw) <= 0 ? [ownRaw, otherRaw] : [otherRaw, ownRaw];
  const derive = (info: Buffer): Buffer => Buffer.from(hkdfSync('sha256', shared, SEAL_SALT, Buffer.concat([info, lo, hi]), 32));
  return [derive(SEAL_INFO), derive(SEAL_INFO_V2)];
}

/** The additional data: a label, the envelope header, and id, to, from (each with a u8 length). */
export function sealAad(header: Buffer, msg: SealedFields): Buffer {
  // One allocation (from Buffer's pool): this runs for every message sealed or opened.
  const out = Buffer.allocUnsafe(AAD_LABEL.length + header.length + 3 + msg.id.length + msg.to.length + msg.from.length);
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
  return sealInto(version, pairKey, senderRaw, recipientId, msg, body, now, nonce);
}

/**
 * Builds the envelope in one buffer: the header is written in place, `t ‖ body` is enciphered
 * with one update (one buffer from the cipher instead of two), and the tag follows.
 */
function sealInto(version: SealVersion, pairKey: Buffer, senderRaw: Buffer, recipientId: Buffer, msg: SealedFields, body: Uint8Array, now: number, nonce: Buffer | NoncePool): Buffer {
  const out = Buffer.allocUnsafe(SEAL_OVERHEAD + body.length);
  out[0] = version;
  senderRaw.copy(out, SENDER_AT);
  recipientId.copy(out, RECIPIENT_AT);
  if (nonce instanceof NoncePool) nonce.fill(out, NONCE_AT);
  else nonce.copy(out, NONCE_AT);
  const plain = Buffer.allocUnsafe(TIME_BYTES + body.length);
  // u64 BE milliseconds, written as two u32 (no BigInt per message)
  plain.writeUInt32BE(Math.floor(now / 2 ** 32), 0);
  plain.writeUInt32BE(now >>> 0, 4);
  plain.set(body, TIME_BYTES);
  const nonceBytes = out.subarray(NONCE_AT, SEAL_HEADER_BYTES);
  const tag = { authTagLength: SEAL_TAG_BYTES };
  const cipher = version === SEAL_VERSION_AES ? createCipheriv('aes-256-gcm', pairKey, nonceBytes, tag) : createCipheriv('chacha20-poly1305', pairKey, nonceBytes, tag);
  cipher.setAAD(sealAad(out.subarray(0, SEAL_HEADER_BYTES), msg), { plaintextLength: plain.length });
  let o = SEAL_HEADER_BYTES;
  o += cipher.update(plain).copy(out, o);
  o += cipher.final().copy(out, o);
  cipher.getAuthTag().copy(out, o);
  return out;
}

/** The sealed time and body (the envelope's version, already checked, picks the cipher); BAD_SEAL when the tag does not verify. */
export function openWith(pairKey: Buffer, msg: SealedFields, envelope: Buffer): Buffer {
  const tagAt = envelope.length - SEAL_TAG_BYTES;
  const nonce = envelope.subarray(NONCE_AT, SEAL_HEADER_BYTES);
  const tag = { authTagLength: SEAL_TAG_BYTES };
  const decipher = envelope[0] === SEAL_VERSION_AES ? createDecipheriv('aes-256-gcm', pairKey, nonce, tag) : createDecipheriv('chacha20-poly1305', pairKey, nonce, tag);
  decipher.setAAD(sealAad(envelope.subarray(0, SEAL_HEADER_BYTES), msg), { plaintextLength: tagAt - SEAL_HEADER_BYTES });
  decipher.setAuthTag(envelope.subarray(tagAt));
  const plain = decipher.update(envelope.subarray(SEAL_HEADER_BYTES, tagAt));
  try {
    decipher.final();
  } catch {
    throw new SealError(Status.BAD_SEAL, 'the seal did not verify: changed on the way, re-addressed, renumbered or for another key');
  }
  return plain;
}
