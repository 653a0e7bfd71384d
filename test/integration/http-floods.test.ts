import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { AdminServer } from '../../core/admin/server.js';
import { MAX_PENDING_HELLOS, MAX_PENDING_HELLOS_PER_ADDRESS } from '../../core/protocol/limits.js';
import type { HttpLimits } from '../../core/runtime/http-guard.js';
import { CredentialStore } from '../../core/relay/credentials.js';
import { Relay } from '../../core/relay/relay.js';
import { logger, startHarness, tempDir, waitFor, type Harness } from '../helpers.js';
import { selfSignedCert } from '../net-fixtures.js';

/**
 * Floods of plain HTTP and of idle pre-hello connections against a real relay, contact point
 * peer port and admin endpoint on loopback. Other loopback addresses (127.0.0.2, ...) stand in
 * for other sources: Linux routes all of 127/8 to lo.
 */

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function harness(http?: HttpLimits): Promise<{ h: Harness; targets: { name: string; port: number; path: string; status: number }[] }> {
  const h = await startHarness(http ? { relay: { http }, cp: { peerHttp: http } } : {});
  const admin = new AdminServer({ api: h.cp, logger, ...(http ? { http } : {}) });
  await admin.start();
  cleanup.push(() => h.close(), () => admin.stop());
  const port = (u: string): number => Number(new URL(u).port);
  return {
    h,
    targets: [
      { name: 'relay', port: port(h.relay.url), path: '/nothing-here', status: 404 },
      { name: 'peer port', port: port(h.cp.peerPortUrl), path: '/nothing-here', status: 404 },
      // The admin endpoint serves GET/HEAD only: a POST is 405.
      { name: 'admin endpoint', port: port(admin.url), path: '/', status: 405 },
    ],
  };
}

interface Outcome {
  /** bytes of body the kernel took from us (the server read them or its buffers hold them) */
  accepted: number;
  closed: boolean;
  response: string;
  ms: number;
}

/** Declares a 100 MB body and pushes up to `limit` bytes of it, for at most `deadlineMs`. */
function bodyFlood(port: number, path: string, limit: number, deadlineMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const start = Date.now();
    const s = connect(port, '127.0.0.1');
    let accepted = 0;
    let queued = 0;
    let response = '';
    let closed = false;
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const finish = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ accepted, closed, response, ms: Date.now() - start });
    };
    const timer = setTimeout(finish, deadlineMs);
    s.on('data', (d: Buffer) => (response += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => {
      closed = true;
      finish();
    });
    const pump = (): void => {
      while (queued < limit && !s.destroyed) {
        queued += chunk.length;
        if (!s.write(chunk, (err) => (err ? undefined : (accepted += chunk.length)))) return void s.once('drain', pump);
      }
    };
    s.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000000\r\n\r\n`);
    pump();
  });
}

/** An idle or slowly-writing raw TCP connection; resolves with how long the server kept it. */
function heldFor(port: number, mode: 'silent' | 'slow-headers', maxMs: number): Promise<number> {
  return new Promise((resolve) => {
    const start = Date.now();
    const s = connect(port, '127.0.0.1');
    let ticker: NodeJS.Timeout | undefined;
    const done = (): void => {
      clearInterval(ticker);
      clearTimeout(cap);
      s.destroy();
      resolve(Date.now() - start);
    };
    const cap = setTimeout(done, maxMs);
    s.on('error', () => undefined);
    s.on('close', done);
    if (mode === 'slow-headers') {
      s.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`);
      let n = 0;
      ticker = setInterval(() => s.write(`X-Slow-${n++}: a\r\n`), 100);
    }
  });
}

describe('plain HTTP requests with large bodies', () => {
  it('are answered and closed at once by the relay, the peer port and the admin endpoint, without reading the body', async () => {
    const { targets } = await harness();
    for (const t of targets) {
      // Up to 64 MiB of the declared 100 MB, within 5 s: a server that reads bodies takes it all.
      const o = await bodyFlood(t.port, t.path, 64 * 1024 * 1024, 5_000);
      expect(o.response, t.name).toMatch(new RegExp(`^HTTP/1.1 ${t.status} `));
      expect(o.response.toLowerCase(), t.name).toContain('connection: close');
      expect(o.closed, `${t.name} closed the connection`).toBe(true);
      expect(o.ms, t.name).toBeLessThan(2_000);
      // What the kernel's socket buffers hold on loopback is a few MiB at most; the server read none of the rest.
      expect(o.accepted, `${t.name} took ${o.accepted} bytes`).toBeLessThan(16 * 1024 * 1024);
    }
  });

  it('does not invite a body with 100 Continue', async () => {
    const { targets } = await harness();
    for (const t of targets) {
      const s = connect(t.port, '127.0.0.1');
      let response = '';
      s.on('data', (d: Buffer) => (response += d.toString('latin1')));
      s.on('error', () => undefined);
      const closed = new Promise<void>((r) => s.on('close', () => r()));
      s.write(`POST ${t.path} HTTP/1.1\r\nHost: 127.0.0.1:${t.port}\r\nExpect: 100-continue\r\nContent-Length: 100000000\r\n\r\n`);
      await closed;
      expect(response, t.name).toMatch(new RegExp(`^HTTP/1.1 ${t.status} `));
      expect(response, t.name).not.toContain('100 Continue');
    }
  });
});

describe('slow or silent HTTP clients', () => {
  it('are dropped after the headers timeout', async () => {
    const { targets } = await harness({ headersTimeoutMs: 500, requestTimeoutMs: 1_000 });
    for (const t of targets) {
      const [silent, slow] = await Promise.all([heldFor(t.port, 'silent', 5_000), heldFor(t.port, 'slow-headers', 5_000)]);
      for (const [what, ms] of [['silent', silent], ['slow headers', slow]] as const) {
        expect(ms, `${t.name}, ${what}`).toBeGreaterThanOrEqual(450);
        expect(ms, `${t.name}, ${what}`).toBeLessThan(2_000);
      }
    }
  });

  it('a wss relay drops a connection that never finishes its TLS handshake', async () => {
    await using dir = await tempDir();
    const relay = new Relay({ credentials: CredentialStore.inMemory(), logger, tls: selfSignedCert(dir.path), http: { headersTimeoutMs: 500, requestTimeoutMs: 1_000 } });
    await relay.start();
    cleanup.push(() => relay.stop());
    const ms = await heldFor(Number(new URL(relay.url).port), 'silent', 5_000);
    expect(ms).toBeGreaterThanOrEqual(450);
    expect(ms).toBeLessThan(2_000);
  });

  it.each(['ws', 'wss'])('leaves upgraded connections alone: tunnel (%s) and peers outlive the HTTP timeouts', async (scheme) => {
    const http = { headersTimeoutMs: 200, requestTimeoutMs: 400 };
    await using dir = await tempDir();
    const tls = scheme === 'wss' ? selfSignedCert(dir.path) : undefined;
    const h = await startHarness({ relay: { http, ...(tls ? { tls } : {}) }, cp: { peerHttp: http, ...(tls ? { ca: tls.cert } : {}) } });
    expect(h.relay.url.startsWith(`${scheme}://`)).toBe(true);
    cleanup.push(() => h.close());
    const printer = await h.registered('printer');
    const alice = await h.external('alice', tls ? { ca: tls.cert } : {});
    await new Promise((r) => setTimeout(r, 1_500));
    await alice.send('printer@acme-hq', 'still here');
    expect(printer.stats.received).toBe(1);
    expect(h.cp.gateway.status().reconnects).toBe(0);
    expect(printer.status().reconnects).toBe(0);
  });

  it('refuses limits that make no sense, with the limit named', async () => {
    const A = AdminServer;
    const h = await startHarness();
    cleanup.push(() => h.close());
    await expect(new A({ api: h.cp, logger, http: { headersTimeoutMs: 0 } }).start()).rejects.toThrow(/headersTimeoutMs must be a positive integer, got 0/);
    await expect(new A({ api: h.cp, logger, http: { headersTimeoutMs: 5_000, requestTimeoutMs: 1_000 } }).start()).rejects.toThrow(
      /headersTimeoutMs \(5000\) must not exceed requestTimeoutMs \(1000\)/,
    );
  });
});

/** Opens `count` idle TCP connections from `localAddress`; returns them with a live count. */
async function idleSockets(port: number, localAddress: string, count: number): Promise<{ sockets: Socket[]; open(): number }> {
  const sockets: Socket[] = [];
  let closed = 0;
  await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<void>((resolve) => {
          const s = connect({ port, host: '127.0.0.1', localAddress });
          sockets.push(s);
          s.on('error', () => undefined);
          s.once('connect', () => resolve());
          s.once('close', () => {
            closed++;
            resolve();
          });
        }),
    ),
  );
  cleanup.push(() => sockets.forEach((s) => s.destroy()));
  return { sockets, open: () => count - closed };
}

describe('connections that have not upgraded', () => {
  it('are capped per source and in total, while real clients still connect', async () => {
    const { h, targets } = await harness({ maxConnections: 32, maxConnectionsPerAddress: 8 });
    const relayPort = targets[0]!.port;
    // One source over its own cap: only 8 stay.
    const one = await idleSockets(relayPort, '127.0.0.2', 20);
    await new Promise((r) => setTimeout(r, 200));
    expect(one.open()).toBe(8);
    // Five more sources, 8 each: 48 in all against a total of 32; the largest holders give way.
    const more = await Promise.all(['127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7'].map((a) => idleSockets(relayPort, a, 8)));
    await new Promise((r) => setTimeout(r, 200));
    const open = one.open() + more.reduce((n, m) => n + m.open(), 0);
    expect(open).toBeLessThanOrEqual(32);
    // The flood holds every slot, yet an external peer connects (a fresh source takes a slot)
    // and the tunnel keeps working.
    const alice = await h.external('alice');
    const printer = await h.registered('printer');
    await alice.send('printer@acme-hq', 'through the flood');
    expect(printer.stats.received).toBe(1);
  });
});

/** Sources each holding `perSource` idle ws connections that never say hello, reopened as soon as one is closed. */
function helloFlood(url: string, sources: string[], perSource: number): { stop(): void; opened(): number } {
  let stopped = false;
  let opened = 0;
  const all = new Set<WebSocket>();
  const open = (localAddress: string): void => {
    if (stopped) return;
    const ws = new WebSocket(url, { localAddress, perMessageDeflate: false });
    all.add(ws);
    ws.on('open', () => opened++);
    ws.on('error', () => undefined);
    ws.on('close', () => {
      all.delete(ws);
      // an attacker retries at once; a short pause keeps the test's loop bounded
      setTimeout(() => open(localAddress), 5);
    });
  };
  for (const a of sources) for (let i = 0; i < perSource; i++) open(a);
  const stop = (): void => {
    stopped = true;
    for (const ws of all) ws.terminate();
  };
  cleanup.push(stop);
  return { stop, opened: () => opened };
}

describe('pre-hello slots', () => {
  const floods: [string, string[], number][] = [
    ['8 sources holding 32 each', Array.from({ length: MAX_PENDING_HELLOS / MAX_PENDING_HELLOS_PER_ADDRESS }, (_, i) => `127.0.0.${i + 2}`), MAX_PENDING_HELLOS_PER_ADDRESS],
    ['256 sources holding 1 each', Array.from({ length: MAX_PENDING_HELLOS }, (_, i) => `127.0.${Math.floor(i / 200) + 1}.${(i % 200) + 2}`), 1],
  ];
  it.each(floods)('a contact point whose tunnel drops reconnects within 2 s while idle sockets from %s fill every slot', async (_what, sources, perSource) => {
    const h = await startHarness();
    cleanup.push(() => h.close());
    const flood = helloFlood(h.relay.url, sources, perSource);
    await waitFor(() => flood.opened() >= MAX_PENDING_HELLOS, 10_000, 'the flood holds every pending-hello slot');
    const reconnectsBefore = h.cp.gateway.status().reconnects;
    const dropped = Date.now();
    h.cp.gateway.reconnectNow();
    await waitFor(() => !h.cp.gateway.connected, 2_000, 'tunnel down');
    await waitFor(() => h.cp.gateway.connected, 6_000, 'tunnel back through the flood');
    const ms = Date.now() - dropped;
    expect(h.cp.gateway.status().reconnects).toBeGreaterThan(reconnectsBefore);
    expect(ms).toBeLessThan(2_000);
    // and it stays up: the flood goes on replacing its own sockets, not the tunnel
    await new Promise((r) => setTimeout(r, 500));
    expect(h.cp.gateway.connected).toBe(true);
    flood.stop();
  });
});

describe('pre-hello slots at the peer port', () => {
  it('a LAN peer connects within 2 s while idle sockets from 8 sources fill every slot', async () => {
    const h = await startHarness();
    cleanup.push(() => h.close());
    const sources = Array.from({ length: MAX_PENDING_HELLOS / MAX_PENDING_HELLOS_PER_ADDRESS }, (_, i) => `127.0.0.${i + 2}`);
    const flood = helloFlood(h.cp.peerPortUrl, sources, MAX_PENDING_HELLOS_PER_ADDRESS);
    await waitFor(() => flood.opened() >= MAX_PENDING_HELLOS, 10_000, 'the flood holds every pending-hello slot');
    const start = Date.now();
    const late = await h.internal('late');
    expect(late.status().state).toBe('connected');
    expect(Date.now() - start).toBeLessThan(2_000);
    flood.stop();
  });
});
