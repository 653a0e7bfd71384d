import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { decodeFrame, encodeMsg, splitBatch } from '../../core/protocol/codec.js';
import { FrameType } from '../../core/protocol/frames.js';
import { BATCH_FRAME_MAX_BYTES } from '../../core/protocol/limits.js';
import { protocolWriter } from '../../core/relay/cluster-mediation.js';
import { connectNats } from '../../core/relay/cluster-nats.js';
import { NatsTurnWriter } from '../../core/relay/nats-turn-writer.js';
import { logger, waitFor } from '../helpers.js';
import { haveNatsServer, NO_NATS_REASON, startNatsServer, type NatsServer } from '../nats-fixtures.js';

if (!haveNatsServer) console.warn(NO_NATS_REASON);

/** A MSG frame with a random payload of `n` bytes (so a frame that went wrong is seen). */
function frame(n: number): Buffer {
  return encodeMsg({ id: 'm', to: 'a@b', from: 'c@d', payload: randomBytes(n) });
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/**
 * Issue 12: a node writes each turn's forwarded frames as NATS protocol bytes of its own
 * (core/relay/nats-turn-writer.ts): small content copied into one scratch buffer used again turn
 * after turn, large frames from where they lie. A real nats-server in pedantic mode takes those
 * bytes, and a subscriber gets each frame (or BATCH of frames) exactly as publish() would have
 * sent it, with its reply subject, also when the socket could not take a turn's bytes at once
 * (the scratch is then still in the socket's queue and must not be written over).
 */
describe.skipIf(!haveNatsServer)('NATS turn writer', () => {
  let nats: NatsServer;
  let pub: NatsConnection;
  let sub: NatsConnection;
  beforeAll(async () => {
    nats = await startNatsServer();
    pub = await connectNats([nats.url], 'turn writer test', logger);
    sub = await connectNats([nats.url], 'turn writer subscriber', logger);
  });
  afterAll(async () => {
    await pub?.close();
    await sub?.close();
    await nats?.stop();
  });

  it('delivers every turn\'s frames and batches intact, in order, with their reply subject, over many turns of one scratch', async () => {
    const got: Msg[] = [];
    sub.subscribe('relay.cp.6869', { callback: (_e, m) => void got.push(m) });
    await sub.flush();
    const w = new NatsTurnWriter(pub, protocolWriter(pub)!, 16 * 1024);
    const prefix = 'PUB relay.cp.6869 relay.node.r1.nr.t.6869 ';
    /** what each NATS message must hold: one frame, or a BATCH of frames */
    const expected: Buffer[][] = [];
    for (let turn = 0; turn < 40; turn++) {
      const small = [frame(100 + turn), frame(900)];
      w.addBatch(prefix, small, small[0]!.length + small[1]!.length);
      expected.push(small);
      const alone = frame(300);
      w.addFrame(prefix, alone); // copied
      expected.push([alone]);
      const large = frame(BATCH_FRAME_MAX_BYTES + 5_000 + turn); // over half the scratch: from where it lies
      w.addFrame(prefix, large);
      expected.push([large]);
      // More than the scratch holds in one turn: written as it fills, the order kept.
      const filler = Array.from({ length: 6 }, () => frame(3_000));
      w.addBatch(prefix, filler, filler.reduce((n, f) => n + f.length, 0));
      expected.push(filler);
      w.write();
      await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => got.length === expected.length, 10_000, `${expected.length} messages`);
    expect(got.every((m) => m.reply === 'relay.node.r1.nr.t.6869')).toBe(true);
    got.forEach((m, i) => {
      const data = Buffer.from(m.data);
      const frames = data[0] === FrameType.BATCH ? splitBatch(decodeFrame(data)) : [data];
      expect(frames.map(sha), `message ${i}`).toEqual(expected[i]!.map(sha));
    });
  });

  it('never writes over a scratch the socket has not sent yet (its queue holds it)', async () => {
    const got: Msg[] = [];
    sub.subscribe('relay.node.r9', { callback: (_e, m) => void got.push(m) });
    await sub.flush();
    const w = new NatsTurnWriter(pub, protocolWriter(pub)!, 64 * 1024);
    const prefix = 'PUB relay.node.r9 relay.node.r1.nr.n.r9 ';
    const expected: string[][] = [];
    // The socket holds what it is given (as when the kernel does not take it all at once): each
    // turn's bytes wait in its queue while the next turns are made.
    const socket = (pub as unknown as { protocol: { transport: { socket: Socket } } }).protocol.transport.socket;
    socket.cork();
    for (let turn = 0; turn < 5; turn++) {
      for (let i = 0; i < 3 + turn; i++) {
        const fs = Array.from({ length: 8 }, () => frame(1_000 + turn));
        w.addBatch(prefix, fs, fs.reduce((n, f) => n + f.length, 0));
        expected.push(fs.map(sha));
      }
      w.write();
      expect(socket.writableLength).toBeGreaterThan(0);
    }
    socket.uncork();
    await waitFor(() => got.length === expected.length, 10_000, `${expected.length} messages`);
    got.forEach((m, i) => {
      const data = Buffer.from(m.data);
      const frames = data[0] === FrameType.BATCH ? splitBatch(decodeFrame(data)) : [data];
      expect(frames.map(sha), `message ${i}`).toEqual(expected[i]);
    });
  });

  it('hands its bytes to the client while it is not connected (closed: drops them; the senders retry)', async () => {
    const nc = await connectNats([nats.url], 'turn writer closed', logger);
    const w = new NatsTurnWriter(nc, protocolWriter(nc)!, 16 * 1024);
    await nc.close();
    w.addFrame('PUB x ', frame(10));
    expect(w.pending).toBe(true);
    expect(() => w.write()).not.toThrow();
    expect(w.pending).toBe(false);
  });
});
