/**
 * The LAN side of the mediation benchmarks (bench/mediation.ts), each run in its own worker
 * process (bench/worker.ts role `lan` or `forwarder`):
 *
 * - bulk TCP server: a connection's first byte says what to do.
 *     'U'                      upload: count every byte until the client's FIN, then answer
 *                              the count (float64 LE) and end.
 *     'D' <f64 bytes> <u32 ms> download: send `bytes` (or for `ms`, whichever ends first) and end.
 *   A connection that sends nothing is held open (the idle streams of the memory benchmark).
 * - HTTP server: every request is answered 200 with a 1 KiB body, keep-alive.
 * - UDP echo: every datagram goes back to where it came from.
 * - forwarder (baseline of the memory benchmark): a plain Node TCP forwarder, net.Server +
 *   net.connect + pipe both ways, the least a user-space port forward can hold per connection.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export const HTTP_BODY_BYTES = 1024;
/** What the bulk server sends per write (the same buffer over and over: no allocation per write). */
const BULK_WRITE_BYTES = 1024 * 1024;

type Handler = (args: unknown) => unknown;
export interface Role {
  readonly info: { role: string; pid: number; url: string; [key: string]: unknown };
  readonly ops: Record<string, Handler>;
  readonly stop: () => Promise<void>;
}

function listenTcp(server: Server | HttpServer): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: Server | HttpServer, sockets: Set<Socket>): Promise<void> {
  for (const s of sockets) s.destroy();
  return new Promise((r) => server.close(() => r()));
}

function track(sockets: Set<Socket>, s: Socket): void {
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
  s.on('error', () => undefined);
}

/** The bulk TCP server; see the file comment for its one-byte protocol. */
function bulkServer(stats: { uploads: number; downloads: number; bytesIn: number; bytesOut: number; held: number }, sockets: Set<Socket>): Server {
  const block = Buffer.alloc(BULK_WRITE_BYTES, 0x5a);
  return createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    track(sockets, s);
    stats.held++;
    s.once('close', () => stats.held--);
    let mode: 'U' | 'D' | undefined;
    let head: Buffer = Buffer.alloc(0);
    let count = 0;
    const onData = (d: Buffer): void => {
      if (mode === 'U') {
        count += d.length;
        return;
      }
      head = head.length ? Buffer.concat([head, d]) : d;
      const m = String.fromCharCode(head[0]!);
      if (m === 'U') {
        mode = 'U';
        count = head.length - 1;
        stats.uploads++;
      } else if (m === 'D') {
        if (head.length < 13) return;
        mode = 'D';
        stats.downloads++;
        s.off('data', onData);
        void download(s, head.readDoubleLE(1), head.readUInt32LE(9));
      } else {
        s.destroy();
      }
    };
    s.on('data', onData);
    s.on('end', () => {
      if (mode === 'D') return;
      if (mode === undefined) {
        s.end(); // an idle connection the client finished: finish ours too
        return;
      }
      stats.bytesIn += count;
      const answer = Buffer.allocUnsafe(8);
      answer.writeDoubleLE(count, 0);
      s.end(answer);
    });
  });

  async function download(s: Socket, bytes: number, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    let sent = 0;
    while (sent < bytes && Date.now() < deadline && !s.destroyed) {
      const n = Math.min(block.length, bytes - sent);
      const ok = s.write(n === block.length ? block : block.subarray(0, n));
      sent += n;
      if (!ok) await new Promise<void>((r) => {
        const done = (): void => {
          s.off('drain', done);
          s.off('close', done);
          r();
        };
        s.on('drain', done);
        s.on('close', done);
      });
    }
    stats.bytesOut += sent;
    s.end();
  }
}

export async function startLan(): Promise<Role> {
  const stats = { uploads: 0, downloads: 0, bytesIn: 0, bytesOut: 0, held: 0, httpRequests: 0, udpEchoed: 0 };
  const bulkSockets = new Set<Socket>();
  const bulk = bulkServer(stats, bulkSockets);
  const bulkPort = await listenTcp(bulk);

  const body = Buffer.alloc(HTTP_BODY_BYTES, 0x61);
  const httpSockets = new Set<Socket>();
  const http = createHttpServer({ keepAliveTimeout: 30_000, noDelay: true }, (_req, res) => {
    stats.httpRequests++;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  });
  http.on('connection', (s: Socket) => track(httpSockets, s));
  http.on('clientError', (_err, s) => s.destroy());
  const httpPort = await listenTcp(http);

  const udp: UdpSocket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(0, '127.0.0.1', () => resolve());
  });
  udp.on('error', () => undefined);
  udp.on('message', (m, r) => {
    stats.udpEchoed++;
    udp.send(m, r.port, r.address);
  });
  const udpPort = udp.address().port;

  return {
    info: { role: 'lan', pid: process.pid, url: `tcp://127.0.0.1:${bulkPort}`, bulkPort, httpPort, udpPort },
    ops: { stats: () => ({ ...stats, bulkConnections: bulkSockets.size, httpConnections: httpSockets.size }) },
    stop: async () => {
      udp.close();
      await Promise.all([closeServer(bulk, bulkSockets), closeServer(http, httpSockets)]);
    },
  };
}

/** Baseline of the memory benchmark: a plain Node TCP forwarder to `target`. */
export async function startForwarder(config: { target: number }): Promise<Role> {
  const sockets = new Set<Socket>();
  let pairs = 0;
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    track(sockets, client);
    const upstream = connect({ port: config.target, host: '127.0.0.1', allowHalfOpen: true, noDelay: true });
    track(sockets, upstream);
    pairs++;
    client.pipe(upstream);
    upstream.pipe(client);
    const gone = (): void => {
      client.destroy();
      upstream.destroy();
    };
    let counted = true;
    const uncount = (): void => {
      if (counted) pairs--;
      counted = false;
    };
    client.on('close', () => {
      uncount();
      gone();
    });
    upstream.on('close', () => {
      uncount();
      gone();
    });
  });
  const port = await listenTcp(server);
  return {
    info: { role: 'forwarder', pid: process.pid, url: `tcp://127.0.0.1:${port}`, port },
    ops: { pairs: () => pairs },
    stop: () => closeServer(server, sockets),
  };
}
