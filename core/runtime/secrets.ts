import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Credentials here are 256-bit random tokens we generate, never passwords a person picks, so a
 * fast SHA-256 at rest is enough (nothing to brute-force) and keeps hello floods cheap; a slow
 * KDF would hand an attacker a CPU lever. Comparison is constant-time over equal-length digests.
 */
export function newSecret(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Constant-time check of a presented secret against a stored SHA-256 hex digest. */
export function secretMatches(secret: string, storedHashHex: string): boolean {
  const a = createHash('sha256').update(secret, 'utf8').digest();
  const b = Buffer.from(storedHashHex, 'hex');
  return b.length === a.length && timingSafeEqual(a, b);
}

/** Constant-time equality of two strings of any length (hashes both first). */
export function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}
