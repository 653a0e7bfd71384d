import { randomBytes } from 'node:crypto';
import { connect as tcpConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { encodeStreamDataHead } from '../../core/protocol/stream-mux.js';
import { NATS_DATA_PIECE_BYTES, natsDataMessages } from '../../core/relay/cluster-mediation.js';
import { connectNats } from '../../core/relay/cluster-nats.js';
import { logger, waitFor } from '../helpers.js';
import { haveNatsServer, NO_NATS_REASON, startNatsServer, type NatsServer } from '../nats-fixtures.js';

if (!haveNatsServer) console.warn(NO_NATS_REASON);

/**
 * Issue 12, bulk across nodes: a STREAM_DATA frame crosses NATS as protocol bytes the relay node
 * writes itself (cluster-mediation.ts natsDataMessages), one PUB per piece. A real nats-server
 * in pedantic mode takes those bytes from a plain socket, and a subscriber gets each piece as the
 * message publish() would have made: the frame's head, then its piece of the body.
 */
describe.skipIf(!haveNatsServer)('STREAM_DATA pieces written as NATS protocol bytes', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  beforeAll(async () => {
    nats = await startNatsServer();
    nc = await connectNats([nats.url], 'pieces test', logger);
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('delivers each piece as one message: head + that part of the body, in order', async () => {
    const subject = 'relay.m.r1.c.r2.abc0.6869';
    const got: Buffer[] = [];
    nc.subscribe(subject, { callback: (_e, m) => void got.push(Buffer.from(m.data)) });
    await nc.flush();
    const head = encodeStreamDataHead(42);
    const body = randomBytes(3 * NATS_DATA_PIECE_BYTES);
    const offset = 100;
    const length = 2 * NATS_DATA_PIECE_BYTES + 5_000;
    const bytes = natsDataMessages(subject, head, body, offset, length, NATS_DATA_PIECE_BYTES);

    const server = await rawSession(nats.port);
    server.write(bytes);
    expect(await server.pingPong()).toBe('');
    server.close();

    await waitFor(() => got.length === 3, 5_000, 'three messages');
    const expected = [0, NATS_DATA_PIECE_BYTES, 2 * NATS_DATA_PIECE_BYTES].map((at) =>
      Buffer.concat([head, body.subarray(offset + at, offset + Math.min(at + NATS_DATA_PIECE_BYTES, length))]),
    );
    expect(got.map((b) => b.length)).toEqual([head.length + NATS_DATA_PIECE_BYTES, head.length + NATS_DATA_PIECE_BYTES, head.length + 5_000]);
    expect(got).toEqual(expected);
  });

  it('cuts by the piece size it is given (a server with a smaller max_payload)', () => {
    const head = encodeStreamDataHead(1);
    const body = Buffer.alloc(10, 7);
    const text = natsDataMessages('s', head, body, 0, 10, 4).toString('latin1');
    expect(text.match(/PUB s (\d+)\r\n/g)).toEqual(['PUB s 10\r\n', 'PUB s 10\r\n', 'PUB s 8\r\n']);
  });
});

/** A plain TCP client of nats-server in pedantic mode: what it wrote, then PING; pingPong() resolves with any -ERR seen before PONG. */
async function rawSession(port: number): Promise<{ write(b: Buffer): void; pingPong(): Promise<string>; close(): void }> {
  const socket = tcpConnect(port, '127.0.0.1');
  let text = '';
  let onData: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    text += d.toString('latin1');
    onData?.();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    onData = () => text.includes('\r\n') && resolve();
  });
  socket.write('CONNECT {"verbose":false,"pedantic":true,"protocol":1}\r\n');
  return {
    write: (b) => void socket.write(b),
    pingPong: () =>
      new Promise((resolve) => {
        text = '';
        onData = () => {
          if (text.includes('PONG\r\n')) resolve(text.split('\r\n').filter((l) => l.startsWith('-ERR')).join('\n'));
        };
        socket.write('PING\r\n');
      }),
    close: () => socket.destroy(),
  };
}
