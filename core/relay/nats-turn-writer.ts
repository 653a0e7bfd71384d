import type { Socket } from 'node:net';
import type { NatsConnection } from '@nats-io/transport-node';
import { batchLength, writeBatch } from '../protocol/codec.js';
import type { ProtocolWriter } from './cluster-mediation.js';

/**
 * Bytes of the NATS protocol for the frames a node forwards in one event-loop turn (PROTOCOL.md
 * 17.2), written as one socket write at the end of the turn without the copies the NATS client
 * makes.
 *
 * Why: publish() queues a PUB line, the payload and a CRLF as three pieces, and at the end of the
 * turn the client joins everything queued into one new, zero-filled buffer (DataBuffer.pack), so a
 * forwarded sealed bundle (~55 KiB) was copied once more on the sending node, and each BATCH was
 * built in a buffer of its own before that. Every such buffer above 4 KiB is an ArrayBuffer of its
 * own: memory outside V8's heap whose growth is what starts a relay's mark-compacts (see
 * core/runtime/gc.ts).
 *
 * Here the PUB lines and frames (alone or in a BATCH) are copied into one scratch buffer that
 * is used again turn after turn, and only a frame larger than half of it is written from where
 * it lies (the socket gathers the pieces in one writev). The scratch is used again only when the
 * socket took the whole write at once; otherwise the pending write still holds it, and the next
 * turn takes a new one.
 *
 * What the client itself queued (subscriptions, key-value puts, publish()) is written first, so
 * the order of everything this node sends is kept. Not connected (or a client whose internals do
 * not look as expected): the bytes go through the client's sendCommand as before.
 */
export class NatsTurnWriter {
  private scratch: Buffer | undefined;
  /** bytes of `scratch` in use this turn, and where its piece not yet in `chunks` starts */
  private used = 0;
  private segment = 0;
  private readonly chunks: Buffer[] = [];
  private bytes = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly writer: ProtocolWriter,
    /** scratch size; what does not fit is written first */
    private readonly scratchBytes: number,
  ) {}

  /** Whether something waits for write(). */
  get pending(): boolean {
    return this.bytes > 0;
  }

  /**
   * `PUB <subject> <reply> <size>\r\n` (`pubPrefix` is all but the size), one frame and CRLF. A
   * frame of up to half the scratch (a sealed bundle: up to 64 KiB) is copied into it too; a larger
   * one is written from where it lies. Copied, the frame's own buffer (a socket read) is garbage
   * at the end of the turn: handed to the socket as a piece of its own, it made the node that
   * forwards a sender's sealed bundles run a mark-compact every 8,000 messages (none when copied:
   * bench cluster-messages), for a copy that costs a few µs per 55 KiB bundle.
   */
  addFrame(pubPrefix: string, frame: Buffer): void {
    const inline = frame.length <= this.scratchBytes >> 1;
    const at = this.reserve(pubPrefix.length + 12 + (inline ? frame.length : 0) + 2);
    const buf = at.buf;
    let o = at.offset;
    o += buf.write(`${pubPrefix}${frame.length}\r\n`, o, 'latin1');
    if (inline) o += frame.copy(buf, o);
    else {
      // The PUB line before it and the CRLF after it are pieces of their own.
      this.commit(o);
      this.pushChunk(frame);
    }
    buf[o++] = 13;
    buf[o++] = 10;
    this.commit(o);
  }

  /** `PUB <subject> <reply> <size>\r\n`, a BATCH of `frames` (`frameBytes` their lengths' sum) and CRLF. */
  addBatch(pubPrefix: string, frames: readonly Buffer[], frameBytes: number): void {
    const size = batchLength(frames.length, frameBytes);
    const head = this.reserve(pubPrefix.length + 12 + size + 2);
    let o = head.offset;
    o += head.buf.write(`${pubPrefix}${size}\r\n`, o, 'latin1');
    writeBatch(head.buf, o, frames);
    o += size;
    head.buf[o++] = 13;
    head.buf[o++] = 10;
    this.commit(o);
  }

  /** Writes what was added (after what the client queued), as one socket write. */
  write(): void {
    if (this.bytes === 0) return;
    this.closeSegment();
    const chunks = this.chunks;
    const sock = this.socket();
    try {
      if (!sock) {
        // Not connected (the client keeps what is queued for after its reconnect) or not a client we know: its own queue.
        if (this.nc.isClosed() || this.nc.isDraining()) return; // the senders retry
        this.writer.sendCommand(chunks.length === 1 ? Buffer.from(chunks[0]!) : Buffer.concat(chunks, this.bytes));
        return;
      }
      this.writer.flushPending();
      if (chunks.length === 1) sock.write(chunks[0]!);
      else {
        sock.cork();
        for (const c of chunks) sock.write(c);
        sock.uncork();
      }
      // The kernel did not take it all: the socket's queue still holds (part of) the scratch.
      if (sock.writableLength > 0) this.scratch = undefined;
    } finally {
      chunks.length = 0;
      this.bytes = 0;
      this.used = 0;
      this.segment = 0;
    }
  }

  /** The client's socket when it is connected and may be written to now; undefined otherwise. */
  private socket(): Socket | undefined {
    const p = (this.nc as unknown as { protocol?: { connected?: unknown; infoReceived?: unknown; transport?: { socket?: unknown; isClosed?: unknown } } }).protocol;
    if (p?.connected !== true || p.infoReceived !== true || p.transport?.isClosed !== false) return undefined;
    const s = p.transport.socket as Socket | undefined;
    return s !== undefined && typeof s.cork === 'function' && s.writable && !s.destroyed ? s : undefined;
  }

  /** Room for `n` bytes at the end of the scratch (after writing what waits, when it is full). */
  private reserve(n: number): { buf: Buffer; offset: number } {
    if (this.scratch !== undefined && this.used + n > this.scratch.length) this.write();
    // Larger than the scratch (no BATCH is, with the sizes the cluster uses): a larger scratch.
    if (this.scratch !== undefined && n > this.scratch.length) this.scratch = undefined;
    this.scratch ??= Buffer.allocUnsafeSlow(Math.max(n, this.scratchBytes));
    return { buf: this.scratch, offset: this.used };
  }

  /** Bytes up to `end` of the scratch (from reserve()) are in use. */
  private commit(end: number): void {
    this.bytes += end - this.used;
    this.used = end;
  }

  private pushChunk(chunk: Buffer): void {
    this.closeSegment();
    this.chunks.push(chunk);
    this.bytes += chunk.length;
  }

  /** The scratch's bytes since the last chunk become a chunk. */
  private closeSegment(): void {
    if (this.scratch !== undefined && this.used > this.segment) {
      this.chunks.push(this.scratch.subarray(this.segment, this.used));
      this.segment = this.used;
    }
  }
}
