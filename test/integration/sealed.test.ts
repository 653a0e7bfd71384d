import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { STATE_FILE } from '../../core/contact-point/state-store.js';
import { KeyPins } from '../../core/peer/key-pins.js';
import { PeerIdentity } from '../../core/peer/identity.js';
import { PeerClient, type InboundMessage } from '../../core/peer/peer-client.js';
import { decodeAck, decodeFrame, decodeMsg, encodeMsg, type Frame } from '../../core/protocol/codec.js';
import { FLAG_RETRY, FLAG_SEAL_AES, FLAG_SEALED, FrameType } from '../../core/protocol/frames.js';
import { CONTACT_POINT_KEY_FILE } from '../../core/protocol/key-statement.js';
import { SEAL_HEADER_BYTES, SEAL_VERSION, SEAL_VERSION_AES } from '../../core/protocol/seal.js';
import { Status } from '../../core/protocol/status.js';
import { OFFERED_VERSIONS } from '../../core/protocol/version.js';
import { Router } from '../../core/relay/routing.js';
import type { RelaySession } from '../../core/relay/sessions.js';
import { RawClient } from '../raw-client.js';
import { FAST, logger, refusal, startHarness, tempDir, waitFor, type Harness } from '../helpers.js';

/** The plaintext every test sends: it must never show in a frame the relay handles. */
const MARKER = 'MARKER-7f3a-plaintext-the-relay-must-not-see';

/**
 * The relay as an attacker sees it: every MSG, KEYS and ACK frame it routes is recorded, and a
 * test may rewrite a frame before the real router forwards it, or forward a recorded one again.
 */
interface Tap {
  readonly frames: Buffer[];
  readonly acks: { status: number; reason: string; from: string }[];
  rewrite: ((frame: Frame) => Buffer | undefined) | undefined;
  /** an ACK it says true for is dropped (recorded, never forwarded) */
  dropAck: ((ack: { status: number; from: string }) => boolean) | undefined;
  replay(raw: Buffer): void;
}

function tapRelay(): Tap {
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called with the router as `this` below
  const { onMsg, onAck } = Router.prototype;
  let last: { router: Router; session: RelaySession } | undefined;
  const tap: Tap = {
    frames: [],
    acks: [],
    rewrite: undefined,
    dropAck: undefined,
    replay(raw) {
      if (!last) throw new Error('nothing routed yet');
      onMsg.call(last.router, last.session, decodeFrame(raw));
    },
  };
  vi.spyOn(Router.prototype, 'onMsg').mockImplementation(function (this: Router, s: RelaySession, frame: Frame) {
    tap.frames.push(Buffer.from(frame.raw));
    if (frame.type === FrameType.MSG && s.kind === 'external') last = { router: this, session: s };
    const changed = frame.type === FrameType.MSG ? tap.rewrite?.(frame) : undefined;
    return onMsg.call(this, s, changed ? decodeFrame(changed) : frame);
  });
  vi.spyOn(Router.prototype, 'onAck').mockImplementation(function (this: Router, s: RelaySession, frame: Frame) {
    tap.frames.push(Buffer.from(frame.raw));
    const a = decodeAck(frame);
    tap.acks.push({ status: a.status, reason: a.reason, from: a.from });
    if (tap.dropAck?.(a)) return;
    return onAck.call(this, s, frame);
  });
  return tap;
}

/** The envelope version of every sealed MSG the relay routed. */
function sealVersions(tap: Tap): number[] {
  return tap.frames.filter((f) => f[0] === FrameType.MSG && (f[1]! & FLAG_SEALED) !== 0).map((f) => decodeMsg(decodeFrame(f)).payload[0]!);
}

function seen(tap: Tap): boolean {
  return tap.frames.some((f) => f.includes(MARKER));
}

let h: Harness;
let tap: Tap;
beforeEach(async () => {
  tap = tapRelay();
  h = await startHarness();
});
afterEach(async () => {
  vi.restoreAllMocks();
  await h.close();
});

describe('sealed messages through a relay that records every frame', () => {
  it('carries external <-> internal messages sealed both ways: the relay never sees the plaintext', async () => {
    const got: InboundMessage[] = [];
    const printer = await h.registered('printer', (m) => void got.push(m));
    const inbox: InboundMessage[] = [];
    const alice = await h.external('alice', { onMessage: (m: InboundMessage) => void inbox.push(m) });
    await alice.send('printer@acme-hq', `${MARKER} to printer`);
    await printer.send('alice@relay', `${MARKER} to alice`);
    expect(got.map((m) => [m.payload.toString(), m.sealed])).toEqual([[`${MARKER} to printer`, true]]);
    expect(inbox.map((m) => [m.payload.toString(), m.sealed])).toEqual([[`${MARKER} to alice`, true]]);
    expect(tap.frames.filter((f) => f[0] === FrameType.MSG).every((f) => (f[1]! & FLAG_SEALED) !== 0)).toBe(true);
    expect(seen(tap)).toBe(false);
    // Both ends said they open version 2 (alice in its KEYS request, printer at hello): AES-256-GCM both ways.
    expect(sealVersions(tap)).toEqual([SEAL_VERSION_AES, SEAL_VERSION_AES]);
    // The contact point bound alice's key at first contact and shows it as a binding.
    expect(h.cp.snapshot().seal?.bindings).toBe(1);
  });

  it('an ACK lost on the way back: the retry is sealed anew (same id, FLAG_RETRY, a new nonce), re-ACKed and not delivered twice', async () => {
    const got: InboundMessage[] = [];
    await h.registered('printer', (m) => void got.push(m));
    const alice = await h.external('alice', { ackTimeoutMs: 200 });
    await alice.send('printer@acme-hq', 'warm-up'); // keys asked for and cached
    let dropped = 0;
    // the first ACK from the printer never reaches alice
    tap.dropAck = (a) => {
      if (a.from !== 'printer@acme-hq' || dropped > 0) return false;
      dropped++;
      return true;
    };
    const before = tap.frames.length;
    const receipt = await alice.send('printer@acme-hq', `${MARKER} once`);
    expect(receipt.attempts).toBe(2);
    expect(dropped).toBe(1);
    const sent = tap.frames.slice(before).filter((f) => f[0] === FrameType.MSG).map((f) => decodeMsg(decodeFrame(f)));
    expect(sent.map((m) => [m.id, (m.flags & FLAG_RETRY) !== 0])).toEqual([
      [receipt.id, false],
      [receipt.id, true],
    ]);
    const nonce = (m: { payload: Buffer }): Buffer => m.payload.subarray(SEAL_HEADER_BYTES - 12, SEAL_HEADER_BYTES);
    expect(nonce(sent[1]!).equals(nonce(sent[0]!))).toBe(false);
    expect(got.map((m) => m.payload.toString())).toEqual(['warm-up', `${MARKER} once`]);
    expect(seen(tap)).toBe(false);
  });

  it('a relay that clears FLAG_SEAL_AES from key answers only makes senders seal in version 1, which receivers still open', async () => {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called with the router as `this` below
    const { onKeysAnswer } = Router.prototype;
    vi.spyOn(Router.prototype, 'onKeysAnswer').mockImplementation(function (this: Router, s: RelaySession, frame: Frame) {
      const raw = Buffer.from(frame.raw);
      raw[1] = raw[1]! & ~FLAG_SEAL_AES;
      return onKeysAnswer.call(this, s, decodeFrame(raw));
    });
    const got: InboundMessage[] = [];
    await h.registered('printer', (m) => void got.push(m));
    const alice = await h.external('alice');
    await alice.send('printer@acme-hq', MARKER);
    expect(got.map((m) => [m.payload.toString(), m.sealed])).toEqual([[MARKER, true]]);
    expect(sealVersions(tap)).toEqual([SEAL_VERSION]);
    expect(seen(tap)).toBe(false);
  });

  it('sees the plaintext when the sender does not seal (the recorder works)', async () => {
    await h.registered('printer');
    const alice = await h.external('alice', { seal: 'off' });
    await alice.send('printer@acme-hq', MARKER);
    expect(seen(tap)).toBe(true);
  });

  it('a receiver back with a new sealing key: the sender, holding the old one, asks again and delivers', async () => {
    const identity = PeerIdentity.generate();
    const got: string[] = [];
    const peer = (): PeerClient => new PeerClient({ role: 'peer', url: h.cp.peerPortUrl, name: 'printer', identity, logger, timing: FAST, onMessage: (m) => void got.push(m.payload.toString()) });
    const first = peer();
    first.start();
    await first.ready();
    first.register();
    await waitFor(() => h.cp.registrar.get('printer')?.state === 'pending');
    await h.cp.call('peers:approve', { name: 'printer' });
    await first.waitForRegistration('registered');
    const alice = await h.external('alice');
    await alice.send('printer@acme-hq', 'one');
    await first.stop();
    const second = peer(); // same identity, a new (in-memory) sealing key
    try {
      second.start();
      await second.ready();
      await waitFor(() => h.cp.registrar.isOnline('printer'));
      await alice.send('printer@acme-hq', 'two');
      expect(got).toEqual(['one', 'two']);
      expect(second.stats.badSeals).toBe(1); // the seal for the old key, refused once
    } finally {
      await second.stop();
    }
  });

  it('seals between two LAN peers of one contact point', async () => {
    const got: InboundMessage[] = [];
    await h.registered('printer', (m) => void got.push(m));
    const scanner = await h.registered('scanner');
    await scanner.send('printer@acme-hq', MARKER);
    expect(got[0]?.sealed).toBe(true);
    expect(scanner.stats.sealed).toBe(1);
  });
});

describe('tampering at the relay is refused by the receiver with a reason', () => {
  /** alice -> printer with the relay rewriting the MSG; the receiver's ACK (seen at the relay) says why. */
  async function tampered(rewrite: (frame: Frame) => Buffer | undefined): Promise<{ code: number; reason: string; delivered: number }> {
    const got: InboundMessage[] = [];
    const printer = await h.registered('printer', (m) => void got.push(m));
    const scanner = await h.registered('scanner', (m) => void got.push(m));
    const alice = await h.external('alice');
    await alice.send('printer@acme-hq', 'warm up'); // keys looked up and bound
    tap.rewrite = rewrite;
    const err = await refusal(alice.send('printer@acme-hq', MARKER, { deadlineMs: 1_500 }));
    tap.rewrite = undefined;
    expect(printer.stats.badSeals + scanner.stats.badSeals).toBeGreaterThan(0);
    return { code: err.code, reason: err.reason, delivered: got.length - 1 };
  }

  it('a flipped bit in the sealed payload: BAD_SEAL', async () => {
    const r = await tampered((frame) => {
      const raw = Buffer.from(frame.raw);
      raw[raw.length - 20]! ^= 0x01;
      return raw;
    });
    expect(r).toMatchObject({ code: Status.BAD_SEAL, delivered: 0 });
    expect(r.reason).toMatch(/did not verify/);
  });

  it('a renumbered message (another id): BAD_SEAL', async () => {
    let renumbered = '';
    const r = await tampered((frame) => {
      const m = decodeMsg(frame);
      renumbered = `${m.id}x`;
      return encodeMsg({ ...m, id: renumbered }, frame.flags);
    });
    // The sender never hears of the renumbered id; the receiver's refusal of it is what the relay carries back.
    expect(r.delivered).toBe(0);
    expect(tap.acks.find((a) => a.status === Status.BAD_SEAL)?.reason).toMatch(/did not verify/);
    expect(renumbered).not.toBe('');
    expect(r.code).toBe(Status.TIMEOUT);
  });

  it('a re-addressed message (sent on to another peer): BAD_SEAL at the receiver', async () => {
    const r = await tampered((frame) => encodeMsg({ ...decodeMsg(frame), to: 'scanner@acme-hq' }, frame.flags));
    expect(r.delivered).toBe(0);
    expect(tap.acks.find((a) => a.status === Status.BAD_SEAL && a.from === 'scanner@acme-hq')?.reason).toMatch(/sealed for another key/);
  });

  it('a replayed message older than the age limit: BAD_SEAL naming its age', async () => {
    const got: InboundMessage[] = [];
    const printer = new PeerClient({ role: 'peer', url: h.cp.peerPortUrl, name: 'printer', identity: PeerIdentity.generate(), logger, timing: FAST, sealMaxAgeMs: 300, onMessage: (m) => void got.push(m) });
    try {
      printer.start();
      await printer.ready();
      printer.register();
      await waitFor(() => h.cp.registrar.get('printer')?.state === 'pending');
      await h.cp.call('peers:approve', { name: 'printer' });
      await printer.waitForRegistration('registered');
      const alice = await h.external('alice');
      await alice.send('printer@acme-hq', MARKER);
      const recorded = tap.frames.filter((f) => f[0] === FrameType.MSG).at(-1)!;
      await new Promise((r) => setTimeout(r, 400));
      tap.replay(recorded);
      await waitFor(() => tap.acks.some((a) => a.status === Status.BAD_SEAL), 3_000, 'the replay refused');
      expect(tap.acks.find((a) => a.status === Status.BAD_SEAL)?.reason).toMatch(/sealed \d+ s ago, over the 0.3 s limit/);
      expect(got).toHaveLength(1);
      expect(printer.stats.badSeals).toBe(1);
    } finally {
      await printer.stop();
    }
  });
});

describe('keys people can check', () => {
  it('an external peer pinned to another fingerprint fails loudly with KEY_CHANGED, and sends nothing', async () => {
    await h.registered('printer');
    const wrong = 'ab'.repeat(32);
    const alice = await h.external('alice', { pins: await KeyPins.open(undefined, { 'acme-hq': wrong }) });
    const err = await refusal(alice.send('printer@acme-hq', MARKER));
    expect(err.code).toBe(Status.KEY_CHANGED);
    expect(err.reason).toMatch(/pinned \(--pin\)/);
    expect(err.reason).toContain(h.cp.seal.key.fingerprint);
    expect(tap.frames.some((f) => f[0] === FrameType.MSG)).toBe(false);
  });

  it('trust on first use: the pin is kept in a file, and a contact point with a new key is refused', async () => {
    await using dir = await tempDir();
    const pinFile = join(dir.path, 'pins.json');
    await h.registered('printer');
    const alice = await h.external('alice', { pins: await KeyPins.open(pinFile) });
    await alice.send('printer@acme-hq', 'first');
    expect(JSON.parse(await readFile(pinFile, 'utf8'))).toEqual({ 'acme-hq': h.cp.seal.key.fingerprint });
    await alice.stop();

    // The same office comes back with another key (its key file lost or replaced).
    await h.cp.stop();
    await rm(join(h.stateDir, CONTACT_POINT_KEY_FILE));
    const cp2 = await ContactPoint.create({ id: 'acme-hq', relayUrl: h.relay.url, secret: h.cpSecret, stateDir: h.stateDir, peerHost: '127.0.0.1', logger, timing: FAST });
    try {
      await cp2.start();
      await waitFor(() => cp2.gateway.connected);
      expect(cp2.seal.key.fingerprint).not.toBe(h.cp.seal.key.fingerprint);
      const again = await h.external('alice2', { pins: await KeyPins.open(pinFile) });
      const err = await refusal(again.send('printer@acme-hq', MARKER));
      expect(err.code).toBe(Status.KEY_CHANGED);
      expect(err.reason).toContain('trusted since first use');
    } finally {
      await cp2.stop();
    }
  });

  it('keeps the contact point key in its state folder (0600) across restarts', async () => {
    const path = join(h.stateDir, CONTACT_POINT_KEY_FILE);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const fp = h.cp.seal.key.fingerprint;
    expect(fp).toMatch(/^([0-9a-f]{4}:){15}[0-9a-f]{4}$/);
    await h.cp.stop();
    const cp2 = await ContactPoint.create({ id: 'acme-hq', relayUrl: h.relay.url, secret: h.cpSecret, stateDir: h.stateDir, peerHost: '127.0.0.1', logger, timing: FAST });
    expect(cp2.seal.key.fingerprint).toBe(fp);
    await cp2.stop();
  });

  it('an external address stays bound to its first key: another key under that name is refused KEY_CHANGED', async () => {
    await h.registered('printer');
    const first = await h.external('alice');
    await first.send('printer@acme-hq', 'hello');
    await first.stop();
    const secret = await h.credentials.add('external', 'alice');
    const second = new PeerClient({ role: 'external', url: h.relay.url, name: 'alice', secret, logger, timing: FAST, ackTimeoutMs: 500 });
    try {
      second.start();
      await second.ready();
      const err = await refusal(second.send('printer@acme-hq', MARKER));
      expect(err.code).toBe(Status.KEY_CHANGED);
      expect(err.reason).toMatch(/alice@relay is bound to another sealing key/);
    } finally {
      await second.stop();
    }
  });
});

describe('the policy "sealed payloads only"', () => {
  it('office-wide: plain messages are refused SEAL_REQUIRED, sealed ones pass; the decision is on disk when the call returns', async () => {
    await h.registered('printer');
    const view = await h.cp.call('seal:policy', { required: true, peers: [] });
    expect(view.required).toBe(true);
    const file = JSON.parse(await readFile(join(h.stateDir, STATE_FILE), 'utf8')) as { seal?: { required: boolean } };
    expect(file.seal?.required).toBe(true);
    const plain = await h.external('plain', { seal: 'off' });
    const err = await refusal(plain.send('printer@acme-hq', 'x'));
    expect(err.code).toBe(Status.SEAL_REQUIRED);
    expect(err.reason).toMatch(/sealed payloads only/);
    const sealed = await h.external('alice');
    await sealed.send('printer@acme-hq', 'x');
  });

  it('per peer: plain messages to (and from) that peer are refused, others pass', async () => {
    await h.registered('printer');
    const scanner = await h.registered('scanner');
    await h.cp.call('seal:policy', { required: false, peers: ['printer'] });
    const plain = await h.external('plain', { seal: 'off' });
    expect((await refusal(plain.send('printer@acme-hq', 'x'))).code).toBe(Status.SEAL_REQUIRED);
    await plain.send('scanner@acme-hq', 'x');
    expect(scanner.stats.received).toBe(1);
    await expect(h.cp.call('seal:policy', { required: false, peers: ['nobody'] })).rejects.toThrow(/no peer named/);
  });

  it("a receiver in mode 'required' refuses a plain message itself", async () => {
    const got: InboundMessage[] = [];
    await h.external('bob', { seal: 'required', onMessage: (m: InboundMessage) => void got.push(m) });
    const carol = await h.external('carol', { seal: 'off' });
    const err = await refusal(carol.send('bob@relay', 'x'));
    expect(err.code).toBe(Status.SEAL_REQUIRED);
    expect(got).toHaveLength(0);
  });
});

describe('a receiver that does not seal', () => {
  it('a key request for an external peer whose HELLO did not say "sealed" is answered UNKNOWN_PEER ("no key") by the relay: the frame never reaches it and the message goes plain at once', async () => {
    const bobSecret = await h.credentials.add('external', 'bob');
    const bob = await RawClient.open(h.relay.url);
    bob.hello({ versions: OFFERED_VERSIONS, role: 'external', id: 'bob', secret: bobSecret, env: { capabilities: ['reachable'] } });
    await waitFor(() => bob.frames.some((f) => f.type === FrameType.WELCOME), 5_000, 'bob welcomed');
    try {
      const printer = await h.registered('printer');
      const alice = await h.external('alice');
      const started = Date.now();
      const sending = [printer.send('bob@relay', 'from printer', { deadlineMs: 20_000 }), alice.send('bob@relay', 'from alice', { deadlineMs: 20_000 })];
      for (const s of sending) s.catch(() => undefined);
      // Before: each sender waited KEYS_TIMEOUT_MS (5 s) for an answer the raw client never gives.
      await waitFor(() => bob.frames.filter((f) => f.type === FrameType.MSG).length === 2, 4_000, 'both messages at bob');
      expect(Date.now() - started).toBeLessThan(4_000);
      expect(bob.frames.some((f) => f.type === FrameType.KEYS_REQUEST)).toBe(false);
      const msgs = bob.frames.filter((f) => f.type === FrameType.MSG).map((f) => decodeMsg(f));
      expect(msgs.map((m) => m.flags & FLAG_SEALED)).toEqual([0, 0]);
    } finally {
      bob.ws.terminate();
    }
  });
});

describe('a sealing LAN peer while the tunnel is down', () => {
  it('has its key request refused CONTACT_POINT_OFFLINE at once by its contact point (before: no answer for KEYS_TIMEOUT_MS, then "no key" and a plain message)', async () => {
    const printer = await h.registered('printer');
    await h.relay.stop();
    await waitFor(() => !h.cp.gateway.connected, 5_000, 'the tunnel down');
    const err = await printer.send('alice@relay', MARKER, { deadlineMs: 1_500 }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/the tunnel to the relay is down/);
    expect(printer.stats.sealed).toBe(0);
  });
});
