import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { MAX_FRAME_BYTES } from '../core/protocol/limits.js';
import type { ReadyInfo } from './ipc.js';

/**
 * The latency benchmark's floor: a plain ws forwarder that does nothing but pass each ws
 * message on, both ways. Two of them in their own processes, between the same SDK sender and a
 * plain ack server in the bench process, make the path's topology (bench -> process -> process
 * -> bench, three loopback hops, three process wake-ups each way) with none of the relay's or
 * contact point's work: what is left is what this machine's scheduler and loopback cost.
 */
export async function startWsForwarder(config: { target: string }): Promise<{ info: ReadyInfo; ops: Record<string, (args: unknown) => unknown>; stop: () => Promise<void> }> {
  const server = createServer();
  const wss = new WebSocketServer({ server, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
  const downs = new Set<WebSocket>();
  let forwarded = 0;
  wss.on('connection', (up) => {
    const down = new WebSocket(config.target, { perMessageDeflate: false, maxPayload: MAX_FRAME_BYTES });
    downs.add(down);
    // Bounded: the SDK sends one HELLO before it hears anything back.
    const early: [RawData, boolean][] = [];
    up.on('message', (data, isBinary) => {
      if (down.readyState === WebSocket.OPEN) {
        forwarded++;
        down.send(data, { binary: isBinary });
      } else if (early.length < 16) early.push([data, isBinary]);
      else up.terminate();
    });
    down.on('open', () => {
      for (const [d, isBinary] of early.splice(0)) down.send(d, { binary: isBinary });
    });
    down.on('message', (data, isBinary) => {
      forwarded++;
      up.send(data, { binary: isBinary });
    });
    const end = (): void => {
      downs.delete(down);
      up.terminate();
      down.terminate();
    };
    up.on('close', end);
    down.on('close', end);
    up.on('error', end);
    down.on('error', end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    info: { role: 'ws-forwarder', pid: process.pid, url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/` },
    ops: { forwarded: () => forwarded },
    stop: async () => {
      for (const d of downs) d.terminate();
      for (const c of wss.clients) c.terminate();
      wss.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
