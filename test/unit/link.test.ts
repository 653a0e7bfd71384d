import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { decodeControl, decodeFrame, encodeControl, encodeMsg, type Frame } from '../../core/protocol/codec.js';
import { ProtocolError } from '../../core/protocol/errors.js';
import { FrameType } from '../../core/protocol/frames.js';
import { MAX_FRAME_BYTES } from '../../core/protocol/limits.js';
import { adaptiveTimers, checkEveryMs, clip, KeepaliveSweep, Link, type CloseInfo } from '../../core/protocol/link.js';
import { Status } from '../../core/protocol/status.js';
import { silentLogger } from '../../core/runtime/logger.js';

interface TestServer {
  url: string;
  close(): Promise<void>;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A ws server on 127.0.0.1, port 0, configured like the relay and peer port; `onConnection` gets each socket. */
async function startServer(onConnection: (ws: WebSocket, socket: Socket) => void): Promise<TestServer> {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: true });
  const server: Server = createServer();
  server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, req.socket)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const s: TestServer = {
    url: `ws://127.0.0.1:${port}/v1`,
    close: async () => {
      for (const ws of wss.clients) ws.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  cleanups.push(() => s.close());
  return s;
}

async function openClient(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  cleanups.push(() => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return ws;
}

/** Blocks this whole process (both ends of a test live in it), as a long GC or a starved CPU would. */
function stallFor(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy: no timer, no I/O
  }
}

/** Everything the far side sends until it closes. */
function collect(ws: WebSocket): Promise<{ messages: Buffer[]; code: number; reason: string }> {
  const messages: Buffer[] = [];
  ws.on('message', (data: Buffer) => messages.push(data));
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ messages, code, reason: reason.toString() })));
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** A server end whose handler records frames and may throw. */
function serverLink(onFrame: (f: Frame) => void = () => undefined): { ready: Promise<Link>; closed: Promise<CloseInfo>; accept: (ws: WebSocket, socket: Socket) => void } {
  let setLink!: (l: Link) => void;
  let setClosed!: (i: CloseInfo) => void;
  const ready = new Promise<Link>((r) => (setLink = r));
  const closed = new Promise<CloseInfo>((r) => (setClosed = r));
  return {
    ready,
    closed,
    accept: (ws, socket) => {
      const link = new Link(ws, socket, { role: 'server', logger: silentLogger, label: 'unit-server' });
      link.setHandler({ onFrame, onClose: setClosed });
      setLink(link);
    },
  };
}

describe('link: faults become an ERROR frame and a 4000 + status close', () => {
  it('a text ws message: ERROR MALFORMED_FRAME, then close 4100', async () => {
    const end = serverLink();
    const server = await startServer(end.accept);
    const client = await openClient(server.url);
    const result = collect(client);
    client.send('hello as text');
    const { messages, code } = await withTimeout(result, 5_000, 'close');
    expect(code).toBe(4100);
    expect(messages).toHaveLength(1);
    const frame = decodeFrame(messages[0]!);
    expect(frame.type).toBe(FrameType.ERROR);
    expect(decodeControl(frame, FrameType.ERROR)).toEqual({ code: Status.MALFORMED_FRAME, reason: 'text ws messages are not part of the protocol' });
    const info = await withTimeout(end.closed, 5_000, 'server close');
    expect(info).toMatchObject({ code: 4100, status: Status.MALFORMED_FRAME, local: true });
  });

  it('an unknown frame type: ERROR UNKNOWN_FRAME_TYPE, then close 4101', async () => {
    const frames: Frame[] = [];
    const end = serverLink((f) => void frames.push(f));
    const server = await startServer(end.accept);
    const client = await openClient(server.url);
    const result = collect(client);
    client.send(Buffer.from('7f0000000000', 'hex'));
    const { messages, code, reason } = await withTimeout(result, 5_000, 'close');
    expect(code).toBe(4101);
    expect(reason).toMatch(/unknown frame type/);
    const err = decodeControl(decodeFrame(messages[0]!), FrameType.ERROR);
    expect(err.code).toBe(Status.UNKNOWN_FRAME_TYPE);
    expect(frames).toHaveLength(0);
  });

  it('hands well-formed frames to the handler; a ProtocolError it throws closes with that code', async () => {
    const frames: Frame[] = [];
    const end = serverLink((f) => {
      frames.push(f);
      if (f.type === FrameType.GOAWAY) throw new ProtocolError(Status.PROTOCOL_VIOLATION, 'GOAWAY is for servers to send');
    });
    const server = await startServer(end.accept);
    const client = await openClient(server.url);
    const result = collect(client);
    client.send(encodeControl(FrameType.REGISTER, {}));
    client.send(encodeControl(FrameType.GOAWAY, { reason: 'bye' }));
    const { messages, code } = await withTimeout(result, 5_000, 'close');
    expect(frames.map((f) => f.type)).toEqual([FrameType.REGISTER, FrameType.GOAWAY]);
    expect(code).toBe(4106);
    expect(decodeControl(decodeFrame(messages[0]!), FrameType.ERROR).code).toBe(Status.PROTOCOL_VIOLATION);
  });

  it('any other exception from the handler closes with INTERNAL (4199) and hides the detail', async () => {
    const end = serverLink(() => {
      throw new Error('secret stack detail');
    });
    const server = await startServer(end.accept);
    const client = await openClient(server.url);
    const result = collect(client);
    client.send(encodeControl(FrameType.REGISTER, {}));
    const { messages, code, reason } = await withTimeout(result, 5_000, 'close');
    expect(code).toBe(4199);
    expect(reason).not.toContain('secret');
    expect(decodeControl(decodeFrame(messages[0]!), FrameType.ERROR)).toEqual({ code: Status.INTERNAL, reason: 'internal error' });
  });
});

describe('link: keepalive', () => {
  const PING = 200;
  const PONG = 200;
  const TICK = Math.min(PING, PONG) / 2;
  const SLACK = 500;

  function clientLink(ws: WebSocket): { link: Link; closed: Promise<CloseInfo>; createdAt: number } {
    const createdAt = Date.now();
    const link = new Link(ws, undefined, { role: 'client', logger: silentLogger, label: 'unit-client', pingIntervalMs: PING, pongTimeoutMs: PONG });
    const closed = new Promise<CloseInfo>((resolve) => link.setHandler({ onFrame: () => undefined, onClose: resolve }));
    return { link, closed, createdAt };
  }

  it('a client notices a server that stopped answering within pingInterval + pongTimeout (+ ticks)', async () => {
    const server = await startServer((_ws, socket) => socket.pause()); // reads nothing, so answers no ping
    const client = clientLink(await openClient(server.url));
    const info = await withTimeout(client.closed, 5_000, 'dead link detection');
    const elapsed = Date.now() - client.createdAt;
    expect(info.local).toBe(true);
    expect(info.code).toBe(1006); // terminated, no close handshake
    expect(elapsed).toBeGreaterThanOrEqual(PING + PONG);
    expect(elapsed).toBeLessThanOrEqual(PING + PONG + 2 * TICK + SLACK);
  });

  it('a client whose server answers pongs stays up and measures the round trip', async () => {
    const server = await startServer(() => undefined); // ws answers pings by itself
    const client = clientLink(await openClient(server.url));
    let closed = false;
    void client.closed.then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 4 * (PING + PONG)));
    expect(closed).toBe(false);
    expect(client.link.isOpen).toBe(true);
    expect(client.link.stats.rttMs).toBeTypeOf('number');
    expect(client.link.stats.rttMs).toBeLessThan(PONG);
  });

  it('a client whose own process stalls past the pong deadline keeps a link whose pong waits unread (TICK_LATE_MS)', async () => {
    // The server's ws answers the ping, then this process stalls: when it runs again, timers
    // come before the poll phase that would read the pong. A tick that came late spares the link.
    let stalls = 0;
    const server = await startServer((ws) => ws.on('ping', () => void (stalls++ < 2 && stallFor(3 * (PING + PONG)))));
    const client = clientLink(await openClient(server.url));
    let closed = false;
    void client.closed.then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 4 * (PING + PONG) + 6 * (PING + PONG)));
    expect(stalls).toBeGreaterThanOrEqual(2);
    expect(closed).toBe(false);
    expect(client.link.isOpen).toBe(true);
  });

  it('a stalled process still drops a dead server, one tick later at most', async () => {
    const server = await startServer((_ws, socket) => {
      socket.pause(); // reads nothing, so answers no ping
      // the process stalls once the ping is overdue
      setTimeout(() => stallFor(PING + PONG), PING + PONG / 2);
    });
    const client = clientLink(await openClient(server.url));
    const info = await withTimeout(client.closed, 5_000, 'dead link detection');
    const elapsed = Date.now() - client.createdAt;
    expect(info.local).toBe(true);
    expect(elapsed).toBeLessThanOrEqual(PING + PONG + (PING + PONG) + 3 * TICK + SLACK);
  });

  it('a KeepaliveSweep that comes late spares a server link once, and drops a silent client at the next sweep', async () => {
    const SERVER_PING = 100;
    const SERVER_PONG = 100;
    const sweep = new KeepaliveSweep(checkEveryMs(SERVER_PING, SERVER_PONG));
    cleanups.push(() => {
      for (const l of links) sweep.delete(l);
    });
    const links: Link[] = [];
    let setClosed!: (i: CloseInfo) => void;
    const closed = new Promise<CloseInfo>((r) => (setClosed = r));
    const server = await startServer((ws, socket) => {
      const link = new Link(ws, socket, { role: 'server', logger: silentLogger, label: 'unit-server', pingIntervalMs: SERVER_PING, pongTimeoutMs: SERVER_PONG, sweep });
      link.setHandler({ onFrame: () => undefined, onClose: setClosed });
      links.push(link);
    });
    // A client that pings as it should (every SERVER_PING), but this process stalls past the
    // server's silence limit: its pings wait unread when the sweep runs late.
    const ws = await openClient(server.url);
    const pinger = setInterval(() => ws.ping(), SERVER_PING);
    cleanups.push(() => clearInterval(pinger));
    await new Promise((r) => setTimeout(r, 150));
    stallFor(2 * SERVER_PING + SERVER_PONG + 200);
    await new Promise((r) => setTimeout(r, 400));
    expect(links[0]!.isOpen).toBe(true);
    // A client that falls silent is still dropped.
    clearInterval(pinger);
    const t0 = Date.now();
    await withTimeout(closed, 5_000, 'silent client drop');
    expect(Date.now() - t0).toBeLessThanOrEqual(2 * SERVER_PING + SERVER_PONG + 2 * (SERVER_PING / 2) + SLACK);
  });

  it('a server drops a client that stays silent for 2 * pingInterval + pongTimeout', async () => {
    const SERVER_PING = 100;
    const SERVER_PONG = 100;
    let createdAt = 0;
    let setClosed!: (i: CloseInfo) => void;
    const closed = new Promise<CloseInfo>((r) => (setClosed = r));
    const server = await startServer((ws, socket) => {
      createdAt = Date.now();
      const link = new Link(ws, socket, { role: 'server', logger: silentLogger, label: 'unit-server', pingIntervalMs: SERVER_PING, pongTimeoutMs: SERVER_PONG });
      link.setHandler({ onFrame: () => undefined, onClose: setClosed });
    });
    await openClient(server.url); // a bare ws client that never sends anything
    const info = await withTimeout(closed, 5_000, 'silent client drop');
    const elapsed = Date.now() - createdAt;
    expect(info.local).toBe(true);
    expect(elapsed).toBeGreaterThan(2 * SERVER_PING + SERVER_PONG);
    expect(elapsed).toBeLessThanOrEqual(2 * SERVER_PING + SERVER_PONG + 2 * (SERVER_PING / 2) + SLACK);
  });

  it('server links on one KeepaliveSweep: the silent one is dropped by the shared timer, a talking one stays, and the timer stops with the last link', async () => {
    const SERVER_PING = 100;
    const SERVER_PONG = 100;
    const sweep = new KeepaliveSweep(checkEveryMs(SERVER_PING, SERVER_PONG));
    const links: Link[] = [];
    const closes: Promise<CloseInfo>[] = [];
    const server = await startServer((ws, socket) => {
      const link = new Link(ws, socket, { role: 'server', logger: silentLogger, label: 'unit-server', pingIntervalMs: SERVER_PING, pongTimeoutMs: SERVER_PONG, sweep });
      links.push(link);
      closes.push(new Promise<CloseInfo>((r) => link.setHandler({ onFrame: () => undefined, onClose: r })));
    });
    await openClient(server.url); // silent
    const talker = await openClient(server.url);
    const chatter = setInterval(() => talker.ping(), SERVER_PING / 2);
    cleanups.push(() => clearInterval(chatter));
    for (let i = 0; i < 100 && links.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    expect(sweep.size).toBe(2);
    expect(sweep.running).toBe(true);
    const info = await withTimeout(closes[0]!, 5_000, 'silent client drop');
    expect(info.local).toBe(true);
    await new Promise((r) => setTimeout(r, 2 * SERVER_PING + SERVER_PONG + 200));
    expect(links[1]!.isOpen).toBe(true);
    expect(sweep.size).toBe(1);
    clearInterval(chatter);
    links[1]!.close();
    await withTimeout(closes[1]!, 5_000, 'second close');
    expect(sweep.size).toBe(0);
    expect(sweep.running).toBe(false);
  });
});

describe('link: heartbeat keepalive (PROTOCOL.md 12.2)', () => {
  // Scaled down: P = 100 ms, so a heartbeat every 250 ms, a late one after 800 ms, the client's own ping after 2 s of not sending.
  const P = 100;
  const PONG = 100;
  const T = adaptiveTimers(P, PONG, true);
  const SLACK = 500;

  /** A server Link with the heartbeat on, and what its ws hears. */
  function heartbeatServer(): { ready: Promise<Link>; closed: Promise<CloseInfo>; pingsHeard: () => number; accept: (ws: WebSocket, socket: Socket) => void } {
    let setLink!: (l: Link) => void;
    let setClosed!: (i: CloseInfo) => void;
    let pings = 0;
    const ready = new Promise<Link>((r) => (setLink = r));
    const closed = new Promise<CloseInfo>((r) => (setClosed = r));
    return {
      ready,
      closed,
      pingsHeard: () => pings,
      accept: (ws, socket) => {
        ws.on('ping', () => pings++);
        const link = new Link(ws, socket, { role: 'server', logger: silentLogger, label: 'unit-server', pingIntervalMs: P, pongTimeoutMs: PONG });
        link.setHandler({ onFrame: () => undefined, onClose: setClosed });
        link.adaptiveKeepalive(undefined, true);
        setLink(link);
      },
    };
  }

  /** A client Link with the heartbeat on, counting the empty pongs (heartbeats) it gets. */
  function heartbeatClient(ws: WebSocket): { link: Link; closed: Promise<CloseInfo>; beats: () => number; at: number } {
    let beats = 0;
    ws.on('pong', (d: Buffer) => void (d.length === 0 && beats++));
    const link = new Link(ws, undefined, { role: 'client', logger: silentLogger, label: 'unit-client', pingIntervalMs: P, pongTimeoutMs: PONG });
    const closed = new Promise<CloseInfo>((resolve) => link.setHandler({ onFrame: () => undefined, onClose: resolve }));
    link.adaptiveKeepalive(P, true);
    return { link, closed, beats: () => beats, at: Date.now() };
  }

  it('keeps within 30 s at the defaults: 29.5 s idle, 4.5 s with ACKs waiting; the server beats before the client counts it late', () => {
    const d = adaptiveTimers(undefined, undefined, true);
    expect(d.beatMs).toBe(25_000);
    expect(d.noticeIdleClientMs).toBeLessThanOrEqual(30_000);
    expect(d.noticeBusyMs).toBeLessThanOrEqual(5_000);
    expect(d.lateMs).toBeGreaterThanOrEqual(d.beatMs + d.serverIdleTickMs);
    expect(d.idlePingMs + d.idleTickMs).toBeLessThan(d.silenceLimitMs - 2_000);
  });

  it('an idle pair: the server sends heartbeats, the client sends no ping until it has sent nothing for 20 P, and both stay up', async () => {
    const s = heartbeatServer();
    const server = await startServer(s.accept);
    const c = heartbeatClient(await openClient(server.url));
    const sLink = await withTimeout(s.ready, 2_000, 'server link');
    await new Promise((r) => setTimeout(r, T.idlePingMs - 400));
    expect(s.pingsHeard()).toBe(1); // the one ping at the switch
    // one heartbeat every beatMs (+ up to a server tick), none answered
    expect(c.beats()).toBeGreaterThanOrEqual(Math.floor((T.idlePingMs - 400) / (T.beatMs + T.serverIdleTickMs)) - 1);
    expect(c.beats()).toBeLessThanOrEqual(Math.ceil((T.idlePingMs - 400) / T.beatMs) + 1);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(s.pingsHeard()).toBe(2); // the client's own ping, so the server hears it
    expect(c.link.isOpen && sLink.isOpen).toBe(true);
    expect(c.link.keepaliveMode).toBe('heartbeat');
    expect(c.link.stats.rttMs).toBeLessThan(PONG);
  });

  it('the client notices a server that went silent (no heartbeat, no pong) within lateMs + the short pong timeout, not before lateMs', async () => {
    let pause: (() => void) | undefined;
    const s = heartbeatServer();
    const server = await startServer((ws, socket) => {
      s.accept(ws, socket);
      pause = () => {
        // frozen: reads nothing (no pong), writes nothing (no heartbeat)
        socket.pause();
        (socket as unknown as { write: () => boolean }).write = () => true;
      };
    });
    const c = heartbeatClient(await openClient(server.url));
    await withTimeout(s.ready, 2_000, 'server link');
    await new Promise((r) => setTimeout(r, 2 * T.beatMs));
    expect(c.beats()).toBeGreaterThan(0);
    pause!();
    const t0 = Date.now();
    const info = await withTimeout(c.closed, 5_000, 'dead link detection');
    const elapsed = Date.now() - t0;
    expect(info.local).toBe(true);
    expect(info.code).toBe(1006);
    expect(elapsed).toBeGreaterThanOrEqual(T.lateMs - T.beatMs - T.serverIdleTickMs);
    expect(elapsed).toBeLessThanOrEqual(T.noticeIdleClientMs + SLACK);
  });

  it('with a MSG waiting for its ACK the client pings after busyPingMs of silence and gives up busyPongTimeoutMs later', async () => {
    const server = await startServer((_ws, socket) => socket.pause()); // reads nothing: no pong, no heartbeat
    const c = heartbeatClient(await openClient(server.url));
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    c.link.send(encodeMsg({ id: 'm1', to: 'sink@hq', from: 'src@relay', payload: Buffer.from('x') }));
    await withTimeout(c.closed, 5_000, 'dead link detection');
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeLessThanOrEqual(T.noticeBusyMs + SLACK);
    expect(elapsed).toBeLessThan(T.lateMs); // faster than idle
  });

  it('a client whose process stalls while its ping is answered keeps the link: a late tick spares it', async () => {
    // A MSG waits for its ACK, so the client pings after busyPingMs of silence; the server's ws
    // answers that ping, then this process stalls past the ping's wait: the pong waits unread
    // when the client's tick runs.
    let pings = 0;
    const server = await startServer((ws) => ws.on('ping', () => void (++pings === 2 && stallFor(4 * (P + PONG)))));
    const c = heartbeatClient(await openClient(server.url));
    let closed = false;
    void c.closed.then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 50));
    c.link.send(encodeMsg({ id: 'm1', to: 'sink@hq', from: 'src@relay', payload: Buffer.from('x') }));
    await new Promise((r) => setTimeout(r, T.busyPingMs + 4 * (P + PONG) + 300));
    expect(pings).toBeGreaterThanOrEqual(2);
    expect(closed).toBe(false);
    expect(c.link.isOpen).toBe(true);
  });

  it('the server drops a client that sends nothing only after silenceLimitMs (20 P + pong timeout + slack), heartbeating meanwhile', async () => {
    const s = heartbeatServer();
    const server = await startServer(s.accept);
    const bare = await openClient(server.url); // never pings; heartbeats need no answer
    let beats = 0;
    bare.on('pong', () => beats++);
    const t0 = Date.now();
    const info = await withTimeout(s.closed, T.noticeIdleServerMs + 3_000, 'silent client drop');
    const elapsed = Date.now() - t0;
    expect(info.local).toBe(true);
    expect(elapsed).toBeGreaterThan(T.silenceLimitMs - 100);
    expect(elapsed).toBeLessThanOrEqual(T.noticeIdleServerMs + SLACK);
    expect(beats).toBeGreaterThanOrEqual(Math.floor(T.silenceLimitMs / (T.beatMs + T.serverIdleTickMs)) - 1);
  }, 15_000);
});

describe('link: labels', () => {
  it('server links sharing one options object (labelRemote) each name their own far end, also once closed', async () => {
    const options = { role: 'server' as const, logger: silentLogger, label: 'peer-port<-', labelRemote: true };
    const links: Link[] = [];
    const server = await startServer((ws, socket) => {
      // As the peer port does at the upgrade: the address is read once, so the socket keeps it.
      expect(socket.remoteAddress).toBe('127.0.0.1');
      links.push(new Link(ws, socket, options));
    });
    const a = await openClient(server.url);
    const b = await openClient(server.url);
    await withTimeout(
      new Promise<void>((resolve) => {
        const check = (): unknown => (links.length === 2 ? resolve() : setTimeout(check, 5));
        check();
      }),
      5_000,
      'two server links',
    );
    const ports = [a, b].map((ws) => ((ws as unknown as { _socket: Socket })._socket.localPort));
    expect(links.map((l) => l.label).sort()).toEqual(ports.map((p) => `peer-port<-127.0.0.1:${p}`).sort());
    const closed = links.map((l) => new Promise<void>((resolve) => l.setHandler({ onFrame: () => undefined, onClose: () => resolve() })));
    a.terminate();
    b.terminate();
    await withTimeout(Promise.all(closed), 5_000, 'both links closed');
    expect(links.map((l) => l.label).sort()).toEqual(ports.map((p) => `peer-port<-127.0.0.1:${p}`).sort());
  });
});

describe('clip: a close reason cut to 123 bytes of UTF-8', () => {
  it('keeps a short reason, cuts a long one at a character boundary, never splitting a surrogate pair', () => {
    expect(clip('bad frame')).toBe('bad frame');
    const ascii = clip('x'.repeat(500));
    expect(ascii).toBe('x'.repeat(123));
    const euros = clip('€'.repeat(100)); // 3 bytes each
    expect(euros).toBe('€'.repeat(41));
    const mixed = clip('a' + '😀'.repeat(60)); // 4 bytes each, two UTF-16 units
    expect(Buffer.byteLength(mixed)).toBeLessThanOrEqual(123);
    expect(mixed).toBe('a' + '😀'.repeat(30));
    expect(Buffer.from(mixed, 'utf8').toString('utf8')).toBe(mixed);
  });

  it('takes a reason of any length the far end can make (a schema error quoting a 1 MiB key) in one pass', () => {
    // Cutting a character at a time from the whole string took 0.7 s at 64 KiB and grows with
    // the square: at 1 MiB this would outlast the test's time limit many times over.
    const reason = `HELLO: ${'€' + 'k'.repeat(1024 * 1024)} is not a known field`;
    const r = clip(reason);
    expect(Buffer.byteLength(r)).toBeLessThanOrEqual(123);
    expect(reason.startsWith(r)).toBe(true);
  });
});
