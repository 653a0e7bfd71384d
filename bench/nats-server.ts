import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type AddressInfo } from 'node:net';
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
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface NatsServer {
  readonly port: number;
  readonly url: string;
  readonly proc: ChildProcess;
  /** stops it and starts it again on the same port with the same JetStream folder */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts `nats-server -js` on a free loopback port; resolves once it accepts connections (at most 10 s). */
export async function startNatsServer(): Promise<NatsServer> {
  const dir = await mkdtemp(join(tmpdir(), 'cp-nats-'));
  const port = await freePort();
  let proc = await spawnNats(port, dir);
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
      proc = await spawnNats(port, dir);
    },
    async stop() {
      await stopProc();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** `nats-server -js` on `port` with its JetStream folder `dir`; resolves once it accepts connections (at most 10 s). */
async function spawnNats(port: number, dir: string): Promise<ChildProcess> {
  const proc = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`nats-server exited with ${proc.exitCode}: ${log}`);
    const ok = await new Promise<boolean>((r) => {
      const c = connect(port, '127.0.0.1', () => (c.destroy(), r(true)));
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
