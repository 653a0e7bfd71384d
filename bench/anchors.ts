/**
 * The systems people would run instead of a contact point and a relay, started by the bench so
 * that every ratio comes from one run: a mosquitto bridge (a local broker bridged to a remote
 * one, Debian's mosquitto) and a NATS leaf node (a leaf nats-server connected to a hub, Debian's
 * nats-server). Each runs as its own processes on free loopback ports with its own config; the
 * clients are thin ones in the bench process (a few MQTT packets; the `nats` npm client).
 *
 * Also: the kernel's counters of one TCP connection (ss -ti), so the wire bytes of the tunnel,
 * the bridge and the leaf connection are counted the same way, TCP segments included.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as tcpConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePorts, NATS_SERVER } from './nats-server.js';
import { pool, sleep, waitFor } from './util.js';

export const MOSQUITTO = '/usr/sbin/mosquitto';
/** MQTT keepalive of the bridge: mosquitto's default (bridge keepalive_interval). */
export const MQTT_KEEPALIVE_S = 60;
/** Header bytes of one TCP segment over IPv4 with the timestamp option (Linux default): 20 IP + 20 TCP + 12 options. */
export const SEGMENT_HEADER_BYTES = 52;

const run = promisify(execFile);

/** Why an anchor cannot run here (undefined: it can). */
export function missing(which: 'mosquitto' | 'nats'): string | undefined {
  if (which === 'mosquitto') return existsSync(MOSQUITTO) ? undefined : `${MOSQUITTO} is missing (apt-get install mosquitto)`;
  return existsSync(NATS_SERVER) ? undefined : `${NATS_SERVER} is missing (apt-get install nats-server)`;
}

/** Counters of the established TCP connections to one port as the kernel keeps them (both directions). */
export interface TcpCounters {
  /** TCP payload bytes sent + received */
  readonly bytes: number;
  /** segments sent + received (data and pure ACKs) */
  readonly segments: number;
  /** how many connections were summed (1 unless the upstream reconnected) */
  readonly connections: number;
}

/**
 * The summed counters of the established connections to loopback port `dport` (ss -tin). The
 * caller names a port only its upstream connection goes to; none there throws.
 */
export async function tcpCounters(dport: number): Promise<TcpCounters> {
  const { stdout } = await run('ss', ['-tinH', 'state', 'established', `( dport = :${dport} )`]);
  const blocks = stdout.split('\n').reduce<string[]>((acc, line) => {
    if (/^\s/.test(line) && acc.length) acc[acc.length - 1] += ' ' + line;
    else if (line.trim()) acc.push(line);
    return acc;
  }, []);
  if (blocks.length === 0) throw new Error(`no connection to port ${dport}`);
  let bytes = 0;
  let segments = 0;
  for (const b of blocks) {
    const field = (name: string): number => Number(new RegExp(`\\b${name}:(\\d+)`).exec(b)?.[1] ?? 0);
    bytes += field('bytes_sent') + field('bytes_received');
    segments += field('segs_out') + field('segs_in');
  }
  return { bytes, segments, connections: blocks.length };
}

/** CPU time a process has used, in ms (/proc/<pid>/stat utime + stime, at USER_HZ 100). */
export function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** Resident memory of a process in bytes (/proc/<pid>/status VmRSS). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

interface Proc {
  readonly proc: ChildProcess;
  stop(): Promise<void>;
}

async function startProc(cmd: string, args: string[], port: number, what: string): Promise<Proc> {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    await Promise.race([exited, sleep(5_000)]);
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}: ${log}`);
    const ok = await new Promise<boolean>((r) => {
      const c = tcpConnect(port, '127.0.0.1', () => (c.destroy(), r(true)));
      c.on('error', () => r(false));
    });
    if (ok) return { proc, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${what} did not listen on ${port} within 10 s: ${log}`);
    }
    await sleep(50);
  }
}

interface ProcSpec {
  readonly args: string[];
  readonly port: number;
  readonly what: string;
}

/**
 * `cmd` twice: the upstream server, then the downstream one that connects to it on
 * `upstreamPort`; resolves once that connection is up. If anything fails both stop and `dir`
 * (their config folder) goes; stop() does the same later.
 */
async function startPair(cmd: string, dir: string, up: ProcSpec, down: ProcSpec, upstreamPort: number): Promise<{ pid: number; pids: number[]; stop(): Promise<void> }> {
  const procs: Proc[] = [];
  const stop = async (): Promise<void> => {
    for (const p of procs.reverse()) await p.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    procs.push(await startProc(cmd, up.args, up.port, up.what));
    procs.push(await startProc(cmd, down.args, down.port, down.what));
    await waitFor(() => tcpCounters(upstreamPort).then(() => true, () => false), 10_000, `the connection of ${down.what} to ${up.what}`, 50);
  } catch (err) {
    await stop();
    throw err;
  }
  return { pid: procs[1]!.proc.pid!, pids: procs.map((p) => p.proc.pid!), stop };
}

/** A running anchor: the process clients attach to, the port its one upstream connection goes to. */
export interface Anchor {
  readonly name: string;
  /** the local side clients connect to (mosquitto local broker, NATS leaf server) */
  readonly pid: number;
  /** both of its processes (their CPU time is what an attach costs the anchor) */
  readonly pids: readonly number[];
  /** the port of the upstream connection (bridge, leaf connection) to read its counters by */
  readonly upstreamPort: number;
  /** attaches `names` with `concurrency` at once; resolves when every client is subscribed to its own subject */
  attach(names: readonly string[], concurrency: number): Promise<void>;
  stop(): Promise<void>;
}

/** MQTT 3.1.1 variable-length "remaining length". */
function mqttPacket(type: number, body: Buffer): Buffer {
  const len: number[] = [];
  let x = body.length;
  do {
    let d = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) d |= 128;
    len.push(d);
  } while (x > 0);
  return Buffer.concat([Buffer.from([type, ...len]), body]);
}

function mqttString(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const l = Buffer.allocUnsafe(2);
  l.writeUInt16BE(b.length);
  return Buffer.concat([l, b]);
}

/**
 * One MQTT client: CONNECT (clean session, no keepalive: the LAN side is not what is measured), CONNACK, SUBSCRIBE to
 * `peer/<name>/#` at QoS 1 (where a message for it would be published), SUBACK. It answers
 * nothing else.
 */
function mqttAttach(port: number, name: string, sockets: Socket[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect(port, '127.0.0.1');
    sockets.push(s);
    let state: 'connack' | 'suback' | 'done' = 'connack';
    s.on('connect', () => {
      s.write(mqttPacket(0x10, Buffer.concat([mqttString('MQTT'), Buffer.from([4, 0x02, 0, 0]), mqttString(name)])));
    });
    s.on('data', (d: Buffer) => {
      if (state === 'connack' && d[0] === 0x20) {
        if (d[3] !== 0) return reject(new Error(`mosquitto refused ${name}: CONNACK ${d[3]}`));
        state = 'suback';
        s.write(mqttPacket(0x82, Buffer.concat([Buffer.from([0, 1]), mqttString(`peer/${name}/#`), Buffer.from([1])])));
        d = d.subarray(4);
      }
      if (state === 'suback' && d.includes(0x90)) {
        state = 'done';
        resolve();
      }
    });
    s.on('error', reject);
  });
}

/** A local mosquitto bridged to a remote one (`topic # both 1`), as an office broker would be. */
export async function startMosquittoBridge(): Promise<Anchor> {
  const dir = await mkdtemp(join(tmpdir(), 'cp-bench-mqtt-'));
  const [remotePort, localPort] = (await freePorts(2)) as [number, number];
  const common = 'allow_anonymous true\nmax_connections -1\npersistence false\nlog_type error\nuser root\n';
  await writeFile(join(dir, 'remote.conf'), `listener ${remotePort} 127.0.0.1\n${common}`);
  await writeFile(
    join(dir, 'local.conf'),
    `listener ${localPort} 127.0.0.1\n${common}connection office\naddress 127.0.0.1:${remotePort}\ntopic # both 1\nkeepalive_interval ${MQTT_KEEPALIVE_S}\ncleansession true\n`,
  );
  const pair = await startPair(MOSQUITTO, dir, { args: ['-c', join(dir, 'remote.conf')], port: remotePort, what: 'mosquitto (remote)' }, { args: ['-c', join(dir, 'local.conf')], port: localPort, what: 'mosquitto (local, bridged)' }, remotePort);
  const sockets: Socket[] = [];
  return {
    name: 'mosquitto bridge',
    pid: pair.pid,
    pids: pair.pids,
    upstreamPort: remotePort,
    attach: async (names, concurrency) => {
      await pool(names, concurrency, (n) => mqttAttach(localPort, n, sockets));
    },
    stop: async () => {
      for (const s of sockets) s.destroy();
      await pair.stop();
    },
  };
}

/** A leaf nats-server connected to a hub, as an office's leaf node would be. */
export async function startNatsLeaf(): Promise<Anchor & { readonly hubUrl: string; readonly leafUrl: string }> {
  const { connect } = await import('@nats-io/transport-node');
  const dir = await mkdtemp(join(tmpdir(), 'cp-bench-nats-'));
  const [hubPort, hubLeafPort, leafPort] = (await freePorts(3)) as [number, number, number];
  await writeFile(join(dir, 'hub.conf'), `listen: 127.0.0.1:${hubPort}\nmax_connections: 100000\nleafnodes { listen: 127.0.0.1:${hubLeafPort} }\n`);
  await writeFile(join(dir, 'leaf.conf'), `listen: 127.0.0.1:${leafPort}\nmax_connections: 100000\nleafnodes { remotes: [ { url: "nats-leaf://127.0.0.1:${hubLeafPort}" } ] }\n`);
  const pair = await startPair(NATS_SERVER, dir, { args: ['-c', join(dir, 'hub.conf')], port: hubPort, what: 'nats-server (hub)' }, { args: ['-c', join(dir, 'leaf.conf')], port: leafPort, what: 'nats-server (leaf)' }, hubLeafPort);
  const conns: { close(): Promise<void> }[] = [];
  return {
    name: 'NATS leaf node',
    hubUrl: `nats://127.0.0.1:${hubPort}`,
    leafUrl: `nats://127.0.0.1:${leafPort}`,
    pid: pair.pid,
    pids: pair.pids,
    upstreamPort: hubLeafPort,
    attach: async (names, concurrency) => {
      await pool(names, concurrency, async (n) => {
        const nc = await connect({ servers: `127.0.0.1:${leafPort}`, name: n, reconnect: false });
        conns.push(nc);
        nc.subscribe(`peer.${n}.>`);
        await nc.flush();
      });
    },
    stop: async () => {
      await Promise.all(conns.map((c) => c.close().catch(() => undefined)));
      await pair.stop();
    },
  };
}
