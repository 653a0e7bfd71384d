import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkStatement, ContactPointKey, fingerprint, normalizeFingerprint, statementText, type KeysAnswer } from '../../core/protocol/key-statement.js';
import { hkdfSync } from 'node:crypto';
import { FLAG_SEALED } from '../../core/protocol/frames.js';
import { BUNDLE_MAX_MESSAGES, messageCount, readEnvelopeHeader, sealAad, sealBundleWith, SEAL_OVERHEAD, SEAL_VERSION_AES, SEAL_VERSION_BUNDLE, SealError, SealKey, sealWith } from '../../core/protocol/seal.js';
import { Status } from '../../core/protocol/status.js';

interface Sealed {
  name: string;
  id: string;
  to: string;
  from: string;
  envelopeHex: string;
}
const v = JSON.parse(readFileSync(new URL('../vectors/seal.json', import.meta.url), 'utf8')) as {
  sender: { privateHex: string; publicHex: string };
  recipient: { privateHex: string; publicHex: string; keyIdHex: string };
  pairKeyHex: string;
  pairKeyV2Hex: string;
  valid: (Sealed & { sealedAt: number; nonceHex: string; bodyHex: string; aadHex: string })[];
  validV2: (Sealed & { sealedAt: number; nonceHex: string; bodyHex: string; aadHex: string })[];
  tampered: (Sealed & { code: number; codeName: string })[];
  tamperedV2: (Sealed & { code: number; codeName: string })[];
  sharedSecretHex: string;
  pairKeyV3Hex: string;
  validV3: (Sealed & { sealedAt: number; nonceHex: string; count: number; entries: { id: string; bodyHex: string }[]; aadHex: string })[];
  tamperedV3: (Sealed & { code: number; codeName: string })[];
  statement: { cpKeySpkiBase64: string; fingerprint: string; address: string; key: string; notAfter: number; signedTextHex: string; sig: string };
};
const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const sender = SealKey.fromRaw(hex(v.sender.privateHex));
const recipient = SealKey.fromRaw(hex(v.recipient.privateHex));

describe('sealed payloads (test/vectors/seal.json)', () => {
  it('derives the raw public keys, the recipient key id and one pair key both ways', () => {
    expect(sender.publicRaw.toString('hex')).toBe(v.sender.publicHex);
    expect(recipient.keyId.toString('hex')).toBe(v.recipient.keyIdHex);
    expect(sender.pairKey(recipient.publicRaw).toString('hex')).toBe(v.pairKeyHex);
    expect(recipient.pairKey(sender.publicRaw).toString('hex')).toBe(v.pairKeyHex);
  });

  it('seals each vector to exactly its envelope, binding id, to and from in the AAD', () => {
    for (const x of v.valid) {
      const env = sealWith(hex(v.pairKeyHex), sender.publicRaw, recipient.keyId, x, hex(x.bodyHex), x.sealedAt, hex(x.nonceHex));
      expect(env.toString('hex'), x.name).toBe(x.envelopeHex);
      expect(env.length).toBe(SEAL_OVERHEAD + x.bodyHex.length / 2);
      expect(sealAad(env.subarray(0, 53), x).toString('hex'), x.name).toBe(x.aadHex);
      expect(sender.seal(x, hex(x.bodyHex), recipient.publicRaw, x.sealedAt, hex(x.nonceHex)).toString('hex')).toBe(x.envelopeHex);
    }
  });

  it('opens each vector to its body at the recipient', () => {
    for (const x of v.valid) expect(recipient.open(x, hex(x.envelopeHex), x.sealedAt + 1_000).toString('hex'), x.name).toBe(x.bodyHex);
  });

  it('refuses every tampered vector with BAD_SEAL (23)', () => {
    const at = v.valid[0]!.sealedAt + 1_000;
    for (const x of v.tampered) {
      let err: unknown;
      try {
        recipient.open(x, hex(x.envelopeHex), at);
      } catch (e: unknown) {
        err = e;
      }
      expect(err, x.name).toBeInstanceOf(SealError);
      expect((err as SealError).code, x.name).toBe(Status.BAD_SEAL);
      expect(x.code).toBe(Status.BAD_SEAL);
    }
  });

  it('version 2 (AES-256-GCM): its own pair key, each vector sealed exactly and opened', () => {
    expect(sender.pairKey(recipient.publicRaw, SEAL_VERSION_AES).toString('hex')).toBe(v.pairKeyV2Hex);
    expect(recipient.pairKey(sender.publicRaw, SEAL_VERSION_AES).toString('hex')).toBe(v.pairKeyV2Hex);
    expect(v.pairKeyV2Hex).not.toBe(v.pairKeyHex);
    for (const x of v.validV2) {
      expect(sealWith(hex(v.pairKeyV2Hex), sender.publicRaw, recipient.keyId, x, hex(x.bodyHex), x.sealedAt, hex(x.nonceHex), SEAL_VERSION_AES).toString('hex'), x.name).toBe(x.envelopeHex);
      expect(sender.seal(x, hex(x.bodyHex), recipient.publicRaw, x.sealedAt, hex(x.nonceHex), SEAL_VERSION_AES).toString('hex'), x.name).toBe(x.envelopeHex);
      expect(sealAad(hex(x.envelopeHex).subarray(0, 53), x).toString('hex'), x.name).toBe(x.aadHex);
      expect(recipient.open(x, hex(x.envelopeHex), x.sealedAt + 1_000).toString('hex'), x.name).toBe(x.bodyHex);
      expect(readEnvelopeHeader(hex(x.envelopeHex)).version).toBe(SEAL_VERSION_AES);
    }
  });

  it('version 2 is standard AES-256-GCM: WebCrypto opens a vector with the pair key and the AAD', async () => {
    const x = v.validV2[0]!;
    const env = hex(x.envelopeHex);
    const key = await crypto.subtle.importKey('raw', hex(v.pairKeyV2Hex), 'AES-GCM', false, ['decrypt']);
    const plain = Buffer.from(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: env.subarray(41, 53), additionalData: hex(x.aadHex), tagLength: 128 }, key, env.subarray(53)));
    expect(Number(plain.readBigUInt64BE(0))).toBe(x.sealedAt);
    expect(plain.subarray(8).toString('hex')).toBe(x.bodyHex);
  });

  it('refuses every tampered version 2 vector (and version 3) with BAD_SEAL (23)', () => {
    const at = v.validV2[0]!.sealedAt + 1_000;
    for (const x of v.tamperedV2) {
      expect(() => recipient.open(x, hex(x.envelopeHex), at), x.name).toThrow(SealError);
      try {
        recipient.open(x, hex(x.envelopeHex), at);
      } catch (e: unknown) {
        expect((e as SealError).code, x.name).toBe(Status.BAD_SEAL);
      }
    }
    expect(() => recipient.open(v.tamperedV2.at(-1)!, hex(v.tamperedV2.at(-1)!.envelopeHex), at)).toThrow(/seal version 3/);
  });

  it('refuses an envelope sealed too long ago (a replay) or too far ahead, naming why', () => {
    const x = v.valid[0]!;
    expect(() => recipient.open(x, hex(x.envelopeHex), x.sealedAt + 120_001)).toThrow(/sealed 120 s ago, over the 120 s limit/);
    expect(() => recipient.open(x, hex(x.envelopeHex), x.sealedAt - 61_000)).toThrow(/in the future/);
    expect(() => recipient.open(x, hex(x.envelopeHex), x.sealedAt + 500, 300)).toThrow(/over the 0.3 s limit/);
  });

  it('refuses to open an envelope for another key, and a low-order sender key', () => {
    const x = v.valid[0]!;
    expect(() => SealKey.generate().open(x, hex(x.envelopeHex), x.sealedAt)).toThrow(/sealed for another key/);
    const env = hex(x.envelopeHex);
    env.fill(0, 1, 33); // the all-zero point
    expect(() => recipient.open(x, env, x.sealedAt)).toThrow(SealError);
  });

  it('draws a fresh nonce for every seal, across refills of its random pool, and each opens', () => {
    const a = SealKey.generate();
    const b = SealKey.generate();
    const msg = { id: 'm1', to: 'b@hq', from: 'a@relay' };
    const nonces = new Set<string>();
    const n = 1_000; // 341 nonces per 4 KiB pool: two refills and more
    for (let i = 0; i < n; i++) {
      const body = Buffer.from(`body ${i}`);
      const env = a.seal(msg, body, b.publicRaw, 1_700_000_000_000 + i);
      nonces.add(readEnvelopeHeader(env).nonce.toString('hex'));
      expect(b.open(msg, env, 1_700_000_000_000 + i).toString()).toBe(`body ${i}`);
    }
    expect(nonces.size).toBe(n);
  });

  it('seals in place at an offset of a caller\'s buffer (the MSG frame) exactly as seal() does, leaving the bytes before it alone', () => {
    for (const x of v.validV2) {
      const body = hex(x.bodyHex);
      const frame = Buffer.alloc(37 + SEAL_OVERHEAD + body.length, 0xab);
      sender.sealAt(frame, 37, x, body, recipient.publicRaw, SEAL_VERSION_AES, x.sealedAt, hex(x.nonceHex));
      expect(frame.subarray(37).toString('hex'), x.name).toBe(x.envelopeHex);
      expect(frame.subarray(0, 37).every((b) => b === 0xab)).toBe(true);
      // too little room is the caller's mistake, said as such
      expect(() => sender.sealAt(Buffer.alloc(frame.length - 1), 37, x, body, recipient.publicRaw, SEAL_VERSION_AES)).toThrow(RangeError);
      // more room (a link's write buffer): the same envelope, and the bytes after it left alone
      const roomy = Buffer.alloc(frame.length + 9, 0xcd);
      sender.sealAt(roomy, 37, x, body, recipient.publicRaw, SEAL_VERSION_AES, x.sealedAt, hex(x.nonceHex));
      expect(roomy.subarray(37, frame.length).toString('hex'), x.name).toBe(x.envelopeHex);
      expect(roomy.subarray(frame.length).every((b) => b === 0xcd)).toBe(true);
    }
    // One process-wide plaintext buffer: seals of different sizes one after another each open to their own body.
    const b = SealKey.generate();
    const msg = { id: 'm1', to: 'b@hq', from: 'a@relay' };
    const bodies = [Buffer.alloc(2_000, 1), Buffer.alloc(10, 2), Buffer.alloc(200_000, 3), Buffer.alloc(1, 4)];
    const sealed = bodies.map((body) => sender.seal(msg, body, b.publicRaw));
    sealed.forEach((env, i) => expect(b.open(msg, env).equals(bodies[i]!)).toBe(true));
  });

  it('seals a bundle in place exactly as sealBundle() does', () => {
    const x = v.validV3[0]!;
    const entries = x.entries.map((e) => ({ id: e.id, body: hex(e.bodyHex) }));
    const env = hex(x.envelopeHex);
    const frame = Buffer.alloc(20 + env.length, 0xcd);
    sender.sealBundleAt(frame, 20, x, entries, recipient.publicRaw, x.sealedAt, hex(x.nonceHex));
    expect(frame.subarray(20).equals(env)).toBe(true);
    expect(frame.subarray(0, 20).every((b) => b === 0xcd)).toBe(true);
  });

  it('reads the clear header the contact point checks', () => {
    const hdr = readEnvelopeHeader(hex(v.valid[0]!.envelopeHex));
    expect(hdr.version).toBe(1);
    expect(hdr.senderKey.toString('hex')).toBe(v.sender.publicHex);
    expect(hdr.recipientId.toString('hex')).toBe(v.recipient.keyIdHex);
    expect(hdr.nonce.toString('hex')).toBe(v.valid[0]!.nonceHex);
  });
});

describe('sealed bundles, version 3 (test/vectors/seal.json, validV3 / tamperedV3)', () => {
  const entriesOf = (x: (typeof v.validV3)[number]): { id: string; body: Buffer }[] => x.entries.map((e) => ({ id: e.id, body: hex(e.bodyHex) }));
  const badSeal = (fn: () => unknown, name: string): SealError => {
    let err: unknown;
    try {
      fn();
    } catch (e: unknown) {
      err = e;
    }
    expect(err, name).toBeInstanceOf(SealError);
    expect((err as SealError).code, name).toBe(Status.BAD_SEAL);
    return err as SealError;
  };

  it('its own pair key: HKDF with info "contact-point seal v3", checked from the shared secret by hand', () => {
    const [lo, hi] = [hex(v.sender.publicHex), hex(v.recipient.publicHex)].sort((a, b) => Buffer.compare(a, b));
    const k = Buffer.from(hkdfSync('sha256', hex(v.sharedSecretHex), 'contact-point seal salt v1', Buffer.concat([Buffer.from('contact-point seal v3'), lo!, hi!]), 32));
    expect(k.toString('hex')).toBe(v.pairKeyV3Hex);
    expect(sender.pairKey(recipient.publicRaw, SEAL_VERSION_BUNDLE).toString('hex')).toBe(v.pairKeyV3Hex);
    expect(new Set([v.pairKeyHex, v.pairKeyV2Hex, v.pairKeyV3Hex]).size).toBe(3);
  });

  it('seals each vector exactly, opens it to its messages in order, and counts them from the clear header', () => {
    for (const x of v.validV3) {
      const env = sealBundleWith(hex(v.pairKeyV3Hex), sender.publicRaw, recipient.keyId, x, entriesOf(x), x.sealedAt, hex(x.nonceHex));
      expect(env.toString('hex'), x.name).toBe(x.envelopeHex);
      expect(sender.sealBundle(x, entriesOf(x), recipient.publicRaw, x.sealedAt, hex(x.nonceHex)).toString('hex'), x.name).toBe(x.envelopeHex);
      expect(sealAad(env.subarray(0, 54), x).toString('hex'), x.name).toBe(x.aadHex);
      const opened = recipient.openBundle(x, env, x.sealedAt + 1_000);
      expect(opened.map((e) => [e.id, e.body.toString('hex')]), x.name).toEqual(x.entries.map((e) => [e.id, e.bodyHex]));
      expect(messageCount(FLAG_SEALED, env)).toBe(x.count);
      expect(messageCount(0, env)).toBe(1); // not flagged sealed: one message, whatever its bytes
      expect(readEnvelopeHeader(env).version).toBe(SEAL_VERSION_BUNDLE);
    }
  });

  it('is standard AES-256-GCM: WebCrypto opens a vector, and the entries read by hand are the messages', async () => {
    const x = v.validV3[0]!;
    const env = hex(x.envelopeHex);
    const key = await crypto.subtle.importKey('raw', hex(v.pairKeyV3Hex), 'AES-GCM', false, ['decrypt']);
    const plain = Buffer.from(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: env.subarray(41, 53), additionalData: hex(x.aadHex), tagLength: 128 }, key, env.subarray(54)));
    expect(env[53]).toBe(x.entries.length);
    expect(Number(plain.readBigUInt64BE(0))).toBe(x.sealedAt);
    let o = 8;
    for (const e of x.entries) {
      const n = plain[o]!;
      expect(plain.toString('latin1', o + 1, o + 1 + n)).toBe(e.id);
      o += 1 + n;
      const len = plain.readUInt32BE(o);
      expect(plain.subarray(o + 4, o + 4 + len).toString('hex')).toBe(e.bodyHex);
      o += 4 + len;
    }
    expect(o).toBe(plain.length);
  });

  it('refuses every tampered bundle whole with BAD_SEAL (a changed count, address, wire id, version or byte)', () => {
    const at = v.validV3[0]!.sealedAt + 1_000;
    for (const x of v.tamperedV3) {
      badSeal(() => recipient.openBundle(x, hex(x.envelopeHex), at), x.name);
      expect(x.code).toBe(Status.BAD_SEAL);
    }
    // A bundle is not a single message, nor the other way round.
    const x = v.validV3[0]!;
    expect(badSeal(() => recipient.open(x, hex(x.envelopeHex), at), 'open a bundle').reason).toMatch(/bundle/);
    const single = v.validV2[0]!;
    expect(badSeal(() => recipient.openBundle(single, hex(single.envelopeHex), at), 'openBundle a single').reason).toMatch(/not a bundle/);
  });

  it('refuses a stale bundle, and one for another key; seals only 1 to 64 messages', () => {
    const x = v.validV3[0]!;
    expect(badSeal(() => recipient.openBundle(x, hex(x.envelopeHex), x.sealedAt + 120_001), 'stale').reason).toMatch(/over the 120 s limit/);
    expect(badSeal(() => SealKey.generate().openBundle(x, hex(x.envelopeHex), x.sealedAt), 'other key').reason).toMatch(/another key/);
    const msg = { id: 'w1', to: 'b@hq', from: 'a@relay' };
    const b = SealKey.generate();
    expect(() => sender.sealBundle(msg, [], b.publicRaw)).toThrow(RangeError);
    const many = Array.from({ length: BUNDLE_MAX_MESSAGES + 1 }, (_, i) => ({ id: `m${i}`, body: Buffer.from('x') }));
    expect(() => sender.sealBundle(msg, many, b.publicRaw)).toThrow(RangeError);
    const max = many.slice(0, BUNDLE_MAX_MESSAGES);
    const env = sender.sealBundle(msg, max, b.publicRaw);
    expect(b.openBundle(msg, env).map((e) => e.id)).toEqual(max.map((e) => e.id));
    expect(messageCount(FLAG_SEALED, env)).toBe(BUNDLE_MAX_MESSAGES);
  });

  it('refuses a bundle whose sealed entries are not exactly its count (a sender that lies in the clear)', () => {
    // Sealed with a valid seal but with two ids the same: refused as malformed, not delivered.
    const msg = { id: 'w2', to: 'b@hq', from: 'a@relay' };
    const b = SealKey.generate();
    const dup = sender.sealBundle(msg, [{ id: 'same', body: Buffer.from('1') }, { id: 'same', body: Buffer.from('2') }], b.publicRaw);
    expect(badSeal(() => b.openBundle(msg, dup), 'duplicate ids').reason).toMatch(/malformed bundle: id same twice/);
  });
});

describe('key statements and fingerprints (test/vectors/seal.json, statement)', () => {
  const s = v.statement;
  const answer: KeysAnswer = { cpKey: s.cpKeySpkiBase64, address: s.address, key: s.key, notAfter: s.notAfter, sig: s.sig };

  it('signs exactly "contact-point key statement v1\\n<address>\\n<key>\\n<notAfter>"', () => {
    expect(statementText(s.address, s.key, s.notAfter).toString('hex')).toBe(s.signedTextHex);
  });

  it('accepts the vector statement and returns the key; refuses another address, an expired one, a flipped bit', () => {
    expect(checkStatement(answer, s.address, s.notAfter - 1).toString('base64')).toBe(s.key);
    expect(() => checkStatement(answer, 'scanner@acme-hq', s.notAfter - 1)).toThrow(/not printer@acme-hq|for printer@acme-hq, not scanner/);
    expect(() => checkStatement(answer, s.address, s.notAfter + 1)).toThrow(/expired/);
    const sig = Buffer.from(s.sig, 'base64');
    sig[3]! ^= 1;
    expect(() => checkStatement({ ...answer, sig: sig.toString('base64') }, s.address, s.notAfter - 1)).toThrow(/not signed/);
    expect(() => checkStatement({ ...answer, notAfter: s.notAfter + 1 }, s.address, s.notAfter - 1)).toThrow(/not signed/);
  });

  it('a statement made by one contact point key does not verify under another', () => {
    const a = ContactPointKey.generate();
    const b = ContactPointKey.generate();
    const st = a.statement('printer@acme-hq', s.key, 0);
    expect(checkStatement(st, 'printer@acme-hq', 1).toString('base64')).toBe(s.key);
    expect(() => checkStatement({ ...st, cpKey: b.publicKey }, 'printer@acme-hq', 1)).toThrow(/not signed/);
  });

  it('prints the fingerprint as 16 groups of four hex digits and reads it back however it is typed', () => {
    expect(fingerprint(s.cpKeySpkiBase64)).toBe(s.fingerprint);
    expect(normalizeFingerprint(s.fingerprint.toUpperCase().replace(/:/g, ' '))).toBe(s.fingerprint);
    expect(normalizeFingerprint(s.fingerprint.replace(/:/g, ''))).toBe(s.fingerprint);
    expect(normalizeFingerprint('abcd')).toBeUndefined();
    expect(normalizeFingerprint(`${s.fingerprint}zz`)).toBeUndefined();
  });
});
