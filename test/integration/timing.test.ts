import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { Operator } from '../../core/peer/operator.js';
import { PeerClient } from '../../core/peer/peer-client.js';
import { decodeControl, decodeFrame, encodeControl } from '../../core/protocol/codec.js';
import { FrameType, PROTOCOL_VERSION } from '../../core/protocol/frames.js';
import { MAX_MESSAGE_BYTES, PING_INTERVAL_MS } from '../../core/protocol/limits.js';
import { TIMING_RANGES, type TimingValues } from '../../core/protocol/timing.js';
import { logger, waitFor } from '../helpers.js';

/**
 * A stand-in relay that shows which timing reached the dialer under a contact point or a peer
 * client: 'silent' upgrades and never answers the HELLO (the hello deadline ends the attempt);
 * 'deaf' answers with a WELCOME and then never answers a ping (the pong timeout ends the link).
 */
async function fakeRelay(mode: 'silent' | 'deaf'): Promise<{ url: string; stop(): Promise<void> }> {
  const server: Server = createServer();
  const wss = new WebSocketServer({ server, autoPong: false });
  wss.on('connection', (ws) => {
    ws.on('message', (data: Buffer) => {
      const frame = decodeFrame(data);
      if (mode === 'silent' || frame.type !== FrameType.HELLO) return;
      const hello = decodeControl(frame, FrameType.HELLO);
      ws.send(encodeControl(FrameType.WELCOME, { version: PROTOCOL_VERSION, session: 'fake', address: `${hello.id}@fake`, limits: { maxMessageBytes: MAX_MESSAGE_BYTES, pingIntervalMs: PING_INTERVAL_MS } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    async stop() {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      await new Promise((r) => server.close(r));
    },
  };
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function contactPoint(url: string, timing: Partial<TimingValues>): Promise<ContactPoint> {
  const cp = await ContactPoint.create({ id: 'acme-hq', relayUrl: url, secret: 'x'.repeat(16), peerHost: '127.0.0.1', proxy: null, logger, timing });
  cleanup.push(() => cp.stop());
  await cp.start();
  return cp;
}

function peer(url: string, timing: Partial<TimingValues>): PeerClient {
  const c = new PeerClient({ role: 'external', url, name: 'alice', secret: 'x'.repeat(16), proxy: null, logger, timing });
  cleanup.push(() => c.stop());
  return c.start();
}

describe('timing given at the top reaches the dialer and the link', () => {
  it('contact point: the hello deadline and the backoff reach the gateway\'s dialer', async () => {
    const relay = await fakeRelay('silent');
    cleanup.push(() => relay.stop());
    // The default hello deadline is 5 s and the first backoff delay at most 250 ms.
    const cp = await contactPoint(relay.url, { helloTimeoutMs: 300, backoffBaseMs: 2_000, backoffMaxMs: 2_000 });
    const started = Date.now();
    await waitFor(() => cp.gateway.status().lastError !== undefined, 3_000, 'the first attempt to end');
    const s = cp.gateway.status();
    expect(s.lastError).toMatch(/HELLO_TIMEOUT/);
    expect(Date.now() - started).toBeLessThan(2_500);
    // Backoff of base = cap = 2 s draws between 1 s and 2 s.
    expect(s.nextRetryAt! - Date.now()).toBeGreaterThan(700);
    expect(s.nextRetryAt! - Date.now()).toBeLessThanOrEqual(2_000);
  });

  it('contact point: ping interval and pong timeout reach the tunnel\'s link', async () => {
    const relay = await fakeRelay('deaf');
    cleanup.push(() => relay.stop());
    // With the defaults (10 s ping, 5 s pong) the link would stand for 15 s.
    const cp = await contactPoint(relay.url, { pingIntervalMs: 1_000, pongTimeoutMs: 300, backoffBaseMs: 2_000, backoffMaxMs: 2_000 });
    await waitFor(() => cp.gateway.connected, 3_000, 'tunnel up');
    expect(cp.gateway.status().keepaliveMs).toBe(1_000);
    const up = Date.now();
    await new Promise<void>((resolve) => cp.gateway.once('down', resolve));
    expect(Date.now() - up).toBeLessThan(4_000);
  });

  it('peer client: the hello deadline and the backoff reach its dialer', async () => {
    const relay = await fakeRelay('silent');
    cleanup.push(() => relay.stop());
    const c = peer(relay.url, { helloTimeoutMs: 300, backoffBaseMs: 2_000, backoffMaxMs: 2_000 });
    const started = Date.now();
    await waitFor(() => c.status().lastError !== undefined, 3_000, 'the first attempt to end');
    expect(c.status().lastError).toMatch(/HELLO_TIMEOUT/);
    expect(Date.now() - started).toBeLessThan(2_500);
    expect(c.status().nextRetryAt! - Date.now()).toBeGreaterThan(700);
  });

  it('peer client: ping interval and pong timeout reach its link', async () => {
    const relay = await fakeRelay('deaf');
    cleanup.push(() => relay.stop());
    const c = peer(relay.url, { pingIntervalMs: 1_000, pongTimeoutMs: 300 });
    await c.ready(3_000);
    const up = Date.now();
    await waitFor(() => !c.connected, 4_000, 'the silent link dropped');
    expect(Date.now() - up).toBeLessThan(4_000);
  });
});

describe('a bad timing value is refused at the top, naming the field', () => {
  // Before timing.ts these were dropped without a word (`...(x ? { x } : {})`) and the default ran.
  const fields = Object.keys(TIMING_RANGES) as (keyof TimingValues)[];

  it.each(fields)('%s: 0 is refused by the contact point, the peer client and the operator', async (field) => {
    const timing = { [field]: 0 };
    const message = new RegExp(`^timing\\.${field} 0: expected a whole number of milliseconds from`);
    await expect(ContactPoint.create({ id: 'acme-hq', relayUrl: 'ws://127.0.0.1:9/v1', secret: 'x'.repeat(16), logger, timing })).rejects.toThrow(message);
    expect(() => new PeerClient({ role: 'external', url: 'ws://127.0.0.1:9/v1', name: 'alice', secret: 'x'.repeat(16), logger, timing })).toThrow(message);
    expect(() => new Operator({ url: 'ws://127.0.0.1:9/v1', name: 'tech', secret: 'x'.repeat(16), logger, timing })).toThrow(message);
  });
});
