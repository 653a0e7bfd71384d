import type { Socket } from 'node:net';
import type { MuxStream } from './stream-mux.js';

/**
 * Joins a TCP socket and a tunnel stream so that bytes, FIN and RST cross both ways:
 * - bytes: piped with backpressure (a full socket stops credit, a stream without credit pauses the socket);
 * - FIN: the socket's end becomes the stream's FIN and vice versa, each direction on its own
 *   (sockets are allowHalfOpen, so one side can finish while the other keeps sending);
 * - RST: a reset socket resets the stream, a reset stream resets the socket (resetAndDestroy).
 */
export function bridge(socket: Socket, stream: MuxStream, onClose?: () => void): void {
  let closed = false;
  const done = (): void => {
    if (closed) return;
    closed = true;
    onClose?.();
  };
  socket.pipe(stream);
  stream.pipe(socket);
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
