/**
 * The SDK's KeyDirectory renews an answer in use before it runs out (REFRESH_AHEAD_MAX_MS): a
 * busy sender never waits for a lookup. Driven frame by frame: every KEYS_REQUEST it sends is
 * decoded here and answered with a statement a real ContactPointKey signed, or refused with an
 * ACK, as a contact point would (core/contact-point/seal-guard.ts).
 */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KeyDirectory } from '../../core/peer/key-directory.js';
import { KeyPins } from '../../core/peer/key-pins.js';
import { decodeFrame, decodeMsg, encodeMsg, type MsgFrame } from '../../core/protocol/codec.js';
import { FLAG_SEAL_AES, FLAG_SEAL_BUNDLE, FrameType } from '../../core/protocol/frames.js';
import { ContactPointKey } from '../../core/protocol/key-statement.js';
import { SealError, SealKey } from '../../core/protocol/seal.js';
import { Status } from '../../core/protocol/status.js';

const SELF = 'me@office';
const PEER = 'printer@office';

function rawX25519(): string {
  const { publicKey } = generateKeyPairSync('x25519');
  return publicKey.export({ format: 'der', type: 'spki' }).subarray(-32).toString('base64');
}

function setup(opts: { noKeyTtlMs?: number; timeoutMs?: number } = {}) {
  const cp = ContactPointKey.generate();
  // The cache's time, moved by the tests (statements are signed at it: it never runs behind the real clock).
  const clock = { t: Date.now() };
  const requests: MsgFrame[] = [];
  let n = 0;
  const dir = new KeyDirectory({
    role: 'peer',
    sealKey: SealKey.generate(),
    pins: KeyPins.memory(),
    send: (frame) => {
      const f = decodeFrame(frame);
      expect(f.type).toBe(FrameType.KEYS_REQUEST);
      requests.push(decodeMsg(f));
      return true;
    },
    address: () => SELF,
    nextId: () => `k${++n}`,
    clock: () => clock.t,
    ...opts,
  });
  dir.setOwnContactPointKey(cp.publicKey);
  const answer = (req: MsgFrame, key: string, lifetimeMs: number): boolean =>
    dir.onAnswer(
      decodeMsg(decodeFrame(encodeMsg({ id: req.id, to: req.from, from: req.to, payload: Buffer.from(JSON.stringify(cp.statement(req.to, key, clock.t, lifetimeMs)), 'utf8') }, FLAG_SEAL_AES | FLAG_SEAL_BUNDLE, FrameType.KEYS_ANSWER))),
    );
  const refuse = (req: MsgFrame, status: number): boolean => dir.onAck({ id: req.id, to: req.from, from: req.to, status, reason: '' });
  return { dir, requests, answer, refuse, clock };
}

/** lets a statement's check (a promise) settle */
const settle = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('KeyDirectory', () => {
  it('renews a key in its last quarter in the background, using the old one meanwhile', async () => {
    const { dir, requests, answer, clock } = setup();
    const first = rawX25519();
    const p = dir.lookup(PEER);
    expect(requests).toHaveLength(1);
    expect(answer(requests[0]!, first, 800)).toBe(true);
    expect(((await p) as Buffer).toString('base64')).toBe(first);
    // Early in its life: no request.
    clock.t += 590;
    expect(dir.cached(PEER)?.toString('base64')).toBe(first);
    expect(requests).toHaveLength(1);
    clock.t += 20; // past 3/4 of 800 ms
    // Still the old key at once, and one request (not one per use) goes out.
    expect(dir.cached(PEER)?.toString('base64')).toBe(first);
    expect(((await dir.lookup(PEER)) as Buffer).toString('base64')).toBe(first);
    expect(dir.cached(PEER)?.toString('base64')).toBe(first);
    expect(requests).toHaveLength(2);
    const second = rawX25519();
    expect(answer(requests[1]!, second, 60_000)).toBe(true);
    await settle();
    expect(dir.cached(PEER)?.toString('base64')).toBe(second);
    clock.t += 300; // past the first statement's end: the renewed one holds
    expect(dir.cached(PEER)?.toString('base64')).toBe(second);
    expect(requests).toHaveLength(2);
  });

  it('renews an hour-long statement in its last minute, not its last quarter', async () => {
    const { dir, requests, answer, clock } = setup();
    const p = dir.lookup(PEER);
    answer(requests[0]!, rawX25519(), 3_600_000);
    await p;
    clock.t += 3_600_000 - 61_000;
    dir.cached(PEER);
    expect(requests).toHaveLength(1);
    clock.t += 2_000;
    dir.cached(PEER);
    expect(requests).toHaveLength(2);
  });

  it('renews "no key" before it runs out, so a sender to a plain address never waits', async () => {
    const { dir, requests, refuse, clock } = setup({ noKeyTtlMs: 400 });
    const p = dir.lookup(PEER);
    expect(refuse(requests[0]!, Status.UNKNOWN_PEER)).toBe(true);
    expect(await p).toBe('none');
    clock.t += 310; // past 3/4 of 400 ms
    expect(await dir.lookup(PEER)).toBe('none'); // at once, from the cache
    expect(await dir.lookup(PEER)).toBe('none');
    expect(requests).toHaveLength(2);
    expect(refuse(requests[1]!, Status.UNKNOWN_PEER)).toBe(true);
    clock.t += 150; // past the first answer's end
    expect(await dir.lookup(PEER)).toBe('none');
    expect(requests).toHaveLength(2);
  });

  it('keeps a key it holds when the renewal is not answered in time, and asks again when it runs out', async () => {
    const { dir, requests, answer, clock } = setup({ timeoutMs: 50 });
    const key = rawX25519();
    const p = dir.lookup(PEER);
    answer(requests[0]!, key, 800);
    await p;
    clock.t += 650;
    expect(dir.cached(PEER)?.toString('base64')).toBe(key);
    expect(requests).toHaveLength(2);
    await sleep(120); // the renewal times out (real time): no "no key", the old key stays
    expect(dir.cached(PEER)?.toString('base64')).toBe(key);
    expect(requests).toHaveLength(2); // once per answer
    clock.t += 200; // now it has run out: a lookup waits for a fresh answer
    expect(dir.cached(PEER)).toBeUndefined();
    const again = dir.lookup(PEER);
    expect(requests).toHaveLength(3);
    answer(requests[2]!, key, 60_000);
    expect(((await again) as Buffer).toString('base64')).toBe(key);
  });

  it('drops a key whose renewal is refused KEY_CHANGED, so the next lookup gets the refusal', async () => {
    const { dir, requests, answer, refuse, clock } = setup();
    const p = dir.lookup(PEER);
    answer(requests[0]!, rawX25519(), 800);
    await p;
    clock.t += 650;
    expect(dir.cached(PEER)).toBeInstanceOf(Buffer);
    expect(refuse(requests[1]!, Status.KEY_CHANGED)).toBe(true);
    await settle();
    expect(dir.cached(PEER)).toBeUndefined();
    const next = dir.lookup(PEER);
    expect(requests).toHaveLength(3);
    refuse(requests[2]!, Status.KEY_CHANGED);
    await expect(next).rejects.toBeInstanceOf(SealError);
  });

  it('keeps the old key when a renewal is refused for now (retryable)', async () => {
    const { dir, requests, answer, refuse, clock } = setup();
    const key = rawX25519();
    const p = dir.lookup(PEER);
    answer(requests[0]!, key, 800);
    await p;
    clock.t += 650;
    dir.cached(PEER);
    expect(refuse(requests[1]!, Status.RATE_LIMITED)).toBe(true);
    await settle();
    expect(dir.cached(PEER)?.toString('base64')).toBe(key);
    expect(requests).toHaveLength(2);
  });
});
