import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * The private key of type `type` stored at `path` (PKCS#8 PEM), or a new one written there
 * (mode 0600, its folder 0700) the first time. A file with another kind of key is an error,
 * never overwritten.
 */
export async function loadOrCreatePrivateKey(path: string, type: 'ed25519' | 'x25519'): Promise<KeyObject> {
  let pem: string | undefined;
  try {
    pem = await readFile(path, 'utf8');
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (pem !== undefined) {
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== type) throw new Error(`${path} is not an ${type === 'ed25519' ? 'Ed25519' : 'X25519'} private key`);
    return key;
  }
  const key = type === 'ed25519' ? generateKeyPairSync('ed25519').privateKey : generateKeyPairSync('x25519').privateKey;
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, key.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
  return key;
}
