import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, get, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { BIN, cliSuite, operatorSetup, ROOT, type OperatorSetup } from './cli-process.js';

/**
 * Issue 10, item 3: the connections of one `expose` are streams of one port at the contact
 * point, not a port each, so they are not capped by the operator's port limit (64). Real
 * relay, serve and expose processes; a Node HTTP server on loopback is the LAN target.
 */

const suite = cliSuite();
const { cli, start } = suite;

/** A LAN web server whose /hold requests are answered only when release() is called. */
async function webServer(): Promise<{ server: Server; port: number; held: () => number; release: () => void; close: () => void }> {
  const held: ServerResponse[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/hold') held.push(res);
    else res.end('page');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    held: () => held.length,
    release: () => {
      for (const r of held.splice(0)) if (!r.destroyed) r.end('held page');
    },
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** One GET on a fresh connection (no keep-alive); resolves with the body or the error code, within 30 s. */
function fetchOnce(port: number, path: string): Promise<{ ok: true; body: string } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const req = get({ host: '127.0.0.1', port, path, agent: false, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? { ok: true, body } : { ok: false, error: `HTTP ${res.statusCode}` }));
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, error: err.code ?? err.message }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, error: err.code ?? err.message }));
  });
}

/** This process's environment without proxies or contact point settings, HOME set to the test's. */
function cleanEnv(homePath: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: homePath };
  for (const k of Object.keys(env)) if (/^(https?|all)_proxy$/i.test(k) || k.startsWith('CONTACT_POINT_')) delete env[k];
  return env;
}

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The relay, serve allowing the web server, and the operator `tech` (see operatorSetup). */
function setup(web: number, serveFlags: string[] = [], relayFlags: string[] = []): Promise<OperatorSetup> {
  return operatorSetup(suite, { targets: [web], serveFlags, relayFlags });
}

type PortRow = { state: string; streams: number; refused: number; target: string };
async function ports(cpState: string): Promise<PortRow[]> {
  const r = await cli(['ports', '--json', '--state', cpState]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as PortRow[];
}

describe('expose carries thousands of connections as streams', () => {
  it('256 connections open at once through one expose all complete, with no reset', async () => {
    const N = 256;
    const web = await webServer();
    try {
      const s = await setup(web.port);
      const expose = await start(['expose', 'acme-hq', `127.0.0.1:${web.port}`, ...s.asTech, '--json']);
      const publicPort = Number(expose.ready.publicPort);

      // All N requests are held at the server until every one of them is there (or has failed):
      // N connections are open through the exposure at the same time.
      const results: Awaited<ReturnType<typeof fetchOnce>>[] = [];
      const all = Array.from({ length: N }, () => fetchOnce(publicPort, '/hold').then((r) => void results.push(r)));
      await until(`${N} requests held or failed`, () => web.held() + results.length >= N, 25_000);
      const heldAtOnce = web.held();
      web.release();
      await Promise.all(all);
      const failed = results.filter((r) => !r.ok);
      expect({ heldAtOnce, failed: failed.length, errors: [...new Set(failed.map((f) => (f.ok ? '' : f.error)))] }).toEqual({ heldAtOnce: N, failed: 0, errors: [] });
      expect(results.every((r) => r.ok && r.body === 'held page')).toBe(true);

      // The contact point shows the exposure as one port; its connections came and went as streams.
      const rows = await ports(s.cpState);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ state: 'exposed', target: `127.0.0.1:${web.port}`, refused: 0 });
      await until('streams to close', async () => (await ports(s.cpState))[0]?.streams === 0, 10_000);
      expect(expose.events.filter((e) => e.event === 'connections-refused')).toEqual([]);
      expect(await expose.stop('SIGINT')).toBe(0);
    } finally {
      web.release();
      web.close();
    }
  });

  it('past a small limit, only the extra connections are refused, and expose and the Ports data say so', async () => {
    const LIMIT = 6;
    const EXTRA = 4;
    const web = await webServer();
    try {
      const s = await setup(web.port, ['--max-exposure-streams', String(LIMIT)]);
      const expose = await start(['expose', 'acme-hq', `127.0.0.1:${web.port}`, ...s.asTech, '--json']);
      const publicPort = Number(expose.ready.publicPort);

      const first = Array.from({ length: LIMIT }, () => fetchOnce(publicPort, '/hold'));
      await until(`${LIMIT} requests held`, () => web.held() === LIMIT);
      const extra = await Promise.all(Array.from({ length: EXTRA }, () => fetchOnce(publicPort, '/hold')));
      expect(extra.map((r) => (r.ok ? 'ok' : r.error))).toEqual(Array(EXTRA).fill('ECONNRESET'));

      // expose says it, with the count and the status; the contact point counts them on the port.
      const refusedCount = (): number =>
        expose.events.filter((e) => e.event === 'connections-refused').reduce((n, e) => n + Number(e.count), 0);
      await until('expose to report the refusals', () => refusedCount() === EXTRA, 5_000);
      expect(expose.events.find((e) => e.event === 'connections-refused')).toMatchObject({ code: 38, status: 'STREAM_LIMIT' });
      expect(String(expose.events.find((e) => e.event === 'connections-refused')!.reason)).toContain(`${LIMIT} connections of this exposure`);
      const rows = await ports(s.cpState);
      expect(rows).toEqual([expect.objectContaining({ state: 'exposed', streams: LIMIT, refused: EXTRA })]);
      const table = await cli(['ports', '--state', s.cpState]);
      expect(table.stdout).toMatch(new RegExp(`^\\d+\\s+tcp\\s+\\S+\\s+exposed\\s+tech\\s+127\\.0\\.0\\.1:${web.port}\\s+${LIMIT}\\s+${EXTRA}\\s`, 'm'));

      // The held ones were not disturbed; once they are done there is room again.
      web.release();
      expect((await Promise.all(first)).map((r) => (r.ok ? r.body : r.error))).toEqual(Array(LIMIT).fill('held page'));
      // A client has its whole answer a moment before both ends of its connection are closed.
      await until('the streams to close', async () => (await ports(s.cpState))[0]?.streams === 0, 10_000);
      expect(await fetchOnce(publicPort, '/again')).toEqual({ ok: true, body: 'page' });
      expect(await expose.stop('SIGINT')).toBe(0);

      // In text mode expose prints one line with the count and the status.
      const text = await start(['expose', 'acme-hq', `127.0.0.1:${web.port}`, ...s.asTech, '--max-connections', '2', '--json']);
      const textPort = Number(text.ready.publicPort);
      const two = [fetchOnce(textPort, '/hold'), fetchOnce(textPort, '/hold')];
      await until('2 requests held', () => web.held() === 2);
      expect(await fetchOnce(textPort, '/hold')).toEqual({ ok: false, error: 'ECONNRESET' });
      // Refused at the relay (expose's own --max-connections): the contact point never saw it.
      await text.waitForEvent((e) => e.event === 'connections-refused', 'a relay-side refusal', 5_000);
      expect(text.events.find((e) => e.event === 'connections-refused')).toMatchObject({ count: 1, code: 38, reason: '2 connections of this exposure are open' });
      web.release();
      expect((await Promise.all(two)).every((r) => r.ok)).toBe(true);
      expect(await text.stop('SIGINT')).toBe(0);
    } finally {
      web.release();
      web.close();
    }
  });

  it('prints refusals as one line with the count in text mode', async () => {
    const web = await webServer();
    const s = await setup(web.port, [], ['--max-expose-connections', '1']);
    const proc = spawn(process.execPath, [BIN, 'expose', 'acme-hq', `127.0.0.1:${web.port}`, ...s.asTech], { cwd: ROOT, env: cleanEnv(suite.home), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    try {
      await until('the exposed line', () => / as 127\.0\.0\.1:\d+ \(tcp\)/.test(out), 10_000);
      const port = Number(/ as 127\.0\.0\.1:(\d+) \(tcp\)/.exec(out)![1]);
      const held = fetchOnce(port, '/hold');
      await until('1 request held', () => web.held() === 1);
      const refused = await Promise.all([fetchOnce(port, '/x'), fetchOnce(port, '/y'), fetchOnce(port, '/z')]);
      expect(refused.map((r) => (r.ok ? 'ok' : r.error))).toEqual(['ECONNRESET', 'ECONNRESET', 'ECONNRESET']);
      await until('the refusal lines to add up to 3', () => [...err.matchAll(/^(\d+) connections? refused in the last second: STREAM_LIMIT \(38\): 1 connections of this exposure are open$/gm)].reduce((n, m) => n + Number(m[1]), 0) === 3, 5_000);
      expect(err).toContain('--max-expose-connections');
      web.release();
      expect(await held).toEqual({ ok: true, body: 'held page' });
    } finally {
      proc.kill('SIGKILL');
      web.release();
      web.close();
    }
  });
});
