import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { decodeFrame, encodeAck, encodeBatch, encodeControl, encodeMsg, HEADER_BYTES, splitBatch, type Frame, type FrameFill } from '../../core/protocol/codec.js';
import { ProtocolError } from '../../core/protocol/errors.js';
import { FrameType } from '../../core/protocol/frames.js';
import { BATCH_FRAME_MAX_BYTES, BATCH_MAX_BYTES, MAX_FRAME_BYTES } from '../../core/protocol/limits.js';
import { frameBufferCounts, Link, type CloseInfo } from '../../core/protocol/link.js';
import { Status } from '../../core/protocol/status.js';
import { silentLogger } from '../../core/runtime/logger.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const msg = (i: number, size = 100): Buffer => encodeMsg({ id: `m${i}`, to: 'sink@hq', from: 'src@relay', payload: Buffer.alloc(size, i & 0xff) });

function batchOf(frames: Buffer[]): Buffer {
  return encodeBatch(frames, frames.reduce((n, f) => n + f.length, 0));
}

function codeOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err: unknown) {
    if (err instanceof ProtocolError) return err.code;
    throw err;
  }
  return undefined;
}

describe('BATCH codec', () => {
  it('carries whole frames in order, unchanged, as views into the batch', () => {
    const frames = [msg(1), encodeAck({ id: 'm0', to: 'src@relay', from: 'sink@hq', status: Status.OK, reason: '' }), encodeControl(FrameType.PEERS, { op: 'add', names: ['a'] })];
    const batch = decodeFrame(batchOf(frames));
    expect(batch.type).toBe(FrameType.BATCH);
    const out = splitBatch(batch);
    expect(out.map((b) => b.toString('hex'))).toEqual(frames.map((f) => f.toString('hex')));
    expect(out[0]!.buffer).toBe(batch.raw.buffer);
  });

  it('refuses an entry that runs past the end, one shorter than a frame header, a cut length, an empty batch, a batch inside a batch, and an entry of an unknown frame type', () => {
    const good = batchOf([msg(1), msg(2)]);
    expect(codeOf(() => splitBatch(decodeFrame(good.subarray(0, good.length - 1))))).toBe(Status.MALFORMED_FRAME);
    const short = Buffer.from(good);
    short.writeUInt32BE(HEADER_BYTES - 1, HEADER_BYTES);
    expect(codeOf(() => splitBatch(decodeFrame(short)))).toBe(Status.MALFORMED_FRAME);
    expect(codeOf(() => splitBatch(decodeFrame(Buffer.concat([good, Buffer.from([0, 0])]))))).toBe(Status.MALFORMED_FRAME);
    expect(codeOf(() => splitBatch(decodeFrame(batchOf([]))))).toBe(Status.MALFORMED_FRAME);
    expect(codeOf(() => splitBatch(decodeFrame(batchOf([msg(1), batchOf([msg(2), msg(3)])]))))).toBe(Status.PROTOCOL_VIOLATION);
    expect(codeOf(() => splitBatch(decodeFrame(batchOf([msg(1), Buffer.from([0xee, 0, 0, 0, 0, 0])]))))).toBe(Status.UNKNOWN_FRAME_TYPE);
  });
});

interface End {
  readonly link: Link;
  readonly ws: WebSocket;
  /** frames its handler got */
  readonly frames: Frame[];
  /** ws messages its ws got, before the Link unpacks them */
  readonly wsMessages: Buffer[];
  closed: CloseInfo | undefined;
}

/** A server Link and a client Link on one real loopback ws connection, each recording what it gets. */
async function linkPair(): Promise<{ server: End; client: End; clientWs: WebSocket }> {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
  const server: Server = createServer();
  const end = (ws: WebSocket, socket: Socket, role: 'server' | 'client'): End => {
    const e: End = { link: new Link(ws, socket, { role, logger: silentLogger, label: `batch-${role}` }), ws, frames: [], wsMessages: [], closed: undefined };
    ws.on('message', (d: Buffer) => e.wsMessages.push(d));
    e.link.setHandler({ onFrame: (f) => void e.frames.push(f), onClose: (i) => (e.closed = i) });
    return e;
  };
  const accepted = new Promise<End>((resolve) => {
    server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => resolve(end(ws, req.socket, 'server'))));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const clientWs = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, { perMessageDeflate: false, maxPayload: MAX_FRAME_BYTES });
  clientWs.on('error', () => undefined);
  const upgraded = new Promise<Socket>((resolve) => clientWs.once('upgrade', (res) => resolve(res.socket as Socket)));
  const opened = new Promise<void>((resolve) => clientWs.once('open', () => resolve()));
  cleanups.push(async () => {
    clientWs.terminate();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  const [serverEnd, socket] = await Promise.all([accepted, upgraded, opened]);
  return { server: serverEnd, client: end(clientWs, socket, 'client'), clientWs };
}

/** Runs each function in its own callback, all in one loop turn (see link-flush.test.ts). */
function inSeparateCallbacks(fns: (() => void)[]): Promise<void> {
  return new Promise((resolve) => {
    for (const fn of fns) setImmediate(fn);
    setImmediate(resolve);
  });
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > 3_000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const hex = (frames: readonly { raw: Buffer }[] | readonly Buffer[]): string[] => frames.map((f) => (Buffer.isBuffer(f) ? f : f.raw).toString('hex'));

describe('Link batching (BATCH, PROTOCOL.md 3.3)', () => {
  for (const sender of ['server', 'client'] as const) {
    it(`sends the frames of one loop turn as one ws message once batching is on (${sender} end), and the far Link hands them on one by one in order`, async () => {
      const pair = await linkPair();
      const [from, to] = sender === 'server' ? [pair.server, pair.client] : [pair.client, pair.server];
      from.link.enableBatching();
      expect(from.link.batchingOn).toBe(true);
      const frames = Array.from({ length: 20 }, (_, i) => msg(i));
      await inSeparateCallbacks(frames.map((f) => () => void from.link.send(f)));
      await until(() => to.frames.length === 20, 'the 20 frames');
      expect(to.wsMessages).toHaveLength(1);
      expect(to.wsMessages[0]![0]).toBe(FrameType.BATCH);
      expect(hex(to.frames)).toEqual(hex(frames));
      expect(to.frames.every((f) => f.type === FrameType.MSG)).toBe(true);
      expect(from.link.stats).toMatchObject({ framesOut: 20, batchesOut: 1 });
      expect(to.link.stats).toMatchObject({ framesIn: 20, batchesIn: 1, bytesIn: frames.reduce((n, f) => n + f.length, 0) });
    });
  }

  it('batches turn after turn without the bytes of one batch showing up in another (their buffers are reused)', async () => {
    const { server, client } = await linkPair();
    server.link.enableBatching();
    const sent: Buffer[] = [];
    for (let turn = 0; turn < 6; turn++) {
      const frames = Array.from({ length: 25 }, (_, i) => msg(turn * 100 + i, 200 + turn * 300));
      sent.push(...frames);
      for (const f of frames) server.link.send(f);
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setTimeout(r, 5));
    }
    await until(() => client.frames.length === sent.length, 'every frame');
    expect(hex(client.frames)).toEqual(hex(sent));
    expect(server.link.stats.batchesOut).toBeGreaterThanOrEqual(6);
  });

  it('a client sends lone frames masked from reused buffers: frames of every size, turn after turn, arrive intact and in order', async () => {
    const { server, client } = await linkPair();
    const sent: Buffer[] = [];
    // below, at and above what fits a reused buffer (72 KiB), batching off and on
    const sizes = [0, 1, 100, 1_000, 8_000, 40_000, 49_100, 60_000, 73_700, 90_000];
    for (const batching of [false, true]) {
      if (batching) client.link.enableBatching();
      for (let turn = 0; turn < 16; turn++) {
        const f = msg(turn, sizes[turn % sizes.length]!);
        sent.push(f);
        client.link.send(f); // one frame a turn: never a BATCH
        await new Promise((r) => setImmediate(r));
      }
    }
    await until(() => server.frames.length === sent.length, 'every frame');
    expect(hex(server.frames)).toEqual(hex(sent));
    expect(server.wsMessages).toHaveLength(sent.length);
    expect(client.link.stats.batchesOut).toBe(0);
  });

  it('a client without batching writes many small frames a turn from a few reused slabs, none reused before the socket wrote it, even while the far end does not read', async () => {
    const { server, client, clientWs } = await linkPair();
    const socket = (clientWs as unknown as { _socket: Socket })._socket;
    const turns = async (from: number, count: number): Promise<Buffer[]> => {
      const sent: Buffer[] = [];
      for (let turn = 0; turn < count; turn++) {
        for (let i = 0; i < 250; i++) {
          const f = msg((from + turn) * 250 + i, 1_000);
          sent.push(f);
          client.link.send(f); // batching off: each frame alone, as a sender to a server without `batch`
        }
        await new Promise((r) => setImmediate(r));
      }
      return sent;
    };
    // The far end stops reading: the kernel's buffers fill and the socket queues the rest, so
    // frames stay unwritten while more are carved.
    server.ws.pause();
    const queued = await turns(0, 32); // 8,000 frames, ~8 MB
    expect(socket.writableLength).toBeGreaterThan(0);
    server.ws.resume();
    await until(() => server.frames.length === queued.length, 'the frames sent while the far end did not read');
    // With the far end reading, the slabs come back as the socket writes: few new ones.
    const before = frameBufferCounts().slabsMade;
    const flowing = await turns(32, 16); // 4,000 frames more
    await until(() => server.frames.length === queued.length + flowing.length, 'the frames sent while it read');
    expect(frameBufferCounts().slabsMade - before).toBeLessThanOrEqual(16);
    const sent = [...queued, ...flowing];
    const bad = server.frames.findIndex((f, i) => !f.raw.equals(sent[i]!));
    expect(bad).toBe(-1);
    expect(server.wsMessages).toHaveLength(sent.length);
  });

  const fill = (f: Buffer): FrameFill => ({ type: f[0]!, length: f.length, put: (out, at) => at + f.copy(out, at) });

  for (const sender of ['client', 'server'] as const) {
    it(`writes a FrameFill where the frame goes (alone, in a BATCH, or over the reused buffer), the same bytes as the frame it describes, in order with buffers (${sender} end)`, async () => {
      const pair = await linkPair();
      const [from, to] = sender === 'server' ? [pair.server, pair.client] : [pair.client, pair.server];
      const sent: Buffer[] = [];
      for (const batching of [false, true]) {
        if (batching) from.link.enableBatching();
        for (const size of [10, 1_000, 8_000, 60_000, 73_700, 90_000]) {
          const alone = msg(size, size);
          sent.push(alone);
          from.link.send(fill(alone)); // one a turn: alone
          await new Promise((r) => setImmediate(r));
        }
        const mixed = Array.from({ length: 12 }, (_, i) => msg(500 + i, 300 * i));
        sent.push(...mixed);
        mixed.forEach((f, i) => from.link.send(i % 2 === 0 ? fill(f) : f)); // one turn: a BATCH once batching is on
        await new Promise((r) => setImmediate(r));
      }
      await until(() => to.frames.length === sent.length, 'every frame');
      expect(hex(to.frames)).toEqual(hex(sent));
      expect(from.link.stats.batchesOut).toBeGreaterThanOrEqual(1);
      expect(from.link.stats.framesOut).toBe(sent.length);
    });
  }

  const broken: Record<string, FrameFill> = {
    throws: {
      type: FrameType.MSG,
      length: 100,
      put: () => {
        throw new Error('a bug in a fill');
      },
    },
    'writes fewer bytes than it said': { type: FrameType.MSG, length: 100, put: (out, at) => at + msg(7, 10).copy(out, at) },
  };
  for (const [what, bad] of Object.entries(broken)) {
    for (const batched of [true, false]) {
      it(`a FrameFill that ${what} closes the link (1011), ${batched ? 'in a BATCH: nothing of the batch' : 'sent alone: nothing of it, nor what comes after'} is written`, async () => {
        const { server, client } = await linkPair();
        if (batched) client.link.enableBatching();
        const before = msg(1);
        client.link.send(before);
        await until(() => server.frames.length === 1, 'the first frame');
        client.link.send(msg(2));
        client.link.send(bad);
        client.link.send(msg(3));
        await until(() => server.closed !== undefined, 'the close');
        expect(server.closed?.code).toBe(1011);
        expect(hex(server.frames)).toEqual(hex(batched ? [before] : [before, msg(2)]));
        expect(client.link.send(msg(4))).toBe(false);
      });
    }
  }

  it('sends each frame in a ws message of its own while batching is off (an end that did not agree)', async () => {
    const { server, client } = await linkPair();
    const frames = Array.from({ length: 20 }, (_, i) => msg(i));
    await inSeparateCallbacks(frames.map((f) => () => void server.link.send(f)));
    await until(() => client.frames.length === 20, 'the 20 frames');
    expect(client.wsMessages).toHaveLength(20);
    expect(client.wsMessages.some((m) => m[0] === FrameType.BATCH)).toBe(false);
    expect(server.link.stats.batchesOut).toBe(0);
  });

  it('sends a lone frame as itself, a frame over BATCH_FRAME_MAX_BYTES alone after the batch so far, and starts a new batch past BATCH_MAX_BYTES, keeping the order', async () => {
    const { server, client } = await linkPair();
    server.link.enableBatching();
    server.link.send(msg(0));
    await until(() => client.frames.length === 1, 'the lone frame');
    expect(client.wsMessages[0]![0]).toBe(FrameType.MSG);

    const big = msg(99, BATCH_FRAME_MAX_BYTES);
    const perBatch = Math.ceil(BATCH_MAX_BYTES / msg(1, 1000).length);
    const frames = [msg(1), msg(2), big, msg(3), ...Array.from({ length: 2 * perBatch }, (_, i) => msg(10 + i, 1000))];
    for (const f of frames) server.link.send(f);
    await until(() => client.frames.length === 1 + frames.length, 'every frame');
    expect(hex(client.frames.slice(1))).toEqual(hex(frames));
    const kinds = client.wsMessages.slice(1).map((m) => m[0]);
    expect(kinds.slice(0, 2)).toEqual([FrameType.BATCH, FrameType.MSG]); // msg 1 and 2, then the big one alone
    expect(client.wsMessages[2]!.equals(big)).toBe(true);
    for (const m of client.wsMessages.slice(3)) expect(m.length).toBeLessThanOrEqual(HEADER_BYTES + BATCH_MAX_BYTES + perBatch * 4 + msg(1, 1000).length);
    expect(client.wsMessages.length).toBeGreaterThanOrEqual(5); // 2 * perBatch small frames need at least 3 batches
  });

  it('counts a batched MSG as owed and each ACK inside a BATCH as paid (adaptive keepalive)', async () => {
    const { server, client } = await linkPair();
    server.link.enableBatching();
    client.link.enableBatching();
    const owed = (l: Link): number => (l as unknown as { owed: number }).owed;
    for (let i = 0; i < 5; i++) server.link.send(msg(i));
    expect(owed(server.link)).toBe(5);
    await until(() => client.frames.length === 5, 'the MSGs');
    for (let i = 0; i < 5; i++) client.link.send(encodeAck({ id: `m${i}`, to: 'src@relay', from: 'sink@hq', status: Status.OK, reason: '' }));
    await until(() => server.frames.length === 5, 'the ACKs');
    expect(server.wsMessages).toHaveLength(1);
    expect(owed(server.link)).toBe(0);
  });

  it("sends the frames it batched in answer to frames that came just before the far end's close, before its close reply (ws answers that close in the same turn)", async () => {
    const { server, client } = await linkPair();
    server.link.enableBatching();
    client.link.enableBatching();
    // The server acks each MSG as it reads it, as a relay or a contact point does.
    server.link.setHandler({
      onFrame: (f) => {
        server.frames.push(f);
        server.link.send(encodeAck({ id: `m${server.frames.length - 1}`, to: 'src@relay', from: 'sink@hq', status: Status.OK, reason: '' }));
      },
      onClose: (i) => (server.closed = i),
    });
    for (let i = 0; i < 5; i++) client.link.send(msg(i));
    client.link.close(1000, 'done'); // the MSGs and the close frame reach the server in one read
    await until(() => client.closed !== undefined && server.closed !== undefined, 'the close');
    expect(server.frames).toHaveLength(5);
    expect(client.frames.map((f) => f.type)).toEqual(Array(5).fill(FrameType.ACK));
    expect(client.closed!.code).toBe(1000);
  });

  it('faults a malformed BATCH with MALFORMED_FRAME (4100) before handling any frame of it, a nested one with PROTOCOL_VIOLATION, one holding an unknown frame type with UNKNOWN_FRAME_TYPE', async () => {
    for (const [bad, code] of [
      [Buffer.concat([batchOf([msg(1), msg(2)]), Buffer.from([0, 0, 0, 40])]), Status.MALFORMED_FRAME],
      [batchOf([msg(1), batchOf([msg(2), msg(3)])]), Status.PROTOCOL_VIOLATION],
      // a MSG, then an entry of a frame type nobody knows: the MSG must not be routed before the fault
      [batchOf([msg(1), Buffer.from([0xee, 0, 0, 0, 0, 0])]), Status.UNKNOWN_FRAME_TYPE],
    ] as const) {
      const { server, client, clientWs } = await linkPair();
      clientWs.send(bad);
      await until(() => server.closed !== undefined && client.closed !== undefined, 'the close');
      expect(server.frames).toHaveLength(0);
      expect(client.closed!.status).toBe(code);
      const error = client.frames.find((f) => f.type === FrameType.ERROR);
      expect(error).toBeDefined();
    }
  });
});
