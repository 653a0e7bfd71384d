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
  stop(): Promise<void>;
}

/** Starts `nats-server -js` on a free loopback port; resolves once it accepts connections (at most 10 s). */
export async function startNatsServer(): Promise<NatsServer> {
  const dir = await mkdtemp(join(tmpdir(), 'cp-nats-'));
  const port = await freePort();
  const proc = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`nats-server exited with ${proc.exitCode}: ${log}`);
    const ok = await new Promise<boolean>((r) => {
      const c = connect(port, '127.0.0.1', () => (c.destroy(), r(true)));
      c.on('error', () => r(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`nats-server did not listen on ${port} within 10 s: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    proc,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
  };
}
