import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { decodeFrame, encodeControl, type Frame } from '../../core/protocol/codec.js';
import { FrameType } from '../../core/protocol/frames.js';
import { Status } from '../../core/protocol/status.js';
import { PeerIdentity } from '../../core/peer/identity.js';
import { PeerClient } from '../../core/peer/peer-client.js';
import { verifyProof, verifySealKey } from '../../core/protocol/peer-auth.js';
import { FAST, logger, waitFor } from '../helpers.js';

/**
 * A server that answers HELLO with whatever WELCOME a test gives it: what a client does with a
 * relay (or peer port) that says something malformed. A bare ws server on loopback, as the
 * RawClient is for the servers' side.
 */
async function misbehaving(welcome: unknown): Promise<{ url: string; frames: Frame[]; closes: number[]; hellos: () => number; close: () => Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const frames: Frame[] = [];
  const closes: number[] = [];
  wss.on('connection', (ws: WebSocket) => {
    ws.on('message', (d: Buffer) => {
      const f = decodeFrame(d);
      frames.push(f);
      if (f.type === FrameType.HELLO) ws.send(encodeControl(FrameType.WELCOME, welcome as never));
    });
    ws.on('close', (code) => closes.push(code));
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/v1`,
    frames,
    closes,
    hellos: () => frames.filter((f) => f.type === FrameType.HELLO).length,
    close: () => new Promise<void>((resolve) => {
      for (const c of wss.clients) c.terminate();
      wss.close(() => resolve());
    }),
  };
}

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

describe('bad input from a server: the SDK refuses it with a clear error', () => {
  it('faults a WELCOME whose address is not name@domain (every frame it sends would carry it as `from`), and keeps retrying', async () => {
    const server = await misbehaving({ version: 1, session: 's1', address: 'Not An Address', limits: { maxMessageBytes: 65_536, pingIntervalMs: 30_000 } });
    stops.push(server.close);
    const client = new PeerClient({ role: 'external', url: server.url, name: 'alice', secret: 'a-secret-of-sixteen-chars', logger, timing: FAST, proxy: null });
    stops.push(() => client.stop());
    const errors: string[] = [];
    client.on('status', (s) => {
      if (s.lastError) errors.push(s.lastError);
    });
    client.start();
    await waitFor(() => server.closes.length >= 1, 5_000, 'the client to close the link');
    expect(server.closes[0]).toBe(4000 + Status.PROTOCOL_VIOLATION);
    const error = server.frames.find((f) => f.type === FrameType.ERROR);
    expect(error && (JSON.parse(error.body.toString()) as { code: number; reason: string })).toEqual({ code: Status.PROTOCOL_VIOLATION, reason: 'WELCOME address "Not An Address" is not name@domain' });
    await waitFor(() => errors.some((e) => e.includes('WELCOME address')), 5_000, 'the status to say why');
    expect(client.connected).toBe(false);
    // It dials again (a server may be fixed), and never sends a message frame on such a link.
    await waitFor(() => server.hellos() >= 2, 5_000, 'a second hello');
    expect(server.frames.every((f) => f.type === FrameType.HELLO || f.type === FrameType.ERROR)).toBe(true);
  });

  it('takes a well-formed WELCOME from the same server (the check is not what refuses)', async () => {
    const server = await misbehaving({ version: 1, session: 's2', address: 'alice@relay', limits: { maxMessageBytes: 65_536, pingIntervalMs: 30_000 } });
    stops.push(server.close);
    const client = new PeerClient({ role: 'external', url: server.url, name: 'alice', secret: 'a-secret-of-sixteen-chars', logger, timing: FAST, proxy: null });
    stops.push(() => client.stop());
    client.start();
    await client.ready(5_000);
    expect(client.address).toBe('alice@relay');
    expect(server.closes).toEqual([]);
  });
});

describe('an older peer port (before proof 2): the SDK proves its key with the text of version 1', () => {
  it('signs proof 1 for a CHALLENGE without `proof`, and its sealKeySig vouches for its sealing key', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    stops.push(() => new Promise<void>((resolve) => {
      for (const c of wss.clients) c.terminate();
      wss.close(() => resolve());
    }));
    const checked: { proof?: boolean; sealKeySig?: boolean; capabilities?: string[] } = {};
    const nonce = 'b2xkZXIgcGVlciBwb3J0IG5vbmNl';
    wss.on('connection', (ws: WebSocket) => {
      let hello: { id: string; publicKey: string; sealKey?: string; sealKeySig?: string; env?: { capabilities?: string[] } } | undefined;
      ws.on('message', (d: Buffer) => {
        const f = decodeFrame(d);
        if (f.type === FrameType.HELLO) {
          hello = JSON.parse(f.body.toString()) as typeof hello;
          checked.capabilities = hello!.env?.capabilities ?? [];
          checked.sealKeySig = hello!.sealKey !== undefined && hello!.sealKeySig !== undefined && verifySealKey(hello!.publicKey, hello!.id, hello!.sealKey, hello!.sealKeySig);
          ws.send(encodeControl(FrameType.CHALLENGE, { nonce })); // what a peer port before proof 2 sends
        } else if (f.type === FrameType.PROOF && hello) {
          checked.proof = verifyProof(hello.publicKey, hello.id, nonce, (JSON.parse(f.body.toString()) as { signature: string }).signature);
          if (checked.proof && checked.sealKeySig) ws.send(encodeControl(FrameType.WELCOME, { version: 1, session: 'old', address: `${hello.id}@old-cp`, state: 'registered', limits: { maxMessageBytes: 65_536, pingIntervalMs: 30_000 } }));
          else ws.close(4104, 'bad proof');
        }
      });
    });
    const client = new PeerClient({ role: 'peer', url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/v1/peer`, name: 'printer', identity: PeerIdentity.generate(), logger, timing: FAST, proxy: null });
    stops.push(() => client.stop());
    client.start();
    await client.ready(5_000);
    expect(checked).toEqual({ capabilities: expect.arrayContaining(['proof-2', 'sealed']) as unknown as string[], sealKeySig: true, proof: true });
    expect(client.address).toBe('printer@old-cp');
  });
});

