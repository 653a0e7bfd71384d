import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { UsageError } from './errors.js';

/**
 * Files named by flags: certificates, CAs, and the secrets that must never be passed as
 * arguments (ps shows every process's argv to all local users), so they come from a file or
 * an environment variable instead.
 */

/** Where serve and peer send look for a credential when --credential-file is not given. */
export const CREDENTIAL_ENV = 'CONTACT_POINT_CREDENTIAL';

/** Largest secret file read (credentials and join codes are short lines). */
const MAX_SECRET_FILE_BYTES = 4096;

function why(err: unknown): string {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'it is a folder, not a file';
    default:
      return (err as Error).message;
  }
}

/** Reads a file named by `flag`; a missing or unreadable one is a UsageError naming both. */
export async function readFlagFile(flag: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err: unknown) {
    throw new UsageError(`${flag} "${path}": cannot read it: ${why(err)}`);
  }
}

/** A PEM certificate (the first one of a chain or bundle is checked), e.g. --tls-cert, --ca. */
export async function readCertificateFile(flag: string, path: string): Promise<{ pem: Buffer; certificate: X509Certificate }> {
  const pem = await readFlagFile(flag, path);
  try {
    return { pem, certificate: new X509Certificate(pem) };
  } catch (err: unknown) {
    throw new UsageError(`${flag} "${path}": not a PEM certificate (${(err as Error).message})`);
  }
}

/** A PEM private key, e.g. --tls-key. */
export async function readPrivateKeyFile(flag: string, path: string): Promise<{ pem: Buffer; key: KeyObject }> {
  const pem = await readFlagFile(flag, path);
  try {
    return { pem, key: createPrivateKey(pem) };
  } catch (err: unknown) {
    throw new UsageError(`${flag} "${path}": not a PEM private key (${(err as Error).message})`);
  }
}

/**
 * A certificate (chain) and its private key from a pair of flags (relay --tls-cert/--tls-key,
 * serve --direct-cert/--direct-key): both or neither, and the key must be the certificate's.
 */
export async function readTlsPair(cert: { flag: string; file: string | undefined }, key: { flag: string; file: string | undefined }): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  if ((cert.file === undefined) !== (key.file === undefined)) {
    throw new UsageError(cert.file === undefined ? `${key.flag} needs ${cert.flag} (the certificate it belongs to)` : `${cert.flag} needs ${key.flag} (its private key)`);
  }
  if (cert.file === undefined || key.file === undefined) return undefined;
  const c = await readCertificateFile(cert.flag, cert.file);
  const k = await readPrivateKeyFile(key.flag, key.file);
  if (!c.certificate.checkPrivateKey(k.key)) {
    throw new UsageError(`${key.flag} "${key.file}" is not the private key of the certificate in ${cert.flag} "${cert.file}"`);
  }
  return { cert: c.pem, key: k.pem };
}

/**
 * A one-line secret from a file: trimmed, non-empty. `warn` is told when the file is readable
 * by group or others (the secret is then not much of one).
 */
export async function readSecretFile(flag: string, path: string, warn: (msg: string) => void): Promise<string> {
  let size: number;
  let mode: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw Object.assign(new Error('not a file'), { code: st.isDirectory() ? 'EISDIR' : 'EINVAL' });
    size = st.size;
    mode = st.mode;
  } catch (err: unknown) {
    throw new UsageError(`${flag} "${path}": cannot read it: ${why(err)}`);
  }
  if (size > MAX_SECRET_FILE_BYTES) throw new UsageError(`${flag} "${path}": ${size} bytes is too big for a secret file (one line expected)`);
  const text = (await readFlagFile(flag, path)).toString('utf8').trim();
  if (text === '') throw new UsageError(`${flag} "${path}": the file is empty`);
  if (/\s/.test(text)) throw new UsageError(`${flag} "${path}": expected the secret alone on one line`);
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    warn(`${path} is readable by other users (mode ${(mode & 0o777).toString(8)}); run: chmod 600 ${path}`);
  }
  return text;
}

/** The secret from `--FLAG FILE` or else from the environment variable; neither is a UsageError. */
export async function secretFromFileOrEnv(
  flag: string,
  path: string | undefined,
  envName: string,
  warn: (msg: string) => void,
): Promise<string> {
  if (path !== undefined) return readSecretFile(flag, path, warn);
  const env = process.env[envName]?.trim();
  if (env) return env;
  throw new UsageError(
    `missing credential: give ${flag} FILE or set ${envName} (secrets are never taken as arguments: ps shows them to every user)`,
  );
}

/** Writes a secret to `path` with mode 0600 (also when the file existed with a wider mode). */
export async function writeSecretFile(path: string, secret: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, secret + '\n', { mode: 0o600 });
  await chmod(path, 0o600);
}
