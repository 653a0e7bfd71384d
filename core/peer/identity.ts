import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { challengeText } from '../protocol/peer-auth.js';

/** An internal peer's Ed25519 key pair: the name it registers is bound to this key. */
export class PeerIdentity {
  private constructor(private readonly privateKey: KeyObject) {}

  static generate(): PeerIdentity {
    return new PeerIdentity(generateKeyPairSync('ed25519').privateKey);
  }

  /** Loads the key at `path`, or creates one there (mode 0600) the first time. */
  static async loadOrCreate(path: string): Promise<PeerIdentity> {
    let pem: string | undefined;
    try {
      pem = await readFile(path, 'utf8');
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (pem !== undefined) {
      const key = createPrivateKey(pem);
      if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${path} is not an Ed25519 private key`);
      return new PeerIdentity(key);
    }
    const id = PeerIdentity.generate();
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await writeFile(path, id.privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
    return id;
  }

  /** SPKI DER, base64: what HELLO carries. */
  get publicKey(): string {
    return createPublicKey(this.privateKey).export({ format: 'der', type: 'spki' }).toString('base64');
  }

  signChallenge(name: string, nonce: string): string {
    return sign(null, challengeText(name, nonce), this.privateKey).toString('base64');
  }
}
