import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { refuseUpgrade } from '../runtime/http-guard.js';
import { unmask, writeWsHeader, wsHeaderLength } from './ws-frame.js';

/**
 * The server end of a WebSocket (RFC 6455) on a bare socket, for the relay and the contact
 * point's peer port (relay/admission.ts, contact-point/peer-interface.ts): no extensions,
 * no subprotocols, binary and text messages, fragmentation, ping/pong and the close handshake.
 *
 * Why not the ws library, which every client (the Dialer, the SDK) still uses: each connection there is a
 * WebSocket, a Receiver (a Writable stream with its state), a Sender, an event table in dictionary
 * mode and several closures, ~1.5 KB of heap before anything of ours (bench footprint's ws floor
 * against a bare net server), and every frame goes through the Receiver's stream machinery. A
 * connection is here one object with the parse state in a few fields, and a frame that
 * arrived in one socket read is handed on as a view of that read, unmasked in place (as ws does).
 * A frame cut by reads fills a buffer of its own size as they come (one copy of each byte, and
 * never more memory than the frame, however small the reads); nothing waiting keeps a read alive.
 *
 * It offers what the Link (link.ts) uses of ws's WebSocket, under the same names and meanings:
 * readyState, bufferedAmount, send, ping, pong, close, terminate and one listener each for
 * 'message' (data, isBinary), 'ping', 'pong', 'close' (code, reason) and 'error'; listeners are
 * called with the socket as `this`, as ws calls them.
 *
 * Limits and refusals, as RFC 6455 asks of a server and as ws does them: unmasked frames, RSV bits
 * (nothing negotiated them), unknown opcodes, fragmented or over-long control frames, a
 * continuation without a message or a message inside another close with 1002; a message (all its
 * fragments together) over `maxPayload` with 1009 as soon as its header says so, before the bytes
 * come; text that is not UTF-8 with 1007. At most MAX_FRAGMENTS fragments make one message.
 * Pings go unanswered while PONG_BACKLOG_BYTES wait to be written (a far end that does not read).
 */

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY = /^[+/0-9A-Za-z]{22}==$/;

export const OPEN = 1;
export const CLOSING = 2;
export const CLOSED = 3;

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

/** Fragments one message may come in (each is copied out of its socket read, so memory stays bounded by maxPayload). */
export const MAX_FRAGMENTS = 1024;
/** How long a close handshake may wait for the far end before the socket is destroyed (ws waits 30 s). */
export const CLOSE_TIMEOUT_MS = 5_000;
/**
 * Pings are not answered while this much waits to be written to the socket: a far end that sends
 * pings and reads nothing would otherwise grow the buffer without bound (RFC 6455 5.5.3 lets an
 * endpoint answer only the most recent ping).
 */
export const PONG_BACKLOG_BYTES = 64 * 1024;
/** A frame with a payload up to this size is written as one buffer (one copy), a bigger one as header and payload. */
const COPY_UP_TO = 512;

const EMPTY = Buffer.alloc(0);

/** Where a WebSocket (ours, or ws's on a client) keeps the Link it carries: the Link's shared listeners find it there (link.ts). */
export const LINK_SLOT: unique symbol = Symbol('link');
/** The ServerWebSocket on its net socket, for the socket listeners (shared by every connection). */
const WS = Symbol('server-websocket');
type TaggedSocket = Socket & { [WS]: ServerWebSocket };

/** A frame the far end sent that RFC 6455 does not allow, with the close code it is answered with. */
export class WsProtocolError extends Error {
  constructor(
    message: string,
    readonly closeCode: number,
  ) {
    super(message);
    this.name = 'WsProtocolError';
  }
}

/** Close codes an endpoint may send (RFC 6455 7.4; 1004-1006 and 1015 never go on the wire). */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

type MessageListener = (this: ServerWebSocket, data: Buffer, isBinary: boolean) => void;
type DataListener = (this: ServerWebSocket, data: Buffer) => void;
type CloseListener = (this: ServerWebSocket, code: number, reason: Buffer) => void;
type ErrorListener = (this: ServerWebSocket, err: Error) => void;

/** Where each event's one listener is kept (a field each: no event table per connection). */
const LISTENER_FIELDS = { message: 'onMessage', ping: 'onPing', pong: 'onPong', close: 'onClose', error: 'onError' } as const;

/** The 4 mask bytes of the frame being unmasked (used at once, so one buffer serves every connection). */
const maskScratch = Buffer.alloc(4);

export class ServerWebSocket {
  /** ws's readyState values: OPEN from the start (made once the upgrade is answered), then CLOSING, CLOSED. */
  readyState: number = OPEN;
  /** Accepted for ws compatibility: messages are always Buffers. */
  binaryType = 'nodebuffer';
  /** The Link this connection carries (link.ts), declared here so setting it changes no object shape. */
  [LINK_SLOT]: unknown = undefined;
  private onMessage: MessageListener | undefined;
  private onPing: DataListener | undefined;
  private onPong: DataListener | undefined;
  private onClose: CloseListener | undefined;
  private onError: ErrorListener | undefined;
  /** the start of a frame whose header was cut by a socket read (a copy, under 14 bytes) */
  private head: Buffer | undefined;
  /** a frame whose header was read and whose payload was cut by a socket read, being filled */
  private cut: Buffer | undefined;
  /** bytes of `cut` filled so far */
  private filled = 0;
  /** what parse() left for consume(): the size of the incomplete frame once its header was read, else 0 */
  private need = 0;
  /** the fragments of a message in progress (undefined: none) */
  private fragments: Buffer[] | undefined;
  private fragmentsBytes = 0;
  private fragmentsText = false;
  /** nothing more that arrives is parsed (the far end's close frame came, or it broke the protocol) */
  private stopped = false;
  private closeSent = false;
  private closeReceived = false;
  private closeCode = 1006;
  private closeReason: Buffer = EMPTY;
  private closeTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: Socket,
    /**
     * The largest message taken (1009 past it). A server may raise it once the far end is
     * admitted: before its hello, a connection is held to a hello's size.
     */
    public maxPayload: number,
  ) {
    (socket as TaggedSocket)[WS] = this;
    socket.setTimeout(0);
    socket.setNoDelay(true);
    socket.on('data', onSocketData);
    socket.on('end', onSocketEnd);
    socket.on('close', onSocketClose);
    socket.on('error', onSocketError);
  }

  on(event: 'message', listener: MessageListener): this;
  on(event: 'ping' | 'pong', listener: DataListener): this;
  on(event: 'close', listener: CloseListener): this;
  on(event: 'error', listener: ErrorListener): this;
  on(event: string, listener: MessageListener | DataListener | CloseListener | ErrorListener): this {
    const field = Object.hasOwn(LISTENER_FIELDS, event) ? LISTENER_FIELDS[event as keyof typeof LISTENER_FIELDS] : undefined;
    if (field === undefined) throw new Error(`a ServerWebSocket has no '${event}' event`);
    const self = this as unknown as Record<typeof field, unknown>;
    if (self[field] !== undefined) throw new Error(`a ServerWebSocket takes one '${event}' listener`);
    self[field] = listener;
    return this;
  }

  /** Bytes handed to the socket and not yet to the kernel. */
  get bufferedAmount(): number {
    return this.socket.writableLength;
  }

  /** Sends `data` as one binary message (a final frame); nothing once the socket is closing. */
  send(data: Buffer, _opts?: { binary?: boolean; compress?: boolean }): void {
    if (this.readyState !== OPEN) return;
    this.writeFrame(OP_BINARY, data);
  }

  ping(data?: Buffer): void {
    this.control(OP_PING, data);
  }

  pong(data?: Buffer): void {
    this.control(OP_PONG, data);
  }

  /**
   * Starts the close handshake (ws's semantics): sends a close frame with `code` and `reason`, then
   * ends the socket once the far end's close frame has come too; destroys it after
   * CLOSE_TIMEOUT_MS if that never happens.
   */
  close(code?: number, reason?: string | Buffer): void {
    if (this.readyState === CLOSED) return;
    if (this.readyState === CLOSING) {
      if (this.closeSent && this.closeReceived) this.socket.end();
      return;
    }
    if (code !== undefined && !isValidCloseCode(code)) throw new TypeError(`${code} is not a close code an endpoint may send`);
    const text = reason === undefined ? EMPTY : typeof reason === 'string' ? Buffer.from(reason) : reason;
    if (text.length > 123) throw new RangeError('a close reason takes at most 123 bytes');
    this.readyState = CLOSING;
    this.sendClose(code, text);
    if (this.closeReceived) this.socket.end();
    this.armCloseTimer();
  }

  /** Destroys the socket at once, without a close handshake. */
  terminate(): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSING;
    this.socket.destroy();
  }

  /** @internal Bytes from the socket. */
  receive(chunk: Buffer): void {
    if (this.stopped) return;
    const frame = this.cut;
    if (frame !== undefined) {
      // A frame cut by a read fills its own buffer: each of its bytes is copied once, and its
      // memory is its size, whatever the reads it comes in (never above maxPayload).
      const want = frame.length - this.filled;
      const n = Math.min(want, chunk.length);
      chunk.copy(frame, this.filled, 0, n);
      this.filled += n;
      if (n < want) return;
      this.cut = undefined;
      this.filled = 0;
      if (this.consume(frame) && n < chunk.length) this.consume(chunk.subarray(n));
      return;
    }
    const head = this.head;
    if (head !== undefined) {
      // A header cut by a read (under 14 bytes): parse on from it and this read together.
      this.head = undefined;
      this.consume(Buffer.concat([head, chunk]));
      return;
    }
    this.consume(chunk);
  }

  /**
   * Parses the whole frames in `buf`; an incomplete last one is copied out (a view would keep
   * the whole read in memory). False once nothing more is parsed.
   */
  private consume(buf: Buffer): boolean {
    let at: number;
    try {
      at = this.parse(buf);
    } catch (err: unknown) {
      if (!(err instanceof WsProtocolError)) throw err;
      this.fail(err);
      return false;
    }
    if (this.stopped) return false;
    if (at < buf.length) {
      if (this.need > 0) {
        this.cut = Buffer.allocUnsafe(this.need);
        this.filled = buf.copy(this.cut, 0, at);
      } else this.head = Buffer.from(buf.subarray(at));
    }
    return true;
  }

  /** Parses and handles the whole frames at the start of `buf`; returns where the first incomplete one starts. */
  private parse(buf: Buffer): number {
    let at = 0;
    for (;;) {
      const left = buf.length - at;
      if (left < 2) {
        this.need = 0;
        return at;
      }
      const b0 = buf[at]!;
      const b1 = buf[at + 1]!;
      const fin = (b0 & 0x80) !== 0;
      const opcode = b0 & 0x0f;
      if ((b0 & 0x70) !== 0) throw new WsProtocolError('RSV bits set, and no extension was negotiated', 1002);
      if ((b1 & 0x80) === 0) throw new WsProtocolError('a client frame must be masked', 1002);
      let length = b1 & 0x7f;
      if (opcode >= OP_CLOSE) {
        if (opcode > OP_PONG) throw new WsProtocolError(`unknown opcode ${opcode}`, 1002);
        if (!fin) throw new WsProtocolError('a control frame must not be fragmented', 1002);
        if (length > 125) throw new WsProtocolError('a control frame carries at most 125 bytes', 1002);
      } else if (opcode > OP_BINARY) throw new WsProtocolError(`unknown opcode ${opcode}`, 1002);
      else if (opcode === OP_CONTINUATION) {
        if (this.fragments === undefined) throw new WsProtocolError('a continuation frame without a message to continue', 1002);
      } else if (this.fragments !== undefined) throw new WsProtocolError('a new message before the fragmented one was finished', 1002);
      let header = 6;
      if (length === 126) {
        if (left < 4) {
          this.need = 0;
          return at;
        }
        length = buf.readUInt16BE(at + 2);
        header = 8;
      } else if (length === 127) {
        if (left < 10) {
          this.need = 0;
          return at;
        }
        const high = buf.readUInt32BE(at + 2);
        // anything from 2^32 on is far past any maxPayload (and past what a number holds exactly from 2^53)
        if (high !== 0) throw new WsProtocolError(`a frame of ${high} * 2^32 bytes or more`, 1009);
        length = buf.readUInt32BE(at + 6);
        header = 14;
      }
      if (length > this.maxPayload || (opcode < OP_CLOSE && this.fragmentsBytes + length > this.maxPayload)) {
        throw new WsProtocolError(`a message over ${this.maxPayload} bytes`, 1009);
      }
      if (left < header + length) {
        this.need = header + length;
        return at;
      }
      const start = at + header;
      const payload = buf.subarray(start, start + length);
      if (length > 0) {
        maskScratch[0] = buf[start - 4]!;
        maskScratch[1] = buf[start - 3]!;
        maskScratch[2] = buf[start - 2]!;
        maskScratch[3] = buf[start - 1]!;
        unmask(payload, maskScratch);
      }
      at = start + length;
      this.frame(fin, opcode, payload);
      if (this.stopped) return buf.length;
    }
  }

  private frame(fin: boolean, opcode: number, payload: Buffer): void {
    switch (opcode) {
      case OP_BINARY:
      case OP_TEXT:
        if (fin) return this.message(payload, opcode === OP_TEXT);
        this.fragments = [];
        this.fragmentsBytes = 0;
        this.fragmentsText = opcode === OP_TEXT;
        return this.fragment(payload);
      case OP_CONTINUATION: {
        this.fragment(payload);
        if (!fin) return;
        const parts = this.fragments!;
        const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.fragmentsBytes);
        this.fragments = undefined;
        this.fragmentsBytes = 0;
        return this.message(data, this.fragmentsText);
      }
      case OP_PING:
        if (this.readyState === OPEN && this.socket.writableLength < PONG_BACKLOG_BYTES) this.writeFrame(OP_PONG, payload);
        this.onPing?.call(this, payload);
        return;
      case OP_PONG:
        this.onPong?.call(this, payload);
        return;
      default:
        return this.closeFrame(payload);
    }
  }

  /** One more fragment: copied out of its socket read, which it would otherwise keep in memory whole. */
  private fragment(payload: Buffer): void {
    if (payload.length === 0) return;
    if (this.fragments!.length >= MAX_FRAGMENTS) throw new WsProtocolError(`a message in more than ${MAX_FRAGMENTS} fragments`, 1009);
    this.fragments!.push(Buffer.from(payload));
    this.fragmentsBytes += payload.length;
  }

  private message(data: Buffer, text: boolean): void {
    if (text && !isUtf8(data)) throw new WsProtocolError('a text message that is not UTF-8', 1007);
    this.onMessage?.call(this, data, !text);
  }

  /** The far end's close frame: answered with the same code (the handshake), then the socket ends. */
  private closeFrame(payload: Buffer): void {
    let code = 1005;
    let reason = EMPTY;
    if (payload.length === 1) throw new WsProtocolError('a close frame with a 1-byte payload', 1002);
    if (payload.length >= 2) {
      code = payload.readUInt16BE(0);
      if (!isValidCloseCode(code)) throw new WsProtocolError(`invalid close code ${code}`, 1002);
      const text = payload.subarray(2);
      if (!isUtf8(text)) throw new WsProtocolError('a close reason that is not UTF-8', 1007);
      // a copy: a view would keep the whole socket read alive as long as this object
      if (text.length > 0) reason = Buffer.from(text);
    }
    this.closeReceived = true;
    this.closeCode = code;
    this.closeReason = reason;
    this.stopped = true;
    this.dropBuffers();
    // Through close(), as ws does: a Link that shadows it sends what it batched first.
    if (code === 1005) this.close();
    else this.close(code);
  }

  /** The far end broke the protocol: a close frame with the code, the socket ended, the error reported. */
  private fail(err: WsProtocolError): void {
    this.stopped = true;
    this.dropBuffers();
    this.close(err.closeCode);
    this.socket.end();
    this.armCloseTimer();
    this.onError?.call(this, err);
  }

  private dropBuffers(): void {
    this.head = undefined;
    this.cut = undefined;
    this.filled = 0;
    this.fragments = undefined;
    this.fragmentsBytes = 0;
  }

  private sendClose(code: number | undefined, reason: Buffer): void {
    if (this.closeSent) return;
    this.closeSent = true;
    if (code === undefined) return this.writeFrame(OP_CLOSE, EMPTY);
    const payload = Buffer.allocUnsafe(2 + reason.length);
    payload.writeUInt16BE(code, 0);
    reason.copy(payload, 2);
    this.writeFrame(OP_CLOSE, payload);
  }

  private control(opcode: number, data: Buffer | undefined): void {
    const payload = data ?? EMPTY;
    if (payload.length > 125) throw new RangeError('a control frame carries at most 125 bytes');
    if (this.readyState !== OPEN) return;
    this.writeFrame(opcode, payload);
  }

  private writeFrame(opcode: number, payload: Buffer): void {
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) return;
    const length = payload.length;
    const header = wsHeaderLength(length, false);
    if (length <= COPY_UP_TO) {
      const out = Buffer.allocUnsafe(header + length);
      writeWsHeader(out, length);
      out[0] = 0x80 | opcode;
      payload.copy(out, header);
      socket.write(out);
      return;
    }
    const head = Buffer.allocUnsafe(header);
    writeWsHeader(head, length);
    head[0] = 0x80 | opcode;
    socket.write(head);
    socket.write(payload);
  }

  private armCloseTimer(): void {
    if (this.closeTimer !== undefined) return;
    this.closeTimer = setTimeout(destroySocket, CLOSE_TIMEOUT_MS, this.socket);
    this.closeTimer.unref();
  }

  /** @internal The socket's far end sent FIN. */
  ended(): void {
    this.readyState = CLOSING;
    this.stopped = true;
    this.dropBuffers();
    this.socket.end();
    // a far end that sent FIN and reads nothing would otherwise hold the socket and what waits for it
    this.armCloseTimer();
  }

  /** @internal The socket closed. */
  closed(): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    clearTimeout(this.closeTimer);
    this.closeTimer = undefined;
    this.stopped = true;
    this.dropBuffers();
    this.onClose?.call(this, this.closeCode, this.closeReason);
  }
}

function destroySocket(socket: Socket): void {
  socket.destroy();
}

function onSocketData(this: Socket, chunk: Buffer): void {
  (this as TaggedSocket)[WS].receive(chunk);
}

function onSocketEnd(this: Socket): void {
  (this as TaggedSocket)[WS].ended();
}

function onSocketClose(this: Socket): void {
  (this as TaggedSocket)[WS].closed();
}

function onSocketError(this: Socket): void {
  // The 'close' that follows reports it (1006); ws does the same with a socket error.
  const ws = (this as TaggedSocket)[WS];
  if (ws.readyState !== CLOSED) ws.readyState = CLOSING;
  this.destroy();
}

function refuse(socket: Duplex, status: number, text: string, headers?: string): undefined {
  refuseUpgrade(socket, status, text, headers);
  return undefined;
}

/**
 * Answers an HTTP upgrade request (a server's 'upgrade' event) as a WebSocket server does: checks
 * the request (GET, `Upgrade: websocket`, a well-formed Sec-WebSocket-Key, version 13; else a
 * 4xx and the socket closed), writes the 101 with Sec-WebSocket-Accept and returns the open
 * socket. No extension and no subprotocol is accepted. Bytes that came with the request (`head`)
 * are parsed as the first frames once the caller has set its listeners (the next tick).
 */
export function acceptWebSocket(req: IncomingMessage, socket: Duplex, head: Buffer, maxPayload: number): ServerWebSocket | undefined {
  if (req.method !== 'GET') return refuse(socket, 405, 'Method Not Allowed');
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') return refuse(socket, 400, 'Bad Request');
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || !KEY.test(key)) return refuse(socket, 400, 'Bad Request');
  if (req.headers['sec-websocket-version'] !== '13') return refuse(socket, 426, 'Upgrade Required', 'Sec-WebSocket-Version: 13\r\n');
  if (!socket.readable || !socket.writable) {
    socket.destroy();
    return undefined;
  }
  const accept = createHash('sha1')
    .update(key + GUID)
    .digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  if (head.length > 0) socket.unshift(head);
  return new ServerWebSocket(socket as Socket, maxPayload);
}
