import type { OnReadOpts, Socket } from 'node:net';
import type { MuxStream } from './stream-mux.js';

/** Size of the one buffer DirectRead sockets read into. */
export const DIRECT_READ_BYTES = 256 * 1024;
let sharedReadBuffer: Buffer | undefined;

/**
 * Reading a socket into one reused buffer (Node's `onread`) instead of a new 64 KiB buffer per
 * read: up to 256 KiB per read, and the bytes go into the tunnel while they are in that buffer
 * (the contact point's link masks them into the frame it writes, which is the one copy it
 * makes anyway). Pass `onread` to net.connect, then the DirectRead to bridge().
 *
 * One buffer serves every such socket in the process: each read is consumed before the next
 * can happen. Bytes the stream cannot take at once (no credit, tunnel congested, writes
 * queued) are copied and written the usual way, and the socket pauses until they drain.
 * Accepted sockets cannot take `onread` in Node 20; they keep the piped path.
 */
export class DirectRead {
  private stream: MuxStream | undefined;
  private socket: Socket | undefined;
  private early: Buffer[] = [];
  readonly onread: OnReadOpts = {
    buffer: () => (sharedReadBuffer ??= Buffer.allocUnsafe(DIRECT_READ_BYTES)),
    callback: (n: number, buf: Uint8Array): boolean => this.onRead(n, buf as Buffer),
  };

  attach(socket: Socket, stream: MuxStream): void {
    this.socket = socket;
    this.stream = stream;
    const early = this.early;
    this.early = [];
    let ok = true;
    for (const chunk of early) ok = stream.write(chunk);
    if (early.length > 0) {
      if (ok) socket.resume();
      else stream.once('drain', () => socket.resume());
    }
  }

  private onRead(n: number, buf: Buffer): boolean {
    const stream = this.stream;
    if (!stream) {
      // Bytes before the stream exists (not seen: attach runs in the connect callback's turn).
      this.early.push(Buffer.from(buf.subarray(0, n)));
      return false;
    }
    if (stream.destroyed) return false;
    if (stream.sendNow(buf, n)) return true;
    if (stream.write(Buffer.from(buf.subarray(0, n)))) return true;
    const socket = this.socket!;
    stream.once('drain', () => socket.resume());
    return false;
  }
}

/**
 * Joins a TCP socket and a tunnel stream so that bytes, FIN and RST cross both ways:
 * - bytes: piped with backpressure (a full socket stops credit, a stream without credit pauses the socket);
 * - FIN: the socket's end becomes the stream's FIN and vice versa, each direction on its own
 *   (sockets are allowHalfOpen, so one side can finish while the other keeps sending);
 * - RST: a reset socket resets the stream, a reset stream resets the socket (resetAndDestroy).
 */
export function bridge(socket: Socket, stream: MuxStream, onClose?: () => void, direct?: DirectRead): void {
  let closed = false;
  const done = (): void => {
    if (closed) return;
    closed = true;
    onClose?.();
  };
  if (direct) {
    direct.attach(socket, stream);
  } else {
    // As a pipe would, without its extra write queue: a chunk goes out at once when the stream
    // has credit (and nothing queued), else it waits its turn and the socket pauses until it drains.
    socket.on('data', (chunk: Buffer) => {
      if (stream.destroyed || stream.sendNow(chunk, chunk.length, false)) return;
      if (!stream.write(chunk)) {
        socket.pause();
        stream.once('drain', () => socket.resume());
      }
    });
  }
  socket.on('end', () => {
    if (!stream.destroyed && !stream.writableEnded) stream.end();
  });
  stream.on('end', () => {
    if (!socket.destroyed && !socket.writableEnded) socket.end();
  });
  stream.sinkTo(socket);
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (!stream.destroyed) stream.destroy(new Error(err.code === 'ECONNRESET' ? 'connection reset by LAN host' : err.message));
  });
  stream.on('error', () => {
    if (!socket.destroyed) socket.resetAndDestroy();
  });
  socket.on('close', () => {
    // A socket that closed without both FINs exchanged (e.g. destroyed locally) resets the stream.
    if (!stream.destroyed && !(stream.writableFinished && stream.readableEnded)) {
      if (!stream.writableEnded) stream.destroy(new Error('connection closed'));
    }
    if (stream.destroyed || stream.readableEnded) done();
  });
  stream.on('close', () => {
    if (!socket.destroyed && !socket.writableEnded) socket.resetAndDestroy();
    done();
  });
}

/**
 * Joins two tunnel streams (operator <-> relay <-> contact point): bytes and FIN pass through
 * with backpressure end to end, and a reset on either side resets the other.
 */
export function splice(a: MuxStream, b: MuxStream): void {
  a.pipe(b);
  b.pipe(a);
  a.on('error', (err) => b.destroy(err));
  b.on('error', (err) => a.destroy(err));
  a.on('close', () => !b.destroyed && !(b.writableEnded && b.readableEnded) && b.destroy(new Error('other side closed')));
  b.on('close', () => !a.destroyed && !(a.writableEnded && a.readableEnded) && a.destroy(new Error('other side closed')));
}
