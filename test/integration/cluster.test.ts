import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import type { DeliveryError } from '../../core/protocol/errors.js';
import { Status } from '../../core/protocol/status.js';
import { PeerClient, type InboundMessage } from '../../core/peer/peer-client.js';
import { Kvm } from '@nats-io/kv';
import { decodeAck, decodeFrame, encodeMsg } from '../../core/protocol/codec.js';
import { connectNats, joinNatsCluster, openClusterCredentials, PRESENCE_BUCKET, subjectToken } from '../../core/relay/cluster-nats.js';
import type { CredentialStore } from '../../core/relay/credentials.js';
import { Relay } from '../../core/relay/relay.js';
import { relayStatusText } from '../../core/cli/relay-status-command.js';
import { FAST, logger, refusal, startHarness, waitFor, type Harness } from '../helpers.js';
import { haveNatsServer, NO_NATS_REASON, startNatsServer, type NatsServer } from '../nats-fixtures.js';
import { SealKey } from '../../core/protocol/seal.js';

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
async function known(relays: Relay[], kind: 'contact-point' | 'external', id: string): Promise<void> {
  await waitFor(() => relays.every((r) => replicas.get(r)?.has(kind, id)), 5_000, `${kind} ${id} known on every node`);
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
async function office(nodeId: string, id: string): Promise<Harness> {
  const joined = await joinNatsCluster({ servers: [nats.url], node: nodeId, logger });
  const h = await startHarness({ id, relay: { credentials: joined.credentials, cluster: joined.cluster } });
  replicas.set(h.relay, joined.credentials);
  cleanups.push(() => h.close());
  return h;
}

async function external(relay: Relay, name: string, extra: Partial<ConstructorParameters<typeof PeerClient>[0]> = {}): Promise<PeerClient> {
  const secret = await admin.store.add('external', name);
  await known([relay], 'external', name);
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
async function techOnTwoNodes(): Promise<{ h: Harness; r2: Relay; got: string[]; session: (relay: Relay) => Promise<PeerClient> }> {
  const h = await office('r1', 'acme-hq');
  const r2 = await node('r2');
  const got: string[] = [];
  await h.registered('printer', (m) => void got.push(m.payload.toString()));
  const secret = await admin.store.add('external', 'tech');
  await known([h.relay, r2], 'external', 'tech');
  const session = async (relay: Relay): Promise<PeerClient> => {
    const c = new PeerClient({ role: 'external', url: relay.url, name: 'tech', secret, logger, timing: FAST, ackTimeoutMs: 500, sealKey: sealKeyOf('tech') });
    cleanups.push(() => c.stop());
    c.start();
    await c.ready();
    return c;
  };
  return { h, r2, got, session };
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
    expect(r2.status().routed).toBeGreaterThanOrEqual(1);
    expect(h.relay.status().routed).toBeGreaterThanOrEqual(1);
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
  }, 40_000);
});
