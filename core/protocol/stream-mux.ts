import { Duplex, type Writable } from 'node:stream';
import { bulkStarted } from '../runtime/allocator.js';
import { HEADER_BYTES, type Frame } from './codec.js';
import { FrameType } from './frames.js';
import { ProtocolError } from './errors.js';
import { Status } from './status.js';

/** Credit each side of a stream starts with (bytes it may send before the first WINDOW). */
export const INITIAL_STREAM_WINDOW = 256 * 1024;
/**
 * Largest receive window a stream grows to while its reader keeps up (the receiver grants the
 * growth as extra STREAM_WINDOW credit, so a sender needs no change). Through relay + ws tunnel
 * + contact point on loopback one stream moved ~250-600 MB/s with 256 KiB outstanding and
 * ~700-890 MB/s with 4 MiB (bench/mediation.ts): the window, not the CPU, was the limit.
 */
export const MAX_STREAM_WINDOW = 4 * 1024 * 1024;
/**
 * Growth beyond INITIAL_STREAM_WINDOW that one end of a tunnel grants over all its streams at
 * once: what bounds the memory of streams that grew while fast and then stopped reading.
 */
export const STREAM_WINDOW_BUDGET = 32 * 1024 * 1024;
/**
 * Largest DATA frame body; bigger writes are cut into pieces of this size. Sockets read at
 * most 64 KiB at a time through Node's streams, but the contact point reads the sockets it
 * dials into one 256 KiB buffer (bridge.ts DirectRead): half as many frames, ws messages and
 * wake-ups per MB on both ends of the tunnel. At most half the initial window, so a reader
 * that keeps up holds at most half its window at once and the window grows (see _read).
 */
export const MAX_STREAM_CHUNK = 128 * 1024;
/** Bytes queued in the tunnel socket above which streams stop sending until it drains. */
export const TUNNEL_HIGH_WATER = 4 * 1024 * 1024;

/** What a mux needs from the link under it (Link implements it). */
export interface MuxLink {
  send(frame: Buffer): boolean;
  /** sends the frame `head` + `body[offset, offset + length)`, without joining them first where it can */
  sendParts(head: Buffer, body: Buffer, offset: number, length: number): boolean;
  /** sendParts has copied `body` by the time it returns (else it may still refer to it) */
  readonly copiesBodies: boolean;
  readonly bufferedAmount: number;
  /** call `fn` once the link's socket has drained (or right away when not congested) */
  whenWritable(fn: () => void): void;
}

function header(type: number, channel: number, bodyLength: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_BYTES + bodyLength);
  buf[0] = type;
  buf[1] = 0;
  buf.writeUInt32BE(channel >>> 0, 2);
  return buf;
}

/** The header of a DATA frame, whose body follows it on the wire (Link.sendParts). */
export function encodeStreamDataHead(id: number): Buffer {
  return header(FrameType.STREAM_DATA, id, 0);
}

export function encodeStreamData(id: number, data: Buffer, offset: number, length: number): Buffer {
  const buf = header(FrameType.STREAM_DATA, id, length);
  data.copy(buf, HEADER_BYTES, offset, offset + length);
  return buf;
}

export function encodeStreamFin(id: number): Buffer {
  return header(FrameType.STREAM_FIN, id, 0);
}

export function encodeStreamRst(id: number, reason: string): Buffer {
  const text = Buffer.from(reason.slice(0, 200), 'utf8');
  const buf = header(FrameType.STREAM_RST, id, text.length);
  text.copy(buf, HEADER_BYTES);
  return buf;
}

export function encodeStreamWindow(id: number, increment: number): Buffer {
  const buf = header(FrameType.STREAM_WINDOW, id, 4);
  buf.writeUInt32BE(increment, HEADER_BYTES);
  return buf;
}

/** A stream reset by the far side (TCP RST relayed) or by us. */
export class StreamResetError extends Error {
  override readonly name = 'StreamResetError';
  readonly code = 'ECONNRESET';
  constructor(readonly reason: string) {
    super(`stream reset: ${reason}`);
  }
}

/**
 * One TCP stream carried in the tunnel, as a Node Duplex. Sending spends credit the far side
 * granted; with none left, writes wait (backpressure reaches whatever pipes into us). Credit is
 * granted back only as our reader consumes, so a reader that stops stalls only its own stream
 * and never grows memory past the window. FIN is half-close; RST destroys at once.
 */
export class MuxStream extends Duplex {
  private sendCredit: number;
  /** bytes received and consumed locally but not yet credited back */
  private consumed = 0;
  /** bytes received and not yet read by our consumer */
  private buffered = 0;
  private pending: { chunk: Buffer; offset: number; cb: (err?: Error | null) => void } | undefined;
  /** our receive window: INITIAL_STREAM_WINDOW, grown while our reader keeps up */
  private recvWindow: number;
  /** bytes our reader consumed since the window last grew (or was last judged) */
  private sinceGrowth = 0;
  /** largest backlog a frame found meanwhile (bytes received, not yet taken by our reader) */
  private peakBuffered = 0;
  /** growth beyond the initial window, taken from the mux's budget (given back when the stream goes) */
  grown = 0;
  /** where received bytes go straight once bridged to a socket (sinkTo), instead of our readable side */
  private sink: Writable | undefined;
  /** bytes written to the sink while it was above its high-water mark: credited back at its 'drain' */
  private sinkHeld = 0;
  private remoteReset = false;
  private finSent = false;
  bytesIn = 0;
  bytesOut = 0;
  readonly openedAt = Date.now();

  constructor(
    readonly id: number,
    private readonly mux: StreamMux,
    private readonly window: number,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 64 * 1024, writableHighWaterMark: 64 * 1024 });
    this.sendCredit = window;
    this.recvWindow = window;
  }

  /** Called by the mux for a DATA frame. */
  onData(body: Buffer): void {
    // Outstanding credit is what we hold unread plus what was read but not yet credited back.
    if (this.buffered + this.sinkHeld + this.consumed + body.length > this.recvWindow) {
      throw new ProtocolError(Status.PROTOCOL_VIOLATION, `stream ${this.id} sent past its window`);
    }
    // The backlog a frame finds (not counting the frame itself, so a reader that keeps up shows
    // about one frame, the one it is taking, whatever the frame size).
    const backlog = this.backlog;
    if (backlog > this.peakBuffered) this.peakBuffered = backlog;
    this.bytesIn += body.length;
    const sink = this.sink;
    if (sink) {
      // Bridged: into the socket at once. Bytes it takes below its high-water mark count as read;
      // above it, they are credited back only when it drains, so a client that does not read
      // holds at most one window (plus the socket's high-water mark) here, as before.
      const ok = sink.write(body);
      if (ok && this.sinkHeld === 0) {
        this.credit(body.length);
        return;
      }
      if (this.sinkHeld === 0) sink.once('drain', this.onSinkDrain);
      this.sinkHeld += body.length;
      return;
    }
    this.buffered += body.length;
    this.push(body);
  }

  /**
   * From now on, received bytes are written straight to `sink` (the socket bridge() joins this
   * stream to) rather than pushed through our readable side and piped: the same credit rules,
   * a few buffer and event hops fewer per chunk. Bytes that came before go first. Our FIN still
   * ends our readable side ('end'), which the caller turns into the socket's end.
   */
  sinkTo(sink: Writable): void {
    for (let chunk = this.read() as Buffer | null; chunk !== null; chunk = this.read() as Buffer | null) sink.write(chunk);
    this.sink = sink;
    // Flowing, with nothing ever pushed again but the end: 'end' follows our FIN at once.
    this.resume();
  }

  private readonly onSinkDrain = (): void => {
    const held = this.sinkHeld;
    this.sinkHeld = 0;
    if (held > 0 && !this.destroyed) this.credit(held);
  };

  /** bytes received and not yet taken by our reader (the sink's queue once bridged) */
  private get backlog(): number {
    return this.sink ? this.sink.writableLength : this.buffered;
  }

  onWindow(increment: number): void {
    this.sendCredit += increment;
    this.flushPending();
  }

  onFin(): void {
    this.push(null);
  }

  onRst(reason: string): void {
    this.remoteReset = true;
    this.destroy(new StreamResetError(reason));
  }

  override _read(): void {
    // Our consumer wants more: whatever it took from the buffer is credited back.
    const taken = this.buffered - this.readableLength;
    if (taken <= 0) return;
    this.buffered -= taken;
    this.credit(taken);
  }

  /** `taken` more bytes were consumed by our reader: credit goes back once enough have been. */
  private credit(taken: number): void {
    this.consumed += taken;
    this.sinceGrowth += taken;
    // Credit goes back a quarter window at a time (not each time the buffer empties: for
    // request/response traffic that was one STREAM_WINDOW frame per request). The sender keeps
    // at least three quarters of the window meanwhile, so it never waits on credit we hold.
    if (this.consumed >= this.recvWindow / 4) {
      let increment = this.consumed;
      // A whole window went through and our reader never let more than half of it pile up:
      // the window, not the reader, is what limits this stream. Double it (up to
      // MAX_STREAM_WINDOW, within the mux's budget) by granting more than was consumed. A reader
      // that stops or lags lets the sender fill its window, so its stream keeps the window it has.
      if (this.sinceGrowth >= this.recvWindow) {
        if (this.peakBuffered <= this.recvWindow / 2 && this.recvWindow < MAX_STREAM_WINDOW) {
          const extra = this.mux.takeWindowBudget(Math.min(this.recvWindow, MAX_STREAM_WINDOW - this.recvWindow));
          this.recvWindow += extra;
          this.grown += extra;
          increment += extra;
        }
        this.sinceGrowth = 0;
        this.peakBuffered = this.backlog;
      }
      this.mux.link.send(encodeStreamWindow(this.id, increment));
      this.consumed = 0;
    }
  }

  /**
   * Sends `buf[0, n)` now if the stream can take all of it at once (credit for it, the tunnel
   * below TUNNEL_HIGH_WATER, no write queued before it) and returns true; `buf` may be reused as
   * soon as this returns. False: nothing was sent, and the caller writes a copy instead (which
   * waits its turn). `reused`: the caller overwrites `buf` after this returns (DirectRead's
   * shared buffer), so a link that keeps bodies gets a copy; a socket's 'data' chunk is not.
   */
  sendNow(buf: Buffer, n: number, reused = true): boolean {
    if (n === 0) return true;
    if (this.destroyed || this.writableEnded || this.pending || this.writableLength > 0) return false;
    const link = this.mux.link;
    if (this.sendCredit < n || link.bufferedAmount > TUNNEL_HIGH_WATER) return false;
    const body = link.copiesBodies || !reused ? buf : Buffer.from(buf.subarray(0, n));
    for (let offset = 0; offset < n; offset += MAX_STREAM_CHUNK) {
      link.sendParts(encodeStreamDataHead(this.id), body, offset, Math.min(n - offset, MAX_STREAM_CHUNK));
    }
    this.sendCredit -= n;
    this.bytesOut += n;
    return true;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.pending = { chunk, offset: 0, cb };
    this.flushPending();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.finSent = true;
    this.mux.link.send(encodeStreamFin(this.id));
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.remoteReset && !(this.finSent && this.readableEnded)) {
      this.mux.link.send(encodeStreamRst(this.id, err?.message ?? 'closed'));
    }
    const p = this.pending;
    this.pending = undefined;
    this.mux.forget(this.id);
    p?.cb(err ?? new StreamResetError('closed'));
    cb(err);
  }

  private flushPending(): void {
    const p = this.pending;
    if (!p || this.destroyed) return;
    const link = this.mux.link;
    while (p.offset < p.chunk.length) {
      if (this.sendCredit <= 0) return; // resumed by WINDOW
      if (link.bufferedAmount > TUNNEL_HIGH_WATER) {
        link.whenWritable(() => this.flushPending());
        return;
      }
      const n = Math.min(p.chunk.length - p.offset, this.sendCredit, MAX_STREAM_CHUNK);
      link.sendParts(encodeStreamDataHead(this.id), p.chunk, p.offset, n);
      p.offset += n;
      this.sendCredit -= n;
      this.bytesOut += n;
    }
    this.pending = undefined;
    p.cb();
  }

  /** The read side finished and our FIN went out: nothing more can happen on this stream. */
  get done(): boolean {
    return this.readableEnded && this.finSent;
  }
}

const NO_STREAMS: ReadonlyMap<number, MuxStream> = new Map();

/**
 * The streams of one tunnel. Both ends hold one; it routes DATA/FIN/RST/WINDOW frames by
 * channel id to their MuxStream and forgets streams once closed both ways or reset.
 */
export class StreamMux {
  /** made with the first stream: most tunnels never carry one, and an empty Map is ~180 bytes */
  private streams: Map<number, MuxStream> | undefined;
  /** what is left of STREAM_WINDOW_BUDGET for growing receive windows */
  private windowBudget = STREAM_WINDOW_BUDGET;

  constructor(
    readonly link: MuxLink,
    private readonly window = INITIAL_STREAM_WINDOW,
  ) {}

  get size(): number {
    return this.streams?.size ?? 0;
  }

  get(id: number): MuxStream | undefined {
    return this.streams?.get(id);
  }

  all(): IterableIterator<MuxStream> {
    return (this.streams ?? NO_STREAMS).values();
  }

  open(id: number): MuxStream {
    if (this.streams?.has(id)) throw new Error(`stream ${id} exists`);
    bulkStarted();
    const s = new MuxStream(id, this, this.window);
    // A reset is a normal event: a stream nobody listens on yet (a connect still waiting for its
    // answer, a tunnel lost meanwhile, an RST from the far side) must not crash the process.
    s.on('error', () => undefined);
    (this.streams ??= new Map()).set(id, s);
    const maybeForget = (): void => {
      if (s.done) this.forget(id);
    };
    s.on('end', maybeForget);
    s.on('finish', maybeForget);
    return s;
  }

  forget(id: number): void {
    const s = this.streams?.get(id);
    if (!s) return;
    this.windowBudget += s.grown;
    s.grown = 0;
    this.streams!.delete(id);
  }

  /** Up to `wanted` bytes of window growth, as far as the budget goes. */
  takeWindowBudget(wanted: number): number {
    const n = Math.max(0, Math.min(wanted, this.windowBudget));
    this.windowBudget -= n;
    return n;
  }

  /** Handles a stream frame; false if `frame` is not one. Unknown ids get an RST back. */
  handle(frame: Frame): boolean {
    switch (frame.type) {
      case FrameType.STREAM_DATA:
      case FrameType.STREAM_FIN:
      case FrameType.STREAM_RST:
      case FrameType.STREAM_WINDOW:
        break;
      default:
        return false;
    }
    const s = this.streams?.get(frame.channel);
    if (!s) {
      // Credit for a stream we already finished and forgot is harmless: the far side may still
      // be reading our last bytes when our FIN crosses its WINDOW. Data or a FIN is answered.
      if (frame.type === FrameType.STREAM_DATA || frame.type === FrameType.STREAM_FIN) this.link.send(encodeStreamRst(frame.channel, 'unknown stream'));
      return true;
    }
    switch (frame.type) {
      case FrameType.STREAM_DATA:
        s.onData(frame.body);
        break;
      case FrameType.STREAM_FIN:
        s.onFin();
        break;
      case FrameType.STREAM_RST:
        s.onRst(frame.body.toString('utf8') || 'reset');
        break;
      case FrameType.STREAM_WINDOW:
        if (frame.body.length !== 4) throw new ProtocolError(Status.MALFORMED_FRAME, 'STREAM_WINDOW body must be 4 bytes');
        s.onWindow(frame.body.readUInt32BE(0));
        break;
    }
    return true;
  }

  /** The tunnel is gone: every stream is reset locally (their sockets get RST). */
  resetAll(reason: string): void {
    const streams = this.streams;
    this.streams = undefined;
    if (streams) for (const s of streams.values()) s.onRst(reason);
    this.windowBudget = STREAM_WINDOW_BUDGET;
  }
}
