import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { AdminClient } from '../../core/admin/client.js';
import { ADMIN_CALL_TIMEOUT_MS } from '../../core/admin/client-protocol.js';
import { ADMIN_PROTOCOL } from '../../core/admin/contract.js';

// The Node admin client against a scripted endpoint: what it does when the endpoint sends
// something that is not of the protocol, or does not answer.

interface Call {
  readonly id: number;
  readonly method: string;
}

let wss: WebSocketServer;
let url: string;
/** what the scripted endpoint does: its first message after auth, and its answer to a call */
let script: { first: string; answer: (call: Call, ws: WebSocket) => void };
let serverCloses: number[];

const READY = JSON.stringify({ type: 'ready', snapshot: { contactPoint: { id: 'acme-hq' } } });
const result = (id: number, value: unknown): string => JSON.stringify({ type: 'result', id, ok: true, value });

beforeEach(async () => {
  serverCloses = [];
  script = { first: READY, answer: (c, ws) => ws.send(result(c.id, { method: c.method })) };
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => ADMIN_PROTOCOL });
  wss.on('connection', (ws) => {
    ws.on('close', (code) => serverCloses.push(code));
    ws.on('message', (data) => {
      const m = JSON.parse((data as Buffer).toString()) as { type: string } & Call;
      if (m.type === 'auth') ws.send(script.first);
      else script.answer(m, ws);
    });
  });
  await once(wss, 'listening');
  url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/admin`;
});
afterEach(async () => {
  for (const ws of wss.clients) ws.terminate();
  await new Promise((resolve) => wss.close(resolve));
});

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}

describe('Node admin client', () => {
  it('fails the waiting call and closes (1002) on a malformed message, without throwing in the listener', async () => {
    script.answer = (_c, ws) => ws.send('{"type":"result", this is not JSON');
    const c = await AdminClient.connect(url, 'token');
    await expect(c.call('snapshot:get', {})).rejects.toMatchObject({
      code: 'INTERNAL',
      message: 'the admin endpoint sent a malformed message (not JSON); connection closed',
    });
    await expect(c.call('snapshot:get', {})).rejects.toMatchObject({ code: 'UNAVAILABLE', message: 'admin connection is closed' });
    await c.close();
    await until(() => serverCloses.length > 0);
    expect(serverCloses).toEqual([1002]);
  });

  it('treats a result of the wrong shape as malformed too', async () => {
    script.answer = (c, ws) => ws.send(JSON.stringify({ type: 'result', id: c.id, ok: false }));
    const c = await AdminClient.connect(url, 'token');
    await expect(c.call('snapshot:get', {})).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringMatching(/failed result without an error code/) as unknown });
    await c.close();
  });

  it('ignores a message of a type it does not know, and keeps the connection', async () => {
    script.answer = (c, ws) => {
      ws.send(JSON.stringify({ type: 'hint', text: 'from a newer endpoint' }));
      ws.send(result(c.id, 'fine'));
    };
    const c = await AdminClient.connect(url, 'token');
    await expect(c.call('snapshot:get', {})).resolves.toBe('fine');
    await expect(c.call('tunnel:reconnect', {})).resolves.toBe('fine');
    await c.close();
    await until(() => serverCloses.length > 0);
    expect(serverCloses).toEqual([1000]);
  });

  it('refuses a malformed first message with a clear error', async () => {
    script.first = 'not json at all';
    await expect(AdminClient.connect(url, 'token')).rejects.toMatchObject({ code: 'INTERNAL', message: `the admin endpoint ${url} sent a malformed first message (not JSON)` });
    script.first = JSON.stringify({ type: 'event', name: 'tunnel:status', data: {} });
    await expect(AdminClient.connect(url, 'token')).rejects.toMatchObject({ code: 'INTERNAL', message: `the admin endpoint ${url} sent unexpected first message event` });
  });

  it(`fails a call with no answer after the call timeout (${ADMIN_CALL_TIMEOUT_MS / 1000} s by default), and stays usable`, async () => {
    const dflt = await AdminClient.connect(url, 'token');
    expect(dflt.callTimeoutMs).toBe(ADMIN_CALL_TIMEOUT_MS);
    await dflt.close();

    let answer = false;
    script.answer = (c, ws) => void (answer && ws.send(result(c.id, 'late but here')));
    const c = await AdminClient.connect(url, 'token', { callTimeoutMs: 200 });
    const started = Date.now();
    await expect(c.call('snapshot:get', {})).rejects.toMatchObject({ code: 'UNAVAILABLE', message: 'snapshot:get: no answer within 0.2 s' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    answer = true;
    await expect(c.call('snapshot:get', {})).resolves.toBe('late but here');
    await c.close();
  });
});
