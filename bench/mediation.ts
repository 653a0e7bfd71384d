/**
 * Benchmark 3: port mediation (issue 4): LAN TCP and UDP services reached from outside through
 * an exposure on the relay: client -> relay's public port -> tunnel (ws or wss) -> contact
 * point -> LAN service; every TCP connection is open + connect at the contact point, every UDP
 * client gets its own redirected port there.
 *
 * Processes, each its own (bench/worker.ts): relay, contact point, `lan` (bulk TCP server, HTTP
 * server, UDP echo: bench/mediation-services.ts), `load` (the clients: bench/mediation-load.ts).
 * Baselines go from the same load process straight to the same LAN service on loopback, in
 * the same run, interleaved with the measured path.
 *
 *   mediation-bulk    bulk TCP upload and download, one stream, MB/s (1e6 bytes); over ws, and
 *                     over wss (self-signed certificate made with openssl; the contact point
 *                     trusts it as its CA). Target >= 800 MB/s over ws.
 *   mediation-http    HTTP/1.1 GET with a 1 KiB answer over 32 keep-alive connections, one
 *                     request in flight each: req/s and p99. Target >= 20,000 req/s, p99 <= 10
 *                     ms, 0 errors. Then a phase where 8 more clients connect, send (part of) a
 *                     request and reset (RST) in a loop while the 32 are measured: the relay and
 *                     contact point must keep serving, with 0 errors for the 32.
 *   mediation-udp     UDP echo, 512-byte datagrams, 16 in flight, packets/s and p99 round trip;
 *                     over the relay's UDP channel, and with UDP "blocked" (the relay announces a
 *                     silent port, so datagrams travel inside the ws tunnel).
 *   mediation-expose  HTTP/1.1 GET with a 1 KiB answer through one exposure at 32 and at 256
 *                     keep-alive connections (one request in flight each): req/s, p99, errors
 *                     (every connection is a stream of the exposure's one port at the contact
 *                     point, issue 10 item 3), against socat's one-hop TCP forward (Debian socat,
 *                     TCP-LISTEN,fork -> TCP) measured in the same rounds, interleaved.
 *   mediation-memory  N idle TCP streams (BENCH_STREAMS, default 1,000) open through one exposure:
 *                     relay and contact point heapUsed+external per stream after forced GC;
 *                     baseline: a plain Node TCP forwarder process per forwarded connection.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { MAX_STREAMS_PER_EXPOSURE } from '../core/protocol/limits.js';
import type { BenchContext } from './context.js';
import type { WorkerHandle } from './ipc.js';
import { startSshTunnel, type SshTunnel } from './ssh-baseline.js';
import { cpuPercent, emit, hostBusyMs, median, noise, note, round, sleep, waitFor } from './util.js';

export const TARGET_BULK_MB_PER_S = 800;
export const TARGET_HTTP_REQ_PER_S = 20_000;
export const TARGET_HTTP_P99_MS = 10;
export const HTTP_CONNECTIONS = 32;
export const HTTP_RESETTERS = 8;
export const UDP_LANES = 16;
export const UDP_BYTES = 512;
export const STREAMS = 1_000;
/** Connection counts of the expose benchmark: the issue's 32 and 256. */
export const EXPOSE_CONNECTIONS = [32, 256] as const;
const SOCAT = '/usr/bin/socat';

const CP_ID = 'bench-hq';
const OPERATOR = 'bench-tech';
/** The contact point's port policy: the loopback LAN services, named explicitly (loopback is refused otherwise). */
export const PORTS = { targets: ['127.0.0.1/32:1-65535'], listen: ['tcp:1-65535', 'udp:1-65535'] };

/**
 * Whether ws masks and unmasks with the native `bufferutil` (an optional dependency): what the
 * relay and contact point workers, started from this same install and environment, also get.
 */
function wsMasking(): string {
  if (process.env.WS_NO_BUFFER_UTIL) return 'js (WS_NO_BUFFER_UTIL set)';
  try {
    createRequire(import.meta.url)('bufferutil');
    return 'bufferutil';
  } catch {
    return 'js (bufferutil not installed)';
  }
}

interface LanInfo {
  bulkPort: number;
  httpPort: number;
  udpPort: number;
}

interface Pair {
  relay: WorkerHandle;
  cp: WorkerHandle;
  stop(): Promise<void>;
}

export interface Measured<T> {
  result: T;
  /** CPU % of each worker (and this process) meanwhile */
  cpu: Record<string, number>;
  /** CPU ms and minor page faults of each worker meanwhile */
  usage: Record<string, { cpuMs: number; faults: number }>;
  host: Record<string, number>;
  wallMs: number;
}

/** Runs `fn` and reports the CPU and page faults of each worker (and this process's CPU) meanwhile, and how busy the host was otherwise. */
export async function measured<T>(workers: readonly WorkerHandle[], fn: () => Promise<T>): Promise<Measured<T>> {
  const before = await Promise.all(workers.map((w) => w.call<NodeJS.ResourceUsage>('usage')));
  const own0 = process.cpuUsage();
  const host0 = hostBusyMs();
  const t0 = performance.now();
  const result = await fn();
  const wallMs = performance.now() - t0;
  const host1 = hostBusyMs();
  const own1 = process.cpuUsage();
  const after = await Promise.all(workers.map((w) => w.call<NodeJS.ResourceUsage>('usage')));
  const cpu: Record<string, number> = { bench: cpuPercent(own0, own1, wallMs) };
  const usage: Measured<T>['usage'] = {};
  workers.forEach((w, i) => {
    const b = before[i]!;
    const a = after[i]!;
    // Two workers of one role (the relay nodes of a cluster): the second is named `relay#<its index>`.
    const role = cpu[w.role] === undefined ? w.role : `${w.role}#${i}`;
    cpu[role] = cpuPercent({ user: b.userCPUTime, system: b.systemCPUTime }, { user: a.userCPUTime, system: a.systemCPUTime }, wallMs);
    usage[role] = { cpuMs: (a.userCPUTime - b.userCPUTime + a.systemCPUTime - b.systemCPUTime) / 1000, faults: a.minorPageFault - b.minorPageFault };
  });
  const ours = Object.values(cpu).reduce((a, b) => a + b, 0);
  return { result, cpu, usage, host: noise(host0, host1, ours, wallMs), wallMs };
}

/** CPU ms and minor page faults per MB moved, for the relay and the contact point. */
function perMb(m: Measured<BulkResult>): Record<string, { cpu_ms_per_mb: number; faults_per_mb: number }> {
  const mb = m.result.bytes / 1e6;
  const out: Record<string, { cpu_ms_per_mb: number; faults_per_mb: number }> = {};
  for (const role of ['relay', 'contact-point']) {
    const u = m.usage[role];
    if (u) out[role] = { cpu_ms_per_mb: round(u.cpuMs / mb, 3), faults_per_mb: round(u.faults / mb, 1) };
  }
  return out;
}

function selfSigned(): { cert: string; key: string } | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'cp-bench-tls-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    ], { stdio: 'ignore' });
    return { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') };
  } catch (err: unknown) {
    note(`  openssl failed (${(err as Error).message}); the wss line is skipped`);
    return undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function startPair(ctx: BenchContext, relayConfig: Record<string, unknown>, cpExtra: Record<string, unknown>, exposeGc: boolean): Promise<Pair> {
  const relay = await ctx.startWorker('relay', relayConfig, { exposeGc });
  try {
    const secret = await relay.call<string>('addCredential', { kind: 'contact-point', id: CP_ID });
    const cp = await ctx.startWorker('contact-point', { id: CP_ID, relayUrl: relay.url, secret, ports: PORTS, ...cpExtra }, { exposeGc });
    return { relay, cp, stop: async () => void (await Promise.all([cp.stop(), relay.stop()])) };
  } catch (err: unknown) {
    await relay.stop();
    throw err;
  }
}

async function expose(relay: WorkerHandle, proto: 'tcp' | 'udp', port: number): Promise<number> {
  const e = await relay.call<{ publicPort: number }>('expose', { cp: CP_ID, proto, host: '127.0.0.1', port, operator: OPERATOR });
  return e.publicPort;
}

export interface BulkResult {
  bytes: number;
  confirmed: number;
  ms: number;
  mbPerS: number;
}

async function runBulk(ctx: BenchContext, tunnel: 'ws' | 'wss', pair: Pair, lan: WorkerHandle, load: WorkerHandle, lanInfo: LanInfo, ssh: SshTunnel | string): Promise<void> {
  const mode = ctx.quick ? 'quick' : 'full';
  const bytes = ctx.quick ? 512 * 1024 ** 2 : 2 * 1024 ** 3;
  const maxMs = ctx.quick ? 5_000 : 20_000;
  const rounds = ctx.quick ? 1 : 3;
  const publicPort = await expose(pair.relay, 'tcp', lanInfo.bulkPort);
  const workers = [pair.relay, pair.cp, lan, load];
  // Warm-up: a short transfer each way through the path (JIT, buffers), not timed.
  for (const dir of ['up', 'down'] as const) await load.call('bulk', { port: publicPort, dir, bytes: 64 * 1024 ** 2, maxMs: 2_000 }, 30_000);
  // The ssh -R reference is measured with the ws tunnel only (it has nothing to do with TLS).
  const sshPort = tunnel === 'ws' && typeof ssh !== 'string' ? ssh.port : undefined;
  if (sshPort !== undefined) for (const dir of ['up', 'down'] as const) await load.call('bulk', { port: sshPort, dir, bytes: 64 * 1024 ** 2, maxMs: 2_000 }, 30_000);
  for (const dir of ['up', 'down'] as const) {
    const base: Measured<BulkResult>[] = [];
    const path: Measured<BulkResult>[] = [];
    const viaSsh: BulkResult[] = [];
    /** CPU ms per MB of sshd + ssh together, to set beside relay + contact point */
    const sshCpu: (number | undefined)[] = [];
    for (let r = 0; r < rounds; r++) {
      const b = await measured(workers, () => load.call<BulkResult>('bulk', { port: lanInfo.bulkPort, dir, bytes, maxMs }, maxMs + 30_000));
      base.push(b);
      const p = await measured(workers, () => load.call<BulkResult>('bulk', { port: publicPort, dir, bytes, maxMs }, maxMs + 30_000));
      path.push(p);
      let sshNote = '';
      if (sshPort !== undefined) {
        const c0 = typeof ssh !== 'string' ? ssh.cpuMs() : undefined;
        const q = await load.call<BulkResult>('bulk', { port: sshPort, dir, bytes, maxMs }, maxMs + 30_000);
        const c1 = typeof ssh !== 'string' ? ssh.cpuMs() : undefined;
        sshCpu.push(c0 !== undefined && c1 !== undefined ? round((c1 - c0) / (q.bytes / 1e6), 3) : undefined);
        if (q.confirmed !== q.bytes) throw new Error(`bulk ${dir} via ssh -R: ${q.bytes} bytes sent, ${q.confirmed} arrived`);
        viaSsh.push(q);
        sshNote = `; ssh -R ${q.mbPerS} MB/s (sshd + ssh ${sshCpu.at(-1) ?? '?'} cpu ms/MB)`;
      }
      note(`  bulk ${dir} over ${tunnel}, round ${r + 1}: path ${p.result.mbPerS} MB/s (${round(p.result.bytes / 1024 ** 2, 0)} MiB in ${p.result.ms} ms) cpu ${JSON.stringify(p.cpu)} per MB ${JSON.stringify(perMb(p))}; direct ${b.result.mbPerS} MB/s${sshNote}; host ${JSON.stringify(p.host)}`);
      if (p.result.confirmed !== p.result.bytes) throw new Error(`bulk ${dir}: ${p.result.bytes} bytes sent, ${p.result.confirmed} arrived`);
    }
    const value = median(path.map((p) => p.result.mbPerS));
    const baseline = median(base.map((b) => b.result.mbPerS));
    const sshValue = viaSsh.length ? median(viaSsh.map((q) => q.mbPerS)) : undefined;
    const sshFields =
      tunnel !== 'ws'
        ? {}
        : sshValue !== undefined && typeof ssh !== 'string'
          ? {
              ssh_baseline_mb_per_s: round(sshValue, 1),
              ssh_baseline_rounds: viaSsh.map((q) => q.mbPerS),
              ssh_baseline: `OpenSSH ssh -R (-c ${ssh.cipher}): a private sshd on 127.0.0.1 as the public side, the ssh client as the LAN side, same client, same LAN service, same bytes, interleaved`,
              ssh_ratio: round(value / sshValue),
              ssh_cpu_ms_per_mb: sshCpu,
            }
          : { ssh_baseline: `skipped: ${typeof ssh === 'string' ? ssh : 'not measured'}` };
    const target = tunnel === 'ws' ? TARGET_BULK_MB_PER_S : undefined;
    emit({
      name: `mediation.bulk_tcp_${dir === 'up' ? 'upload' : 'download'}_${tunnel}`,
      description: `one TCP stream ${dir === 'up' ? 'client -> LAN sink' : 'LAN source -> client'} through relay exposure + ${tunnel} tunnel + contact point (open + connect), median of ${rounds}`,
      value: round(value, 1),
      unit: 'MB/s',
      rounds: path.map((p) => p.result.mbPerS),
      bytes_per_round: path.map((p) => p.result.bytes),
      baseline_mb_per_s: round(baseline, 1),
      baseline_rounds: base.map((b) => b.result.mbPerS),
      baseline: 'the same client straight to the same LAN TCP sink/source on loopback, same process, same bytes, interleaved',
      ratio: round(value / baseline),
      ...sshFields,
      ...(target !== undefined ? { target, target_ratio: round(value / target), target_met: value >= target } : { target: 'none (reported, as the issue asks)' }),
      limits: { bytes, max_ms: maxMs },
      ws_masking: wsMasking(),
      cpu_pct: path.map((p) => p.cpu),
      per_mb: path.map(perMb),
      baseline_cpu_pct: base.map((b) => b.cpu),
      host: path.map((p) => p.host),
      baseline_host: base.map((b) => b.host),
      mode,
    });
  }
}

interface HttpResult {
  requests: number;
  ms: number;
  reqPerS: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  errors: number;
  requestsIncludingWarmup: number;
  errorsIncludingWarmup: number;
  lastError?: string;
  resets?: number;
  resetterConnectFailures?: number;
  resetterSawAnswerBytes?: number;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function runHttp(ctx: BenchContext, pair: Pair, lan: WorkerHandle, load: WorkerHandle, lanInfo: LanInfo): Promise<void> {
  const mode = ctx.quick ? 'quick' : 'full';
  const rounds = ctx.quick ? 1 : 3;
  const warmupMs = ctx.quick ? 1_000 : 2_000;
  const windowMs = ctx.quick ? 3_000 : 8_000;
  const resetWindowMs = ctx.quick ? 4_000 : 10_000;
  const publicPort = await expose(pair.relay, 'tcp', lanInfo.httpPort);
  const workers = [pair.relay, pair.cp, lan, load];
  const args = { conns: HTTP_CONNECTIONS, warmupMs, windowMs };
  const timeout = warmupMs + windowMs + 60_000;
  const base: Measured<HttpResult>[] = [];
  const path: Measured<HttpResult>[] = [];
  for (let r = 0; r < rounds; r++) {
    const b = await measured(workers, () => load.call<HttpResult>('http', { ...args, port: lanInfo.httpPort }, timeout));
    base.push(b);
    const p = await measured(workers, () => load.call<HttpResult>('http', { ...args, port: publicPort }, timeout));
    path.push(p);
    note(`  http round ${r + 1}: path ${p.result.reqPerS} req/s p99 ${p.result.p99} ms errors ${p.result.errors} cpu ${JSON.stringify(p.cpu)}; direct ${b.result.reqPerS} req/s p99 ${b.result.p99} ms; host ${JSON.stringify(p.host)}`);
  }
  const mid = [...path].sort((a, b) => a.result.reqPerS - b.result.reqPerS)[Math.floor(path.length / 2)]!;
  const baseMid = [...base].sort((a, b) => a.result.reqPerS - b.result.reqPerS)[Math.floor(base.length / 2)]!;
  const errors = path.reduce((n, p) => n + p.result.errorsIncludingWarmup, 0);
  const p99 = median(path.map((p) => p.result.p99));
  emit({
    name: 'mediation.http_1k',
    description: `HTTP/1.1 GET, 1 KiB answers, ${HTTP_CONNECTIONS} keep-alive connections with one request in flight each (raw-socket closed-loop generator, no pipelining), through relay exposure + ws tunnel + contact point; median round of ${rounds}`,
    value: mid.result.reqPerS,
    unit: 'req/s',
    p50_ms: mid.result.p50,
    p99_ms: mid.result.p99,
    p999_ms: mid.result.p999,
    max_ms: mid.result.max,
    p99_ms_median_of_rounds: p99,
    errors,
    rounds: path.map((p) => ({ req_per_s: p.result.reqPerS, p99_ms: p.result.p99, errors: p.result.errorsIncludingWarmup })),
    baseline_req_per_s: baseMid.result.reqPerS,
    baseline_p99_ms: baseMid.result.p99,
    baseline_rounds: base.map((b) => ({ req_per_s: b.result.reqPerS, p99_ms: b.result.p99, errors: b.result.errorsIncludingWarmup })),
    baseline: 'the same generator straight to the same Node HTTP server on loopback, interleaved',
    ratio: round(mid.result.reqPerS / baseMid.result.reqPerS),
    target: { req_per_s: TARGET_HTTP_REQ_PER_S, p99_ms: TARGET_HTTP_P99_MS, errors: 0 },
    target_ratio: round(mid.result.reqPerS / TARGET_HTTP_REQ_PER_S),
    target_met: mid.result.reqPerS >= TARGET_HTTP_REQ_PER_S && mid.result.p99 <= TARGET_HTTP_P99_MS && errors === 0,
    window_ms: windowMs,
    cpu_pct: path.map((p) => p.cpu),
    baseline_cpu_pct: base.map((b) => b.cpu),
    host: path.map((p) => p.host),
    mode,
  });

  // Client resets: 8 more clients connect, send (part of) a request and RST, in a loop, while the 32 are measured.
  const pids = { relay: pair.relay.pid, cp: pair.cp.pid };
  const before = await pair.relay.call<{ connections: number; refused: number; publicPort: number }[]>('exposures');
  const rb = await measured(workers, () => load.call<HttpResult>('http', { conns: HTTP_CONNECTIONS, warmupMs: 500, windowMs: resetWindowMs, resetters: HTTP_RESETTERS, port: lanInfo.httpPort }, resetWindowMs + 60_000));
  const rp = await measured(workers, () => load.call<HttpResult>('http', { conns: HTTP_CONNECTIONS, warmupMs: 500, windowMs: resetWindowMs, resetters: HTTP_RESETTERS, port: publicPort }, resetWindowMs + 60_000));
  note(`  http with resets: path ${rp.result.reqPerS} req/s p99 ${rp.result.p99} ms errors ${rp.result.errors}, ${rp.result.resets} resets; cpu ${JSON.stringify(rp.cpu)}`);
  // The tunnel must be back to no streams and no ports once every client is gone: nothing leaks.
  let leftover = { streams: -1, ports: -1 };
  await waitFor(async () => {
    leftover = await pair.cp.call<{ streams: number; ports: number }>('streams');
    return leftover.streams === 0 && leftover.ports === 0;
  }, 10_000, 'streams and ports to close after the reset phase').catch(() => undefined);
  const after = await pair.relay.call<{ connections: number; refused: number; publicPort: number }[]>('exposures');
  const exp0 = before.find((e) => e.publicPort === publicPort);
  const exp1 = after.find((e) => e.publicPort === publicPort);
  // Still serving afterwards?
  const post = await load.call<HttpResult>('http', { conns: HTTP_CONNECTIONS, warmupMs: 500, windowMs: 2_000, port: publicPort }, 60_000);
  const survived = alive(pids.relay) && alive(pids.cp);
  note(`  after the resets: ${post.reqPerS} req/s, errors ${post.errorsIncludingWarmup}; relay and contact point alive: ${survived}; leftover ${JSON.stringify(leftover)}`);
  emit({
    name: 'mediation.http_1k_with_client_resets',
    description: `the same ${HTTP_CONNECTIONS} keep-alive connections measured while ${HTTP_RESETTERS} more clients connect, send half or all of a request and reset (resetAndDestroy) before or while the answer comes, in a loop`,
    value: rp.result.reqPerS,
    unit: 'req/s',
    p99_ms: rp.result.p99,
    errors_well_behaved: rp.result.errorsIncludingWarmup,
    last_error: rp.result.lastError,
    resets: rp.result.resets,
    resets_per_s: round((rp.result.resets ?? 0) / (rp.wallMs / 1000), 0),
    resetter_connect_failures: rp.result.resetterConnectFailures,
    exposure_connections: (exp1?.connections ?? 0) - (exp0?.connections ?? 0),
    exposure_refused: (exp1?.refused ?? 0) - (exp0?.refused ?? 0),
    relay_and_contact_point_alive: survived,
    leftover_after_phase: leftover,
    after_phase_req_per_s: post.reqPerS,
    after_phase_errors: post.errorsIncludingWarmup,
    baseline_req_per_s: rb.result.reqPerS,
    baseline_p99_ms: rb.result.p99,
    baseline_errors_well_behaved: rb.result.errorsIncludingWarmup,
    baseline_resets: rb.result.resets,
    baseline: `the same ${HTTP_CONNECTIONS} connections and ${HTTP_RESETTERS} resetting clients straight to the HTTP server`,
    ratio: round(rp.result.reqPerS / rb.result.reqPerS),
    target: { errors_well_behaved: 0, alive: true, leftover_streams: 0 },
    target_met: rp.result.errorsIncludingWarmup === 0 && survived && leftover.streams === 0 && post.errorsIncludingWarmup === 0,
    window_ms: resetWindowMs,
    cpu_pct: rp.cpu,
    host: rp.host,
    mode,
  });
}

interface Socat {
  readonly port: number;
  /** CPU ms used so far by socat: the listener, its live children, and the children it reaped (undefined without /proc) */
  cpuMs(): number | undefined;
  /** resolves once socat has no child left (up to 5 s) */
  settled(): Promise<void>;
  stop(): Promise<void>;
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ). */
const USER_HZ = 100;

/** utime + stime of `pid` (and with `reaped`, of its waited-for children too) in ms, from /proc. */
function procCpuMs(pid: number, reaped: boolean): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the fields after "(comm) ": state(3) ... utime(14) stime(15) cutime(16) cstime(17)
    const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ').map(Number);
    return ((f[11]! + f[12]! + (reaped ? f[13]! + f[14]! : 0)) * 1000) / USER_HZ;
  } catch {
    return undefined;
  }
}

/** The live children of `pid` (empty where the kernel does not list them). */
function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** CPU ms of a forking server: itself, the children it has reaped, and its live children. */
function forkingCpuMs(pid: number): number | undefined {
  const own = procCpuMs(pid, true);
  if (own === undefined) return undefined;
  return childPids(pid).reduce((ms, c) => ms + (procCpuMs(c, false) ?? 0), own);
}

/** A free loopback TCP port (bound and released: socat binds it right after). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * socat's one-hop TCP forward to `target` (a process per connection, as `fork` does), or why
 * it cannot run. Not detached: a new session would put socat in a scheduling group of its own
 * (Linux autogroup), with a whole group's share of a busy host's CPU beside the one the relay,
 * the contact point, the LAN server and the load share; in this session it competes as they do.
 * stop() ends its children (from /proc), then the listener.
 */
async function startSocat(target: number): Promise<Socat | string> {
  if (!existsSync(SOCAT)) return `${SOCAT} is missing (Debian package socat)`;
  const port = await freePort();
  const child = spawn(SOCAT, [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,backlog=1024,nodelay`, `TCP:127.0.0.1:${target},nodelay`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      // Its children first (a connection's process outlives the listener otherwise), then the listener.
      for (const pid of childPids(child.pid)) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
      try {
        process.kill(child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      await exited;
    }
  };
  try {
    await waitFor(
      () =>
        new Promise<boolean>((resolve) => {
          if (child.exitCode !== null) return resolve(false);
          const c = connect(port, '127.0.0.1');
          c.once('connect', () => {
            c.destroy();
            resolve(true);
          });
          c.once('error', () => resolve(false));
        }),
      5_000,
      'socat listening',
      50,
    );
  } catch {
    await stop();
    return `socat did not start: ${stderr.trim() || 'no listener within 5 s'}`;
  }
  const pid = child.pid!;
  // No children left: every connection's process has ended and been reaped (its CPU is in the listener's cutime).
  const settled = (): Promise<void> =>
    waitFor(() => childPids(pid).length === 0, 5_000, "socat's children to end", 20).catch(() => undefined);
  return { port, cpuMs: () => forkingCpuMs(pid), settled, stop };
}

/**
 * Time each worker has spent ready to run but waiting for a CPU (Linux /proc/<pid>/schedstat,
 * second field, ns), in ms; {} elsewhere. On a busy host this, not CPU, is where a request's time goes.
 */
function runqueueWaitMs(workers: readonly WorkerHandle[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const w of workers) {
    try {
      out[w.role] = Number(readFileSync(`/proc/${w.pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
    } catch {
      // no schedstat here
    }
  }
  return out;
}

/** What `fn` cost each worker in run-queue waiting, µs per answered request (warm-up included). */
async function waited(workers: readonly WorkerHandle[], fn: () => Promise<Measured<HttpResult>>): Promise<{ m: Measured<HttpResult>; waitUs: Record<string, number> }> {
  const w0 = runqueueWaitMs(workers);
  const m = await fn();
  const w1 = runqueueWaitMs(workers);
  const n = Math.max(1, m.result.requestsIncludingWarmup);
  const waitUs: Record<string, number> = {};
  for (const role of Object.keys(w1)) if (w0[role] !== undefined) waitUs[role] = round(((w1[role]! - w0[role]!) * 1000) / n, 1);
  return { m, waitUs };
}

/**
 * CPU µs per answered request of each worker over one http call (warm-up included, as the
 * processes' CPU is), with `extra` CPU ms of processes that are not workers (socat).
 */
function perRequest(m: Measured<HttpResult>, extra: Record<string, number> = {}): Record<string, number> {
  const n = Math.max(1, m.result.requestsIncludingWarmup);
  const out: Record<string, number> = {};
  for (const [role, u] of Object.entries(m.usage)) out[role] = round((u.cpuMs * 1000) / n, 1);
  for (const [name, ms] of Object.entries(extra)) out[name] = round((ms * 1000) / n, 1);
  return out;
}

/**
 * HTTP 1 KiB through an exposure at 32 and 256 keep-alive connections, with socat's one-hop
 * forward as the baseline in the same rounds (and the direct path for reference). Before
 * issue 10 item 3 every exposed connection was a port of its own at the contact point, so
 * past 64 (MAX_PORTS_PER_OPERATOR) connections were reset: errors at 256.
 */
async function runExpose(ctx: BenchContext, pair: Pair, lan: WorkerHandle, load: WorkerHandle, lanInfo: LanInfo): Promise<void> {
  const mode = ctx.quick ? 'quick' : 'full';
  const rounds = ctx.quick ? 1 : 3;
  const warmupMs = ctx.quick ? 1_000 : 2_000;
  const windowMs = ctx.quick ? 3_000 : 6_000;
  const publicPort = await expose(pair.relay, 'tcp', lanInfo.httpPort);
  const socat = await startSocat(lanInfo.httpPort);
  const skipped = typeof socat === 'string' ? socat : '';
  if (skipped) note(`  mediation-expose: the socat baseline is skipped: ${skipped}`);
  const workers = [pair.relay, pair.cp, lan, load];
  const timeout = warmupMs + windowMs + 60_000;
  try {
    for (const conns of EXPOSE_CONNECTIONS) {
      const args = { conns, warmupMs, windowMs };
      const path: Measured<HttpResult>[] = [];
      const base: Measured<HttpResult>[] = [];
      const direct: HttpResult[] = [];
      /** CPU µs per request (warm-up included) of each process, per round */
      const pathCost: Record<string, number>[] = [];
      const baseCost: Record<string, number>[] = [];
      /** µs per request each worker waited for a CPU, per round */
      const pathWait: Record<string, number>[] = [];
      const baseWait: Record<string, number>[] = [];
      const before = (await pair.relay.call<{ publicPort: number; refused: number; connections: number }[]>('exposures')).find((e) => e.publicPort === publicPort);
      for (let r = 0; r < rounds; r++) {
        if (typeof socat !== 'string') {
          await socat.settled();
          const c0 = socat.cpuMs();
          const { m: b, waitUs } = await waited(workers, () => measured(workers, () => load.call<HttpResult>('http', { ...args, port: socat.port }, timeout)));
          baseWait.push(waitUs);
          // Its children end with their connections: counted once socat has reaped them.
          await socat.settled();
          const c1 = socat.cpuMs();
          base.push(b);
          baseCost.push(perRequest(b, c0 !== undefined && c1 !== undefined ? { socat: c1 - c0 } : {}));
        }
        const { m: pm, waitUs } = await waited(workers, () => measured(workers, () => load.call<HttpResult>('http', { ...args, port: publicPort }, timeout)));
        path.push(pm);
        pathWait.push(waitUs);
        pathCost.push(perRequest(path[r]!));
        direct.push(await load.call<HttpResult>('http', { ...args, port: lanInfo.httpPort }, timeout));
        const p = path[r]!.result;
        const b = base[r]?.result;
        note(`  expose ${conns} conns round ${r + 1}: path ${p.reqPerS} req/s p99 ${p.p99} ms errors ${p.errorsIncludingWarmup}${b ? `; socat ${b.reqPerS} req/s p99 ${b.p99} ms errors ${b.errorsIncludingWarmup}` : ''}; direct ${direct[r]!.reqPerS} req/s; cpu ${JSON.stringify(path[r]!.cpu)}; cpu us/req ${JSON.stringify(pathCost[r])}${b ? ` socat's ${JSON.stringify(baseCost[r])}` : ''}; waiting for a CPU us/req ${JSON.stringify(pathWait[r])}${b ? ` socat's ${JSON.stringify(baseWait[r])}` : ''}; load avg ${round(loadavg()[0] ?? 0, 1)}`);
      }
      const forwarderUs = median(pathCost.map((c) => (c.relay ?? 0) + (c['contact-point'] ?? 0)));
      const socatUs = baseCost.some((c) => c.socat === undefined) ? undefined : median(baseCost.map((c) => c.socat!));
      const after = (await pair.relay.call<{ publicPort: number; refused: number; connections: number }[]>('exposures')).find((e) => e.publicPort === publicPort);
      const mid = [...path].sort((a, b) => a.result.reqPerS - b.result.reqPerS)[Math.floor(path.length / 2)]!;
      const baseMid = base.length ? [...base].sort((a, b) => a.result.reqPerS - b.result.reqPerS)[Math.floor(base.length / 2)]! : undefined;
      const directMid = [...direct].sort((a, b) => a.reqPerS - b.reqPerS)[Math.floor(direct.length / 2)]!;
      const errors = path.reduce((n, p) => n + p.result.errorsIncludingWarmup, 0);
      emit({
        name: `mediation.expose_http_1k_${conns}`,
        description: `HTTP/1.1 GET, 1 KiB answers, ${conns} keep-alive connections with one request in flight each, through one relay exposure (each connection a stream of its one port at the contact point) + ws tunnel + contact point; median round of ${rounds}`,
        value: mid.result.reqPerS,
        unit: 'req/s',
        connections: conns,
        p50_ms: mid.result.p50,
        p99_ms: mid.result.p99,
        p999_ms: mid.result.p999,
        errors,
        last_error: path.find((p) => p.result.lastError)?.result.lastError,
        exposure_refused: (after?.refused ?? 0) - (before?.refused ?? 0),
        rounds: path.map((p) => ({ req_per_s: p.result.reqPerS, p99_ms: p.result.p99, errors: p.result.errorsIncludingWarmup })),
        ...(baseMid
          ? {
              baseline_req_per_s: baseMid.result.reqPerS,
              baseline_p99_ms: baseMid.result.p99,
              baseline_errors: base.reduce((n, b) => n + b.result.errorsIncludingWarmup, 0),
              baseline_rounds: base.map((b) => ({ req_per_s: b.result.reqPerS, p99_ms: b.result.p99, errors: b.result.errorsIncludingWarmup })),
              baseline: "socat's one-hop TCP forward (TCP-LISTEN,fork,nodelay -> TCP,nodelay; a process per connection) to the same Node HTTP server, interleaved with the path",
              ratio: round(mid.result.reqPerS / baseMid.result.reqPerS),
              p99_ratio: round(mid.result.p99 / baseMid.result.p99),
              // Each round's path against the socat round just before it: less exposed to the host's drift than medians.
              round_ratios: path.map((p, i) => round(p.result.reqPerS / base[i]!.result.reqPerS)),
              baseline_cpu_pct: base.map((b) => b.cpu),
              baseline_cpu_us_per_req: baseCost,
              baseline_runqueue_wait_us_per_req: baseWait,
              // What forwarding costs apart from the client and the server (load, lan): relay + contact point against socat, per request.
              ...(socatUs !== undefined ? { socat_cpu_us_per_req: round(socatUs, 1), forwarder_cpu_ratio: round(forwarderUs / socatUs) } : {}),
            }
          : { baseline: `skipped: ${skipped}` }),
        forwarder_cpu_us_per_req: round(forwarderUs, 1),
        cpu_us_per_req: pathCost,
        // Time ready to run but without a CPU: where a busy host's requests spend their time (relay, contact point, lan, load; socat's own children are not counted).
        runqueue_wait_us_per_req: pathWait,
        direct_req_per_s: directMid.reqPerS,
        direct_p99_ms: directMid.p99,
        direct_ratio: round(mid.result.reqPerS / directMid.reqPerS),
        target: { errors: 0 },
        target_met: errors === 0,
        window_ms: windowMs,
        cpu_pct: path.map((p) => p.cpu),
        host: path.map((p) => p.host),
        mode,
      });
    }
  } finally {
    if (typeof socat !== 'string') await socat.stop();
  }
}

interface UdpResult {
  echoed: number;
  lost: number;
  stale: number;
  ms: number;
  pps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

async function runUdp(ctx: BenchContext, via: 'udp-channel' | 'in-tunnel', pair: Pair, lan: WorkerHandle, load: WorkerHandle, lanInfo: LanInfo): Promise<void> {
  const mode = ctx.quick ? 'quick' : 'full';
  const windowMs = ctx.quick ? 3_000 : 8_000;
  const workers = [pair.relay, pair.cp, lan, load];
  if (via === 'udp-channel') {
    await waitFor(() => pair.cp.call<boolean>('udpReady'), 10_000, 'the UDP channel to come up');
  }
  const publicPort = await expose(pair.relay, 'udp', lanInfo.udpPort);
  const loaded = { lanes: UDP_LANES, size: UDP_BYTES, warmupMs: 1_500, windowMs };
  const single = { lanes: 1, size: UDP_BYTES, warmupMs: 500, windowMs: ctx.quick ? 1_500 : 3_000 };
  const relayUdp0 = await pair.relay.call<{ datagramsIn?: number; datagramsOut?: number }>('udpStats');
  const b = await measured(workers, () => load.call<UdpResult>('udp', { ...loaded, port: lanInfo.udpPort }, windowMs + 30_000));
  const p = await measured(workers, () => load.call<UdpResult>('udp', { ...loaded, port: publicPort }, windowMs + 30_000));
  const b1 = await load.call<UdpResult>('udp', { ...single, port: lanInfo.udpPort }, 30_000);
  const p1 = await load.call<UdpResult>('udp', { ...single, port: publicPort }, 30_000);
  const relayUdp1 = await pair.relay.call<{ datagramsIn?: number; datagramsOut?: number }>('udpStats');
  const channelIn = (relayUdp1.datagramsIn ?? 0) - (relayUdp0.datagramsIn ?? 0);
  const udpReady = await pair.cp.call<boolean>('udpReady');
  note(`  udp ${via}: path ${p.result.pps} pkt/s p99 ${p.result.p99} ms lost ${p.result.lost}, unloaded p99 ${p1.p99} ms; direct ${b.result.pps} pkt/s p99 ${b.result.p99} ms; relay's UDP channel datagrams in: ${channelIn}; cpu ${JSON.stringify(p.cpu)}`);
  emit({
    name: `mediation.udp_echo_${via === 'udp-channel' ? 'udp_channel' : 'in_tunnel'}`,
    description: `UDP echo, ${UDP_BYTES}-byte datagrams, ${UDP_LANES} in flight (closed loop), client -> relay exposed UDP port -> ${via === 'udp-channel' ? "relay's encrypted UDP channel" : 'inside the ws tunnel (UDP blocked: the relay announces a silent UDP port)'} -> contact point -> LAN echo and back`,
    value: p.result.pps,
    unit: 'packets/s',
    p50_ms: p.result.p50,
    p99_ms: p.result.p99,
    max_ms: p.result.max,
    lost: p.result.lost,
    unloaded_p50_ms: p1.p50,
    unloaded_p99_ms: p1.p99,
    unloaded: 'one datagram in flight',
    path_check: { relay_udp_channel_datagrams_in: channelIn, contact_point_udp_channel_ready: udpReady },
    baseline_pps: b.result.pps,
    baseline_p99_ms: b.result.p99,
    baseline_unloaded_p99_ms: b1.p99,
    baseline: 'the same client straight to the same LAN UDP echo on loopback',
    ratio: round(p.result.pps / b.result.pps),
    target: 'none given (the issue asks for packets/s and p99)',
    window_ms: windowMs,
    cpu_pct: p.cpu,
    baseline_cpu_pct: b.cpu,
    host: p.host,
    mode,
  });
}

interface Mem {
  heapUsed: number;
  external: number;
  rss: number;
}

function perStream(after: Mem, before: Mem, n: number): { heap: number; external: number; heap_plus_external: number; rss: number } {
  const heap = (after.heapUsed - before.heapUsed) / n;
  const external = (after.external - before.external) / n;
  return { heap: Math.round(heap), external: Math.round(external), heap_plus_external: Math.round(heap + external), rss: Math.round((after.rss - before.rss) / n) };
}

async function runMemory(ctx: BenchContext, pair: Pair, load: WorkerHandle, lanInfo: LanInfo): Promise<void> {
  const mode = ctx.quick ? 'quick' : 'full';
  const n = Number(process.env.BENCH_STREAMS ?? STREAMS);
  if (n > MAX_STREAMS_PER_EXPOSURE) throw new Error(`BENCH_STREAMS ${n} is above the per-exposure limit MAX_STREAMS_PER_EXPOSURE (${MAX_STREAMS_PER_EXPOSURE})`);
  const publicPort = await expose(pair.relay, 'tcp', lanInfo.bulkPort);
  const streams = async (): Promise<number> => (await pair.cp.call<{ streams: number }>('streams')).streams;
  // Warm-up: first-use code paths and lazily built tables, then back to none.
  await load.call('idleOpen', { port: publicPort, n: 32, concurrency: 16 });
  await waitFor(async () => (await streams()) === 32, 20_000, 'warm-up streams', 50);
  await load.call('idleClose');
  await waitFor(async () => (await streams()) === 0, 20_000, 'warm-up streams to close', 50);
  await sleep(500);
  const relay0 = await pair.relay.call<Mem>('memory');
  const cp0 = await pair.cp.call<Mem>('memory');
  const t0 = Date.now();
  const opened = await load.call<{ open: number; failed: number }>('idleOpen', { port: publicPort, n, concurrency: 32 }, 120_000);
  await waitFor(async () => (await streams()) === n, 60_000, `${n} streams through the exposure`, 100);
  note(`  memory: ${n} idle streams open in ${Date.now() - t0} ms (${opened.failed} failed)`);
  await sleep(1_000);
  const relay1 = await pair.relay.call<Mem>('memory');
  const cp1 = await pair.cp.call<Mem>('memory');
  await load.call('idleClose');
  await waitFor(async () => (await streams()) === 0, 30_000, 'the idle streams to close', 100);
  await sleep(1_000);
  const relay2 = await pair.relay.call<Mem>('memory');
  const cp2 = await pair.cp.call<Mem>('memory');

  // Baseline: a plain Node TCP forwarder holding the same number of idle forwarded connections.
  const fwd = await ctx.startWorker('forwarder', { target: lanInfo.bulkPort }, { exposeGc: true });
  let base: ReturnType<typeof perStream>;
  try {
    const fport = fwd.info.port as number;
    await load.call('idleOpen', { port: fport, n: 32, concurrency: 16 });
    await waitFor(async () => (await fwd.call<number>('pairs')) === 32, 20_000, 'forwarder warm-up', 50);
    await load.call('idleClose');
    await waitFor(async () => (await fwd.call<number>('pairs')) === 0, 20_000, 'forwarder warm-up to close', 50);
    await sleep(500);
    const f0 = await fwd.call<Mem>('memory');
    await load.call('idleOpen', { port: fport, n, concurrency: 32 }, 120_000);
    await waitFor(async () => (await fwd.call<number>('pairs')) === n, 60_000, `${n} forwarded connections`, 100);
    await sleep(1_000);
    const f1 = await fwd.call<Mem>('memory');
    base = perStream(f1, f0, n);
    await load.call('idleClose');
  } finally {
    await fwd.stop();
  }
  const cp = perStream(cp1, cp0, n);
  const relay = perStream(relay1, relay0, n);
  const cpLeft = perStream(cp2, cp0, n);
  const relayLeft = perStream(relay2, relay0, n);
  emit({
    name: 'mediation.memory_per_stream',
    description: `${n} idle TCP connections open through one relay exposure (each a stream of the exposure's one port at the contact point): process memory per stream after forced GC (4x gc()), after a warm-up of 32 streams`,
    value: cp.heap_plus_external,
    unit: 'bytes',
    measure: 'contact point heapUsed + external delta / streams',
    contact_point: cp,
    relay,
    relay_value: relay.heap_plus_external,
    after_close_contact_point: cpLeft,
    after_close_relay: relayLeft,
    streams: n,
    open_failed: opened.failed,
    stream_limit_per_exposure: MAX_STREAMS_PER_EXPOSURE,
    baseline_bytes_per_stream: base.heap_plus_external,
    baseline_detail: base,
    baseline: 'a plain Node TCP forwarder process (net.Server + net.connect + pipe both ways) per forwarded idle connection, same method',
    ratio: round(cp.heap_plus_external / base.heap_plus_external),
    relay_ratio: round(relay.heap_plus_external / base.heap_plus_external),
    target: 'none given (the issue asks for memory per open stream)',
    mode,
  });
}

export async function runMediation(ctx: BenchContext): Promise<void> {
  const want = {
    bulk: ctx.selected('mediation-bulk'),
    http: ctx.selected('mediation-http'),
    expose: ctx.selected('mediation-expose'),
    udp: ctx.selected('mediation-udp'),
    memory: ctx.selected('mediation-memory'),
  };
  if (!want.bulk && !want.http && !want.expose && !want.udp && !want.memory) return;
  const workers: WorkerHandle[] = [];
  const pairs: Pair[] = [];
  let silent: UdpSocket | undefined;
  let ssh: SshTunnel | string | undefined;
  try {
    note(`mediation: ${Object.entries(want).filter(([, v]) => v).map(([k]) => k).join(', ')}`);
    const lan = await ctx.startWorker('lan', {});
    workers.push(lan);
    const load = await ctx.startWorker('load', {});
    workers.push(load);
    const lanInfo = lan.info as unknown as LanInfo;

    const ws = await startPair(ctx, {}, {}, want.memory);
    pairs.push(ws);
    if (want.bulk) {
      ssh = await startSshTunnel(lanInfo.bulkPort);
      note(typeof ssh === 'string' ? `mediation-bulk: the ssh -R reference is skipped: ${ssh}` : `mediation-bulk: ssh -R reference on 127.0.0.1:${ssh.port} (${ssh.cipher})`);
      note('mediation-bulk: ws');
      await runBulk(ctx, 'ws', ws, lan, load, lanInfo, ssh);
      if (typeof ssh !== 'string') await ssh.stop();
      ssh = undefined;
    }
    if (want.http) {
      note('mediation-http');
      await runHttp(ctx, ws, lan, load, lanInfo);
    }
    if (want.expose) {
      note('mediation-expose');
      await runExpose(ctx, ws, lan, load, lanInfo);
    }
    if (want.udp) {
      note('mediation-udp: over the UDP channel');
      await runUdp(ctx, 'udp-channel', ws, lan, load, lanInfo);
    }
    if (want.memory) {
      note('mediation-memory');
      await runMemory(ctx, ws, load, lanInfo);
    }
    await ws.stop();

    // Over wss too, unless this is the quick default set (run.ts QUICK_SET), which keeps to ws and its ssh -R anchor.
    if (want.bulk && ctx.selected('mediation-bulk-wss')) {
      const tls = selfSigned();
      if (tls) {
        note('mediation-bulk: wss');
        const wss = await startPair(ctx, { tls }, { ca: tls.cert }, false);
        pairs.push(wss);
        await runBulk(ctx, 'wss', wss, lan, load, lanInfo, 'not measured over wss');
        await wss.stop();
      }
    }
    if (want.udp) {
      note('mediation-udp: UDP blocked (datagrams inside the tunnel)');
      // The relay announces this port for its UDP channel; nothing ever answers there.
      silent = createSocket('udp4');
      const s = silent;
      await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
      const blocked = await startPair(ctx, { udpAdvertisePort: s.address().port }, {}, false);
      pairs.push(blocked);
      await runUdp(ctx, 'in-tunnel', blocked, lan, load, lanInfo);
      await blocked.stop();
    }
  } finally {
    silent?.close();
    if (ssh !== undefined && typeof ssh !== 'string') await ssh.stop();
    await Promise.all(pairs.map((p) => p.stop()));
    await Promise.all(workers.map((w) => w.stop()));
  }
}
