import { createHash, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { Operator, MediationError } from '../../core/peer/operator.js';
import type { PortEventBody } from '../../core/protocol/frames.js';
import { Status } from '../../core/protocol/status.js';
import type { CredentialStore } from '../../core/relay/credentials.js';
import { FAST, logger, waitFor } from '../helpers.js';
import { haveNatsServer, natsWithCredentials, NO_NATS_REASON } from '../nats-fixtures.js';
import { curl } from '../net-fixtures.js';
import { cliSuite, type Service } from './cli-process.js';

/**
 * Issue 12 item 5: port mediation across relay nodes. Two relay node processes joined by a real
 * nats-server; the office's tunnel is on r2, the operator (SDK or `expose`) connects to r1.
 * Requests, events, streams and datagrams cross NATS; refusals stay exact; a node that dies
 * resets the streams through it and its ports are reported closed.
 */
if (!haveNatsServer) console.warn(NO_NATS_REASON);

const suite = cliSuite();
const { start } = suite;

/** Fails with `what` instead of hanging the test; a function is asked at the timeout (to say what was seen meanwhile). */
function within<T>(p: Promise<T>, what: string | (() => string), ms = 5_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const name = (): string => (typeof what === 'string' ? what : what());
  return Promise.race([p, new Promise<T>((_r, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${name()}`)), ms)))]).finally(() => clearTimeout(timer));
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  suite.cleanup(() => new Promise((r) => server.close(r)));
  return (server.address() as AddressInfo).port;
}

function echoServer(): Promise<number> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  suite.cleanup(async () => {
    for (const s of sockets) s.destroy();
  });
  return listen(server);
}

function dial(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

/** The next `n` bytes (as text) that `s` gives. */
function readBytes(s: Duplex, n: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (out.length >= n) {
        s.off('data', onData);
        resolve(out);
      }
    };
    s.on('data', onData);
    s.once('error', reject);
  });
}

interface Cluster {
  readonly r1: Service;
  readonly r2: Service;
  readonly r1Url: string;
  readonly r2Url: string;
  readonly cp: ContactPoint;
  readonly creds: CredentialStore;
  /** an operator SDK session of `name` (rights send+mediate unless given) on the relay at `url` */
  operator(url: string, name: string, rights?: ('send' | 'mediate')[]): Promise<Operator>;
}

/** nats-server, relay nodes r1 and r2 (processes), office acme-hq (policy: loopback allowed) with its tunnel on r2. */
async function cluster(): Promise<Cluster> {
  const { nats, admin } = await natsWithCredentials(suite.cleanup, logger);
  const cpSecret = await admin.store.add('contact-point', 'acme-hq');
  const node = (id: string): Promise<Service> => start(['relay', '--cluster', nats.url, '--node-id', id, '--listen', '127.0.0.1:0', '--no-udp', '--json'], { timeoutMs: 15_000 });
  const [r1, r2] = await Promise.all([node('r1'), node('r2')]);
  const r1Url = String(r1.ready.url);
  const r2Url = String(r2.ready.url);
  const stateDir = await mkdtemp(join(tmpdir(), 'cp-xmed-'));
  suite.cleanup(() => rm(stateDir, { recursive: true, force: true }));
  const cp = await ContactPoint.create({ id: 'acme-hq', relayUrl: r2Url, secret: cpSecret, stateDir, peerHost: '127.0.0.1', logger, timing: FAST });
  suite.cleanup(() => cp.stop());
  await cp.start();
  await waitFor(() => cp.gateway.connected, 5_000, 'tunnel up on r2');
  await cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: ['tcp:1-65535', 'udp:1-65535'] });
  const operator = async (url: string, name: string, rights: ('send' | 'mediate')[] = ['send', 'mediate']): Promise<Operator> => {
    const secret = await admin.store.add('external', name, rights);
    const op = new Operator({ url, name, secret, logger, timing: FAST });
    suite.cleanup(() => op.stop());
    op.start();
    await op.ready(10_000);
    return op;
  };
  // r1 learns where the tunnel is from the presence bucket (a watch, a few ms).
  const probe = await operator(r1Url, 'probe');
  await within(
    (async () => {
      for (;;) {
        const r = await probe.request('acme-hq', { op: 'close', portId: 1 });
        if (r.code !== Status.CONTACT_POINT_OFFLINE) return;
        await new Promise((res) => setTimeout(res, 50));
      }
    })(),
    'r1 to see the tunnel on r2',
    10_000,
  );
  await probe.stop();
  return { r1, r2, r1Url, r2Url, cp, creds: admin.store, operator };
}

/** A LAN service that sends to each client without end. */
function floodServer(): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 7);
  const sockets = new Set<Socket>();
  suite.cleanup(async () => {
    for (const s of sockets) s.destroy();
  });
  return listen(
    createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
      const pump = (): void => {
        while (!s.destroyed && s.write(chunk));
        if (!s.destroyed) s.once('drain', pump);
      };
      pump();
    }),
  );
}

/** Operator tech on r1 with a stream from the office's LAN flood service (on its own port): `received()` bytes so far. */
async function floodingStream(c: Cluster): Promise<{ op: Operator; flood: number; port: { portId: number }; stream: Duplex; received: () => number }> {
  const op = await c.operator(c.r1Url, 'tech');
  const flood = await floodServer();
  const port = await op.open('acme-hq', { proto: 'tcp', port: 0 });
  const stream = await op.connect('acme-hq', port.portId, '127.0.0.1', flood);
  let received = 0;
  stream.on('data', (d: Buffer) => (received += d.length));
  return { op, flood, port, stream, received: () => received };
}

async function refusedCode(p: Promise<unknown>): Promise<number> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MediationError);
  return (err as MediationError).code;
}

describe.skipIf(!haveNatsServer)('port mediation across relay nodes', () => {
  it('opens, listens, connects, redirects UDP and closes ports of an office on another node, with events, streams and datagrams', async () => {
    const c = await cluster();
    const op = await c.operator(c.r1Url, 'tech');
    const closedPorts: number[] = [];
    op.on('closed', (e) => void closedPorts.push(e.portId));
    const echo = await echoServer();

    // connect: a stream from the operator (on r1) to a LAN echo service behind the office (on r2).
    const port = await op.open('acme-hq', { proto: 'tcp', port: 0 });
    const stream = await op.connect('acme-hq', port.portId, '127.0.0.1', echo);
    stream.write('hello across nodes');
    expect(await within(readBytes(stream, 18), 'echo through r1 and r2')).toBe('hello across nodes');
    stream.end();

    // listen: a LAN host connects to the opened port; the operator on r1 gets the accepted event and its stream.
    const listened = await op.open('acme-hq', { proto: 'tcp', port: 0 });
    const lanPort = await op.listen('acme-hq', listened.portId);
    const accepted = once(op, 'accepted') as Promise<[PortEventBody, Duplex]>;
    const lan = await dial(lanPort);
    lan.on('error', () => undefined);
    const [event, lanStream] = await within(accepted, 'accepted event across nodes');
    expect(event).toMatchObject({ portId: listened.portId, event: 'accepted', remoteAddress: '127.0.0.1' });
    lanStream.write('from the operator');
    expect(await within(readBytes(lan, 17), 'bytes to the LAN host')).toBe('from the operator');
    lan.write('from the LAN');
    expect(await within(readBytes(lanStream, 12), 'bytes to the operator')).toBe('from the LAN');

    // close: the port's streams are reset, the port no longer takes connections.
    const reset = new Promise<Error>((r) => lanStream.once('error', r));
    const lanClosed = new Promise((r) => lan.once('close', r));
    await op.close('acme-hq', listened.portId);
    expect(await within(reset, 'stream reset by close')).toMatchObject({ code: 'ECONNRESET' });
    await within(lanClosed, 'LAN socket closed');
    await expect(dial(lanPort)).rejects.toThrow(/ECONNREFUSED/);

    // UDP: a redirected port relays datagrams both ways between the LAN and the operator on r1.
    const udpEcho = createSocket('udp4');
    udpEcho.on('message', (m, r) => udpEcho.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
    udpEcho.bind(0, '127.0.0.1');
    await once(udpEcho, 'listening');
    suite.cleanup(async () => udpEcho.close());
    const udp = await op.open('acme-hq', { proto: 'udp', port: 0 });
    await op.redirect('acme-hq', udp.portId);
    const datagram = once(op, 'datagram') as Promise<[{ payload: Buffer; portId: number }]>;
    op.sendDatagram(udp.portId, '127.0.0.1', udpEcho.address().port, Buffer.from('ping'));
    const [d] = await within(datagram, 'datagram back across nodes');
    expect(d.portId).toBe(udp.portId);
    expect(Buffer.from(d.payload).toString()).toBe('echo:ping');

    // The connected port closed at the office when its connection ended, and the listening one
    // when it was closed: both events reached the operator on r1, which forgets them.
    await waitFor(() => closedPorts.includes(port.portId), 5_000, 'closed event of the connected port');
    expect(await refusedCode(op.redirect('acme-hq', port.portId))).toBe(Status.UNKNOWN_PORT);

    // The operator leaves: r2 closes what it opened at the contact point.
    await op.stop();
    await waitFor(() => c.cp.ports.list().length === 0, 5_000, 'the operator\'s ports closed at the office');
  });

  it('keeps refusals exact across nodes: the same code and reason as an operator on the tunnel\'s node gets', async () => {
    const c = await cluster();
    await c.creds.add('contact-point', 'other-office');
    const far = await c.operator(c.r1Url, 'tech');
    const near = await c.operator(c.r2Url, 'tech2');
    const viewer = await c.operator(c.r1Url, 'viewer', ['send']);
    const refusal = async (p: Promise<unknown>): Promise<{ code: number; message: string }> => {
      const err = await p.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(MediationError);
      return { code: (err as MediationError).code, message: (err as MediationError).message };
    };
    // Decided at r1 from the cluster's credentials and presence.
    expect((await refusal(far.open('nowhere', { proto: 'tcp', port: 0 }))).code).toBe(Status.UNKNOWN_CONTACT_POINT);
    expect((await refusal(far.open('other-office', { proto: 'tcp', port: 0 }))).code).toBe(Status.CONTACT_POINT_OFFLINE);
    expect((await refusal(viewer.open('acme-hq', { proto: 'tcp', port: 0 }))).code).toBe(Status.PERMISSION_DENIED);
    expect((await refusal(far.close('acme-hq', 12345))).code).toBe(Status.UNKNOWN_PORT);
    // Decided by the office behind r2 (its port policy now allows no listening): the same for both operators.
    await c.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: [] });
    const pf = await far.open('acme-hq', { proto: 'tcp', port: 0 });
    const pn = await near.open('acme-hq', { proto: 'tcp', port: 0 });
    const listenFar = await refusal(far.listen('acme-hq', pf.portId));
    expect(listenFar.code).toBe(Status.PERMISSION_DENIED);
    expect(listenFar).toEqual(await refusal(near.listen('acme-hq', pn.portId)));
    const udpFar = await refusal(far.open('acme-hq', { proto: 'udp', port: 0 }));
    expect(udpFar.code).toBe(Status.PERMISSION_DENIED);
    expect(udpFar).toEqual(await refusal(near.open('acme-hq', { proto: 'udp', port: 0 })));
    const targetFar = await refusal(far.connect('acme-hq', pf.portId, '10.9.9.9', 80));
    expect(targetFar.code).toBe(Status.PERMISSION_DENIED);
    expect(targetFar).toEqual(await refusal(near.connect('acme-hq', pn.portId, '10.9.9.9', 80)));
    const unsafeFar = await refusal(far.connect('acme-hq', pf.portId, '169.254.1.1', 80));
    expect(unsafeFar.code).toBe(Status.UNSAFE_TARGET);
    expect(unsafeFar).toEqual(await refusal(near.connect('acme-hq', pn.portId, '169.254.1.1', 80)));
    const redirectFar = await refusal(far.redirect('acme-hq', pf.portId));
    expect(redirectFar.code).toBe(Status.WRONG_STATE);
    const redirectNear = await refusal(near.redirect('acme-hq', pn.portId));
    expect(redirectFar.message.replace(`port ${pf.portId} `, 'port N ')).toBe(redirectNear.message.replace(`port ${pn.portId} `, 'port N '));
  });

  it('serves a LAN web page through `expose` on the other node: curl, and 20 MiB with its sha256', async () => {
    const c = await cluster();
    const big = randomBytes(20 * 1024 * 1024);
    const bigHash = createHash('sha256').update(big).digest('hex');
    const web = await listen(createHttpServer((req, res) => (req.url === '/big' ? res.end(big) : res.end(`printer config page for ${req.url}`))));
    const secret = await c.creds.add('external', 'tech', ['send', 'mediate']);
    const credFile = join(suite.home, 'tech.credential');
    await writeFile(credFile, secret, { mode: 0o600 });
    const expose = await start(['expose', 'acme-hq', `127.0.0.1:${web}`, '--relay', c.r1Url, '--id', 'tech', '--credential-file', credFile, '--json'], { timeoutMs: 15_000 });
    // r2 advertises no URL (relay --advertise-url): the exposure stays on r1 and its bytes cross NATS (placement: cluster-placement.test.ts).
    expect(expose.ready).toMatchObject({ node: 'r1', exposedVia: c.r1Url });
    const publicPort = Number(expose.ready.publicPort);
    const page = await curl([`http://127.0.0.1:${publicPort}/status`]);
    expect(page.stdout.toString()).toBe('printer config page for /status');
    const download = await curl([`http://127.0.0.1:${publicPort}/big`], 30_000);
    expect(download.stdout.length).toBe(big.length);
    expect(createHash('sha256').update(download.stdout).digest('hex')).toBe(bigHash);
    // The exposure's port at the office was opened from r2 on behalf of r1's operator.
    expect(c.cp.ports.list()).toEqual([expect.objectContaining({ state: 'exposed', operator: 'tech' })]);
    await expose.stop();
    await waitFor(() => c.cp.ports.list().length === 0, 5_000, 'the exposure\'s port closed at the office');
  }, 60_000);

  it('resets a stream and an exposed connection, and reports the port closed, when the tunnel\'s node is killed mid-stream', async () => {
    const c = await cluster();
    const { op, flood, port, stream, received } = await floodingStream(c);
    // The same service exposed on r1 by `expose`, a client reading from it.
    const secret = await c.creds.add('external', 'exposer', ['send', 'mediate']);
    const credFile = join(suite.home, 'exposer.credential');
    await writeFile(credFile, secret, { mode: 0o600 });
    const expose = await start(['expose', 'acme-hq', `127.0.0.1:${flood}`, '--relay', c.r1Url, '--id', 'exposer', '--credential-file', credFile, '--json'], { timeoutMs: 15_000 });
    const client = await dial(Number(expose.ready.publicPort));
    let clientReceived = 0;
    client.on('data', (d: Buffer) => (clientReceived += d.length));
    const clientError = new Promise<Error>((r) => client.once('error', r));
    await waitFor(() => received() > 1024 * 1024 && clientReceived > 1024 * 1024, 10_000, 'bytes flowing across nodes');
    const failed = new Promise<Error>((r) => stream.once('error', r));
    const closed = once(op, 'closed') as Promise<[PortEventBody]>;
    let t0 = 0;
    // What the client saw after the kill, for a timeout's message (a FIN in place of the RST, or nothing at all).
    const seen: string[] = [];
    let receivedAtKill = 0;
    client.once('end', () => seen.push(`FIN at ${Date.now() - t0} ms`));
    client.once('close', () => seen.push(`closed at ${Date.now() - t0} ms`));
    void failed.then(() => seen.push(`operator's stream reset at ${Date.now() - t0} ms`));
    const clientSaw = (): string => `the exposed connection reset after r2 died (client: ${seen.join(', ') || 'no FIN, no close'}; ${clientReceived - receivedAtKill} bytes read since the kill)`;
    t0 = Date.now();
    receivedAtKill = clientReceived;
    await c.r2.stop('SIGKILL');
    expect(await within(failed, 'the stream reset after r2 died', 5_000)).toMatchObject({ code: 'ECONNRESET' });
    expect(await within(clientError, clientSaw, 5_000)).toMatchObject({ code: 'ECONNRESET' });
    const [e] = await within(closed, 'the port reported closed', 5_000);
    expect(e).toMatchObject({ portId: port.portId, event: 'closed' });
    expect(Date.now() - t0).toBeLessThan(5_000);
    // The office is offline until it re-homes: a request is refused at once, not left hanging.
    expect(await refusedCode(op.open('acme-hq', { proto: 'tcp', port: 0 }))).toBe(Status.CONTACT_POINT_OFFLINE);
  }, 30_000);

  it('resets the streams and reports the ports closed at once when the office\'s tunnel closes on the other node', async () => {
    const c = await cluster();
    const { op, port, stream, received } = await floodingStream(c);
    await waitFor(() => received() > 1024 * 1024, 10_000, 'bytes flowing across nodes');
    const failed = new Promise<Error>((r) => stream.once('error', r));
    const closed = once(op, 'closed') as Promise<[PortEventBody]>;
    await c.cp.stop();
    // r2 sends GOAWAY with the reason as the tunnel closes: no wait for a ping.
    expect(await within(failed, 'the stream reset', 2_000)).toMatchObject({ code: 'ECONNRESET' });
    const [e] = await within(closed, 'the port reported closed', 2_000);
    expect(e).toMatchObject({ portId: port.portId, event: 'closed' });
    expect(e.reason).toContain('acme-hq');
    expect(await refusedCode(op.open('acme-hq', { proto: 'tcp', port: 0 }))).toBe(Status.CONTACT_POINT_OFFLINE);
  });

  it('closes the office\'s ports and resets its LAN connections when the operator\'s node is killed', async () => {
    const c = await cluster();
    const op = await c.operator(c.r1Url, 'tech');
    const listened = await op.open('acme-hq', { proto: 'tcp', port: 0 });
    const lanPort = await op.listen('acme-hq', listened.portId);
    const accepted = once(op, 'accepted') as Promise<[PortEventBody, Duplex]>;
    const lan = await dial(lanPort);
    lan.on('error', () => undefined);
    await within(accepted, 'accepted event across nodes');
    expect(c.cp.ports.list()).toHaveLength(1);
    const lanClosed = new Promise((r) => lan.once('close', r));
    await c.r1.stop('SIGKILL');
    // r2 notices r1 gone (NATS answers its ping "no responders"), resets the LAN side, closes the port.
    await within(lanClosed, 'LAN connection reset after r1 died', 5_000);
    await waitFor(() => c.cp.ports.list().length === 0, 5_000, 'the port closed at the office');
    await expect(dial(lanPort)).rejects.toThrow(/ECONNREFUSED/);
  }, 30_000);
});

