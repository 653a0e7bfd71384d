import { request } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { AdminClient } from '../../core/admin/client.js';
import { ADMIN_PROTOCOL, type FlowBatch, type PeerView, type PortPolicyView, type TunnelView } from '../../core/admin/contract.js';
import { AdminServer, MAX_PENDING_ADMIN_CLIENTS } from '../../core/admin/server.js';
import { createLogger } from '../../core/runtime/logger.js';
import { SEAL_OVERHEAD } from '../../core/protocol/seal.js';
import { logger, startHarness, waitFor, type Harness } from '../helpers.js';

let h: Harness;
let admin: AdminServer;
const clients: AdminClient[] = [];
beforeEach(async () => {
  h = await startHarness();
  admin = new AdminServer({ api: h.cp, logger });
  await admin.start();
});
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await admin.stop();
  await h.close();
});

async function client(token = admin.token): Promise<AdminClient> {
  const c = await AdminClient.connect(admin.wsUrl, token);
  clients.push(c);
  return c;
}

function httpGet(path: string, headers: Record<string, string>): Promise<number> {
  const u = new URL(admin.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

function upgradeStatus(headers: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(admin.wsUrl, ADMIN_PROTOCOL, { headers });
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('open', () => {
      ws.close();
      resolve(101);
    });
    ws.on('error', () => undefined);
  });
}

describe('admin endpoint', () => {
  it('binds to loopback and gives a snapshot only to a client with the token', async () => {
    expect(admin.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const c = await client();
    expect(c.initial.contactPoint.id).toBe('acme-hq');
    expect(c.initial.tunnel.state).toBe('connected');
    await expect(AdminClient.connect(admin.wsUrl, 'wrong-token')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('refuses requests naming another host (DNS rebinding) and foreign origins', async () => {
    expect(await httpGet('/', { host: 'evil.example:80' })).toBe(421);
    expect(await httpGet('/', { host: new URL(admin.url).host })).toBe(200);
    expect(await upgradeStatus({ host: 'evil.example' })).toBe(403);
    expect(await upgradeStatus({ origin: 'http://evil.example' })).toBe(403);
    expect(await upgradeStatus({ origin: admin.url })).toBe(101);
  });

  it('answers calls, with typed errors for bad ones', async () => {
    const c = await client();
    const p = await h.internal('printer');
    p.register();
    await waitFor(() => h.cp.registrar.get('printer')?.state === 'pending');
    const view = await c.call('peers:approve', { name: 'printer' });
    expect(view.state).toBe('registered');
    await expect(c.call('peers:approve', { name: 'ghost' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(c.call('peers:approve', { name: 42 } as never)).rejects.toMatchObject({ code: 'INVALID_PARAMS' });
    await expect(c.call('policy:set', { subnets: ['not-a-cidr'] })).rejects.toMatchObject({ code: 'INVALID_PARAMS' });
    await expect(c.call('nope:nothing' as never, {} as never)).rejects.toMatchObject({ code: 'UNKNOWN_METHOD' });
    const snap = await c.call('snapshot:get', {});
    expect(snap.peers.map((x) => [x.name, x.state])).toEqual([['printer', 'registered']]);
  });

  it('answers a method that is not a name with UNKNOWN_METHOD and keeps serving (an object there ended the process)', async () => {
    const ws = new WebSocket(admin.wsUrl, ADMIN_PROTOCOL);
    const messages: { type: string; id?: number; ok?: boolean; error?: { code: string; message: string } }[] = [];
    ws.on('message', (d) => messages.push(JSON.parse((d as Buffer).toString('utf8')) as (typeof messages)[number]));
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send(JSON.stringify({ type: 'auth', token: admin.token }));
    await waitFor(() => messages.some((m) => m.type === 'ready'));
    ws.send(JSON.stringify({ type: 'call', id: 1, method: { toString: 1 }, params: {} }));
    ws.send(JSON.stringify({ type: 'call', id: 2, method: ['peers:list'], params: {} }));
    ws.send(JSON.stringify({ type: 'call', id: 3, method: 'x'.repeat(10_000), params: {} }));
    await waitFor(() => messages.filter((m) => m.type === 'result').length === 3);
    const results = messages.filter((m) => m.type === 'result');
    expect(results.map((m) => [m.id, m.error?.code])).toEqual([
      [1, 'UNKNOWN_METHOD'],
      [2, 'UNKNOWN_METHOD'],
      [3, 'UNKNOWN_METHOD'],
    ]);
    expect(results[0]!.error!.message).toMatch(/not a value of type object/);
    expect(results[1]!.error!.message).toMatch(/not an array/);
    expect(results[2]!.error!.message.length).toBeLessThan(120);
    ws.close();
    const c = await client();
    expect((await c.call('snapshot:get', {})).contactPoint.id).toBe('acme-hq');
  });

  it('connections that never send a token cannot lock the admin out: the oldest gives way', async () => {
    const silent: WebSocket[] = [];
    const closed: boolean[] = [];
    for (let i = 0; i < MAX_PENDING_ADMIN_CLIENTS + 8; i++) {
      const ws = new WebSocket(admin.wsUrl, ADMIN_PROTOCOL);
      const at = i;
      closed.push(false);
      ws.on('close', () => (closed[at] = true));
      ws.on('error', () => undefined);
      await new Promise((resolve) => ws.once('open', resolve));
      silent.push(ws);
    }
    // Within the 5 s they are given to authenticate, the admin still gets in.
    const c = await client();
    expect(c.initial.contactPoint.id).toBe('acme-hq');
    await waitFor(() => closed.filter(Boolean).length >= 9);
    expect(closed.slice(0, 9)).toEqual(Array(9).fill(true));
    expect(closed.slice(-MAX_PENDING_ADMIN_CLIENTS + 1)).toEqual(Array(MAX_PENDING_ADMIN_CLIENTS - 1).fill(false));
    for (const ws of silent) ws.terminate();
  });

  it('logs wrong tokens once a minute with their count, not once each', async () => {
    const lines: string[] = [];
    const counted = new AdminServer({ api: h.cp, logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
    await counted.start();
    try {
      for (let i = 0; i < 20; i++) await expect(AdminClient.connect(counted.wsUrl, `wrong-${i}`)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
      const badTokenLines = (): string[] => lines.filter((l) => /admin connection refused: bad token/.test(l));
      expect(badTokenLines()).toHaveLength(1); // the first at once, the rest summed within the minute
      await counted.stop();
      expect(badTokenLines()).toHaveLength(2);
      expect(badTokenLines()[1]).toMatch(/refused=19/);
    } finally {
      await counted.stop();
    }
  });

  it('streams peer changes, tunnel status and batched message flow with refusals and reasons', async () => {
    const c = await client();
    const peers: PeerView[] = [];
    const tunnel: TunnelView[] = [];
    const batches: FlowBatch[] = [];
    c.subscribe('peer:changed', (p) => void peers.push(p));
    c.subscribe('tunnel:status', (t) => void tunnel.push(t));
    c.subscribe('flow:batch', (b) => void batches.push(b));
    await h.registered('printer');
    expect(peers.some((p) => p.name === 'printer' && p.state === 'pending')).toBe(true);
    await waitFor(() => peers.some((p) => p.name === 'printer' && p.state === 'registered'));
    const alice = await h.external('alice');
    await alice.send('printer@acme-hq', 'hello');
    await h.cp.call('peers:revoke', { name: 'printer' });
    await expect(alice.send('printer@acme-hq', 'again')).rejects.toThrow();
    await waitFor(() => batches.flatMap((b) => b.events).length >= 1 && batches.at(-1)!.totals.refused >= 1, 3_000, 'flow batches');
    const events = batches.flatMap((b) => b.events);
    // Sealed by default: the flow shows the envelope's size, all the contact point sees.
    expect(events.find((e) => e.outcome === 'delivered')).toMatchObject({ dir: 'in', from: 'alice@relay', to: 'printer@acme-hq', size: 5 + SEAL_OVERHEAD, code: 0 });
    const refusal = batches.flatMap((b) => b.events).find((e) => e.outcome === 'refused');
    expect(refusal).toMatchObject({ dir: 'in', to: 'printer@acme-hq', code: 12, reason: 'peer is revoked' });
    expect(batches.at(-1)!.totals.refusals).toEqual({ PEER_NOT_REGISTERED: 1 });
    await waitFor(() => tunnel.length > 0, 3_000, 'tunnel status');
    expect(tunnel.at(-1)!.state).toBe('connected');
  });

  it("tells every admin client when another one changes the port policy", async () => {
    const watcher = await client();
    const setter = await client();
    const seen: PortPolicyView[] = [];
    watcher.subscribe('ports:policy-changed', (p) => void seen.push(p));
    const set = await setter.call('ports:policy', { targets: ['192.168.1.0/24:80-443'], listen: ['tcp:8000-8100'] });
    await waitFor(() => seen.length === 1, 3_000, 'ports:policy-changed');
    expect(seen[0]).toEqual(set);
    expect(seen[0]).toEqual({ targets: ['192.168.1.0/24:80-443'], listen: ['tcp:8000-8100'] });
    // A refused change (bad rule) changes nothing and tells nobody.
    await expect(setter.call('ports:policy', { targets: ['not a rule'], listen: [] })).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toHaveLength(1);
  });
});
