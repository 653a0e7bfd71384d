import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import type { DeliveryError } from '../../core/protocol/errors.js';
import { Status } from '../../core/protocol/status.js';
import { PeerClient, type InboundMessage } from '../../core/peer/peer-client.js';
import { Kvm } from '@nats-io/kv';
import { decodeAck, decodeFrame, encodeAck, encodeMsg, splitBatch } from '../../core/protocol/codec.js';
import { connectNats, joinNatsCluster, openClusterCredentials, PRESENCE_BUCKET, subjectToken } from '../../core/relay/cluster-nats.js';
import type { CredentialStore } from '../../core/relay/credentials.js';
import { Relay } from '../../core/relay/relay.js';
import { relayStatusText } from '../../core/cli/relay-status-command.js';
import { relayMetrics } from '../../core/relay/metrics.js';
import { scrape } from '../../core/runtime/metrics.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContactPoint, type ContactPointOptions } from '../../core/contact-point/contact-point.js';
import { FrameType } from '../../core/protocol/frames.js';
import { ACK_TIMEOUT_MS } from '../../core/protocol/limits.js';
import { FAST, logger, refusal, registeredPeer, startHarness, waitFor, type Harness } from '../helpers.js';
import { tcpForwarder } from '../net-fixtures.js';
import { RawClient } from '../raw-client.js';
import { haveNatsServer, NO_NATS_REASON, startNatsServer, type NatsServer } from '../nats-fixtures.js';
import { SealKey } from '../../core/protocol/seal.js';
import { Operator } from '../../core/peer/operator.js';

/**
 * Programs sharing an external credential share its sealing key too (the contact point binds
 * the address to one key: README, "Sealed messages"), as `peer send` does through its state folder.
 */
const sealKeys = new Map<string, SealKey>();
function sealKeyOf(name: string): SealKey {
  let k = sealKeys.get(name);
  if (!k) sealKeys.set(name, (k = SealKey.generate()));
  return k;
}

/**
 * Issue 12: relay nodes joined by a real nats-server. Offices hold their tunnel on one node,
 * external peers connect to another; messages, ACKs and refusals cross the engine.
 */
if (!haveNatsServer) console.warn(NO_NATS_REASON);

let nats: NatsServer;
/** the admin's view of the cluster's credentials (as `relay credential ... --cluster` has) */
let admin: { nc: NatsConnection; store: CredentialStore; stop: () => void };
const cleanups: (() => Promise<unknown>)[] = [];
/** each node's replica of the cluster's credentials */
const replicas = new WeakMap<Relay, CredentialStore>();

/** Waits until `relays` have seen a credential the admin added (each node's watch, a few ms). */
async function known(relays: Relay[], kind: 'contact-point' | 'external', id: string, secret?: string): Promise<void> {
  // With the secret just added: that very record (a name added again in an earlier test has an older one there until the watch brings the new).
  const has = (c: CredentialStore | undefined): boolean => (secret === undefined ? (c?.has(kind, id) ?? false) : c?.verify(kind, id, secret) !== undefined);
  await waitFor(() => relays.every((r) => has(replicas.get(r))), 5_000, `${kind} ${id} known on every node`);
}

async function node(id: string, extra: Partial<ConstructorParameters<typeof Relay>[0]> = {}): Promise<Relay> {
  const joined = await joinNatsCluster({ servers: [nats.url], node: id, logger });
  const relay = new Relay({ credentials: joined.credentials, cluster: joined.cluster, logger, pingIntervalMs: FAST.pingIntervalMs, ...extra });
  replicas.set(relay, joined.credentials);
  await relay.start();
  cleanups.push(() => relay.stop());
  return relay;
}

/** An office (contact point `id`, its tunnel on a new node `nodeId`): the harness's relay is that cluster node. */
async function office(nodeId: string, id: string, cp: Partial<ContactPointOptions> = {}, advertiseUrl?: string): Promise<Harness> {
  const joined = await joinNatsCluster({ servers: [nats.url], node: nodeId, logger, ...(advertiseUrl !== undefined ? { advertiseUrl } : {}) });
  const h = await startHarness({ id, cp, relay: { credentials: joined.credentials, cluster: joined.cluster } });
  replicas.set(h.relay, joined.credentials);
  cleanups.push(() => h.close());
  return h;
}

async function external(relay: Relay, name: string, extra: Partial<ConstructorParameters<typeof PeerClient>[0]> = {}): Promise<PeerClient> {
  const secret = await admin.store.add('external', name);
  await known([relay], 'external', name, secret);
  const c = new PeerClient({ role: 'external', url: relay.url, name, secret, logger, timing: FAST, ackTimeoutMs: 500, sealKey: sealKeyOf(name), ...extra } as ConstructorParameters<typeof PeerClient>[0]);
  cleanups.push(() => c.stop());
  c.start();
  await c.ready();
  return c;
}

/**
 * Office acme-hq (printer registered, what it receives in `got`) on node r1, a second node r2,
 * and credential `tech`; session(relay) connects one more session of tech to that node.
 */
async function techOnTwoNodes(): Promise<{ h: Harness; r2: Relay; got: string[]; printer: PeerClient; session: (relay: Relay, onMessage?: (m: InboundMessage) => void) => Promise<PeerClient> }> {
  const h = await office('r1', 'acme-hq');
  const r2 = await node('r2');
  const got: string[] = [];
  const printer = await h.registered('printer', (m) => void got.push(m.payload.toString()));
  const secret = await admin.store.add('external', 'tech');
  await known([h.relay, r2], 'external', 'tech', secret);
  const session = async (relay: Relay, onMessage?: (m: InboundMessage) => void): Promise<PeerClient> => {
    // An ACK timeout longer than a loaded host's stalls: a retransmit then means a lost or
    // misrouted ACK (what these tests look for), not a slow machine.
    const c = new PeerClient({ role: 'external', url: relay.url, name: 'tech', secret, logger, timing: FAST, ackTimeoutMs: 5_000, sealKey: sealKeyOf('tech'), ...(onMessage ? { onMessage } : {}) });
    cleanups.push(() => c.stop());
    c.start();
    await c.ready();
    return c;
  };
  return { h, r2, got, printer, session };
}

/** Contact point `id` (credential added now, `secret`) dialing `relayUrl`; stopped after the test. */
async function contactPoint(id: string, relayUrl: string, relays: Relay[]): Promise<{ cp: ContactPoint; secret: string }> {
  const secret = await admin.store.add('contact-point', id);
  await known(relays, 'contact-point', id, secret);
  const dir = await mkdtemp(join(tmpdir(), `cp-${id}-`));
  const cp = await ContactPoint.create({ id, relayUrl, secret, stateDir: dir, peerHost: '127.0.0.1', logger, timing: FAST });
  cleanups.push(async () => {
    await cp.stop();
    await rm(dir, { recursive: true, force: true });
  });
  await cp.start();
  await waitFor(() => cp.gateway.connected, 5_000, `${id} tunnel`);
  return { cp, secret };
}

describe.skipIf(!haveNatsServer)('relay cluster on NATS (in-process nodes, real nats-server)', () => {
  beforeAll(async () => {
    nats = await startNatsServer();
    const nc = await connectNats([nats.url], 'test admin', logger);
    const creds = await openClusterCredentials(nc, logger);
    admin = { nc, store: creds.store, stop: creds.stop };
  }, 20_000);
  afterAll(async () => {
    admin.stop();
    await admin.nc.close();
    await nats.stop();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('carries a message from a peer on one node to an office on another, and its ACK back; and the answer the other way', async () => {
    // The office's id has a "." (a NATS subject separator): ids travel hex-encoded in subjects.
    const h = await office('r1', 'acme.hq');
    const r2 = await node('r2');
    const got: InboundMessage[] = [];
    const printer = await h.registered('printer', (m) => void got.push(m));
    const inbox: string[] = [];
    const alice = await external(r2, 'alice', { onMessage: (m) => void inbox.push(m.payload.toString()) });
    await waitFor(() => r2.cluster.tunnel('acme.hq')?.kind === 'remote', 5_000, 'r2 sees the tunnel on the office node');
    const receipt = await alice.send('printer@acme.hq', 'hello across nodes');
    expect(receipt.to).toBe('printer@acme.hq');
    expect(got.map((m) => [m.from, m.payload.toString()])).toEqual([['alice@relay', 'hello across nodes']]);
    // Office -> external peer on the other node: MSG over the node subject, ACK over the cp subject.
    await printer.send('alice@relay', 'page printed');
    expect(inbox).toEqual(['page printed']);
    // Each message counted routed once (on the node that delivered it), forwarded on the one that passed it on.
    expect([r2.status().forwarded, r2.status().routed]).toEqual([1 + alice.stats.retransmits, 1 + printer.stats.retransmits]);
    expect([h.relay.status().forwarded, h.relay.status().routed]).toEqual([1 + printer.stats.retransmits, 1 + alice.stats.retransmits]);
    expect(r2.statusSnapshot().totals.forwarded).toBe(r2.status().forwarded);
    const text = await scrape([relayMetrics(r2)]);
    expect(text).toContain(`contact_point_relay_messages_forwarded_total ${r2.status().forwarded}\n`);
    expect(text).toContain(`contact_point_relay_messages_routed_total ${r2.status().routed}\n`);
  });

  it('puts the frames of a burst for an office on another node into few NATS messages (BATCH), each delivered and acked once', async () => {
    const h = await office('r1', 'acme-hq');
    const r2 = await node('r2');
    const got: string[] = [];
    await h.registered('printer', (m) => void got.push(m.payload.toString()));
    // Plain: sealed, the burst would go as a few bundles, one MSG each (PROTOCOL.md 19.6); this is about many frames.
    const alice = await external(r2, 'alice', { seal: 'off' });
    await waitFor(() => r2.cluster.tunnel('acme-hq')?.kind === 'remote', 5_000, 'r2 sees the tunnel on the office node');
    const natsCluster = r2.cluster as unknown as { batchesTo(node: string): boolean };
    await waitFor(() => natsCluster.batchesTo('r1'), 5_000, "r1's heartbeat record (batch) at r2");
    await alice.send('printer@acme-hq', 'first'); // the receiver's key, before the burst
    // Every message on the office's subject, as a bystander subscriber sees it (not in the queue group).
    const seen: Buffer[] = [];
    const sub = admin.nc.subscribe(`relay.cp.${subjectToken('acme-hq')}`, { callback: (_err, m) => void seen.push(Buffer.from(m.data)) });
    // The server has the bystander's subscription before the burst (a burst may be one NATS message).
    await admin.nc.flush();
    try {
      const N = 200;
      await Promise.all(Array.from({ length: N }, (_, i) => alice.send('printer@acme-hq', `burst ${i}`)));
      await admin.nc.flush();
      const burst = got.filter((g) => g.startsWith('burst '));
      expect(new Set(burst).size).toBe(N);
      expect(burst.length).toBe(N); // at-least-once on the wire, once to the application
      const batches = seen.filter((b) => b[0] === FrameType.BATCH);
      expect(batches.length).toBeGreaterThan(0);
      // Before: one NATS message per frame (N + retransmits of them).
      expect(seen.length).toBeLessThan(N / 4);
      const frames = seen.reduce((n, b) => n + (b[0] === FrameType.BATCH ? splitBatch(decodeFrame(b)).length : 1), 0);
      expect(frames).toBe(N + alice.stats.retransmits);
    } finally {
      sub.unsubscribe();
    }
  });

  it('carries office-to-office messages between offices on two nodes', async () => {
    const hq = await office('r1', 'acme-hq');
    const branch = await office('r2', 'acme-branch');
    const got: string[] = [];
    const printer = await hq.registered('printer');
    await branch.registered('scanner', (m) => void got.push(`${m.from} ${m.payload.toString()}`));
    await waitFor(() => hq.relay.cluster.tunnel('acme-branch')?.kind === 'remote', 5_000, 'hq node sees the branch tunnel');
    await printer.send('scanner@acme-branch', 'scan this');
    expect(got).toEqual(['printer@acme-hq scan this']);
  });

  it('keeps every refusal exact across nodes', async () => {
    const h = await office('r1', 'acme-hq');
    const r2 = await node('r2', { ratePerSender: 5 });
    const printer = await h.registered('printer');
    await admin.store.add('contact-point', 'other-office');
    await admin.store.add('external', 'bob');
    await known([h.relay, r2], 'contact-point', 'other-office');
    await known([h.relay, r2], 'external', 'bob');
    const alice = await external(r2, 'alice');
    await waitFor(() => r2.cluster.tunnel('acme-hq')?.kind === 'remote', 5_000, 'r2 sees the tunnel');
    await waitFor(() => h.relay.cluster.external('alice')?.kind === 'remote', 5_000, 'r1 sees alice on r2');
    // Decided at the office (the contact point's own refusal, back over NATS as an ACK).
    expect((await refusal(alice.send('nobody@acme-hq', 'x'))).code).toBe(Status.PEER_NOT_REGISTERED);
    // Decided at the sender's node from the cluster's credentials and presence.
    expect((await refusal(alice.send('printer@nowhere', 'x'))).code).toBe(Status.UNKNOWN_CONTACT_POINT);
    expect((await refusal(alice.send('printer@other-office', 'x', { deadlineMs: 300 }))).code).toBe(Status.CONTACT_POINT_OFFLINE);
    expect((await refusal(printer.send('carol@relay', 'x'))).code).toBe(Status.UNKNOWN_PEER);
    expect((await refusal(printer.send('bob@relay', 'x', { deadlineMs: 300 }))).code).toBe(Status.PEER_OFFLINE);
    // The sender's rate is its own node's (r2: 5 a second, burst 10).
    const results = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => alice.send('printer@acme-hq', `m${i}`, { deadlineMs: 200 })));
    const refused = new Set(results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as DeliveryError).code] : [])));
    expect(refused).toEqual(new Set([Status.RATE_LIMITED]));
  });

  it('answers a forwarded message for a tunnel that left meanwhile with the exact refusal, to the reply subject', async () => {
    const r1 = await node('r1');
    await admin.store.add('contact-point', 'other-office');
    await known([r1], 'contact-point', 'other-office');
    // What another node publishes after it checked the sender: the MSG's own bytes, a reply subject naming it.
    const msg = encodeMsg({ id: 'm-1', to: 'printer@other-office', from: 'alice@relay', payload: Buffer.from('x') });
    const reply = await admin.nc.request(`relay.node.${r1.cluster.node}`, msg, { timeout: 2_000 });
    const ack = decodeAck(decodeFrame(Buffer.from(reply.data)));
    expect(ack).toMatchObject({ id: 'm-1', to: 'alice@relay', from: 'printer@other-office', status: Status.CONTACT_POINT_OFFLINE });
    const unknown = await admin.nc.request(`relay.node.${r1.cluster.node}`, encodeMsg({ id: 'm-2', to: 'x@ghost', from: 'alice@relay', payload: Buffer.from('x') }), { timeout: 2_000 });
    expect(decodeAck(decodeFrame(Buffer.from(unknown.data))).status).toBe(Status.UNKNOWN_CONTACT_POINT);
  });

  it('forgets a presence record whose node is gone on NATS\'s "no responders": the retry is refused CONTACT_POINT_OFFLINE', async () => {
    const r2 = await node('r2');
    await admin.store.add('contact-point', 'other-office');
    await known([r2], 'contact-point', 'other-office');
    const alice = await external(r2, 'alice');
    // A node that died without deleting its record: the record stays until its lease ends (15 s).
    const kv = await new Kvm(admin.nc).open(PRESENCE_BUCKET);
    await kv.put(`t.${subjectToken('other-office')}.r9`, JSON.stringify({ node: 'r9', session: 'gone', since: new Date().toISOString() }));
    await waitFor(() => r2.cluster.tunnel('other-office')?.kind === 'remote', 5_000, 'r2 sees the dead node\'s record');
    const sent = refusal(alice.send('printer@other-office', 'x', { deadlineMs: 2_000 }));
    // The first forward finds no subscriber: r2 drops the record at once, not when the lease ends.
    await waitFor(() => r2.cluster.tunnel('other-office') === undefined, 1_000, 'the dead record dropped');
    // Without that, the sender would hear nothing until its deadline (TIMEOUT).
    expect((await sent).code).toBe(Status.CONTACT_POINT_OFFLINE);
  });

  it('sends the ACK of a message from a session on another node back there, though the office node holds a session of the same credential (issues 12 and 18)', async () => {
    const { h, r2, got, session } = await techOnTwoNodes();
    const far = await session(r2);
    const near = await session(h.relay);
    await waitFor(() => r2.cluster.tunnel('acme-hq')?.kind === 'remote', 5_000, 'r2 sees the tunnel on the office node');
    const sent = Array.from({ length: 200 }, (_, i) => `m${i}`);
    const receipts = await Promise.all(sent.map((p) => far.send('printer@acme-hq', p)));
    expect(receipts).toHaveLength(sent.length);
    expect(got.sort()).toEqual([...sent].sort());
    // Every ACK went to the session that sent the message: none to the one on the office's node.
    expect(far.stats.retransmits).toBe(0);
    expect(near.stats.unmatchedAcks + near.stats.strayAcks).toBe(0);
  });

  it('routes ACKs to the sending session when two sessions of one credential on one node send to an office on another node (issues 12 and 18)', async () => {
    const { r2, got, session } = await techOnTwoNodes();
    const older = await session(r2);
    const newer = await session(r2);
    await waitFor(() => r2.cluster.tunnel('acme-hq')?.kind === 'remote', 5_000, 'r2 sees the tunnel on the office node');
    const fromNewer = Array.from({ length: 100 }, (_, i) => `n${i}`);
    const fromOlder = Array.from({ length: 100 }, (_, i) => `o${i}`);
    await Promise.all([...fromNewer.map((p) => newer.send('printer@acme-hq', p)), ...fromOlder.map((p) => older.send('printer@acme-hq', p))]);
    expect(got.sort()).toEqual([...fromNewer, ...fromOlder].sort());
    for (const c of [older, newer]) {
      expect(c.stats.retransmits).toBe(0);
      expect(c.stats.unmatchedAcks + c.stats.strayAcks).toBe(0);
    }
  });

  it('sends a reply to the session that asked when one credential has sessions on two nodes (issue 18\'s rule across nodes)', async () => {
    const { h, r2, printer, session } = await techOnTwoNodes();
    const heard: string[] = [];
    const far = await session(r2, (m) => void heard.push(`far ${m.payload.toString()}`));
    const near = await session(h.relay, (m) => void heard.push(`near ${m.payload.toString()}`));
    await waitFor(() => r2.cluster.tunnel('acme-hq')?.kind === 'remote' && h.relay.cluster.externalAt('tech', 'r2'), 5_000, 'r1 and r2 see each other');
    // The session on r2 asks: the office's reply (arriving at r1, which holds a session of tech too) goes to r2.
    await far.send('printer@acme-hq', 'question 1');
    await printer.send('tech@relay', 'answer 1');
    // Then the one on r1 asks: its answer stays on r1.
    await near.send('printer@acme-hq', 'question 2');
    await printer.send('tech@relay', 'answer 2');
    // And r2 again.
    await far.send('printer@acme-hq', 'question 3');
    await printer.send('tech@relay', 'answer 3');
    expect(heard).toEqual(['far answer 1', 'near answer 2', 'far answer 3']);
  });

  it("shows the nodes and which node holds each office's tunnel in any node's status (relay status)", async () => {
    // Ids of its own: records that earlier tests' nodes left in the bucket may still be in their lease.
    const hq = await office('v1', 'view-hq');
    const branch = await office('v2', 'view-branch');
    await external(branch.relay, 'viewer');
    await waitFor(() => hq.relay.cluster.tunnel('view-branch')?.kind === 'remote' && hq.relay.cluster.external('viewer')?.kind === 'remote', 5_000, 'v1 sees v2');
    const view = hq.relay.statusSnapshot().cluster!;
    expect(view.node).toBe('v1');
    expect(view.connected).toBe(true);
    expect(view.nodes.filter((n) => n.node.startsWith('v'))).toEqual([
      { node: 'v1', offices: 1, externals: 0 },
      { node: 'v2', offices: 1, externals: 1 },
    ]);
    expect(view.offices.filter((o) => o.id.startsWith('view-'))).toEqual([
      { id: 'view-branch', node: 'v2' },
      { id: 'view-hq', node: 'v1' },
    ]);
    const text = relayStatusText(hq.relay.statusSnapshot()).join('\n');
    expect(text).toMatch(/CLUSTER \(as node v1 sees it\)/);
    expect(text).toMatch(/view-branch\s+v2/);
    expect(text).toMatch(/messages\s+0 routed, 0 forwarded to other nodes, 0 refused/);
  });

  it("shows each node's advertised URL in the status, and places an office on the nodes holding it (17.6)", async () => {
    const hq = await office('w1', 'place-hq', {}, 'wss://w1.example.com/v1');
    const w2 = await node('w2');
    await waitFor(() => w2.cluster.tunnel('place-hq')?.kind === 'remote', 5_000, 'w2 sees w1');
    // The URL comes with w1's heartbeat record (at once, then every HEARTBEAT_MS).
    await waitFor(() => w2.cluster.places?.('place-hq')[0]?.url !== undefined, 5_000, "w2 learns w1's URL");
    expect(w2.cluster.places?.('place-hq')).toEqual([{ node: 'w1', url: 'wss://w1.example.com/v1' }]);
    expect(hq.relay.cluster.places?.('place-hq')).toEqual([{ node: 'w1', url: 'wss://w1.example.com/v1' }]);
    expect(w2.cluster.places?.('nowhere-hq')).toEqual([]);
    const view = w2.statusSnapshot().cluster!;
    expect(view.nodes.find((n) => n.node === 'w1')).toEqual({ node: 'w1', offices: 1, externals: 0, url: 'wss://w1.example.com/v1' });
    expect(view.nodes.find((n) => n.node === 'w2')).toEqual({ node: 'w2', offices: 0, externals: 0 });
    expect(relayStatusText(w2.statusSnapshot()).join('\n')).toMatch(/w1\s+1\s+0\s+wss:\/\/w1\.example\.com\/v1/);
  });

  it('tells a sender on another node REACHABLE when the office it was refused for comes up (9.5 across nodes)', async () => {
    const r1 = await node('r1');
    const r2 = await node('r2');
    // Plain: this is about MSG refusals and REACHABLE; a sealing sender's first frame would be a
    // KEYS_REQUEST, whose refusal the relay does not list with the messages' (and no MSG follows).
    const alice = await external(r2, 'alice', { ackTimeoutMs: ACK_TIMEOUT_MS, seal: 'off' });
    await admin.store.add('contact-point', 'late-office');
    await known([r1, r2], 'contact-point', 'late-office');
    // Its refusal is taken at once (it may come while the office is still starting below).
    const sent = refusal(alice.send('printer@late-office', 'x', { deadlineMs: 20_000 }));
    // Past the first retries (200 + 400 + 800 ms): the next one is 1.6 s or more away.
    await waitFor(() => r2.statusSnapshot().refusals.recent.some((r) => r.code === Status.CONTACT_POINT_OFFLINE), 5_000, 'refused on r2');
    await new Promise((r) => setTimeout(r, 1_500));
    // The office comes up on r1 (no peer there: the contact point's own refusal ends the send).
    const upAt = Date.now();
    await contactPoint('late-office', r1.url, [r1, r2]);
    expect((await sent).code).toBe(Status.PEER_NOT_REGISTERED);
    expect(Date.now() - upAt).toBeLessThan(1_500);
    expect(alice.stats.reachable).toBeGreaterThan(0);
  }, 30_000);

  it('makes a sender wait for REACHABLE when the holding node refused its message (the tunnel or session left meanwhile)', async () => {
    const r1 = await node('r1');
    const r2 = await node('r2');
    const alice = await external(r2, 'alice');
    await admin.store.add('contact-point', 'gone-office');
    const bobSecret = await admin.store.add('external', 'bob');
    await known([r1, r2], 'contact-point', 'gone-office');
    await known([r1, r2], 'external', 'bob');
    // What r1 answers on r2's reply subject when a message r2 forwarded finds the tunnel (the session) gone.
    const refusalFromR1 = (from: string, status: number, subject: string): void =>
      admin.nc.publish(`relay.node.r2.nr.${subject}`, encodeAck({ id: `m-${from}`, to: 'alice@relay', from, status, reason: 'left meanwhile' }));
    refusalFromR1('printer@gone-office', Status.CONTACT_POINT_OFFLINE, `t.${subjectToken('gone-office')}`);
    refusalFromR1('bob@relay', Status.PEER_OFFLINE, 'n.r1');
    await waitFor(() => alice.stats.unmatchedAcks === 2, 5_000, 'both refusals passed on to alice');
    // The office comes up on r1: alice hears REACHABLE {domain: gone-office}.
    await contactPoint('gone-office', r1.url, [r1, r2]);
    await waitFor(() => alice.stats.reachable === 1, 5_000, 'REACHABLE for the office');
    // Bob connects on r1: alice hears REACHABLE {domain: relay, name: bob}.
    const bob = new PeerClient({ role: 'external', url: r1.url, name: 'bob', secret: bobSecret, logger, timing: FAST });
    cleanups.push(() => bob.stop());
    bob.start();
    await bob.ready();
    await waitFor(() => alice.stats.reachable === 2, 5_000, 'REACHABLE for bob');
  });

  it('resends at once what a sender on another node sent into a tunnel that then was replaced (REACHABLE to remote senders)', async () => {
    const r1 = await node('r1', { takeoverProbeMs: 500 });
    const r2 = await node('r2');
    const fwd = await tcpForwarder(Number(new URL(r1.url).port));
    cleanups.push(() => fwd.close());
    const { cp: office, secret } = await contactPoint('swallow-hq', `ws://127.0.0.1:${fwd.port}/v1`, [r1, r2]);
    const arrived = new Map<string, number>();
    await registeredPeer(office, 'printer', (fn) => void cleanups.push(fn), { onMessage: (m) => void arrived.set(m.payload.toString(), Date.now()) });
    await waitFor(() => r1.peersOf('swallow-hq').includes('printer'), 5_000, 'printer announced');
    // Plain: this counts the MSG frames the dead tunnel swallows; a sealing sender would first
    // wait KEYS_TIMEOUT_MS for the key request the dead tunnel swallows too.
    const alice = await external(r2, 'alice', { ackTimeoutMs: ACK_TIMEOUT_MS, seal: 'off' });
    // A tunnel r1 believes is up but that delivers nothing (a half-dead path): a raw client with
    // the office's credential that reads and never answers, not even r1's liveness probe.
    fwd.cut();
    await waitFor(() => r1.control('swallow-hq') === undefined && !office.gateway.connected, 5_000, 'the tunnel to go');
    const dead = await RawClient.open(r1.url, { autoPong: false });
    cleanups.push(async () => void dead.ws.terminate());
    dead.hello({ versions: { min: 1, max: 1 }, role: 'contact-point', id: 'swallow-hq', secret });
    await waitFor(() => r1.control('swallow-hq') !== undefined && r2.cluster.tunnel('swallow-hq')?.kind === 'remote', 5_000, 'the dead tunnel up and seen from r2');
    const sends = Array.from({ length: 10 }, (_, i) => alice.send('printer@swallow-hq', `a${i}`));
    // Past the first ACK timeout (2 s): each was swallowed twice, the next try is 4 s off.
    await new Promise((r) => setTimeout(r, 2_500));
    expect(arrived.size).toBe(0);
    expect(dead.frames.filter((f) => f.type === FrameType.MSG).length).toBeGreaterThanOrEqual(20);
    // The real contact point comes back (on r1) and replaces the dead tunnel: r2 sees the newer claim.
    let upAt = 0;
    office.gateway.once('up', () => (upAt = Date.now()));
    fwd.restore();
    await Promise.all(sends);
    const late = [...arrived.entries()].map(([what, at]) => [what, at - upAt] as const).filter(([, d]) => d > 1_500);
    expect(late, 'delivered later than 1.5 s after the tunnel returned').toEqual([]);
    expect(alice.stats.reachable).toBeGreaterThan(0);
  }, 30_000);

  it('refuses a second instance of an office on another node ID_IN_USE while the holder answers; the same instance, or one after a silent holder, replaces it (6.1.1 across nodes)', async () => {
    const r1 = await node('r1', { takeoverProbeMs: 500 });
    const r2 = await node('r2', { takeoverProbeMs: 500 });
    const secret = await admin.store.add('contact-point', 'twin-hq');
    await known([r1, r2], 'contact-point', 'twin-hq');
    const tunnel = async (relay: Relay, instance: string, autoPong = true): Promise<RawClient> => {
      const c = await RawClient.open(relay.url, { autoPong });
      cleanups.push(async () => void c.ws.terminate());
      c.hello({ versions: { min: 1, max: 1 }, role: 'contact-point', id: 'twin-hq', secret, instance });
      return c;
    };
    const welcomed = (c: RawClient): boolean => c.frames.some((f) => f.type === FrameType.WELCOME);
    const holder = await tunnel(r1, 'instance-one');
    await waitFor(() => welcomed(holder) && r2.cluster.tunnel('twin-hq')?.kind === 'remote', 5_000, 'the holder on r1, seen from r2');

    // Another instance on r2 while the holder on r1 answers r1's probe: refused, told where the holder is.
    const other = await tunnel(r2, 'instance-two');
    const closed = await other.waitClosed();
    expect(other.errorCode()).toBe(Status.ID_IN_USE);
    expect(closed.reason).toMatch(/held by another instance at .* on relay node r1 since/);
    expect(welcomed(other)).toBe(false);
    expect(holder.closed).toBeUndefined();
    expect(r1.sessions.tunnels.has('twin-hq')).toBe(true);

    // The same instance reconnecting to r2: admitted at once; r1 closes the old tunnel (REPLACED) on r2's newer claim.
    const started = Date.now();
    const again = await tunnel(r2, 'instance-one');
    await waitFor(() => welcomed(again), 2_000, 'the same instance welcomed on r2');
    expect(Date.now() - started).toBeLessThan(400); // no probe waited for
    await holder.waitClosed(2_000);
    expect(holder.errorCode()).toBe(Status.REPLACED);

    // A silent holder (a half-dead path) on r2: another instance on r1 takes over after r2's probe.
    again.ws.terminate();
    await waitFor(() => !r2.sessions.tunnels.has('twin-hq') && r1.cluster.tunnel('twin-hq') === undefined, 5_000, 'the tunnel gone everywhere');
    const silent = await tunnel(r2, 'instance-three', false);
    await waitFor(() => welcomed(silent) && r1.cluster.tunnel('twin-hq')?.kind === 'remote', 5_000, 'the silent holder on r2, seen from r1');
    const taker = await tunnel(r1, 'instance-four');
    await waitFor(() => welcomed(taker), 3_000, 'the new instance welcomed on r1 after the probe');
    await silent.waitClosed(3_000);
    expect(silent.errorCode()).toBe(Status.REPLACED);
  }, 30_000);

  it('answers lookups and pushes presence for an office and an external peer held by another node', async () => {
    // Names no other test uses: a credential added again would race the nodes' replicas.
    const r1 = await node('r1');
    const r2 = await node('r2');
    const alice = await external(r2, 'ns-alice');
    const bobSecret = await admin.store.add('external', 'ns-bob');
    await known([r1, r2], 'external', 'ns-bob');
    const seen: string[] = [];
    alice.subscribePresence('x@ns-office', (p) => void seen.push(p.office ?? '-'));
    const bobSeen: string[] = [];
    alice.subscribePresence('ns-bob@relay', (p) => void bobSeen.push(p.peer ?? '-'));
    await waitFor(() => seen.at(-1) === 'unknown' && bobSeen.at(-1) === 'offline', 5_000, 'the first states');

    const { cp } = await contactPoint('ns-office', r1.url, [r1, r2]);
    await waitFor(() => r2.cluster.tunnel('ns-office')?.kind === 'remote', 5_000, 'r2 sees the tunnel on r1');
    // Asked through r1, which holds the tunnel: the contact point answers (printer is not registered there).
    expect(await alice.lookup('printer@ns-office')).toEqual({ address: 'printer@ns-office', office: 'connected', peer: 'unregistered' });
    await waitFor(() => seen.at(-1) === 'connected', 5_000, 'office connected pushed');

    const bob = new PeerClient({ role: 'external', url: r1.url, name: 'ns-bob', secret: bobSecret, logger, timing: FAST });
    cleanups.push(() => bob.stop());
    bob.start();
    await bob.ready();
    await waitFor(() => r2.cluster.external('ns-bob')?.kind === 'remote', 5_000, 'r2 sees bob on r1');
    expect((await alice.lookup('ns-bob@relay')).peer).toBe('online');
    await waitFor(() => bobSeen.at(-1) === 'online', 5_000, 'bob online pushed');

    await cp.stop();
    await bob.stop();
    await waitFor(() => seen.at(-1) === 'disconnected' && bobSeen.at(-1) === 'offline', 5_000, 'gone pushed');
    expect((await alice.lookup('printer@ns-office')).office).toBe('disconnected');
    expect(seen).toEqual(['unknown', 'connected', 'disconnected']);
    expect(bobSeen).toEqual(['offline', 'online', 'offline']);
  });

  it("answers a peer-level lookup for an office on another node as that node does, by the office's access rules, and pushes its peer's changes there (9.7)", async () => {
    const h = await office('r1', 'nl-hq');
    const r2 = await node('r2');
    const printer = await h.registered('printer');
    const alice = await external(r2, 'nl-alice');
    const tech = await external(r2, 'nl-tech');
    const near = await h.external('nl-near'); // on r1, beside the tunnel: the answers to match
    await waitFor(() => r2.cluster.tunnel('nl-hq')?.kind === 'remote', 5_000, 'r2 sees the tunnel on r1');
    const both = async (address: string): Promise<unknown[]> => [await alice.lookup(address), await near.lookup(address)];
    const online = { address: 'printer@nl-hq', office: 'connected', peer: 'online' };
    expect(await both('printer@nl-hq')).toEqual([online, online]);
    const ghost = { address: 'ghost@nl-hq', office: 'connected', peer: 'unregistered' };
    expect(await both('ghost@nl-hq')).toEqual([ghost, ghost]);

    const seen: string[] = [];
    alice.subscribePresence('printer@nl-hq', (p) => void seen.push(`${p.office}:${p.peer ?? '-'}`));
    await waitFor(() => seen.at(-1) === 'connected:online', 5_000, 'online pushed');
    // The contact point's hint comes up its tunnel on r1; the subscriber on r2 hears it.
    await printer.stop();
    await waitFor(() => seen.at(-1) === 'connected:offline', 5_000, 'offline pushed across nodes');

    // Rules that let only tech in: hidden from alice (for every name alike), not from tech.
    await h.cp.call('rules:set', { allow: ['nl-tech@relay'] });
    await waitFor(() => seen.at(-1) === 'connected:hidden', 5_000, 'hidden pushed across nodes');
    expect((await alice.lookup('ghost@nl-hq')).peer).toBe('hidden');
    expect((await tech.lookup('printer@nl-hq')).peer).toBe('offline');
    expect(seen).toEqual(['connected:online', 'connected:offline', 'connected:hidden']);
  });

  it('refuses an operator on another node NOT_OFFERED at once, expose included, for an office without mediation (as on one node)', async () => {
    const h = await office('r1', 'nm-hq', { mediation: false });
    const r2 = await node('r2');
    await h.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: ['tcp:1-65535', 'udp:1-65535'] });
    const secret = await admin.store.add('external', 'nm-tech', ['send', 'mediate']);
    await known([r2], 'external', 'nm-tech');
    const op = new Operator({ url: r2.url, name: 'nm-tech', secret, logger, timing: FAST });
    cleanups.push(() => op.stop());
    op.start();
    await op.ready();
    await waitFor(() => r2.cluster.tunnel('nm-hq')?.kind === 'remote', 5_000, 'r2 sees the tunnel on r1');
    // The expose itself is refused: no public port on r2 that would refuse each connection.
    await expect(op.expose('nm-hq', '127.0.0.1', 80)).rejects.toMatchObject({ code: Status.NOT_OFFERED });
    expect(r2.exposures()).toEqual([]);
    await expect(op.open('nm-hq', { proto: 'tcp' })).rejects.toMatchObject({ code: Status.NOT_OFFERED, message: expect.stringMatching(/does not offer port mediation/) as string });
    expect(r2.refusals.recent().filter((r) => r.code === Status.NOT_OFFERED).map((r) => r.who)).toEqual(['operator nm-tech', 'operator nm-tech']);
    expect(h.cp.ports.refusedByCode.byName()).toEqual({}); // the office never saw them
  });

  it('closes the sessions of a removed credential on every node within 1 s', async () => {
    const h = await office('r1', 'acme-hq');
    const r2 = await node('r2');
    await external(r2, 'alice');
    const downs: number[] = [];
    const gone = (what: () => boolean): Promise<void> => waitFor(what, 3_000, 'session closed').then(() => void downs.push(Date.now()));
    await waitFor(() => admin.store.has('contact-point', 'acme-hq'), 5_000, 'the admin sees the office credential');
    const started = Date.now();
    expect(await Promise.all([admin.store.remove('contact-point', 'acme-hq'), admin.store.remove('external', 'alice')])).toEqual([true, true]);
    await Promise.all([gone(() => h.relay.status().tunnels === 0), gone(() => r2.status().externals === 0)]);
    expect(Math.max(...downs) - started).toBeLessThan(1_000);
  });

  // Last: it restarts the nats-server the other tests share.
  it('reconnects by itself when nats-server restarts: the office re-homes and cross-node messages flow again', async () => {
    const h = await office('r1', 'acme-hq');
    const r2 = await node('r2');
    const got: string[] = [];
    await h.registered('printer', (m) => void got.push(m.payload.toString()));
    const alice = await external(r2, 'alice');
    await waitFor(() => r2.cluster.tunnel('acme-hq')?.kind === 'remote', 5_000, 'r2 sees the tunnel');
    await alice.send('printer@acme-hq', 'before');
    const reconnects = h.cp.gateway.status().reconnects;
    await nats.restart();
    // r1 lost NATS, closed the tunnel and turned the office away until NATS (and JetStream) was back.
    await waitFor(
      () => h.relay.cluster.available && r2.cluster.available && h.cp.gateway.connected && r2.cluster.tunnel('acme-hq')?.kind === 'remote',
      20_000,
      'both nodes back in the cluster, the tunnel up again and seen from r2',
    );
    expect(h.cp.gateway.status().reconnects).toBeGreaterThan(reconnects);
    await alice.send('printer@acme-hq', 'after', { deadlineMs: 10_000 });
    expect(got).toEqual(['before', 'after']);
    // The credential watches came back too: a credential added now reaches both nodes. (The
    // admin's own connection may still be reconnecting: a put sent meanwhile times out; again.)
    await admin.store.add('external', 'carol').catch(() => admin.store.add('external', 'carol'));
    await known([h.relay, r2], 'external', 'carol');
  }, 40_000);
});
