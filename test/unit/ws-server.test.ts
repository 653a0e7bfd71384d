import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { acceptWebSocket, CLOSE_TIMEOUT_MS, CLOSED, MAX_FRAGMENTS, PONG_BACKLOG_BYTES, WsProtocolError, type ServerWebSocket } from '../../core/protocol/ws-server.js';
import { createGuardedServer, refuseUpgrade } from '../../core/runtime/http-guard.js';

/**
 * The peer port's own WebSocket server end (core/protocol/ws-server.ts), on real loopback sockets:
 * against the ws library's client (what every SDK peer runs), and against raw bytes for what a
 * client may not send (RFC 6455 5.1-5.5, 7.4).
 */

const MAX = 64 * 1024;

interface Seen {
  messages: { data: Buffer; binary: boolean }[];
  pings: Buffer[];
  pongs: Buffer[];
  errors: Error[];
  closed: { code: number; reason: string } | undefined;
}

interface Harness {
  url: string;
  port: number;
  /** each accepted server end, with what it saw */
  accepted: { ws: ServerWebSocket; seen: Seen }[];
  close(): Promise<void>;
}

const open: Harness[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((h) => h.close()));
});

/** An HTTP server whose upgrades become ServerWebSockets; `echo` sends every message back. */
async function harness(opts: { echo?: boolean; maxPayload?: number } = {}): Promise<Harness> {
  const accepted: Harness['accepted'] = [];
  const sockets = new Set<Duplex>();
  const server: Server = createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const ws = acceptWebSocket(req, socket, head, opts.maxPayload ?? MAX);
    if (!ws) return;
    const seen: Seen = { messages: [], pings: [], pongs: [], errors: [], closed: undefined };
    ws.on('message', function (data, binary) {
      expect(this).toBe(ws);
      seen.messages.push({ data: Buffer.from(data), binary });
      if (opts.echo) ws.send(data);
    });
    ws.on('ping', (d) => seen.pings.push(Buffer.from(d)));
    ws.on('pong', (d) => seen.pongs.push(Buffer.from(d)));
    ws.on('error', (e) => seen.errors.push(e));
    ws.on('close', (code, reason) => (seen.closed = { code, reason: reason.toString() }));
    accepted.push({ ws, seen });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const h: Harness = {
    url: `ws://127.0.0.1:${port}/`,
    port,
    accepted,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  open.push(h);
  return h;
}

async function until(cond: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function client(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 4 * MAX });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** A client frame as raw bytes: masked unless told otherwise; `length` may lie about the payload. */
function frame(opcode: number, payload: Buffer, o: { fin?: boolean; mask?: boolean; rsv?: number; length?: number } = {}): Buffer {
  const fin = o.fin ?? true;
  const mask = o.mask ?? true;
  const len = o.length ?? payload.length;
  const head: number[] = [(fin ? 0x80 : 0) | ((o.rsv ?? 0) << 4) | opcode];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 0xff);
  else {
    head.push(m | 127);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(len));
    head.push(...b);
  }
  if (!mask) return Buffer.concat([Buffer.from(head), payload]);
  const key = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
  return Buffer.concat([Buffer.from(head), key, body]);
}

/** A raw TCP client that did the opening handshake itself and reads the server's frames. */
async function rawClient(h: Harness, request?: string): Promise<{ socket: Socket; response: string; frames: () => { opcode: number; payload: Buffer }[]; ended: Promise<void>; bytes: () => Buffer }> {
  const socket = connect(h.port, '127.0.0.1');
  let buf = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => (buf = Buffer.concat([buf, d])));
  const ended = new Promise<void>((r) => socket.on('close', () => r()));
  socket.on('error', () => undefined);
  await new Promise<void>((r) => socket.once('connect', () => r()));
  socket.write(request ?? `GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await until(() => buf.includes('\r\n\r\n'));
  const end = buf.indexOf('\r\n\r\n') + 4;
  const response = buf.subarray(0, end).toString();
  const rest = (): Buffer => buf.subarray(end);
  const frames = (): { opcode: number; payload: Buffer }[] => {
    const out: { opcode: number; payload: Buffer }[] = [];
    const b = rest();
    let at = 0;
    while (at + 2 <= b.length) {
      let len = b[at + 1]! & 0x7f;
      let hl = 2;
      if (len === 126) {
        len = b.readUInt16BE(at + 2);
        hl = 4;
      } else if (len === 127) {
        len = Number(b.readBigUInt64BE(at + 2));
        hl = 10;
      }
      if (at + hl + len > b.length) break;
      out.push({ opcode: b[at]! & 0x0f, payload: b.subarray(at + hl, at + hl + len) });
      at += hl + len;
    }
    return out;
  };
  return { socket, response, frames, ended, bytes: rest };
}

describe('ServerWebSocket against the ws client', () => {
  it('answers the opening handshake and carries binary messages of every length class both ways', async () => {
    const h = await harness({ echo: true });
    const c = await client(h.url);
    const got: Buffer[] = [];
    c.on('message', (d: Buffer) => got.push(d));
    const sizes = [0, 1, 125, 126, 65535, 65536, MAX];
    const sent = sizes.map((n) => randomBytes(n));
    for (const b of sent) c.send(b);
    await until(() => got.length === sent.length);
    expect(got.map((b) => b.toString('hex'))).toEqual(sent.map((b) => b.toString('hex')));
    expect(h.accepted[0]!.seen.messages.every((m) => m.binary)).toBe(true);
    c.close();
  });

  it('reassembles a fragmented message and tells text from binary', async () => {
    const h = await harness();
    const c = await client(h.url);
    c.send(Buffer.from('abc'), { fin: false });
    c.ping(Buffer.from('between')); // control frames may come between fragments
    c.send(Buffer.from('def'), { fin: false });
    c.send(Buffer.from('ghi'), { fin: true });
    c.send('héllo');
    await until(() => h.accepted[0]!.seen.messages.length === 2);
    const [a, b] = h.accepted[0]!.seen.messages;
    expect(a).toEqual({ data: Buffer.from('abcdefghi'), binary: true });
    expect(b).toEqual({ data: Buffer.from('héllo'), binary: false });
    expect(h.accepted[0]!.seen.pings.map(String)).toEqual(['between']);
    c.close();
  });

  it('answers pings with pongs and reports the pongs to its own pings', async () => {
    const h = await harness();
    const c = await client(h.url);
    const pongs: string[] = [];
    c.on('pong', (d: Buffer) => pongs.push(d.toString()));
    c.ping(Buffer.from('p1'));
    await until(() => pongs.length === 1);
    expect(pongs).toEqual(['p1']);
    const clientPings: string[] = [];
    c.on('ping', (d: Buffer) => clientPings.push(d.toString()));
    h.accepted[0]!.ws.ping(Buffer.from('s1'));
    await until(() => h.accepted[0]!.seen.pongs.length === 1);
    expect(clientPings).toEqual(['s1']);
    expect(h.accepted[0]!.seen.pongs.map(String)).toEqual(['s1']);
    expect(() => h.accepted[0]!.ws.ping(Buffer.alloc(126))).toThrow(RangeError);
    c.close();
  });

  it('completes a close the client starts, echoing its code, and reports code and reason', async () => {
    const h = await harness();
    const c = await client(h.url);
    const clientSaw = new Promise<number>((r) => c.on('close', (code) => r(code)));
    c.close(4321, 'done here');
    expect(await clientSaw).toBe(4321);
    await until(() => h.accepted[0]!.seen.closed !== undefined);
    expect(h.accepted[0]!.seen.closed).toEqual({ code: 4321, reason: 'done here' });
    expect(h.accepted[0]!.ws.readyState).toBe(CLOSED);
  });

  it('closes with its own code and reason, and stops sending once closing', async () => {
    const h = await harness();
    const c = await client(h.url);
    const got: Buffer[] = [];
    c.on('message', (d: Buffer) => got.push(d));
    const clientSaw = new Promise<{ code: number; reason: string }>((r) => c.on('close', (code, reason) => r({ code, reason: reason.toString() })));
    await until(() => h.accepted.length === 1);
    const s = h.accepted[0]!.ws;
    expect(() => s.close(1005)).toThrow(TypeError);
    expect(() => s.close(4000, 'x'.repeat(124))).toThrow(RangeError);
    s.send(Buffer.from('before'));
    s.close(4004, 'bye');
    s.send(Buffer.from('after')); // dropped: the close frame was the last one
    expect(await clientSaw).toEqual({ code: 4004, reason: 'bye' });
    expect(got.map(String)).toEqual(['before']);
    await until(() => h.accepted[0]!.seen.closed !== undefined);
    expect(h.accepted[0]!.seen.closed!.code).toBe(4004);
  });

  it('terminate() drops the connection at once (1006 on both ends)', async () => {
    const h = await harness();
    const c = await client(h.url);
    const clientSaw = new Promise<number>((r) => c.on('close', (code) => r(code)));
    await until(() => h.accepted.length === 1);
    h.accepted[0]!.ws.terminate();
    expect(await clientSaw).toBe(1006);
    await until(() => h.accepted[0]!.seen.closed !== undefined);
    expect(h.accepted[0]!.seen.closed!.code).toBe(1006);
  });

  it('takes one listener per event', async () => {
    const h = await harness();
    const c = await client(h.url);
    await until(() => h.accepted.length === 1);
    expect(() => h.accepted[0]!.ws.on('message', () => undefined)).toThrow(/one 'message' listener/);
    expect(() => (h.accepted[0]!.ws.on as (e: string, l: () => void) => void)('open', () => undefined)).toThrow(/no 'open' event/);
    c.close();
  });
});

describe('ServerWebSocket refuses what a client may not send', () => {
  it('answers a bad opening handshake with an HTTP error and no WebSocket', async () => {
    const h = await harness();
    const key = randomBytes(16).toString('base64');
    const cases: [string, RegExp][] = [
      [`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n`, /^HTTP\/1.1 400 /],
      [`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n`, /^HTTP\/1.1 400 /],
      [`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 8\r\n\r\n`, /^HTTP\/1.1 426 [^]*Sec-WebSocket-Version: 13/],
      [`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`, /^HTTP\/1.1 400 /],
      [`POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n`, /^HTTP\/1.1 405 /],
    ];
    for (const [request, expected] of cases) {
      const r = await rawClient(h, request);
      expect(r.response).toMatch(expected);
      await r.ended;
    }
    expect(h.accepted).toHaveLength(0);
  });

  it('survives a client that resets the connection while its handshake is refused', async () => {
    // Node takes its 'error' listener off an upgraded socket: an unhandled ECONNRESET there
    // would end the process (vitest fails the run on it). Both refusal paths: ours and the
    // guarded server's (404 for a wrong path, 429, 503).
    const refusedWithoutErrorListener: string[] = [];
    const guarded = createGuardedServer({
      onRequest: (_req, res) => res.end(),
      onUpgrade: (req, socket, head) => {
        if (req.url !== '/') refuseUpgrade(socket, 404, 'Not Found');
        else if (acceptWebSocket(req, socket, head, MAX)?.on('error', () => undefined)) return;
        if (socket.listenerCount('error') === 0) refusedWithoutErrorListener.push(req.url ?? '');
      },
    });
    await new Promise<void>((r) => guarded.listen(0, '127.0.0.1', r));
    const port = (guarded.address() as AddressInfo).port;
    try {
      for (let i = 0; i < 60; i++) {
        // a POST to our server end (405), a wrong path to the guarded server's (404), each with bytes after the request
        const request = i % 2 === 0 ? 'POST / HTTP/1.1' : 'GET /elsewhere HTTP/1.1';
        const c = connect(port, '127.0.0.1');
        c.on('error', () => undefined);
        await new Promise<void>((r) => c.once('connect', () => r()));
        c.write(`${request}\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n${'x'.repeat(1000)}`);
        await new Promise((r) => setTimeout(r, 1));
        c.resetAndDestroy();
      }
      await new Promise((r) => setTimeout(r, 200));
      // still serving
      const ok = await new Promise<string>((resolve) => {
        const c = connect(port, '127.0.0.1', () => c.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`));
        c.once('data', (d: Buffer) => {
          resolve(d.toString());
          c.destroy();
        });
      });
      expect(ok).toMatch(/^HTTP\/1.1 101 /);
      expect(refusedWithoutErrorListener).toEqual([]);
    } finally {
      guarded.closeAllConnections();
      await new Promise<void>((r) => guarded.close(() => r()));
    }
  });

  it('computes Sec-WebSocket-Accept as RFC 6455 4.2.2 does (its example key)', async () => {
    const h = await harness();
    const r = await rawClient(h, `GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    expect(r.response).toMatch(/^HTTP\/1.1 101 /);
    expect(r.response).toContain('Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n');
    r.socket.destroy();
  });

  const violations: [string, () => Buffer, number][] = [
    ['an unmasked frame', () => frame(2, Buffer.from('x'), { mask: false }), 1002],
    ['RSV bits without an extension', () => frame(2, Buffer.from('x'), { rsv: 4 }), 1002],
    ['an unknown data opcode', () => frame(3, Buffer.from('x')), 1002],
    ['an unknown control opcode', () => frame(0xb, Buffer.alloc(0)), 1002],
    ['a fragmented ping', () => frame(9, Buffer.from('x'), { fin: false }), 1002],
    ['a ping over 125 bytes', () => frame(9, Buffer.alloc(126)), 1002],
    ['a continuation with nothing to continue', () => frame(0, Buffer.from('x')), 1002],
    ['a new message inside a fragmented one', () => Buffer.concat([frame(2, Buffer.from('a'), { fin: false }), frame(2, Buffer.from('b'))]), 1002],
    ['a close frame with a 1-byte payload', () => frame(8, Buffer.from([3])), 1002],
    ['a close code that may not be sent (1005)', () => frame(8, Buffer.from([0x03, 0xed])), 1002],
    ['a close reason that is not UTF-8', () => frame(8, Buffer.from([0x03, 0xe8, 0xff, 0xfe])), 1007],
    ['a text message that is not UTF-8', () => frame(1, Buffer.from([0xc3, 0x28])), 1007],
    ['a frame over maxPayload (header only: refused before its bytes come)', () => frame(2, Buffer.alloc(0), { length: MAX + 1 }), 1009],
    ['a frame claiming 2^40 bytes', () => frame(2, Buffer.alloc(0), { length: 2 ** 40 }), 1009],
    ['fragments adding up past maxPayload', () => Buffer.concat([frame(2, Buffer.alloc(MAX / 2), { fin: false }), frame(0, Buffer.alloc(MAX / 2 + 1))]), 1009],
  ];
  for (const [what, bytes, code] of violations) {
    it(`closes with ${code} on ${what}, and reports it`, async () => {
      const h = await harness();
      const r = await rawClient(h);
      expect(r.response).toMatch(/^HTTP\/1.1 101 /);
      await until(() => h.accepted.length === 1);
      r.socket.write(bytes());
      await r.ended; // the server ended the connection (the client answers nothing)
      const closes = r.frames().filter((f) => f.opcode === 8);
      expect(closes).toHaveLength(1);
      expect(closes[0]!.payload.readUInt16BE(0)).toBe(code);
      const seen = h.accepted[0]!.seen;
      expect(seen.messages).toHaveLength(0);
      expect(seen.errors).toHaveLength(1);
      expect(seen.errors[0]).toBeInstanceOf(WsProtocolError);
      expect((seen.errors[0] as WsProtocolError).closeCode).toBe(code);
      await until(() => seen.closed !== undefined);
    });
  }

  it(`refuses a message in more than ${MAX_FRAGMENTS} fragments (1009)`, async () => {
    const h = await harness();
    const r = await rawClient(h);
    await until(() => h.accepted.length === 1);
    const parts = [frame(2, Buffer.from('a'), { fin: false })];
    for (let i = 0; i < MAX_FRAGMENTS; i++) parts.push(frame(0, Buffer.from('b'), { fin: false }));
    r.socket.write(Buffer.concat(parts));
    await r.ended;
    expect(r.frames().find((f) => f.opcode === 8)!.payload.readUInt16BE(0)).toBe(1009);
  });
});

describe('ServerWebSocket keeps its memory bounded', () => {
  it('stops answering pings while its pongs pile up unread (a far end that sends and never reads)', async () => {
    const h = await harness();
    const r = await rawClient(h);
    await until(() => h.accepted.length === 1);
    r.socket.pause(); // reads nothing from here on
    const ping = frame(9, Buffer.alloc(125, 1));
    const batch = Buffer.concat(Array.from({ length: 1000 }, () => ping));
    // 200,000 pings: their pongs (25 MB) are more than the loopback socket buffers hold
    for (let i = 0; i < 200; i++) if (!r.socket.write(batch)) await new Promise((resolve) => r.socket.once('drain', resolve));
    const s = h.accepted[0]!;
    await until(() => s.seen.pings.length === 200_000, 20_000);
    expect(s.ws.bufferedAmount).toBeLessThan(PONG_BACKLOG_BYTES + 200);
    expect(s.seen.errors).toEqual([]);
    r.socket.destroy();
  });
});

describe('ServerWebSocket lets go of a far end that has gone', () => {
  it(`destroys the socket ${CLOSE_TIMEOUT_MS} ms after the far end sent FIN without reading what waits for it`, async () => {
    const h = await harness();
    const r = await rawClient(h);
    await until(() => h.accepted.length === 1);
    r.socket.pause();
    const s = h.accepted[0]!;
    const big = Buffer.alloc(64 * 1024, 7);
    for (let i = 0; i < 300; i++) s.ws.send(big); // ~19 MB: more than the loopback buffers hold
    expect(s.ws.bufferedAmount).toBeGreaterThan(0);
    r.socket.end(); // FIN, and still reads nothing
    const t0 = Date.now();
    await until(() => s.seen.closed !== undefined, CLOSE_TIMEOUT_MS + 3_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(CLOSE_TIMEOUT_MS - 500);
    expect(s.ws.readyState).toBe(CLOSED);
    r.socket.destroy();
  }, 15_000);
});

describe('ServerWebSocket parses however the socket cuts the bytes', () => {
  /** A ServerWebSocket on one end of a real loopback connection, fed by receive() directly. */
  async function pair(): Promise<{ ws: ServerWebSocket; seen: Seen; done: () => void }> {
    const h = await harness({ maxPayload: 256 * 1024 }); // room for a frame with a 64-bit length
    const r = await rawClient(h);
    await until(() => h.accepted.length === 1);
    return { ws: h.accepted[0]!.ws, seen: h.accepted[0]!.seen, done: () => r.socket.destroy() };
  }

  it('delivers the same messages for every split point of a stream of frames', async () => {
    const payloads = [Buffer.alloc(0), randomBytes(5), randomBytes(125), randomBytes(300), randomBytes(70_000)];
    const stream = Buffer.concat([
      ...payloads.map((p) => frame(2, p)),
      frame(9, Buffer.from('ping')),
      frame(2, Buffer.from('x'), { fin: false }),
      frame(0, Buffer.from('y'), { fin: false }),
      frame(0, Buffer.from('z')),
    ]);
    const expected = [...payloads.map((p) => p.toString('hex')), Buffer.from('xyz').toString('hex')];
    const splits = [1, 2, 3, 7, 13, 126, 4096, 65536, stream.length];
    for (const size of splits) {
      const { ws, seen, done } = await pair();
      // frames are unmasked in place: each cut gets its own copy of the bytes
      const copy = Buffer.from(stream);
      for (let at = 0; at < copy.length; at += size) ws.receive(copy.subarray(at, at + size));
      expect(seen.messages.map((m) => m.data.toString('hex')), `cut every ${size} bytes`).toEqual(expected);
      expect(seen.pings.map(String)).toEqual(['ping']);
      expect(seen.errors).toEqual([]);
      done();
    }
  });

  it('survives random bytes: every failure is a protocol error it answers, never a throw', async () => {
    let closedWith = 0;
    for (let i = 0; i < 200; i++) {
      const { ws, seen, done } = await pair();
      const junk = randomBytes(1 + (i % 64) * 7);
      if (i % 2 === 0) junk[1]! |= 0x80; // half of them masked, so they get past the first check
      expect(() => {
        for (let at = 0; at < junk.length; at += 1 + (i % 5)) ws.receive(junk.subarray(at, at + 1 + (i % 5)));
      }).not.toThrow();
      for (const e of seen.errors) expect(e).toBeInstanceOf(WsProtocolError);
      if (seen.errors.length > 0) closedWith++;
      done();
    }
    expect(closedWith).toBeGreaterThan(100);
  });
});
