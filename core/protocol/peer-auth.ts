import { createPublicKey, verify, type KeyObject } from 'node:crypto';

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

/**
 * The proof text of version 2 (CHALLENGE `proof: 2`, capability `proof-2`): the nonce and the
 * HELLO's `sealKey` as sent ("" when it had none). One signature then proves the key and vouches
 * for the sealing key, so the peer port checks one signature a hello instead of two.
 */
export function challengeText2(name: string, nonce: string, sealKey: string | undefined): Buffer {
  return Buffer.from(`contact-point peer proof v2\n${name}\n${nonce}\n${sealKey ?? ''}`, 'utf8');
}

export function verifyProof2(publicKeyB64: string, name: string, nonce: string, sealKey: string | undefined, signatureB64: string): boolean {
  return verifyEd25519(publicKeyB64, challengeText2(name, nonce, sealKey), signatureB64);
}

/** Whether `signatureB64` is an Ed25519 signature over `text` by the SPKI key `publicKeyB64` (false for anything malformed). */
export function verifyEd25519(publicKeyB64: string, text: Buffer, signatureB64: string): boolean {
  try {
    const key = ed25519Key(Buffer.from(publicKeyB64, 'base64'));
    if (key.asymmetricKeyType !== 'ed25519') return false;
    return verify(null, text, key, Buffer.from(signatureB64, 'base64'));
  } catch {
    return false;
  }
}

/** The SPKI DER of every Ed25519 public key (RFC 8410): this prefix, then the 32 raw bytes. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * The key of an SPKI DER. The usual Ed25519 SPKI is read from its raw bytes (as a JWK): OpenSSL
 * 3's DER decoder costs about 40 times more (~250 us against ~6 us a key), twice per hello;
 * anything else goes through the decoder, as before.
 */
function ed25519Key(der: Buffer): KeyObject {
  if (der.length === ED25519_SPKI_PREFIX.length + 32 && der.subarray(0, ED25519_SPKI_PREFIX.length).equals(ED25519_SPKI_PREFIX)) {
    return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: der.subarray(ED25519_SPKI_PREFIX.length).toString('base64url') }, format: 'jwk' });
  }
  return createPublicKey({ key: der, format: 'der', type: 'spki' });
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
