/**
 * What one accepted connection costs a Node process before any state of ours: the floor under the
 * memory targets (issue 17 target 3: <= 4 KiB per LAN peer at the contact point, <= 8 KiB per
 * office at the relay, RSS growth). Two servers, each in a worker process of its own, as the
 * contact point runs (bench/run.ts gives every worker the same node flags):
 *
 * - `net`: a bare `net` server that holds each accepted socket and reads it;
 * - `ws`: the ws library's server set up as the peer port and the relay's admission set it up
 *   until 4 Dec 2026 (noServer behind an HTTP server's upgrade, maxPayload, no permessage-deflate,
 *   no client tracking), holding each WebSocket and listening for its messages;
 * - `own-ws`: what they run now, core/protocol/ws-server.ts behind an HTTP server's upgrade,
 *   holding each ServerWebSocket with a listener for each event the Link listens to.
 *
 * The clients run in another worker (`conn-floor-clients`), so the server's process holds
 * nothing but its side of the connections. footprint.ts reads the server's RSS and heap after
 * a forced GC before and after the clients connect, as it does for the contact point.
 */
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { MAX_FRAME_BYTES } from '../core/protocol/limits.js';
import { acceptWebSocket, ServerWebSocket } from '../core/protocol/ws-server.js';
import type { ReadyInfo } from './ipc.js';
import { pool } from './util.js';

export type FloorKind = 'net' | 'ws' | 'own-ws';
export const FLOOR_KINDS: readonly FloorKind[] = ['net', 'ws', 'own-ws'];

function end(c: Socket | WebSocket | ServerWebSocket): void {
  if (c instanceof WebSocket || c instanceof ServerWebSocket) c.terminate();
  else c.destroy();
}

function nothing(): void {}

type Role = { info: ReadyInfo; ops: Record<string, (args: unknown) => unknown>; stop: () => Promise<void> };

/** The `conn-floor` worker role: a server of `kind` on 127.0.0.1 that keeps what it accepts. */
export async function startFloorServer(config: { kind: FloorKind }): Promise<Role> {
  const held: (Socket | WebSocket | ServerWebSocket)[] = [];
  let server: Server;
  if (config.kind === 'net') {
    server = createServer({ noDelay: true }, (socket) => {
      socket.on('data', () => {});
      socket.on('error', () => {});
      held.push(socket);
    });
  } else if (config.kind === 'own-ws') {
    const http = createHttpServer();
    server = http;
    http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const ws = acceptWebSocket(req, socket, head, MAX_FRAME_BYTES);
      if (!ws) return;
      ws.on('message', nothing).on('ping', nothing).on('pong', nothing).on('close', nothing).on('error', nothing);
      held.push(ws);
    });
  } else {
    const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: false });
    const http = createHttpServer();
    server = http;
    http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('message', () => {});
        ws.on('error', () => {});
        held.push(ws);
      }),
    );
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    info: { role: 'conn-floor', pid: process.pid, url: config.kind !== 'net' ? `ws://127.0.0.1:${port}` : `tcp://127.0.0.1:${port}` },
    ops: { held: () => held.length },
    stop: async () => {
      for (const c of held) end(c);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The `conn-floor-clients` worker role: `n` connections to `url` (tcp:// or ws://), `concurrency` opening at once; ready once all are open. */
export async function startFloorClients(config: { url: string; n: number; concurrency: number }): Promise<Role> {
  const open: (Socket | WebSocket)[] = [];
  const target = new URL(config.url);
  const one = (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      if (target.protocol === 'ws:') {
        const ws = new WebSocket(config.url, { perMessageDeflate: false });
        ws.once('open', () => resolve());
        ws.once('error', reject);
        open.push(ws);
      } else {
        const socket = connect(Number(target.port), target.hostname, () => resolve());
        socket.once('error', reject);
        open.push(socket);
      }
    });
  await pool(
    Array.from({ length: config.n }, (_v, i) => i),
    config.concurrency,
    one,
  );
  return {
    info: { role: 'conn-floor-clients', pid: process.pid, url: config.url, open: open.length },
    ops: {},
    stop: async () => {
      for (const c of open) end(c);
      await Promise.resolve();
    },
  };
}
