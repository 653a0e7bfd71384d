import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as tcpConnect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Real nats-server processes for the relay cluster tests and benchmark (Debian's nats-server
 * package; .ci/run installs it). Each has its own free port and JetStream folder.
 */
export const NATS_SERVER = '/usr/sbin/nats-server';
export const haveNatsServer = existsSync(NATS_SERVER);
export const NO_NATS_REASON = `${NATS_SERVER} is missing (apt-get install nats-server): relay cluster tests and benchmark skipped`;

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/**
 * `n` different free ports on 127.0.0.1 for one configuration (a server's client and route
 * ports, a pair's ports). Each is held until all are picked: picked one at a time, Linux can hand
 * the port just released out again (a nats-server cluster test failed 2 runs in 7 with its client
 * and route ports the same).
 */
export async function freePorts(n: number): Promise<number[]> {
  const held = Array.from({ length: n }, () => createServer());
  try {
    await Promise.all(held.map((s) => new Promise<void>((resolve, reject) => s.once('error', reject).listen(0, '127.0.0.1', resolve))));
    return held.map((s) => (s.address() as AddressInfo).port);
  } finally {
    await Promise.all(held.map((s) => new Promise<void>((r) => (s.listening ? s.close(() => r()) : r()))));
  }
}

export interface NatsServer {
  readonly port: number;
  readonly url: string;
  readonly proc: ChildProcess;
  /** stops it and starts it again on the same port with the same JetStream folder */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The Go scheduler's thread count for a nats-server that carries a relay cluster in the benches:
 * one, as README "Running a relay cluster" advises for a nats-server sharing a small host with
 * relay nodes. On these 2-core hosts, beside five busy Node processes, its default (one per core)
 * handed each message between threads, about a third of its CPU (bench cluster-messages, quick,
 * alternating: 16-19 % CPU at GOMAXPROCS=1 against 25-28 % for the same or fewer messages).
 * A GOMAXPROCS in the bench's own environment wins (BENCH runs can compare).
 */
export const CLUSTER_NATS_GOMAXPROCS = 1;

/** What the benches' topology lines say about a nats-server started with `gomaxprocs`. */
export function natsProcsNote(gomaxprocs: number | undefined): string {
  const g = process.env.GOMAXPROCS ?? (gomaxprocs === undefined ? undefined : String(gomaxprocs));
  return g === undefined ? 'nats-server (-js)' : `nats-server (-js, GOMAXPROCS=${g})`;
}

/**
 * Starts `nats-server -js` on a free loopback port; resolves once it accepts connections (at most
 * 10 s). `gomaxprocs`: its GOMAXPROCS (unless the environment has one).
 */
export async function startNatsServer(opts: { readonly gomaxprocs?: number } = {}): Promise<NatsServer> {
  const dir = await mkdtemp(join(tmpdir(), 'cp-nats-'));
  const port = await freePort();
  const env = opts.gomaxprocs !== undefined && process.env.GOMAXPROCS === undefined ? { ...process.env, GOMAXPROCS: String(opts.gomaxprocs) } : process.env;
  let proc = await spawnNats(port, dir, env);
  const stopProc = async (): Promise<void> => {
    const p = proc;
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await exited;
  };
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    get proc() {
      return proc;
    },
    async restart() {
      await stopProc();
      proc = await spawnNats(port, dir, env);
    },
    async stop() {
      await stopProc();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** One server of a NATS cluster (startNatsCluster). */
export interface NatsClusterServer {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  /** SIGKILL: the server dies as a crashed host would */
  kill(): Promise<void>;
}

/**
 * `n` nats-server processes joined as one NATS cluster with JetStream, each started from a
 * config file of the README's "Running a relay cluster" form (server_name, listen, jetstream
 * store_dir, cluster name/listen/routes), on free loopback ports. Resolves once JetStream can
 * place a stream on all of them (jetStreamReady), at most 30 s.
 */
export async function startNatsCluster(n = 3): Promise<{ servers: readonly NatsClusterServer[]; urls: string; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'cp-nats-cluster-'));
  const picked = await freePorts(2 * n);
  const ports = Array.from({ length: n }, (_v, i) => ({ client: picked[2 * i]!, route: picked[2 * i + 1]! }));
  const routes = ports.map((p) => `nats://127.0.0.1:${p.route}`).join(', ');
  const procs: ChildProcess[] = [];
  try {
    for (const [i, p] of ports.entries()) {
      const conf = join(dir, `n${i + 1}.conf`);
      await writeFile(
        conf,
        [
          `server_name: n${i + 1}`,
          `listen: 127.0.0.1:${p.client}`,
          `jetstream { store_dir: ${JSON.stringify(join(dir, `n${i + 1}`))} }`,
          'cluster {',
          '  name: contact-point',
          `  listen: 127.0.0.1:${p.route}`,
          `  routes: [${routes}]`,
          '}',
          '',
        ].join('\n'),
      );
      procs.push(await spawnNats(p.client, ['-c', conf]));
    }
  } catch (err: unknown) {
    for (const p of procs) p.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  await jetStreamReady(ports.map((p) => `nats://127.0.0.1:${p.client}`)).catch(async (err: unknown) => {
    for (const p of procs) p.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  });
  const killed = async (p: ChildProcess): Promise<void> => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGKILL');
    await exited;
  };
  return {
    servers: ports.map((p, i) => ({ name: `n${i + 1}`, port: p.client, url: `nats://127.0.0.1:${p.client}`, kill: () => killed(procs[i]!) })),
    urls: ports.map((p) => `nats://127.0.0.1:${p.client}`).join(','),
    async stop() {
      await Promise.all(procs.map(killed));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Waits until the cluster's JetStream can place a stream on every server (its servers elect a
 * meta leader and learn each other a few seconds after they meet): a throwaway stream with one
 * replica per server is created and deleted.
 */
async function jetStreamReady(servers: string[]): Promise<void> {
  // Loaded here, not at the top: the bench's workers import this file (freePort), and a relay or
  // contact point with the NATS client loaded moved bulk TCP at ~1.4x the CPU per MB (the
  // product loads it only for --nats: core/cli/relay-command.ts). test/unit/static-imports.test.ts.
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers, timeout: 10_000 });
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const jsm = await jetstreamManager(nc, { timeout: 5_000 });
        await jsm.streams.add({ name: 'cp_ready_probe', subjects: ['cp.ready.probe'], num_replicas: servers.length });
        await jsm.streams.delete('cp_ready_probe');
        return;
      } catch (err: unknown) {
        if (Date.now() > deadline) throw new Error(`the NATS cluster's JetStream did not come up within 30 s: ${(err as Error).message}`, { cause: err });
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  } finally {
    await nc.close();
  }
}

/** `nats-server` on `port` (`-js` with JetStream folder `dir`, or the given arguments); resolves once it accepts connections (at most 10 s). */
async function spawnNats(port: number, dirOrArgs: string | readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<ChildProcess> {
  const args = typeof dirOrArgs === 'string' ? ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dirOrArgs] : [...dirOrArgs];
  const proc = spawn(NATS_SERVER, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
  let log = '';
  proc.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`nats-server exited with ${proc.exitCode}: ${log}`);
    const ok = await new Promise<boolean>((r) => {
      const c = tcpConnect(port, '127.0.0.1', () => (c.destroy(), r(true)));
      c.on('error', () => r(false));
    });
    if (ok) return proc;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`nats-server did not listen on ${port} within 10 s: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
