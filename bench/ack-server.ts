import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { decodeControl, decodeFrame, decodeMsg, encodeAck, encodeControl } from '../core/protocol/codec.js';
import { FrameType, PROTOCOL_VERSION } from '../core/protocol/frames.js';
import { MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, PING_INTERVAL_MS } from '../core/protocol/limits.js';
import { Status } from '../core/protocol/status.js';

/**
 * The baseline's far end: ONE plain ws server on loopback that answers the SDK's HELLO with a
 * WELCOME and acknowledges every MSG with an OK ACK, right away, in the same event-loop turn.
 * No relay, no tunnel, no contact point, no Link keepalive or corking: the cheapest acked hop
 * the same PeerClient can talk to, so "ratio" says what the two extra hops cost.
 */
export class AckServer {
  private server: Server | undefined;
  private wss: WebSocketServer | undefined;
  acked = 0;

  /** `onPayload` sees each message's payload (the in-process latency baseline reads its timestamp). */
  constructor(private readonly onPayload?: (payload: Buffer) => void) {}

  async start(): Promise<string> {
    const server = createServer();
    const wss = new WebSocketServer({ server, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
    wss.on('connection', (ws) => {
      ws.on('message', (data: Buffer, isBinary) => {
        if (!isBinary) return;
        const frame = decodeFrame(data);
        if (frame.type === FrameType.MSG) {
          const msg = decodeMsg(frame);
          this.onPayload?.(msg.payload);
          this.acked++;
          ws.send(encodeAck({ id: msg.id, to: msg.from, from: msg.to, status: Status.OK, reason: '' }));
        } else if (frame.type === FrameType.KEYS_REQUEST) {
          // As a contact point answers for a peer without a sealing key (core/contact-point/seal-guard.ts):
          // unanswered, the SDK would wait KEYS_TIMEOUT_MS (5 s) for its lookup each time its
          // "no key" entry expires (NO_KEY_TTL_MS, 10 s), with every message meanwhile waiting too:
          // seconds of made-up latency in the baselines (the floor's p50 read 3 s).
          const req = decodeMsg(frame);
          ws.send(encodeAck({ id: req.id, to: req.from, from: req.to, status: Status.UNKNOWN_PEER, reason: 'the ack server has no sealing key' }));
        } else if (frame.type === FrameType.HELLO) {
          const hello = decodeControl(frame, FrameType.HELLO);
          ws.send(
            encodeControl(FrameType.WELCOME, {
              version: PROTOCOL_VERSION,
              session: 'bench',
              address: `${hello.id}@ack-server`,
              limits: { maxMessageBytes: MAX_MESSAGE_BYTES, pingIntervalMs: PING_INTERVAL_MS },
            }),
          );
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.wss = wss;
    return `ws://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  }

  async stop(): Promise<void> {
    for (const ws of this.wss?.clients ?? []) ws.terminate();
    this.wss?.close();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
