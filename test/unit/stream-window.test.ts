import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { decodeFrame } from '../../core/protocol/codec.js';
import { FrameType } from '../../core/protocol/frames.js';
import {
  encodeStreamData,
  encodeStreamWindow,
  INITIAL_STREAM_WINDOW,
  MAX_STREAM_WINDOW,
  STREAM_WINDOW_BUDGET,
  StreamMux,
  type MuxLink,
  type MuxStream,
} from '../../core/protocol/stream-mux.js';

/** Two muxes joined by an in-memory link that delivers each frame on a later turn, as a socket would. */
function pair(): { a: StreamMux; b: StreamMux; windowGrants: () => number[] } {
  const grants: number[] = [];
  const make = (deliver: (f: Buffer) => void): MuxLink => ({
    bufferedAmount: 0,
    send: (f) => {
      setImmediate(() => deliver(f));
      return true;
    },
    sendParts: (head, body, offset, length) => {
      const f = Buffer.concat([head, body.subarray(offset, offset + length)]);
      setImmediate(() => deliver(f));
      return true;
    },
    copiesBodies: true,
    whenWritable: (fn) => void setImmediate(fn),
  });
  const muxes: { b?: StreamMux } = {};
  const a = new StreamMux(make((f) => muxes.b!.handle(decodeFrame(f))));
  const b = new StreamMux(
    make((f) => {
      const frame = decodeFrame(f);
      if (frame.type === FrameType.STREAM_WINDOW) grants.push(frame.body.readUInt32BE(0));
      a.handle(frame);
    }),
  );
  muxes.b = b;
  return { a, b, windowGrants: () => grants };
}

const credit = (s: MuxStream): number => (s as unknown as { sendCredit: number }).sendCredit;
const recvWindow = (s: MuxStream): number => (s as unknown as { recvWindow: number }).recvWindow;

async function send(s: MuxStream, bytes: number): Promise<void> {
  const block = Buffer.alloc(1024 * 1024, 1);
  for (let sent = 0; sent < bytes; sent += block.length) {
    if (!s.write(block)) await new Promise((r) => s.once('drain', r));
  }
}

describe('stream credit windows', () => {
  it('grow up to MAX_STREAM_WINDOW while the reader keeps up', async () => {
    const { a, b, windowGrants } = pair();
    const tx = a.open(2);
    const rx = b.open(2);
    let got = 0;
    rx.on('data', (d: Buffer) => (got += d.length));
    await send(tx, 32 * 1024 * 1024);
    tx.end();
    await new Promise((r) => rx.once('end', r));
    expect(got).toBe(32 * 1024 * 1024);
    expect(recvWindow(rx)).toBe(MAX_STREAM_WINDOW);
    // Grants came a quarter window at a time, not one per frame.
    expect(windowGrants().length).toBeLessThan((32 * 1024 * 1024) / (64 * 1024) / 2);
  });

  it('stay at INITIAL_STREAM_WINDOW for a reader that stops: the sender stalls after one window', async () => {
    const { a, b } = pair();
    const tx = a.open(2);
    const rx = b.open(2);
    rx.pause();
    void send(tx, 8 * 1024 * 1024).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
    expect(rx.readableLength).toBe(INITIAL_STREAM_WINDOW);
    expect(credit(tx)).toBe(0);
    expect(recvWindow(rx)).toBe(INITIAL_STREAM_WINDOW);
    tx.destroy();
  });

  it('stay at INITIAL_STREAM_WINDOW for a reader slower than its sender', async () => {
    const { a, b } = pair();
    const tx = a.open(2);
    const rx = b.open(2);
    rx.pause();
    let got = 0;
    const reader = setInterval(() => {
      for (let d = rx.read(64 * 1024) as Buffer | null; d && got < 2 * 1024 * 1024; d = null) got += d.length;
    }, 2);
    void send(tx, 4 * 1024 * 1024).catch(() => undefined);
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (got < 2 * 1024 * 1024) return;
        clearInterval(check);
        resolve();
      }, 5);
    });
    clearInterval(reader);
    expect(recvWindow(rx)).toBe(INITIAL_STREAM_WINDOW);
    tx.destroy();
  });

  it('grow within the budget of one mux, which streams give back when they go', async () => {
    const { a, b } = pair();
    const n = Math.ceil(STREAM_WINDOW_BUDGET / (MAX_STREAM_WINDOW - INITIAL_STREAM_WINDOW)) + 2;
    const streams = Array.from({ length: n }, (_, i) => ({ tx: a.open(2 * (i + 1)), rx: b.open(2 * (i + 1)) }));
    for (const s of streams) s.rx.resume();
    await Promise.all(streams.map((s) => send(s.tx, 6 * 1024 * 1024)));
    await new Promise((r) => setTimeout(r, 50));
    const grown = streams.reduce((sum, s) => sum + recvWindow(s.rx) - INITIAL_STREAM_WINDOW, 0);
    expect(grown).toBeLessThanOrEqual(STREAM_WINDOW_BUDGET);
    expect(grown).toBeGreaterThan(STREAM_WINDOW_BUDGET / 2);
    // All gone: the whole budget is back, so a new stream may grow again.
    for (const s of streams) {
      s.tx.destroy();
      s.rx.destroy();
    }
    await new Promise((r) => setTimeout(r, 20));
    expect(b.takeWindowBudget(STREAM_WINDOW_BUDGET)).toBe(STREAM_WINDOW_BUDGET);
  });

  it('bridged to a sink (sinkTo): bytes that came before go first, credit stops while the sink is full and comes back when it drains', async () => {
    const { a, b } = pair();
    const tx = a.open(2);
    const rx = b.open(2);
    // Bytes that arrive before the stream is bridged wait in its readable side.
    tx.write(Buffer.from('early '));
    await new Promise((r) => setTimeout(r, 20));
    const got: Buffer[] = [];
    let stuck = true;
    let release: (() => void) | undefined;
    const sink = new Writable({
      highWaterMark: 16 * 1024,
      write(chunk: Buffer, _enc, cb) {
        got.push(chunk);
        if (stuck) release = () => cb();
        else cb();
      },
    });
    rx.sinkTo(sink);
    const total = 4 * 1024 * 1024;
    const block = Buffer.alloc(total, 5);
    tx.write(block);
    await new Promise((r) => setTimeout(r, 100));
    // The sink took nothing off its queue: the sender stopped after one window, all of it queued there.
    expect(credit(tx)).toBe(0);
    expect(sink.writableLength).toBe(INITIAL_STREAM_WINDOW);
    stuck = false;
    release!();
    tx.end();
    await new Promise((r) => rx.once('end', r));
    const all = Buffer.concat(got);
    expect(all.subarray(0, 6).toString()).toBe('early ');
    expect(all.length).toBe(6 + total);
    expect(all.subarray(6).equals(block)).toBe(true);
  });

  it('still refuse data beyond the window the receiver granted', () => {
    const { b } = pair();
    b.open(2);
    const chunk = Buffer.alloc(64 * 1024);
    for (let sent = 0; sent < INITIAL_STREAM_WINDOW; sent += chunk.length) b.handle(decodeFrame(encodeStreamData(2, chunk, 0, chunk.length)));
    expect(() => b.handle(decodeFrame(encodeStreamData(2, chunk, 0, 1)))).toThrow(/past its window/);
  });

  it('answer data for an unknown stream with RST, and ignore credit for one (it can cross the last FIN)', () => {
    const sent: Buffer[] = [];
    const mux = new StreamMux({
      bufferedAmount: 0,
      send: (f) => sent.push(f) > 0,
      sendParts: (head, body, offset, length) => sent.push(Buffer.concat([head, body.subarray(offset, offset + length)])) > 0,
      copiesBodies: true,
      whenWritable: (fn) => void setImmediate(fn),
    });
    expect(mux.handle(decodeFrame(encodeStreamWindow(9, 65_536)))).toBe(true);
    expect(sent).toHaveLength(0);
    mux.handle(decodeFrame(encodeStreamData(9, Buffer.from('late'), 0, 4)));
    expect(sent.map((f) => decodeFrame(f).type)).toEqual([FrameType.STREAM_RST]);
    expect(decodeFrame(sent[0]!).body.toString()).toBe('unknown stream');
  });
});
