import { createPublicKey, verify } from 'node:crypto';

/**
 * Internal peers prove they hold the key behind the name they claim: the contact point sends a
 * fresh nonce (CHALLENGE) and the peer signs this text with its Ed25519 key (PROOF). A name
 * therefore stays bound to the key it first registered with, and a replayed proof is useless.
 */
export function challengeText(name: string, nonce: string): Buffer {
  return Buffer.from(`contact-point peer proof v1\n${name}\n${nonce}`, 'utf8');
}

export function verifyProof(publicKeyB64: string, name: string, nonce: string, signatureB64: string): boolean {
  return verifyEd25519(publicKeyB64, challengeText(name, nonce), signatureB64);
}

/** Whether `signatureB64` is an Ed25519 signature over `text` by the SPKI key `publicKeyB64` (false for anything malformed). */
export function verifyEd25519(publicKeyB64: string, text: Buffer, signatureB64: string): boolean {
  try {
    const key = createPublicKey({ key: Buffer.from(publicKeyB64, 'base64'), format: 'der', type: 'spki' });
    if (key.asymmetricKeyType !== 'ed25519') return false;
    return verify(null, text, key, Buffer.from(signatureB64, 'base64'));
  } catch {
    return false;
  }
}

/**
 * An internal peer vouches for its X25519 sealing key (HELLO `sealKey`) with its Ed25519
 * identity, so a hop on the LAN cannot swap the key the contact point then signs statements for.
 */
export function sealKeyText(name: string, sealKey: string): Buffer {
  return Buffer.from(`contact-point seal key v1\n${name}\n${sealKey}`, 'utf8');
}

export function verifySealKey(publicKeyB64: string, name: string, sealKey: string, signatureB64: string): boolean {
  return verifyEd25519(publicKeyB64, sealKeyText(name, sealKey), signatureB64);
}
