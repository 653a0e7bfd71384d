/**
 * One benchmark role in its own process, so the relay and the contact point each get their own
 * event loop (and their own heap to measure), as they would on real hosts.
 *
 *   node dist/bench/worker.js <relay|contact-point|ack-server|receiver|loop-sender|conn-floor|conn-floor-clients|nats-receiver|lan|forwarder|ws-forwarder|load> '<json config>'
 *
 * Started by bench/run.ts with child_process.fork; it reports `{ ready: { role, pid, url } }`
 * over IPC and then answers requests ({ id, op, args } -> { id, ok, result | error }).
 * `exit` stops the role and ends the process normally (so --cpu-prof writes its profile).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import type { ContentCheckView } from '../core/admin/contract.js';
import { ContactPoint } from '../core/contact-point/contact-point.js';
import { contactPointMetrics } from '../core/contact-point/metrics.js';
import { relayMetrics } from '../core/relay/metrics.js';
import { MetricsServer, scrape, type MetricsSource } from '../core/runtime/metrics.js';
import { PeerIdentity } from '../core/peer/identity.js';
import { PeerClient } from '../core/peer/peer-client.js';
import type { Link } from '../core/protocol/link.js';
import { CredentialStore, type CredentialKind } from '../core/relay/credentials.js';
import { freePort } from './nats-server.js';
import type { ExposeSpec } from '../core/relay/expose.js';
import { Relay, type RelayOptions } from '../core/relay/relay.js';
import { primeAllocator, primeAllocatorOnBulk } from '../core/runtime/allocator.js';
import { gcOnMainThread } from '../core/runtime/gc.js';
import { createLogger, isLogLevel, type Logger } from '../core/runtime/logger.js';
import { AckServer } from './ack-server.js';
import type { ReadyInfo, Request, Response } from './ipc.js';
import { startLoad } from './mediation-load.js';
import { startScraper } from './metrics.js';
import { startOffices, type OfficesConfig } from './offices.js';
import { startNatsReceiver } from './nats-throughput.js';
import { startLoopSender, type LoopSenderConfig } from './loop.js';
import { startFloorClients, startFloorServer, type FloorKind } from './conn-floor.js';
import { startForwarder, startLan } from './mediation-services.js';
import { gcEventsBetween, readStamp, Samples, sentStamp, watchGc } from './util.js';
import { startWsForwarder } from './ws-forwarder.js';

type Handler = (args: unknown) => unknown;

const level = process.env.BENCH_LOG ?? 'error';
const logger: Logger = createLogger({ level: isLogLevel(level) ? level : 'error' });

/**
 * Socket write/read call counts of this process, to check that the Link's cork/uncork really
 * coalesces frames: writes = _writev + _write calls (each one write syscall when the kernel
 * takes it all), chunks = buffers handed over, reads = data chunks pushed by sockets.
 */
const io = { writes: 0, chunks: 0, reads: 0, bytesRead: 0 };
{
  type Writev = (this: Socket, chunks: { chunk: Buffer }[], cb: (err?: Error) => void) => void;
  type Write = (this: Socket, chunk: Buffer, encoding: BufferEncoding, cb: (err?: Error) => void) => void;
  type Push = (this: Socket, chunk: Buffer | null) => boolean;
  const proto = Socket.prototype as unknown as { _writev: Writev; _write: Write; push: Push };
  const writev = proto._writev;
  const write = proto._write;
  const push = proto.push;
  proto._writev = function (chunks, cb) {
    io.writes++;
    io.chunks += chunks.length;
    return writev.call(this, chunks, cb);
  };
  proto._write = function (chunk, encoding, cb) {
    io.writes++;
    io.chunks++;
    return write.call(this, chunk, encoding, cb);
  };
  proto.push = function (chunk) {
    if (chunk) {
      io.reads++;
      io.bytesRead += chunk.length;
    }
    return push.call(this, chunk);
  };
}

/** The event loop's delay between `loopDelay {start: true}` and the next `loopDelay` (ms): how long work here waited behind other work. */
let loopHistogram: IntervalHistogram | undefined;
function loopDelay(a: unknown): { p50_ms: number; p99_ms: number; max_ms: number } | null {
  if ((a as { start?: boolean } | undefined)?.start) {
    loopHistogram?.disable();
    loopHistogram = monitorEventLoopDelay({ resolution: 1 });
    loopHistogram.enable();
    return null;
  }
  const h = loopHistogram;
  loopHistogram = undefined;
  if (!h) return null;
  h.disable();
  const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
  return { p50_ms: ms(h.percentile(50)), p99_ms: ms(h.percentile(99)), max_ms: ms(h.max) };
}

function memory(): NodeJS.MemoryUsage {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) for (let i = 0; i < 4; i++) gc();
  return process.memoryUsage();
}

/** Bytes that crossed a link's TCP socket, ws framing and pings included (Link.stats counts only our frames). */
function wireBytes(link: Link | undefined): { read: number; written: number } {
  const socket = (link as unknown as { socket: Socket | undefined } | undefined)?.socket;
  return { read: socket?.bytesRead ?? 0, written: socket?.bytesWritten ?? 0 };
}

interface RelayConfig {
  name?: string;
  /** serve wss with this certificate (PEM) */
  tls?: { cert: string; key: string };
  /** announce this UDP port to contact points (a silent one: UDP "blocked", datagrams stay in the tunnel) */
  udpAdvertisePort?: number;
  /** a node of a relay cluster on NATS (cluster benchmark): its credentials are the cluster's */
  cluster?: { servers: string[]; node: string };
  /** cluster nodes: listen on a free port chosen first and advertise its URL for placement (relay --advertise-url, PROTOCOL.md 17.6) */
  advertise?: boolean;
  /** serve /metrics (as `relay --metrics`), and a second endpoint with per-office series (`--metrics-per-office`) */
  metrics?: boolean;
  /** messages/s per external sender (default BENCH_RATE_PER_SENDER): the bench measures the path, not the limit */
  ratePerSender?: number;
}

/**
 * The relay's per-sender message rate in the benches. The default (RELAY_RATE_PER_SENDER,
 * 50,000/s with a 2 s burst) is a policy against floods; closed loops now pass it, and its
 * RATE_LIMITED refusals would make the bench measure the limiter instead of the path.
 */
const BENCH_RATE_PER_SENDER = 10_000_000;

/** /metrics on loopback for a bench role, as `--metrics 127.0.0.1:0` starts it. */
async function serveMetrics(source: MetricsSource): Promise<MetricsServer> {
  const server = new MetricsServer({ host: '127.0.0.1', port: 0, sources: [source], logger });
  await server.start();
  return server;
}

/** Scrapes run untimed before the timed ones (JIT warm-up). */
const WARMUP_SCRAPES = 3;

/**
 * Times `n` whole scrapes in this process (`source` undefined: Node's process metrics alone),
 * after WARMUP_SCRAPES untimed ones: wall ms each and
 * CPU ms each (the process's CPU time, which a loaded host does not inflate the way it does wall time).
 */
async function timeScrapes(source: MetricsSource | undefined, n: number): Promise<{ ms: number[]; cpuMs: number[]; bytes: number; samples: number }> {
  const ms: number[] = [];
  const cpuMs: number[] = [];
  let text = '';
  for (let i = 0; i < WARMUP_SCRAPES + n; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    text = await scrape(source ? [source] : []);
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    if (i < WARMUP_SCRAPES) continue;
    ms.push(wall);
    cpuMs.push((c.user + c.system) / 1000);
  }
  return { ms, cpuMs, bytes: Buffer.byteLength(text), samples: text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length };
}

async function startRelay(config: RelayConfig): Promise<{ info: ReadyInfo; ops: Record<string, Handler>; stop: () => Promise<void> }> {
  let credentials = CredentialStore.inMemory();
  let cluster: RelayOptions['cluster'];
  const port = config.advertise ? await freePort() : undefined;
  if (config.cluster) {
    const { joinNatsCluster } = await import('../core/relay/cluster-nats.js');
    ({ credentials, cluster } = await joinNatsCluster({ ...config.cluster, logger, ...(port !== undefined ? { advertiseUrl: `ws://127.0.0.1:${port}/v1` } : {}) }));
  }
  const relay = new Relay({
    credentials,
    logger,
    ...(port !== undefined ? { host: '127.0.0.1', port } : {}),
    ...(cluster ? { cluster } : {}),
    ...(config.name ? { name: config.name } : {}),
    ...(config.tls ? { tls: config.tls } : {}),
    ...(config.udpAdvertisePort ? { udpAdvertisePort: config.udpAdvertisePort } : {}),
    ratePerSender: config.ratePerSender ?? BENCH_RATE_PER_SENDER,
  });
  const url = await relay.start();
  const links = (relay as unknown as { links: Set<Link> }).links;
  const plain = config.metrics ? relayMetrics(relay) : undefined;
  const perOffice = config.metrics ? relayMetrics(relay, { perOffice: true }) : undefined;
  const servers = plain && perOffice ? [await serveMetrics(plain), await serveMetrics(perOffice)] : [];
  return {
    info: { role: 'relay', pid: process.pid, url, ...(servers.length ? { metricsUrl: servers[0]!.url, metricsPerOfficeUrl: servers[1]!.url } : {}) },
    stop: async () => {
      for (const s of servers) await s.stop();
      await relay.stop();
    },
    ops: {
      /** `n` scrapes in this process: Node's process metrics only, or with the relay's series, with or without per-office series */
      scrapeTimes: (a) => {
        const { which, n } = a as { which: 'process' | 'relay' | 'per-office'; n: number };
        if (!plain || !perOffice) throw new Error('this relay worker runs without metrics');
        return timeScrapes(which === 'process' ? undefined : which === 'relay' ? plain : perOffice, n);
      },
      addCredential: (a) => {
        const { kind, id, rights } = a as { kind: CredentialKind; id: string; rights?: ('send' | 'mediate')[] };
        return credentials.add(kind, id, rights);
      },
      addCredentials: async (a) => {
        const { kind, ids } = a as { kind: CredentialKind; ids: string[] };
        const secrets: string[] = [];
        for (const id of ids) secrets.push(await credentials.add(kind, id));
        return secrets;
      },
      status: () => relay.status(),
      /** a public port on the relay forwarding to a LAN target behind a contact point (mediation benchmarks) */
      expose: async (a) => {
        const e = await relay.expose(a as ExposeSpec);
        return { id: e.id, publicPort: e.publicPort };
      },
      exposures: () => relay.exposures(),
      udpStats: () => ({ ...(relay.udp?.stats ?? {}) }),
      peersCount: (a) => relay.peersOf((a as { id: string }).id).length,
      /** where this node sees a contact point's tunnel: here, on another cluster node, or nowhere */
      tunnelPlace: (a) => {
        const t = relay.cluster.tunnel((a as { id: string }).id);
        return t === undefined ? 'none' : t.kind === 'remote' ? 'remote' : 'local';
      },
      memory: () => memory(),
      wire: () => {
        let read = 0;
        let written = 0;
        let frameBytes = 0;
        for (const link of links) {
          const w = wireBytes(link);
          read += w.read;
          written += w.written;
          frameBytes += link.stats.bytesIn + link.stats.bytesOut;
        }
        return { sockets: links.size, read, written, frameBytes };
      },
    },
  };
}

async function startContactPoint(config: {
  id: string;
  relayUrl: string;
  /** more relay URLs: two tunnels to two relay nodes (cluster failover benchmark) */
  relayUrls?: string[];
  secret: string;
  subnets?: string[];
  /** port mediation policy (mediation benchmarks) */
  ports?: { targets: string[]; listen: string[] };
  /** CA certificate (PEM) to trust for a wss relay with a self-signed certificate */
  ca?: string;
  /**
   * history benchmark: a temporary state folder, with the message history kept ('on') or not
   * ('off'); absent: no state folder (so no history), as in the other benchmarks
   */
  history?: 'on' | 'off';
  /** serve /metrics (as `serve --metrics`) */
  metrics?: boolean;
  /** direct mode (serve --direct-listen 127.0.0.1:0): external peers connect to the contact point itself too */
  direct?: boolean;
}): Promise<{ info: ReadyInfo; ops: Record<string, Handler>; stop: () => Promise<void> }> {
  const stateDir = config.history ? await mkdtemp(join(tmpdir(), 'cp-bench-history-')) : undefined;
  const history = config.history === 'off' ? { history: false as const } : {};
  const cp = await ContactPoint.create({
    id: config.id,
    relayUrl: config.relayUrl,
    ...(config.relayUrls ? { relayUrls: config.relayUrls } : {}),
    secret: config.secret,
    stateDir,
    ...history,
    peerHost: '127.0.0.1',
    proxy: null,
    logger,
    ...(config.subnets ? { policy: { subnets: config.subnets } } : {}),
    ...(config.ports ? { ports: config.ports } : {}),
    ...(config.ca ? { ca: config.ca } : {}),
    ...(config.direct ? { direct: { host: '127.0.0.1', port: 0 } } : {}),
  });
  await cp.start();
  const deadline = Date.now() + 10_000;
  while (!cp.gateway.connected) {
    if (Date.now() > deadline) throw new Error(`tunnel to ${config.relayUrl} not up within 10 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const tunnelLink = (): Link | undefined => cp.gateway.currentLink;
  const metrics = config.metrics ? await serveMetrics(contactPointMetrics(cp)) : undefined;
  return {
    info: { role: 'contact-point', pid: process.pid, url: cp.peerPortUrl, ...(metrics ? { metricsUrl: metrics.url } : {}), ...(cp.direct ? { directUrl: cp.direct.url } : {}) },
    stop: async () => {
      await metrics?.stop();
      await cp.stop();
      if (stateDir) await rm(stateDir, { recursive: true, force: true });
    },
    ops: {
      tunnel: () => ({ ...cp.gateway.status(), wire: wireBytes(tunnelLink()), keepaliveMode: cp.gateway.keepaliveMode }),
      peers: () => ({ known: cp.registrar.size, registered: cp.registrar.registeredNames().length, connections: cp.peerPort.connections }),
      flow: () => cp.flow.totals(),
      history: async () => {
        await cp.history?.flush();
        return { ...(cp.history?.stats() ?? {}), lost: cp.history?.lost ?? 0 };
      },
      memory: () => memory(),
      streams: () => ({ streams: cp.ports.streamCount, ports: cp.ports.list().length }),
      udpReady: () => cp.udpChannel?.ready ?? false,
      udpStats: () => ({ ...(cp.udpChannel?.stats ?? {}) }),
      /** a direct-mode credential (in memory: this contact point has no state folder); its secret */
      addDirectCredential: (a) => cp.direct!.credentials.add('external', (a as { id: string }).id),
      /** content-check benchmark: the content check, as rules:check sets it */
      setCheck: async (check) => (await cp.call('rules:check', { check: check as ContentCheckView })).check,
    },
  };
}

async function startAckServer(): Promise<{ info: ReadyInfo; ops: Record<string, Handler>; stop: () => Promise<void> }> {
  const samples = new Samples(2_000_000);
  const server = new AckServer((p) => {
    const latency = readStamp(p);
    if (latency !== undefined) samples.push(latency);
  });
  const url = await server.start();
  return {
    info: { role: 'ack-server', pid: process.pid, url },
    stop: () => server.stop(),
    ops: {
      acked: () => server.acked,
      memory: () => memory(),
      latency: () => {
        const s = samples.summary();
        samples.clear();
        return s;
      },
    },
  };
}

/**
 * An internal SDK peer that only receives: it registers (auto-approved by the contact point's
 * subnet policy), acks everything, and records the one-way latency of measured messages.
 */
async function startReceiver(config: { url: string; name: string }): Promise<{ info: ReadyInfo; ops: Record<string, Handler>; stop: () => Promise<void> }> {
  const samples = new Samples(2_000_000, true);
  let received = 0;
  const client = new PeerClient({
    role: 'peer',
    url: config.url,
    name: config.name,
    identity: PeerIdentity.generate(),
    proxy: null,
    logger,
    onMessage: (m) => {
      received++;
      const latency = readStamp(m.payload);
      if (latency !== undefined) samples.push(latency, sentStamp(m.payload));
    },
  });
  client.start();
  await client.ready();
  client.register();
  await client.waitForRegistration('registered');
  return {
    info: { role: 'receiver', pid: process.pid, url: config.url, address: client.address },
    stop: () => client.stop(),
    ops: {
      received: () => received,
      // `tail`: also the samples at or above the p99 with their send times (bench/tail.ts)
      latency: (a) => {
        const s = samples.summary();
        const tail = (a as { tail?: boolean } | undefined)?.tail ? samples.tail(99) : undefined;
        samples.clear();
        return tail ? { ...s, tail } : s;
      },
    },
  };
}

async function main(): Promise<void> {
  const role = process.argv[2] ?? '';
  const config = JSON.parse(process.argv[3] ?? '{}') as Record<string, unknown>;
  const send = (m: unknown): void => void process.send?.(m);
  if (!process.send) throw new Error('bench worker must be started by bench/run.js (it talks over IPC)');

  // As `contact-point relay | serve | start` do (core/runtime/allocator.ts: primed at the first
  // stream); the harness roles (lan, load) too, so that neither the direct baseline nor the path
  // is limited by them: they prime at once.
  // The SDK's sender (loop-sender) runs as an application would hold it, as in the bench process: unprimed.
  if (role === 'relay' || role === 'contact-point') primeAllocatorOnBulk();
  else if (role !== 'loop-sender') primeAllocator();
  // As `contact-point relay | serve | start` do for the forwarding processes (core/runtime/gc.ts);
  // the harness roles keep node's default.
  if (role === 'relay' || role === 'contact-point') gcOnMainThread();
  // Every role's GC pauses, so a latency tail can be put down to the process that paused (bench/tail.ts).
  watchGc();
  let started;
  try {
    if (role === 'relay') started = await startRelay(config as RelayConfig);
    else if (role === 'contact-point') started = await startContactPoint(config as Parameters<typeof startContactPoint>[0]);
    else if (role === 'ack-server') started = await startAckServer();
    else if (role === 'receiver') started = await startReceiver(config as { url: string; name: string });
    else if (role === 'loop-sender') started = await startLoopSender(config as unknown as LoopSenderConfig);
    else if (role === 'conn-floor') started = await startFloorServer(config as { kind: FloorKind });
    else if (role === 'conn-floor-clients') started = await startFloorClients(config as { url: string; n: number; concurrency: number });
    else if (role === 'nats-receiver') started = await startNatsReceiver(config as { url: string });
    else if (role === 'lan') started = await startLan();
    else if (role === 'forwarder') started = await startForwarder(config as { target: number });
    else if (role === 'ws-forwarder') started = await startWsForwarder(config as { target: string });
    else if (role === 'load') started = startLoad();
    else if (role === 'offices') started = await startOffices(config as unknown as OfficesConfig, logger);
    else if (role === 'scraper') started = await startScraper((config as { urls: string[] }).urls, (config as { everyMs: number }).everyMs, logger, (config as { selfServe?: number }).selfServe ?? 0);
    else throw new Error(`unknown role "${role}"`);
  } catch (err: unknown) {
    send({ failed: err instanceof Error ? err.message : String(err) });
    process.exitCode = 1;
    process.disconnect();
    return;
  }
  const { ops, stop } = started;
  let stopping = false;
  const finish = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    try {
      await stop();
    } finally {
      // A normal exit (not a signal) so --cpu-prof and --heap-prof write their files.
      process.exit(0);
    }
  };
  process.on('message', (m: unknown) => {
    const req = m as Request;
    if (req.op === 'exit') {
      void finish();
      return;
    }
    const handler =
      req.op === 'cpu'
        ? () => process.cpuUsage()
        : req.op === 'usage'
          ? () => process.resourceUsage()
          : req.op === 'io'
            ? () => ({ ...io })
            : req.op === 'gcEvents'
              ? (a: unknown) => gcEventsBetween((a as { from: number }).from, (a as { to: number }).to)
            : req.op === 'loopDelay'
              ? loopDelay
            : req.op === 'heapSpaces'
              ? () => getHeapSpaceStatistics()
              : req.op === 'heapSnapshot'
              ? (a: unknown) => writeHeapSnapshot((a as { path: string }).path)
              : (ops[req.op] ?? (req.op === 'memory' ? () => memory() : undefined));
    const reply = (r: Response): void => send(r);
    if (!handler) {
      reply({ id: req.id, ok: false, error: `no op "${req.op}" for role ${role}` });
      return;
    }
    Promise.resolve()
      .then(() => handler(req.args))
      .then(
        (result) => reply({ id: req.id, ok: true, result }),
        (err: unknown) => reply({ id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
      );
  });
  // The bench process went away (crash, Ctrl-C): do not linger.
  process.on('disconnect', () => void finish());
  send({ ready: started.info });
}

void main();
