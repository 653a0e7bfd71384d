import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { MAX_FRAME_BYTES } from '../../core/protocol/limits.js';
import { FLUSH_AFTER_BYTES, Link } from '../../core/protocol/link.js';
import { encodeStreamData, encodeStreamWindow } from '../../core/protocol/stream-mux.js';
import { silentLogger } from '../../core/runtime/logger.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A server-side Link on a real loopback ws connection, its TCP socket, and what the client receives. */
async function linkPair(): Promise<{ link: Link; socket: Socket; received: Buffer[] }> {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
  const server: Server = createServer();
  const accepted = new Promise<{ link: Link; socket: Socket }>((resolve) => {
    server.on('upgrade', (req, socket, head) =>
      wss.handleUpgrade(req, socket, head, (ws) => {
        const link = new Link(ws, req.socket, { role: 'server', logger: silentLogger, label: 'flush-test' });
        link.setHandler({ onFrame: () => undefined, onClose: () => undefined });
        resolve({ link, socket: req.socket });
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, { perMessageDeflate: false });
  const received: Buffer[] = [];
  client.on('message', (d: Buffer) => received.push(d));
  // A client terminated while still connecting emits 'error'; the cleanup below must not crash the run.
  client.on('error', () => undefined);
  const opened = new Promise<void>((resolve) => client.once('open', () => resolve()));
  cleanups.push(async () => {
    client.terminate();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  const [{ link, socket }] = await Promise.all([accepted, opened]);
  return { link, socket, received };
}

/** Counts the write syscalls (one per _write or _writev call) a socket makes. */
function countWrites(socket: Socket): () => number {
  let n = 0;
  const s = socket as unknown as { _writev: (...a: unknown[]) => unknown; _write: (...a: unknown[]) => unknown };
  const writev = s._writev.bind(socket);
  const write = s._write.bind(socket);
  s._writev = (...a) => (n++, writev(...a));
  s._write = (...a) => (n++, write(...a));
  return () => n;
}

/**
 * Runs each function in its own callback, all in one loop turn (immediates queued together run
 * in the same check phase; one queued meanwhile, like the link's flush, runs in the next).
 */
function inSeparateCallbacks(fns: (() => void)[]): Promise<void> {
  return new Promise((resolve) => {
    for (const fn of fns) setImmediate(fn);
    setImmediate(resolve);
  });
}

describe('Link write coalescing', () => {
  it('sends the small frames of one loop turn in one socket write, even from separate callbacks', async () => {
    const { link, socket, received } = await linkPair();
    const writes = countWrites(socket);
    const frame = encodeStreamWindow(2, 1024);
    await inSeparateCallbacks(Array.from({ length: 20 }, () => () => void link.send(frame)));
    await new Promise((r) => setImmediate(r));
    expect(writes()).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    expect(received).toHaveLength(20);
  });

  it('flushes a big frame at the end of the callback that sent it', async () => {
    const { link, socket } = await linkPair();
    const writes = countWrites(socket);
    const payload = Buffer.alloc(FLUSH_AFTER_BYTES, 1);
    const seen: number[] = [];
    await inSeparateCallbacks([
      () => void link.send(encodeStreamData(2, payload, 0, payload.length)),
      () => void seen.push(writes(), socket.writableCorked),
      () => void link.send(encodeStreamData(2, payload, 0, payload.length)),
      () => void seen.push(writes(), socket.writableCorked),
    ]);
    expect(seen).toEqual([1, 0, 2, 0]);
  });
});
