import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { DIRECT_DIR } from '../../core/contact-point/direct-mode.js';
import { Operator } from '../../core/peer/operator.js';
import { PeerClient, type InboundMessage } from '../../core/peer/peer-client.js';
import { encodeMsg } from '../../core/protocol/codec.js';
import { CAPABILITY_DIRECT, FLAG_RETRY, type PresenceBody } from '../../core/protocol/frames.js';
import { Status } from '../../core/protocol/status.js';
import { CredentialStore } from '../../core/relay/credentials.js';
import { FAST, logger, refusal, registeredPeer, startHarness, waitFor } from '../helpers.js';
import { selfSignedCert } from '../net-fixtures.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function dir(): Promise<string> {
  const path = await mkdtemp(join(tmpdir(), 'cp-direct-'));
  cleanups.push(() => rm(path, { recursive: true, force: true }));
  return path;
}

/** A contact point in direct mode on a real TLS listener (openssl certificate), with no relay at all. */
async function directOffice(opts: { relayUrl?: string; secret?: string } = {}): Promise<{ cp: ContactPoint; tls: { cert: string; key: string }; stateDir: string; url: string }> {
  const stateDir = await dir();
  const tls = selfSignedCert(await dir());
  const cp = await ContactPoint.create({
    id: 'acme-hq',
    relayUrl: opts.relayUrl,
    secret: opts.secret ?? '',
    stateDir,
    peerHost: '127.0.0.1',
    logger,
    timing: FAST,
    direct: { host: '127.0.0.1', port: 0, tls, credentialsPollMs: 100 },
  });
  await cp.start();
  cleanups.push(() => cp.stop());
  return { cp, tls, stateDir, url: cp.direct!.url };
}

/**
 * A direct credential added the way `contact-point credential add` does it: another process's
 * store rewrites <state>/direct/credentials.json, and the running contact point picks it up.
 */
async function addCredential(cp: ContactPoint, stateDir: string, name: string, rights: ('send' | 'mediate')[] = ['send']): Promise<string> {
  const store = await CredentialStore.open(join(stateDir, DIRECT_DIR));
  const secret = await store.add('external', name, rights);
  await waitFor(() => cp.direct!.credentials.verify('external', name, secret) !== undefined, 5_000, `credential ${name} seen`);
  return secret;
}

function client(c: PeerClient): PeerClient {
  cleanups.push(() => c.stop());
  c.start();
  return c;
}

function registered(cp: ContactPoint, name: string, onMessage?: (m: InboundMessage) => void): Promise<PeerClient> {
  return registeredPeer(cp, name, (fn) => void cleanups.push(fn), { ackTimeoutMs: 500, ...(onMessage ? { onMessage } : {}) });
}

describe('direct mode: external peers reach the contact point itself, no relay', () => {
  it('carries messages both ways over TLS, refuses with the usual codes, and dedupes a retry', async () => {
    const { cp, tls, url, stateDir } = await directOffice();
    expect(url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+\/v1$/);
    expect(cp.readiness()).toEqual({ ready: true });
    const printed: string[] = [];
    const printer = await registered(cp, 'printer', (m) => {
      printed.push(m.payload.toString());
    });
    const secret = await addCredential(cp, stateDir, 'alice');
    const got: InboundMessage[] = [];
    const alice = client(new PeerClient({ role: 'external', url, name: 'alice', secret, ca: tls.cert, logger, timing: FAST, ackTimeoutMs: 500, onMessage: (m) => void got.push(m) }));
    await alice.ready();
    expect(alice.address).toBe('alice@direct');

    const receipt = await alice.send('printer@acme-hq', Buffer.from('page 1'));
    expect(receipt.to).toBe('printer@acme-hq');
    expect(printed).toEqual(['page 1']);
    // A retransmission of the same frame (at-least-once): ACKed again, handed over once.
    alice.currentLink!.send(encodeMsg({ id: receipt.id, to: 'printer@acme-hq', from: 'alice@direct', payload: Buffer.from('page 1') }, FLAG_RETRY));
    await alice.send('printer@acme-hq', Buffer.from('page 2'));
    expect(printed).toEqual(['page 1', 'page 2']);
    expect(printer.stats.duplicates).toBe(1);
    // The reply goes down the direct tunnel, not to a relay (there is none).
    await printer.send('alice@direct', Buffer.from('done'));
    expect(got.map((m) => [m.from, m.payload.toString()])).toEqual([['printer@acme-hq', 'done']]);

    // The usual refusals, with their usual codes.
    expect((await refusal(alice.send('nobody@acme-hq', Buffer.from('x')))).code).toBe(Status.PEER_NOT_REGISTERED);
    expect((await refusal(alice.send('printer@branch', Buffer.from('x')))).code).toBe(Status.UNKNOWN_CONTACT_POINT);
    await printer.stop();
    await waitFor(() => !cp.registrar.isOnline('printer'), 5_000, 'printer offline');
    expect((await refusal(alice.send('printer@acme-hq', Buffer.from('x'), { deadlineMs: 300 }))).code).toBe(Status.PEER_OFFLINE);

    const flow = cp.snapshot().flow;
    expect(flow.delivered).toBeGreaterThanOrEqual(2);
    // The embedded relay learns registrations like a relay does (its status and name service).
    expect(cp.direct!.relay.peersOf('acme-hq')).toEqual(['printer']);
    await cp.call('peers:revoke', { name: 'printer' });
    await waitFor(() => cp.direct!.relay.peersOf('acme-hq').length === 0, 2_000, 'revocation announced to the direct listener');
    const view = cp.snapshot().direct!;
    expect(view).toMatchObject({ domain: 'direct', tls: true, credentials: 1, url });
    expect(view.sessions.map((s) => s.address)).toEqual(['alice@direct']);
  });

  it('refuses a bad credential and a client that does not trust its certificate, and closes a live session when its credential is removed', async () => {
    const { cp, tls, url, stateDir } = await directOffice();
    const secret = await addCredential(cp, stateDir, 'bob');
    const wrong = client(new PeerClient({ role: 'external', url, name: 'bob', secret: `${secret}x`, ca: tls.cert, logger, timing: FAST }));
    await expect(wrong.ready(5_000)).rejects.toThrow(/no valid credential/);
    // Without the certificate trusted, TLS refuses before any hello.
    const untrusted = client(new PeerClient({ role: 'external', url, name: 'bob', secret, proxy: null, logger, timing: FAST }));
    await expect(untrusted.ready(2_000)).rejects.toThrow(/certificate/i);

    const bob = client(new PeerClient({ role: 'external', url, name: 'bob', secret, ca: tls.cert, logger, timing: FAST }));
    await bob.ready();
    // The store on disk holds only the hash; another process (contact-point credential remove)
    // rewrites the file, and the live session closes.
    const file = await readFile(join(stateDir, DIRECT_DIR, 'credentials.json'), 'utf8');
    expect(file).not.toContain(secret);
    const other = await CredentialStore.open(join(stateDir, DIRECT_DIR));
    expect(await other.remove('external', 'bob')).toBe(true);
    await waitFor(() => !bob.connected && bob.status().lastErrorCode === Status.REVOKED, 5_000, 'session closed REVOKED');
    expect(cp.snapshot().direct!.sessions).toEqual([]);
    // The contact point's own direct tunnel survives the rewrite: its credential is not in the file.
    await new Promise((r) => setTimeout(r, 300));
    expect(cp.direct!.gateway!.connected).toBe(true);
  });

  it('opens a mediated TCP port for a direct operator, under the same port policy', async () => {
    const { cp, tls, url, stateDir } = await directOffice();
    const lan = createServer((s) => s.on('error', () => undefined).pipe(s));
    lan.listen(0, '127.0.0.1');
    await once(lan, 'listening');
    cleanups.push(() => new Promise((r) => lan.close(r)));
    const lanPort = (lan.address() as AddressInfo).port;
    const secret = await addCredential(cp, stateDir, 'tech', ['send', 'mediate']);
    const op = new Operator({ url, name: 'tech', secret, ca: tls.cert, logger, timing: FAST });
    cleanups.push(() => op.stop());
    op.start();
    await op.ready();

    // The policy is empty by default: a connect is refused (loopback is a special address: UNSAFE_TARGET
    // without a rule naming it), and the refusal shows in the flow.
    const { portId } = await op.open('acme-hq', { proto: 'tcp' });
    await expect(op.connect('acme-hq', portId, '127.0.0.1', lanPort)).rejects.toMatchObject({ code: Status.UNSAFE_TARGET });
    await waitFor(() => cp.flow.totals().refused > 0, 2_000, 'refusal in the flow');
    await cp.call('ports:policy', { targets: [`127.0.0.1/32:${lanPort}`], listen: [] });
    const stream = await op.connect('acme-hq', portId, '127.0.0.1', lanPort);
    stream.write('ping');
    expect(((await once(stream, 'data')) as [Buffer])[0].toString()).toBe('ping');
    const port = cp.snapshot().ports.find((p) => p.id === portId);
    expect(port).toMatchObject({ operator: 'tech', proto: 'tcp' });
    expect(cp.snapshot().direct!.sessions).toMatchObject([{ id: 'tech', operator: true }]);
    // /metrics counts direct operators' ports and refusals like the relay's (one contact point's ports).
    const stats = cp.statsSnapshot().ports;
    expect({ open: stats.open, streams: stats.streams, refused: stats.refused }).toEqual({ open: 1, streams: 1, refused: { UNSAFE_TARGET: 1 } });
    // A target outside the policy stays refused.
    const second = await op.open('acme-hq', { proto: 'tcp' });
    await expect(op.connect('acme-hq', second.portId, '127.0.0.1', lanPort === 65535 ? 1 : lanPort + 1)).rejects.toMatchObject({ code: Status.PERMISSION_DENIED });
    // The admin closes it like any port.
    await cp.call('ports:close', { id: portId });
    expect(cp.snapshot().ports.map((p) => p.id)).toEqual([second.portId]);
  });

  it('tells a direct peer watching a LAN peer that the access rules now hide it', async () => {
    const { cp, tls, stateDir, url } = await directOffice();
    await registered(cp, 'printer');
    const secret = await addCredential(cp, stateDir, 'alice');
    const alice = client(new PeerClient({ role: 'external', url, name: 'alice', secret, ca: tls.cert, logger, timing: FAST }));
    await alice.ready();
    const seen: PresenceBody[] = [];
    alice.subscribePresence('printer@acme-hq', (p) => void seen.push(p));
    await waitFor(() => seen.at(-1)?.peer === 'online', 5_000, 'online');
    // Rules that let only tech in: what alice watches changes without printer coming or going.
    await cp.call('rules:set', { allow: ['tech@direct'] });
    await waitFor(() => seen.at(-1)?.peer === 'hidden', 5_000, 'hidden from alice');
  });

  it('does not tell a LAN peer waiting for the relay that it is reachable when only direct mode\'s tunnel came back', async () => {
    const h = await startHarness({ cp: { direct: { host: '127.0.0.1', port: 0 } } });
    cleanups.push(() => h.close());
    // Plain: the message itself goes to the contact point and is refused (a sealing sender asks for the key first, and that request is what is refused).
    const printer = await h.registered('printer', undefined, { seal: 'off' });
    await h.relay.stop();
    await waitFor(() => !h.cp.gateway.connected, 5_000, 'the relay tunnel down');
    // Refused CONTACT_POINT_OFFLINE: printer waits for the relay tunnel (REACHABLE) to retry.
    void printer.send('alice@relay', Buffer.from('one'), { deadlineMs: 30_000 }).catch(() => undefined);
    await waitFor(() => h.cp.flow.totals().refused > 0, 5_000, 'the refusal');
    const direct = h.cp.direct!.gateway!;
    const reconnects = direct.status().reconnects;
    direct.reconnectNow();
    await waitFor(() => direct.connected && direct.status().reconnects > reconnects, 5_000, 'the direct tunnel back');
    await new Promise((r) => setTimeout(r, 300));
    expect(printer.stats.reachable).toBe(0);
    expect(h.cp.gateway.connected).toBe(false);
  });

  it('runs beside the relay tunnel: each side reaches the LAN, replies go back the way they came', async () => {
    const h = await startHarness({ cp: { direct: { host: '127.0.0.1', port: 0 } } });
    cleanups.push(() => h.close());
    const seen: string[] = [];
    const printer = await h.registered('printer', (m) => void seen.push(`${m.from}: ${m.payload.toString()}`));
    const viaRelay: string[] = [];
    const relayed = await h.external('alice', { onMessage: (m) => void viaRelay.push(m.payload.toString()) });
    const secret = await addCredential(h.cp, h.stateDir, 'alice');
    const viaDirect: string[] = [];
    const direct = client(new PeerClient({ role: 'external', url: h.cp.direct!.url, name: 'alice', secret, logger, timing: FAST, ackTimeoutMs: 500, onMessage: (m) => void viaDirect.push(m.payload.toString()) }));
    await direct.ready();

    await relayed.send('printer@acme-hq', Buffer.from('one'));
    await direct.send('printer@acme-hq', Buffer.from('two'));
    expect(seen).toEqual(['alice@relay: one', 'alice@direct: two']);
    await printer.send('alice@relay', Buffer.from('to the relay one'));
    await printer.send('alice@direct', Buffer.from('to the direct one'));
    expect(viaRelay).toEqual(['to the relay one']);
    expect(viaDirect).toEqual(['to the direct one']);
    // The relay's tunnel hello says direct mode is on.
    expect(h.relay.sessions.tunnels.get('acme-hq')!.env?.capabilities).toContain(CAPABILITY_DIRECT);
    expect(h.cp.snapshot().tunnel.state).toBe('connected');
  });

  it('counts a direct operator\'s streams against the same contact point stream limit as the relay\'s operators', async () => {
    const h = await startHarness({ cp: { direct: { host: '127.0.0.1', port: 0 }, streamLimits: { maxStreams: 1 } } });
    cleanups.push(() => h.close());
    const lan = createServer((sock) => sock.on('error', () => undefined).pipe(sock));
    lan.listen(0, '127.0.0.1');
    await once(lan, 'listening');
    cleanups.push(() => new Promise((r) => lan.close(r)));
    const lanPort = (lan.address() as AddressInfo).port;
    await h.cp.call('ports:policy', { targets: [`127.0.0.1/32:${lanPort}`], listen: [] });
    const relaySecret = await h.credentials.add('external', 'tech', ['send', 'mediate']);
    const atRelay = new Operator({ url: h.relay.url, name: 'tech', secret: relaySecret, logger, timing: FAST });
    const directSecret = await addCredential(h.cp, h.stateDir, 'tech', ['send', 'mediate']);
    const direct = new Operator({ url: h.cp.direct!.url, name: 'tech', secret: directSecret, logger, timing: FAST });
    for (const op of [atRelay, direct]) {
      cleanups.push(() => op.stop());
      op.start();
      await op.ready();
    }
    const first = await atRelay.open('acme-hq', { proto: 'tcp' });
    await atRelay.connect('acme-hq', first.portId, '127.0.0.1', lanPort);
    const second = await direct.open('acme-hq', { proto: 'tcp' });
    await expect(direct.connect('acme-hq', second.portId, '127.0.0.1', lanPort)).rejects.toMatchObject({ code: Status.STREAM_LIMIT });
  });

  it('is refused when it would give direct peers the contact point\'s own domain, or has neither relay nor direct mode', async () => {
    await expect(ContactPoint.create({ id: 'acme-hq', relayUrl: undefined, secret: '', logger, direct: { host: '127.0.0.1', port: 0, domain: 'acme-hq' } })).rejects.toThrow(/own id/);
    await expect(ContactPoint.create({ id: 'acme-hq', relayUrl: undefined, secret: '', logger })).rejects.toThrow(/relay URL, direct mode, or both/);
  });
});
