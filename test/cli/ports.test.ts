import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cliSuite } from './cli-process.js';

/**
 * Port mediation through the real CLI: relay + serve (with --allow-target/--allow-listen) +
 * expose, and the system curl fetching a LAN web page through the relay's public port while
 * `ports` shows, closes and polices it.
 */

const suite = cliSuite();
const { cli, start } = suite;

const CURL = '/usr/bin/curl';

beforeAll(() => {
  if (!existsSync(CURL)) throw new Error(`${CURL} is missing: these tests fetch pages with the system curl (install it: apt-get install curl; .ci/run does)`);
});

interface CurlRun {
  readonly done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** The system curl, never through a proxy, bounded by --max-time. */
function curl(url: string): CurlRun {
  const proc = spawn(CURL, ['--silent', '--show-error', '--noproxy', '*', '--max-time', '10', url], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return { done: once(proc, 'close').then(([code]) => ({ code: code as number | null, stdout, stderr })) };
}

/** A LAN "device": a web page, and /slow, which answers only when released. */
async function webServer(): Promise<{ server: Server; port: number; slowArrived: Promise<void>; release: () => void }> {
  let arrived: () => void = () => undefined;
  const slowArrived = new Promise<void>((resolve) => (arrived = resolve));
  const held: ServerResponse[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/slow') {
      held.push(res);
      arrived();
      return;
    }
    res.end(`printer config page for ${req.url}`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    slowArrived,
    release: () => {
      for (const r of held.splice(0)) if (!r.destroyed) r.end('slow page');
    },
  };
}

async function poll<T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 5_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > until) throw new Error(`${what}: still ${JSON.stringify(v)} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('expose + curl + ports, all through the CLI', () => {
  it('serves a LAN page at the relay port, lists and closes its port, polices it, and refuses what is not allowed', async () => {
    const web = await webServer();
    try {
      const relayState = join(suite.home, 'relay');
      const cpState = join(suite.home, 'cp');
      const cred = (id: string): string => join(suite.home, `${id}.credential`);
      for (const [kind, id, rights] of [
        ['contact-point', 'acme-hq', 'send'],
        ['external', 'tech', 'send,mediate'],
        ['external', 'visitor', 'send'],
      ] as const) {
        const r = await cli(['relay', 'credential', 'add', '--kind', kind, '--id', id, '--rights', rights, '--out', cred(id), '--state', relayState]);
        expect(r.code, r.stderr).toBe(0);
      }

      const relay = await start(['relay', '--listen', '127.0.0.1:0', '--state', relayState, '--json', '--log-level', 'warn']);
      const relayUrl = String(relay.ready.url);
      const serve = await start([
        'serve', '--relay', relayUrl, '--id', 'acme-hq', '--credential-file', cred('acme-hq'),
        '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--state', cpState, '--json', '--log-level', 'warn',
        '--allow-target', `127.0.0.1/32:${web.port}`, '--allow-listen', 'tcp:1-65535',
      ]);
      expect(serve.ready).toMatchObject({ tunnel: 'connected', portPolicy: { targets: [`127.0.0.1/32:${web.port}`], listen: ['tcp:1-65535'] } });

      const asTech = ['--relay', relayUrl, '--id', 'tech', '--credential-file', cred('tech')];
      const expose = await start(['expose', 'acme-hq', `127.0.0.1:${web.port}`, ...asTech, '--json']);
      const publicPort = Number(expose.ready.publicPort);
      expect(expose.ready).toMatchObject({ contactPoint: 'acme-hq', proto: 'tcp', target: `127.0.0.1:${web.port}`, publicHost: '127.0.0.1', address: `127.0.0.1:${publicPort}` });
      expect(publicPort).toBeGreaterThan(0);
      const base = `http://127.0.0.1:${publicPort}`;

      // curl through the relay's public port reaches the LAN page.
      const page = await curl(`${base}/status`).done;
      expect(page, page.stderr).toMatchObject({ code: 0, stdout: 'printer config page for /status' });

      // The exposure is one port at the contact point (state exposed); a request in flight is one of its streams.
      const slow = curl(`${base}/slow`);
      await web.slowArrived;
      const listed = await poll('the in-flight stream', async () => JSON.parse((await cli(['ports', '--json', '--state', cpState])).stdout) as Record<string, unknown>[], (l) => l.length === 1 && l[0]!.streams === 1);
      expect(listed[0]).toMatchObject({ proto: 'tcp', state: 'exposed', operator: 'tech', target: `127.0.0.1:${web.port}`, streams: 1, refused: 0 });
      const id = Number(listed[0]!.id);
      const table = await cli(['ports', '--state', cpState]);
      expect(table.code, table.stderr).toBe(0);
      expect(table.stdout).toMatch(/^ID\s+PROTO\s+LOCAL\s+STATE\s+OPERATOR\s+TARGET\s+STREAMS\s+REFUSED\s+IN\s+OUT\s+AGE\n/);
      expect(table.stdout).toMatch(new RegExp(`^${id}\\s+tcp\\s+\\S+\\s+exposed\\s+tech\\s+127\\.0\\.0\\.1:${web.port}\\s+1\\s+0\\s`, 'm'));

      // Closing it resets its connections: curl fails, and the list empties.
      const closed = await cli(['ports', 'close', String(id), '--state', cpState]);
      expect(closed.code, closed.stderr).toBe(0);
      expect(closed.stdout).toBe(`port ${id} closed; its connections were reset\n`);
      expect((await slow.done).code).not.toBe(0);
      web.release();
      await poll('no ports after the close', async () => (await cli(['ports', '--json', '--state', cpState])).stdout.trim(), (s) => s === '[]');
      const unknown = await cli(['ports', 'close', String(id), '--state', cpState]);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toMatch(/no open port with id \d+.*\(NOT_FOUND\)/);

      // The exposure lives on: the next request gets it a new port, which stays (with no stream) once the request is done.
      expect((await curl(`${base}/ink`).done).stdout).toBe('printer config page for /ink');
      const after = await poll('the exposure port with no stream', async () => JSON.parse((await cli(['ports', '--json', '--state', cpState])).stdout) as Record<string, unknown>[], (l) => l.length === 1 && l[0]!.streams === 0);
      expect(after[0]).toMatchObject({ state: 'exposed', target: `127.0.0.1:${web.port}` });
      expect(Number(after[0]!.id)).not.toBe(id);

      // Without the mediate right: refused at the relay, exit 3 with the numbered status.
      const visitor = await cli(['expose', 'acme-hq', `127.0.0.1:${web.port}`, '--relay', relayUrl, '--id', 'visitor', '--credential-file', cred('visitor')]);
      expect(visitor.code, visitor.stderr).toBe(3);
      expect(visitor.stderr).toMatch(/refused: PERMISSION_DENIED \(30\): this credential may not drive port mediation/);
      expect(visitor.stderr).toContain('--rights send,mediate');

      // The policy: shown, refused when a rule is bad (exit 2, naming it), changed.
      const shown = await cli(['ports', 'policy', '--state', cpState]);
      expect(shown.stdout).toBe(`targets  127.0.0.1/32:${web.port}\nlisten   tcp:1-65535\n`);
      const bad = await cli(['ports', 'policy', 'set', '--target', '10.0.0.0/33:80', '--state', cpState]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('--target: target rule "10.0.0.0/33:80": prefix must be 0-32');
      const badListen = await cli(['ports', 'policy', 'set', '--listen', 'sctp:80', '--state', cpState]);
      expect(badListen.code).toBe(2);
      expect(badListen.stderr).toContain('--listen: listen rule "sctp:80"');
      const set = await cli(['ports', 'policy', 'set', '--target', '192.168.1.0/24:80,443', '--target', `127.0.0.1/32:${web.port}`, '--state', cpState]);
      expect(set.code, set.stderr).toBe(0);
      expect(set.stderr).toMatch(/note: 127\.0\.0\.1\/32:\d+ names loopback/);
      expect(JSON.parse((await cli(['ports', 'policy', 'show', '--json', '--state', cpState])).stdout)).toEqual({
        targets: ['192.168.1.0/24:80,443', `127.0.0.1/32:${web.port}`],
        listen: ['tcp:1-65535'],
      });

      // Ctrl-C ends the exposure: exit 0, the public port is gone, and so is its port at the contact point.
      expect(await expose.stop('SIGINT')).toBe(0);
      expect((await curl(`${base}/`).done).code).not.toBe(0);
      await poll('no ports once the exposure ended', async () => (await cli(['ports', '--json', '--state', cpState])).stdout.trim(), (s) => s === '[]');
      const none = await cli(['ports', '--state', cpState]);
      expect(none).toMatchObject({ code: 0, stdout: '' });
      expect(none.stderr).toContain('no open ports');

      // A target the admin did not allow: the test connection is refused, exit 3, with a hint.
      // (An ordinary LAN address: 192.0.2.1, a documentation range, is reserved and so UNSAFE_TARGET.)
      const notAllowed = await cli(['expose', 'acme-hq', '10.9.8.7:80', ...asTech]);
      expect(notAllowed.code, notAllowed.stderr).toBe(3);
      expect(notAllowed.stderr).toMatch(/acme-hq refused the test connection to 10\.9\.8\.7:80: PERMISSION_DENIED \(30\): no target rule allows 10\.9\.8\.7:80/);
      expect(notAllowed.stderr).toContain('ports policy set --target 10.9.8.7/32:80');
      const unknownCp = await cli(['expose', 'branch-office', `127.0.0.1:${web.port}`, ...asTech, '--json']);
      expect(unknownCp.code).toBe(3);
      expect(JSON.parse(unknownCp.stdout)).toMatchObject({ event: 'refused', code: 10, status: 'UNKNOWN_CONTACT_POINT' });

      // The policy set through the admin API was saved: a restart without flags keeps it.
      expect(await serve.stop('SIGTERM')).toBe(0);
      const again = await start([
        'serve', '--relay', relayUrl, '--id', 'acme-hq', '--credential-file', cred('acme-hq'),
        '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--state', cpState, '--json', '--log-level', 'warn',
        '--allow-listen', 'tcp:8000-8100',
      ]);
      // --allow-listen replaced the listen list; the stored targets stayed.
      expect(again.ready).toMatchObject({ portPolicy: { targets: ['192.168.1.0/24:80,443', `127.0.0.1/32:${web.port}`], listen: ['tcp:8000-8100'] } });
      expect(await again.stop('SIGTERM')).toBe(0);
      expect(await relay.stop('SIGTERM')).toBe(0);
    } finally {
      web.release();
      web.server.closeAllConnections();
      web.server.close();
    }
  }, 60_000);

  it('exposes a UDP service: datagrams to the relay port reach it and its answers come back', async () => {
    const echo = createSocket('udp4');
    echo.on('message', (m, from) => echo.send(`echo:${m.toString()}`, from.port, from.address));
    echo.bind(0, '127.0.0.1');
    await once(echo, 'listening');
    const client = createSocket('udp4');
    try {
      const udpPort = echo.address().port;
      const relayState = join(suite.home, 'relay');
      const cpCred = join(suite.home, 'cp.credential');
      const techCred = join(suite.home, 'tech.credential');
      expect((await cli(['relay', 'credential', 'add', '--kind', 'contact-point', '--id', 'acme-hq', '--out', cpCred, '--state', relayState])).code).toBe(0);
      expect((await cli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'tech', '--rights', 'mediate', '--out', techCred, '--state', relayState])).code).toBe(0);
      const relay = await start(['relay', '--listen', '127.0.0.1:0', '--state', relayState, '--json', '--log-level', 'warn']);
      const relayUrl = String(relay.ready.url);
      await start([
        'serve', '--relay', relayUrl, '--id', 'acme-hq', '--credential-file', cpCred, '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0',
        '--state', join(suite.home, 'cp'), '--json', '--log-level', 'warn', '--allow-target', `127.0.0.1/32:${udpPort}`, '--allow-listen', 'udp:1-65535',
      ]);
      const expose = await start(['expose', 'acme-hq', `127.0.0.1:${udpPort}`, '--udp', '--relay', relayUrl, '--id', 'tech', '--credential-file', techCred, '--json']);
      expect(expose.ready).toMatchObject({ proto: 'udp', target: `127.0.0.1:${udpPort}` });
      const publicPort = Number(expose.ready.publicPort);
      const replies: string[] = [];
      client.on('message', (m) => replies.push(m.toString()));
      // The first datagram sets up the mapping at the contact point (UDP may drop it meanwhile): keep sending.
      for (let i = 0; i < 100 && replies.length < 2; i++) {
        client.send(`ping ${i}`, publicPort, '127.0.0.1');
        await new Promise((r) => setTimeout(r, 30));
      }
      expect(replies.length).toBeGreaterThanOrEqual(2);
      expect(replies[0]).toMatch(/^echo:ping \d+$/);
      expect(await expose.stop('SIGTERM')).toBe(0);
    } finally {
      client.close();
      echo.close();
    }
  }, 30_000);
});
