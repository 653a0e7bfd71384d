import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';

/** A self-signed certificate for 127.0.0.1, made with the system's openssl. */
export function selfSignedCert(dir: string): { cert: string; key: string } {
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' });
  return { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') };
}

/**
 * A real HTTP CONNECT proxy on loopback that counts the tunnels it opened; given `tls`, it is
 * spoken to over TLS (an https:// proxy URL).
 */
export async function connectProxy(opts: { tls?: { cert: string; key: string } } = {}): Promise<{ url: string; connects: string[]; close(): Promise<void> }> {
  const connects: string[] = [];
  const sockets = new Set<Socket>();
  const refuse = (_req: IncomingMessage, res: ServerResponse): void => void res.writeHead(405).end();
  const server: Server = opts.tls ? createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert }, refuse) : createHttpServer(refuse);
  server.on('connect', (req, client: Socket, head: Buffer) => {
    connects.push(req.url ?? '');
    const [host, port] = (req.url ?? '').split(':');
    const upstream = connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    connects,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/**
 * A TCP forwarder to `targetPort` on loopback whose path can fail the ways real ones do:
 * - blackhole(): bytes stop flowing both ways on every connection, open or new, and no FIN or
 *   RST is sent, as when a NAT entry silently expires. Only keepalive can notice that.
 * - swallow(): the connections open now go silent the same way; new ones pass (a half-dead
 *   path that a reconnect gets around).
 * - cut(): every connection is reset and new ones are refused (the link is down).
 * - restore(): new connections pass again.
 * - retarget(port): new connections go to another port (a name that now resolves elsewhere).
 */
export async function tcpForwarder(targetPort: number): Promise<{
  port: number;
  blackhole(): void;
  swallow(): void;
  cut(): void;
  restore(): void;
  retarget(port: number): void;
  close(): Promise<void>;
}> {
  let target = targetPort;
  let mode: 'pass' | 'blackhole' | 'cut' = 'pass';
  const pairs = new Set<[Socket, Socket]>();
  const silent = new Set<Socket>();
  const server: NetServer = createServer((client) => {
    if (mode === 'cut') return void client.destroy();
    if (mode === 'blackhole') return void client.on('error', () => undefined); // accepted, never answered
    const upstream = connect(target, '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const passes = (): boolean => mode !== 'blackhole' && !silent.has(client);
    client.on('data', (d: Buffer) => void (passes() && upstream.write(d)));
    upstream.on('data', (d: Buffer) => void (passes() && client.write(d)));
    const end = (): void => {
      pairs.delete(pair);
      silent.delete(client);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const destroyAll = (): void => {
    for (const [a, b] of pairs) {
      a.destroy();
      b.destroy();
    }
  };
  return {
    port: (server.address() as AddressInfo).port,
    blackhole: () => void (mode = 'blackhole'),
    swallow: () => {
      for (const [client] of pairs) silent.add(client);
    },
    cut: () => {
      mode = 'cut';
      destroyAll();
    },
    restore: () => void (mode = 'pass'),
    retarget: (port) => void (target = port),
    close: () =>
      new Promise<void>((r) => {
        destroyAll();
        server.close(() => r());
      }),
  };
}

/** A LAN service that echoes what it gets, on loopback, counting the connections it holds. */
export async function echoServer(): Promise<{ port: number; held(): number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: NetServer = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    held: () => sockets.size,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Runs curl (the real client) and collects its output; rejects on a non-zero exit. */
export function curl(args: string[], timeoutMs = 10_000): Promise<{ stdout: Buffer }> {
  return new Promise((resolve, reject) => {
    const p = spawn('curl', ['-sS', '--fail', '--max-time', String(Math.ceil(timeoutMs / 1000)), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('close', (code) => (code === 0 ? resolve({ stdout: Buffer.concat(out) }) : reject(new Error(`curl ${args.join(' ')} exited ${code}: ${err}`))));
  });
}
