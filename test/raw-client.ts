import { WebSocket } from 'ws';
import { decodeFrame, encodeControl, type Frame } from '../core/protocol/codec.js';
import { FrameType } from '../core/protocol/frames.js';

/** A bare ws client that sends whatever bytes a test gives it and records what comes back. */
export class RawClient {
  readonly frames: Frame[] = [];
  closed: { code: number; reason: string } | undefined;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d: Buffer) => {
      try {
        this.frames.push(decodeFrame(d));
      } catch {
        // tests look at what decodes
      }
    });
    ws.on('close', (code, reason) => (this.closed = { code, reason: reason.toString() }));
    ws.on('error', () => undefined);
  }

  /** `autoPong: false`: a client that does not answer ws pings (a silent, half-dead path). */
  static open(url: string, opts: { autoPong?: boolean } = {}): Promise<RawClient> {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 4 * 1024 * 1024, autoPong: opts.autoPong ?? true });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new RawClient(ws)));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
  }

  send(data: Buffer | string): void {
    this.ws.send(data);
  }

  hello(body: Parameters<typeof encodeControl<typeof FrameType.HELLO>>[1]): void {
    this.ws.send(encodeControl(FrameType.HELLO, body));
  }

  async waitClosed(timeoutMs = 8_000): Promise<{ code: number; reason: string }> {
    const start = Date.now();
    while (!this.closed) {
      if (Date.now() - start > timeoutMs) throw new Error('not closed in time');
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.closed;
  }

  /** The status code of the ERROR frame the far side sent before closing, if any. */
  errorCode(): number | undefined {
    const f = this.frames.find((x) => x.type === FrameType.ERROR);
    return f ? (JSON.parse(f.body.toString()) as { code: number }).code : undefined;
  }
}
