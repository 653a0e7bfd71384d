import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { challengeText, challengeText2, verifyProof, verifyProof2 } from '../../core/protocol/peer-auth.js';
import { PeerIdentity } from '../../core/peer/identity.js';

const v = JSON.parse(readFileSync(new URL('../vectors/peer-auth.json', import.meta.url), 'utf8')) as {
  publicKeySpkiBase64: string;
  publicKeyRawHex: string;
  name: string;
  nonce: string;
  signedTextHex: string;
  signatureBase64: string;
  proof2: { sealKey: string; signedTextHex: string; signatureBase64: string };
};

describe('internal peer proof of key (test/vectors/peer-auth.json)', () => {
  it('signs exactly "contact-point peer proof v1\\n<name>\\n<nonce>" in UTF-8', () => {
    expect(challengeText(v.name, v.nonce).toString('hex')).toBe(v.signedTextHex);
  });

  it('carries the key as SPKI DER base64 whose last 32 bytes are the raw Ed25519 key', () => {
    const der = Buffer.from(v.publicKeySpkiBase64, 'base64');
    expect(der.length).toBe(44);
    expect(der.subarray(0, 12).toString('hex')).toBe('302a300506032b6570032100');
    expect(der.subarray(12).toString('hex')).toBe(v.publicKeyRawHex);
  });

  it('accepts the vector signature', () => {
    expect(verifyProof(v.publicKeySpkiBase64, v.name, v.nonce, v.signatureBase64)).toBe(true);
  });

  it('refuses it for another name, another nonce, or a flipped bit', () => {
    expect(verifyProof(v.publicKeySpkiBase64, 'scanner', v.nonce, v.signatureBase64)).toBe(false);
    expect(verifyProof(v.publicKeySpkiBase64, v.name, v.nonce + 'A', v.signatureBase64)).toBe(false);
    const sig = Buffer.from(v.signatureBase64, 'base64');
    sig[10]! ^= 0x01;
    expect(verifyProof(v.publicKeySpkiBase64, v.name, v.nonce, sig.toString('base64'))).toBe(false);
  });

  it('refuses keys that are not Ed25519, and garbage, without throwing', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
    expect(verifyProof(rsa, v.name, v.nonce, v.signatureBase64)).toBe(false);
    expect(verifyProof('not a key', v.name, v.nonce, v.signatureBase64)).toBe(false);
    expect(verifyProof('', v.name, v.nonce, '')).toBe(false);
  });

  it('refuses an X25519 key, and an Ed25519 SPKI whose 32 bytes are not the signer, without throwing', () => {
    const x25519 = generateKeyPairSync('x25519').publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
    expect(verifyProof(x25519, v.name, v.nonce, v.signatureBase64)).toBe(false);
    const other = Buffer.from(v.publicKeySpkiBase64, 'base64');
    other[20]! ^= 0x01;
    expect(verifyProof(other.toString('base64'), v.name, v.nonce, v.signatureBase64)).toBe(false);
  });

  it('proof 2 signs the nonce and the sealing key: "contact-point peer proof v2\\n<name>\\n<nonce>\\n<sealKey>"', () => {
    expect(challengeText2(v.name, v.nonce, v.proof2.sealKey).toString('hex')).toBe(v.proof2.signedTextHex);
    expect(challengeText2(v.name, v.nonce, undefined).toString('utf8')).toBe(`contact-point peer proof v2\n${v.name}\n${v.nonce}\n`);
    expect(verifyProof2(v.publicKeySpkiBase64, v.name, v.nonce, v.proof2.sealKey, v.proof2.signatureBase64)).toBe(true);
    // Another sealing key (a swapped HELLO), no key, or the text of version 1: refused.
    expect(verifyProof2(v.publicKeySpkiBase64, v.name, v.nonce, v.proof2.sealKey.replace('Y29', 'Y39'), v.proof2.signatureBase64)).toBe(false);
    expect(verifyProof2(v.publicKeySpkiBase64, v.name, v.nonce, undefined, v.proof2.signatureBase64)).toBe(false);
    expect(verifyProof(v.publicKeySpkiBase64, v.name, v.nonce, v.proof2.signatureBase64)).toBe(false);
    expect(verifyProof2(v.publicKeySpkiBase64, v.name, v.nonce, undefined, v.signatureBase64)).toBe(false);
  });

  it('round-trips with the SDK identity', () => {
    const id = PeerIdentity.generate();
    const sig = id.signChallenge('printer', 'bm9uY2U=');
    expect(verifyProof(id.publicKey, 'printer', 'bm9uY2U=', sig)).toBe(true);
    expect(verifyProof(id.publicKey, 'printer', 'bm9uY2U=', id.signChallenge('printer', 'b3RoZXI='))).toBe(false);
    expect(verifyProof2(id.publicKey, 'printer', 'bm9uY2U=', 'a2V5', id.signChallenge2('printer', 'bm9uY2U=', 'a2V5'))).toBe(true);
  });
});
