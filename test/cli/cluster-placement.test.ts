import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { connect, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { Operator } from '../../core/peer/operator.js';
import { PeerClient } from '../../core/peer/peer-client.js';
import { Status } from '../../core/protocol/status.js';
import { CredentialStore } from '../../core/relay/credentials.js';
import { Relay } from '../../core/relay/relay.js';
import { FAST, logger, waitFor } from '../helpers.js';
import { freePort, freePorts, haveNatsServer, natsWithCredentials, NO_NATS_REASON } from '../nats-fixtures.js';
import { curl } from '../net-fixtures.js';
import { cliSuite, type Service } from './cli-process.js';

/**
 * Issue 12, exposure placement (PROTOCOL.md 17.6): relay node processes on a real nats-server,
 * some with `--advertise-url`. An `expose` that dials r1 for an office whose tunnel is on r2 is
 * told where the office is, dials r2 itself and exposes there, so the exposure's bytes never
 * cross NATS (a subscriber on the mediation subjects counts them); it follows the office when it
 * re-homes, and stays on r1 (the NATS path) when the advertised URL cannot be reached.
 */
if (!haveNatsServer) console.warn(NO_NATS_REASON);

const suite = cliSuite();
const { start } = suite;

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  suite.cleanup(() => new Promise((r) => server.close(r)));
  return (server.address() as AddressInfo).port;
}


/** Whether a TCP connection to 127.0.0.1:`port` is refused. */
function refusedAt(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' }, () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

interface Nodes {
  readonly urls: Record<string, string>;
  readonly nodes: Record<string, Service>;
  readonly creds: CredentialStore;
  readonly nc: NatsConnection;
  readonly natsUrl: string;
  /** office `id` (policy: loopback allowed) with its tunnel on the relay at `url` */
  office(id: string, secret: string, url: string, more?: string[]): Promise<ContactPoint>;
  /** an expose of `target` (host:port) at `cp` through `url` with credential tech (send+mediate), --json */
  expose(cp: string, target: string, url: string, extra?: string[]): Promise<Service>;
}

/**
 * nats-server and relay node processes; each node in `advertise` advertises `--advertise-url`:
 * its own URL, or the URL given (e.g. one where nothing listens).
 */
async function nodes(ids: string[], advertise: Record<string, string | true>): Promise<Nodes> {
  const { nats, nc, admin } = await natsWithCredentials(suite.cleanup, logger);
  const ports = await freePorts(ids.length);
  const urls: Record<string, string> = {};
  ids.forEach((id, i) => (urls[id] = `ws://127.0.0.1:${ports[i]}/v1`));
  const started = await Promise.all(
    ids.map((id, i) => {
      const adv = advertise[id];
      const flags = adv === undefined ? [] : ['--advertise-url', adv === true ? urls[id]! : adv];
      return start(['relay', '--cluster', nats.url, '--node-id', id, '--listen', `127.0.0.1:${ports[i]}`, '--no-udp', '--json', ...flags], { timeoutMs: 15_000 });
    }),
  );
  const nodes: Record<string, Service> = {};
  ids.forEach((id, i) => (nodes[id] = started[i]!));
  const techSecret = await admin.store.add('external', 'tech', ['send', 'mediate']);
  const credFile = join(suite.home, 'tech.credential');
  await writeFile(credFile, techSecret, { mode: 0o600 });
  const office = async (id: string, secret: string, url: string, more: string[] = []): Promise<ContactPoint> => {
    const stateDir = await mkdtemp(join(tmpdir(), 'cp-place-'));
    suite.cleanup(() => rm(stateDir, { recursive: true, force: true }));
    const cp = await ContactPoint.create({ id, relayUrl: url, ...(more.length > 0 ? { relayUrls: [url, ...more] } : {}), secret, stateDir, peerHost: '127.0.0.1', logger, timing: FAST });
    suite.cleanup(() => cp.stop());
    await cp.start();
    await waitFor(() => cp.gateway.connected, 5_000, `tunnel of ${id} up at ${url}`);
    await cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: ['tcp:1-65535'] });
    return cp;
  };
  const expose = (cp: string, target: string, url: string, extra: string[] = []): Promise<Service> =>
    start(['expose', cp, target, '--relay', url, '--id', 'tech', '--credential-file', credFile, '--json', ...extra], { timeoutMs: 20_000 });
  return { urls, nodes, creds: admin.store, nc, natsUrl: nats.url, office, expose };
}

/** Counts the bytes of every mediation frame crossing NATS (`relay.m.>`, PROTOCOL.md 17.2). */
function mediationBytes(nc: NatsConnection): { bytes: () => number; stop: () => void } {
  let bytes = 0;
  const sub = nc.subscribe('relay.m.>', {
    callback: (_err, m) => {
      bytes += m.data.length;
    },
  });
  return { bytes: () => bytes, stop: () => sub.unsubscribe() };
}

/** A LAN web server: /big is `big`, any other path a short page. */
async function webServer(big: Buffer): Promise<number> {
  return listen(createHttpServer((req, res) => (req.url === '/big' ? res.end(big) : res.end(`printer config page for ${req.url}`))));
}

describe.skipIf(!haveNatsServer)('exposure placement on a relay cluster (PROTOCOL.md 17.6)', () => {
  it('places an expose dialled at r1 on r2, which holds the tunnel: 20 MiB with its sha256, no byte over NATS; follows the office to r3', async () => {
    const c = await nodes(['r1', 'r2', 'r3'], { r2: true, r3: true });
    const cpSecret = await c.creds.add('contact-point', 'acme-hq');
    const cp = await c.office('acme-hq', cpSecret, c.urls.r2!);
    const big = randomBytes(20 * 1024 * 1024);
    const bigHash = createHash('sha256').update(big).digest('hex');
    const web = await webServer(big);
    await untilLocated(c.urls.r1!, c.creds, 'acme-hq', 'r2');

    const counted = mediationBytes(c.nc);
    suite.cleanup(() => counted.stop());
    const expose = await c.expose('acme-hq', `127.0.0.1:${web}`, c.urls.r1!);
    expect(expose.ready).toMatchObject({ node: 'r2', exposedVia: c.urls.r2, relayUrl: c.urls.r1, publicHost: '127.0.0.1' });
    const publicPort = Number(expose.ready.publicPort);
    expect((await curl([`http://127.0.0.1:${publicPort}/status`])).stdout.toString()).toBe('printer config page for /status');
    const download = await curl([`http://127.0.0.1:${publicPort}/big`], 30_000);
    expect(download.stdout.length).toBe(big.length);
    expect(createHash('sha256').update(download.stdout).digest('hex')).toBe(bigHash);
    // The bytes went client -> r2 -> tunnel: none of them crossed NATS (the test connection of
    // expose's --check did not either: it ran on r2 too).
    await c.nc.flush();
    expect(counted.bytes()).toBe(0);

    // The office re-homes to r3: the exposure follows (a new port on r3), the old one closes.
    await cp.stop();
    await c.office('acme-hq', cpSecret, c.urls.r3!);
    const moved = await expose.waitForEvent((e) => e.event === 'moved', 'the exposure to follow the office to r3', 15_000);
    expect(moved).toMatchObject({ node: 'r3', exposedVia: c.urls.r3, from: `127.0.0.1:${publicPort}` });
    const again = Number(moved.publicPort);
    expect((await curl([`http://127.0.0.1:${again}/after`])).stdout.toString()).toBe('printer config page for /after');
    if (again !== publicPort) await until(() => refusedAt(publicPort), 5_000, 'the exposure on r2 closed');
    await c.nc.flush();
    expect(counted.bytes()).toBe(0);
    expect(await expose.stop()).toBe(0);
  }, 90_000);

  it('goes back to the node it dialled when the node it was placed on dies, then to the office\'s other node', async () => {
    const c = await nodes(['r1', 'r2', 'r3'], { r2: true, r3: true });
    const cpSecret = await c.creds.add('contact-point', 'acme-hq');
    // Two tunnels (17.5): one on r2, one on r3.
    await c.office('acme-hq', cpSecret, c.urls.r2!, [c.urls.r3!]);
    const web = await webServer(randomBytes(1024));
    await untilLocated(c.urls.r1!, c.creds, 'acme-hq', 'r2');
    await untilLocated(c.urls.r1!, c.creds, 'acme-hq', 'r3');
    const expose = await c.expose('acme-hq', `127.0.0.1:${web}`, c.urls.r1!);
    const placed = String(expose.ready.node);
    expect(['r2', 'r3']).toContain(placed);
    const other = placed === 'r2' ? 'r3' : 'r2';
    await c.nodes[placed]!.stop('SIGKILL');
    await expose.waitForEvent((e) => e.event === 'lost', 'the placed session lost', 10_000);
    // Back on r1 at once (the NATS path), then on the other node holding a tunnel.
    const back = await expose.waitForEvent((e) => e.event === 'exposed', 'the exposure renewed on r1', 10_000);
    expect(back).toMatchObject({ node: 'r1', exposedVia: c.urls.r1 });
    const moved = await expose.waitForEvent((e) => e.event === 'moved', `the exposure placed on ${other}`, 15_000);
    expect(moved).toMatchObject({ node: other, exposedVia: c.urls[other] });
    expect((await curl([`http://127.0.0.1:${Number(moved.publicPort)}/then`])).stdout.toString()).toBe('printer config page for /then');
    expect(await expose.stop()).toBe(0);
  }, 60_000);

  it('stays on the node it dialled, carried over NATS, when the advertised URL of the office\'s node cannot be reached', async () => {
    const dead = `ws://127.0.0.1:${await freePort()}/v1`;
    const c = await nodes(['r1', 'r2'], { r2: dead });
    const cpSecret = await c.creds.add('contact-point', 'acme-hq');
    await c.office('acme-hq', cpSecret, c.urls.r2!);
    const web = await webServer(randomBytes(1024));
    await untilLocated(c.urls.r1!, c.creds, 'acme-hq', 'r2');
    const counted = mediationBytes(c.nc);
    suite.cleanup(() => counted.stop());
    const expose = await c.expose('acme-hq', `127.0.0.1:${web}`, c.urls.r1!);
    expect(expose.events.find((e) => e.event === 'placement-failed')).toMatchObject({ node: 'r2', url: dead });
    expect(expose.ready).toMatchObject({ node: 'r1', exposedVia: c.urls.r1 });
    expect((await curl([`http://127.0.0.1:${Number(expose.ready.publicPort)}/x`])).stdout.toString()).toBe('printer config page for /x');
    await c.nc.flush();
    expect(counted.bytes()).toBeGreaterThan(0); // the NATS path
    expect(await expose.stop()).toBe(0);
  }, 60_000);

  it('answers locate with the nodes holding an office and their URLs, takes up placement-1 only on a cluster node, and refuses it without the mediate right', async () => {
    const c = await nodes(['r1', 'r2'], { r2: true });
    // Added first: both nodes have seen it (their watches of the credentials bucket) long before it is used.
    const sdkSecret = await c.creds.add('external', 'sdk', ['send', 'mediate']);
    const plainSecret = await c.creds.add('external', 'plain', ['send']);
    const cpSecret = await c.creds.add('contact-point', 'acme-hq');
    await c.creds.add('contact-point', 'far-hq');
    await c.office('acme-hq', cpSecret, c.urls.r2!);
    const op = await operator(c.urls.r1!, c.creds, 'loc');
    expect(op.placementOffered).toBe(true);
    await until(async () => (await op.locate('acme-hq')).places.length > 0, 10_000, 'r1 to see the tunnel on r2');
    expect(await op.locate('acme-hq')).toEqual({ node: 'r1', places: [{ node: 'r2', url: c.urls.r2 }] });
    expect(await op.locate('far-hq')).toEqual({ node: 'r1', places: [] }); // known, offline
    await expect(op.locate('nowhere')).rejects.toMatchObject({ code: Status.UNKNOWN_CONTACT_POINT });
    const viewer = await operator(c.urls.r1!, c.creds, 'viewer', ['send']);
    await expect(viewer.locate('acme-hq')).rejects.toMatchObject({ code: Status.PERMISSION_DENIED });
    // An operator program placed by the SDK (Operator.forOffice): its stream goes to r2 directly.
    const web = await webServer(Buffer.alloc(0));
    const counted = mediationBytes(c.nc);
    suite.cleanup(() => counted.stop());
    const { op: placedOp, placedAt } = await Operator.forOffice({ url: c.urls.r1!, name: 'sdk', secret: sdkSecret, logger, timing: FAST }, 'acme-hq');
    suite.cleanup(() => placedOp.stop());
    expect(placedAt).toEqual({ node: 'r2', url: c.urls.r2 });
    const port = await placedOp.open('acme-hq', { proto: 'tcp', port: 0 });
    const stream = await placedOp.connect('acme-hq', port.portId, '127.0.0.1', web);
    const answer = new Promise<string>((resolve) => {
      let text = '';
      stream.on('data', (d: Buffer) => (text += d.toString()));
      stream.on('end', () => resolve(text));
    });
    stream.end('GET /sdk HTTP/1.0\r\n\r\n');
    expect(await answer).toContain('printer config page for /sdk');
    await c.nc.flush();
    expect(counted.bytes()).toBe(0);
    // A program dialling the office's own node stays there.
    const near = await Operator.forOffice({ url: c.urls.r2!, name: 'sdk', secret: sdkSecret, logger, timing: FAST }, 'acme-hq');
    suite.cleanup(() => near.op.stop());
    expect(near.placedAt).toBeUndefined();

    // relay status (from NATS) shows each node's advertised URL.
    const status = await suite.cli(['relay', 'status', '--cluster', c.natsUrl, '--json']);
    expect(status.code, status.stderr).toBe(0);
    const view = JSON.parse(status.stdout) as { nodes: { node: string; url?: string }[] };
    expect(view.nodes.find((n) => n.node === 'r2')?.url).toBe(c.urls.r2);
    expect(view.nodes.find((n) => n.node === 'r1')?.url).toBeUndefined();
    const text = await suite.cli(['relay', 'status', '--cluster', c.natsUrl]);
    expect(text.stdout).toMatch(new RegExp(`r2\\s+1\\s+\\d+\\s+${c.urls.r2!.replace(/[/.]/g, '\\$&')}`));

    // A client that does not list placement-1 (an older one) is not offered it: WELCOME as before.
    const plain = new PeerClient({ role: 'external', url: c.urls.r1!, name: 'plain', secret: plainSecret, logger, timing: FAST });
    suite.cleanup(() => plain.stop());
    plain.start();
    await plain.ready(10_000);
    expect(plain.serverCapabilities).toContain('batch');
    expect(plain.serverCapabilities).not.toContain('placement-1');
    // A single relay does not take placement up, and refuses a locate NOT_OFFERED.
    const credentials = CredentialStore.inMemory();
    const single = new Relay({ credentials, logger, host: '127.0.0.1', port: 0 });
    const singleUrl = await single.start();
    suite.cleanup(() => single.stop());
    await credentials.add('contact-point', 'acme-hq');
    const alone = await operator(singleUrl, credentials, 'alone');
    expect(alone.placementOffered).toBe(false);
    await expect(alone.locate('acme-hq')).rejects.toMatchObject({ code: Status.NOT_OFFERED });
  }, 60_000);
});

/** An operator SDK session of `name` at `url` (rights send+mediate unless given). */
async function operator(url: string, creds: CredentialStore, name: string, rights: ('send' | 'mediate')[] = ['send', 'mediate']): Promise<Operator> {
  const secret = await creds.add('external', name, rights);
  const op = new Operator({ url, name, secret, logger, timing: FAST });
  suite.cleanup(() => op.stop());
  op.start();
  await op.ready(10_000);
  return op;
}

/** Waits until the node at `url` places `cp` on `node` (what expose will be told). */
async function untilLocated(url: string, creds: CredentialStore, cp: string, node: string): Promise<void> {
  const op = await operator(url, creds, 'probe');
  await until(async () => (await op.locate(cp)).places.some((p) => p.node === node), 10_000, `${url} to see ${cp} on ${node}`);
  await op.stop();
}

/** Polls the async condition every 50 ms until it holds; fails after `timeoutMs`. */
async function until(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
