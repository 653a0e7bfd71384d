import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { sleep } from './util.js';

/**
 * The bulk benchmark's reference tunnel, measured in the same run: OpenSSH's `ssh -R`, the tool
 * the 800 MB/s target was set against. A private sshd on 127.0.0.1 (own host key, one
 * authorized key, nothing else) plays the relay; an `ssh -N -R` client plays the contact point
 * and connects each forwarded connection to the LAN sink/source. Same topology as the path:
 * client -> public-side process -> one TCP tunnel -> LAN-side process -> LAN service.
 *
 * Needs sshd and ssh (Debian: `apt-get install openssh-server`); where they are missing the
 * benchmark says so in its output and reports no ssh baseline.
 */
export const SSH_CIPHER = 'aes128-gcm@openssh.com';
const SSHD = '/usr/sbin/sshd';
const READY_TIMEOUT_MS = 10_000;

export interface SshTunnel {
  /** the public-side port sshd listens on; connections reach `target` through the tunnel */
  readonly port: number;
  readonly cipher: string;
  /** CPU ms used so far by sshd (all its processes) and the ssh client; undefined without /proc */
  cpuMs(): number | undefined;
  stop(): Promise<void>;
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on every Linux build that matters). */
const USER_HZ = 100;

/** CPU ms of `roots` and all their descendants (Linux /proc); undefined elsewhere. */
export function treeCpuMs(roots: readonly number[]): number | undefined {
  let names: string[];
  try {
    names = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return undefined;
  }
  const parent = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const n of names) {
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
      // the fields after "(comm) ": state ppid ... utime(14th overall) stime(15th)
      const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
      parent.set(Number(n), Number(f[1]));
      ticks.set(Number(n), Number(f[11]) + Number(f[12]));
    } catch {
      // the process went away meanwhile
    }
  }
  const inTree = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; p = parent.get(p) ?? 0, hops++) if (roots.includes(p)) return true;
    return false;
  };
  let total = 0;
  for (const [pid, t] of ticks) if (inTree(pid)) total += t;
  return (total * 1000) / USER_HZ;
}

function has(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

async function waitAccepting(port: number, proc: ChildProcess, what: string, log: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${what} exited (${proc.exitCode}): ${log()}`);
    if (await accepts(port)) return;
    await sleep(50);
  }
  throw new Error(`${what} did not accept on 127.0.0.1:${port} within ${READY_TIMEOUT_MS} ms: ${log()}`);
}

/** Starts sshd + `ssh -R` forwarding a fresh loopback port to 127.0.0.1:`target`; a string says why it cannot run here. */
export async function startSshTunnel(target: number): Promise<SshTunnel | string> {
  if (!has(SSHD)) return `${SSHD} not found (Debian: apt-get install openssh-server)`;
  let ssh: string;
  try {
    ssh = execFileSync('sh', ['-c', 'command -v ssh'], { encoding: 'utf8' }).trim();
  } catch {
    return 'ssh not found (Debian: apt-get install openssh-client)';
  }
  const dir = mkdtempSync(join(tmpdir(), 'cp-bench-ssh-'));
  const procs: ChildProcess[] = [];
  const stop = async (): Promise<void> => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
    await sleep(100);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const k of ['host', 'client']) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, k)], { stdio: 'ignore' });
    copyFileSync(join(dir, 'client.pub'), join(dir, 'authorized_keys'));
    // sshd run as root insists on its privilege-separation directory.
    if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    const sshdPort = await freePort();
    writeFileSync(
      join(dir, 'sshd_config'),
      [
        `Port ${sshdPort}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${join(dir, 'host')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PermitRootLogin prohibit-password',
        'StrictModes no',
        'UsePAM no',
        'AllowTcpForwarding remote',
        'GatewayPorts no',
        `PidFile ${join(dir, 'sshd.pid')}`,
        '',
      ].join('\n'),
    );
    let sshdLog = '';
    const sshd = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
    procs.push(sshd);
    sshd.stderr.on('data', (d: Buffer) => void (sshdLog = (sshdLog + d.toString()).slice(-2000)));
    await waitAccepting(sshdPort, sshd, 'sshd', () => sshdLog);

    const port = await freePort();
    let sshLog = '';
    const client = spawn(
      ssh,
      [
        '-N', '-T', '-i', join(dir, 'client'), '-p', String(sshdPort), '-c', SSH_CIPHER,
        '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', `UserKnownHostsFile=${join(dir, 'known_hosts')}`,
        '-o', 'ExitOnForwardFailure=yes', '-o', 'LogLevel=error', '-o', 'Compression=no',
        '-R', `127.0.0.1:${port}:127.0.0.1:${target}`,
        `${userInfo().username}@127.0.0.1`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    procs.push(client);
    client.stderr.on('data', (d: Buffer) => void (sshLog = (sshLog + d.toString()).slice(-2000)));
    await waitAccepting(port, client, 'ssh -R', () => sshLog);
    const roots = [sshd.pid, client.pid].filter((p): p is number => p !== undefined);
    return { port, cipher: SSH_CIPHER, cpuMs: () => treeCpuMs(roots), stop };
  } catch (err: unknown) {
    await stop();
    return `could not start sshd + ssh -R: ${err instanceof Error ? err.message : String(err)}`;
  }
}
