import { createHash, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { verifyEd25519 } from './peer-auth.js';
import { loadOrCreatePrivateKey } from '../runtime/key-file.js';
import { MAX_NAME_LENGTH } from './limits.js';
import { int, obj, optional, str, type Infer, type Schema } from './schema.js';
import { SEAL_KEY_BYTES, SealError } from './seal.js';
import { Status } from './status.js';

/**
 * Keys people can check (issue 14): a contact point has its own Ed25519 key; its fingerprint
 * (SHA-256 of the raw public key, hex in groups of four) is what an admin hands over with an
 * external credential and what peers pin. The contact point signs a statement
 * {address, X25519 key, not-after} for each peer it registered (and for each external address
 * it bound at first contact); the relay passes statements on (KEYS, 0x23/0x24) but cannot make one.
 */

/** How long a statement holds: a peer the admin revokes keeps working for senders that cached one at most this long. */
export const STATEMENT_LIFETIME_MS = 60 * 60 * 1000;
/** The key file in a contact point's state folder (mode 0600). */
export const CONTACT_POINT_KEY_FILE = 'contact-point-key.pem';

const b64 = (max: number): Schema<string> => str({ min: 1, max, pattern: /^[A-Za-z0-9+/]*={0,2}$/, patternText: 'must be base64' });
const address = str({ min: 3, max: 2 * MAX_NAME_LENGTH + 1 });

/** KEYS request payload (0x23): the requester's own sealing key, which the contact point binds to its address at first contact. */
export const keysRequestSchema = obj({ key: optional(b64(48)) });
/** KEYS answer payload (0x24): the contact point's public key and its statement. */
export const keysAnswerSchema = obj({
  /** the signer: Ed25519, SPKI DER base64 */
  cpKey: b64(64),
  address,
  /** the X25519 key, raw 32 bytes base64 */
  key: b64(48),
  notAfter: int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  sig: b64(100),
});
export type KeysRequest = Infer<typeof keysRequestSchema>;
export type KeysAnswer = Infer<typeof keysAnswerSchema>;

export function statementText(address: string, key: string, notAfter: number): Buffer {
  return Buffer.from(`contact-point key statement v1\n${address}\n${key}\n${notAfter}`, 'utf8');
}

/** The fingerprint of an Ed25519 public key (SPKI DER base64): 64 hex digits in groups of four. */
export function fingerprint(spkiB64: string): string {
  const raw = Buffer.from(spkiB64, 'base64').subarray(-32);
  return createHash('sha256').update(raw).digest('hex').match(/.{4}/g)!.join(':');
}

/** A fingerprint as typed by a person (any case, any separators) in the canonical form; undefined if it is not one. */
export function normalizeFingerprint(text: string): string | undefined {
  const hex = text.toLowerCase().replace(/[^0-9a-f]/g, '');
  if (hex.length !== 64 || /[^0-9a-f:\s-]/i.test(text)) return undefined;
  return hex.match(/.{4}/g)!.join(':');
}

/**
 * Checks an answer: signed by `cpKey`, about `address`, not expired. Throws BAD_SEAL with what
 * is wrong (the caller checks cpKey against its pin first).
 */
export function checkStatement(answer: KeysAnswer, expectedAddress: string, now = Date.now()): Buffer {
  if (answer.address !== expectedAddress) throw new SealError(Status.BAD_SEAL, `a key statement for ${answer.address}, not ${expectedAddress}`);
  if (answer.notAfter < now) throw new SealError(Status.BAD_SEAL, `the key statement for ${expectedAddress} expired`);
  const key = Buffer.from(answer.key, 'base64');
  if (key.length !== SEAL_KEY_BYTES) throw new SealError(Status.BAD_SEAL, `the key in the statement for ${expectedAddress} is not ${SEAL_KEY_BYTES} bytes`);
  const ok = verifyEd25519(answer.cpKey, statementText(answer.address, answer.key, answer.notAfter), answer.sig);
  if (!ok) throw new SealError(Status.BAD_SEAL, `the key statement for ${expectedAddress} is not signed by the contact point's key`);
  return key;
}

/** A contact point's long-term Ed25519 key: it signs key statements. */
export class ContactPointKey {
  readonly publicKey: string;
  readonly fingerprint: string;

  private constructor(private readonly privateKey: KeyObject) {
    this.publicKey = createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).toString('base64');
    this.fingerprint = fingerprint(this.publicKey);
  }

  /** An in-memory key (a contact point without a state folder: a new one every start). */
  static generate(): ContactPointKey {
    return new ContactPointKey(generateKeyPairSync('ed25519').privateKey);
  }

  static async loadOrCreate(path: string): Promise<ContactPointKey> {
    return new ContactPointKey(await loadOrCreatePrivateKey(path, 'ed25519'));
  }

  /** A statement for `address` holding `key` (raw X25519, base64) until now + lifetime. */
  statement(address: string, key: string, now = Date.now(), lifetimeMs = STATEMENT_LIFETIME_MS): KeysAnswer {
    const notAfter = now + lifetimeMs;
    const sig = sign(null, statementText(address, key, notAfter), this.privateKey).toString('base64');
    return { cpKey: this.publicKey, address, key, notAfter, sig };
  }
}
