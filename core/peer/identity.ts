import { createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { challengeText, challengeText2, sealKeyText } from '../protocol/peer-auth.js';
import { loadOrCreatePrivateKey } from '../runtime/key-file.js';

/** An internal peer's Ed25519 key pair: the name it registers is bound to this key. */
export class PeerIdentity {
  /** SPKI DER, base64: what HELLO carries (exported once: every hello sends it). */
  readonly publicKey: string;

  private constructor(private readonly privateKey: KeyObject) {
    this.publicKey = createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).toString('base64');
  }

  static generate(): PeerIdentity {
    return new PeerIdentity(generateKeyPairSync('ed25519').privateKey);
  }

  /** Loads the key at `path`, or creates one there (mode 0600) the first time. */
  static async loadOrCreate(path: string): Promise<PeerIdentity> {
    return new PeerIdentity(await loadOrCreatePrivateKey(path, 'ed25519'));
  }

  signChallenge(name: string, nonce: string): string {
    return sign(null, challengeText(name, nonce), this.privateKey).toString('base64');
  }

  /** The proof of version 2: the nonce and the HELLO's sealing key (PROTOCOL.md 7.2). */
  signChallenge2(name: string, nonce: string, sealKey: string | undefined): string {
    return sign(null, challengeText2(name, nonce, sealKey), this.privateKey).toString('base64');
  }

  /** Vouches for this peer's X25519 sealing key (HELLO `sealKeySig`). */
  signSealKey(name: string, sealKey: string): string {
    return sign(null, sealKeyText(name, sealKey), this.privateKey).toString('base64');
  }
}
