import { once } from 'node:events';
import { createServer, get, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { cliSuite, operatorSetup, type OperatorSetup, type Service } from './cli-process.js';

/**
 * Issue 18: one operator credential, several `expose` commands at once. Each is its own
 * session at the relay; a refused one (PORT_IN_USE, SESSION_LIMIT) leaves the others serving;
 * removing the credential ends them all. Real relay, serve, expose and peer send processes; a
 * Node HTTP server on loopback per exposure is the LAN target.
 */

const suite = cliSuite();
const { cli, start } = suite;

/** A LAN web server answering every request with `body`. */
async function webServer(body: string): Promise<{ port: number }> {
  const server: Server = createServer((_req, res) => res.end(body));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  suite.cleanup(() => {
    server.closeAllConnections();
    server.close();
  });
  return { port: (server.address() as AddressInfo).port };
}

/** One GET on a fresh connection: the body, or the error code. */
function fetchPage(port: number): Promise<string> {
  return new Promise((resolve) => {
    const req = get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? body : `HTTP ${res.statusCode}`));
      res.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
  });
}

/** The relay (with `relayFlags`), serve allowing the targets, and the operator `tech`. */
function setup(targets: number[], relayFlags: string[] = []): Promise<OperatorSetup> {
  return operatorSetup(suite, { targets, relayFlags });
}

/** Both exposures still up: their processes running, never told the relay connection was lost, each page served. */
async function expectServing(exposes: { svc: Service; body: string }[]): Promise<void> {
  for (const { svc, body } of exposes) {
    expect(svc.proc.exitCode, svc.stderr()).toBeNull();
    expect(svc.events.filter((e) => e.event === 'lost')).toEqual([]);
    expect(await fetchPage(Number(svc.ready.publicPort))).toBe(body);
  }
}

describe('one operator credential, several expose commands', () => {
  it('two exposures of one credential serve side by side; a third refused PORT_IN_USE leaves both serving', async () => {
    const webA = await webServer('page A');
    const webB = await webServer('page B');
    const s = await setup([webA.port, webB.port]);
    const a = await start(['expose', 'acme-hq', `127.0.0.1:${webA.port}`, ...s.asTech, '--json']);
    const b = await start(['expose', 'acme-hq', `127.0.0.1:${webB.port}`, ...s.asTech, '--json']);
    expect(b.ready.publicPort).not.toBe(a.ready.publicPort);
    const both = [
      { svc: a, body: 'page A' },
      { svc: b, body: 'page B' },
    ];
    await expectServing(both);

    // The same public port as the first: refused, exit 3 as before; the two others go on.
    const third = await cli(['expose', 'acme-hq', `127.0.0.1:${webB.port}`, ...s.asTech, '--public-port', String(a.ready.publicPort)]);
    expect(third.code, third.stderr).toBe(3);
    expect(third.stderr).toContain('PORT_IN_USE (31)');
    await expectServing(both);

    // Ending one leaves the other.
    expect(await a.stop('SIGINT')).toBe(0);
    expect(await fetchPage(Number(a.ready.publicPort))).toMatch(/^error (ECONNREFUSED|ECONNRESET)/);
    await expectServing([{ svc: b, body: 'page B' }]);
  });

  it('the session over the relay\'s cap is refused with SESSION_LIMIT (115) and a clear message; the others keep serving', async () => {
    const webA = await webServer('page A');
    const webB = await webServer('page B');
    const s = await setup([webA.port, webB.port], ['--max-sessions-per-credential', '2']);
    const a = await start(['expose', 'acme-hq', `127.0.0.1:${webA.port}`, ...s.asTech, '--json']);
    const b = await start(['expose', 'acme-hq', `127.0.0.1:${webB.port}`, ...s.asTech, '--json']);

    const [third, send] = await Promise.all([
      cli(['expose', 'acme-hq', `127.0.0.1:${webA.port}`, ...s.asTech]),
      cli(['peer', 'send', ...s.asTech, '--to', 'printer@acme-hq', 'hello']),
    ]);
    for (const r of [third, send]) {
      expect(r.code, r.stderr).toBe(3);
      expect(r.stderr).toContain('refused: SESSION_LIMIT (115): credential "tech" has 2 sessions at the relay');
      expect(r.stderr).toContain('relay --max-sessions-per-credential');
    }
    await expectServing([
      { svc: a, body: 'page A' },
      { svc: b, body: 'page B' },
    ]);
  });

  it('removing the credential ends every expose of it', async () => {
    const webA = await webServer('page A');
    const webB = await webServer('page B');
    const s = await setup([webA.port, webB.port]);
    const a = await start(['expose', 'acme-hq', `127.0.0.1:${webA.port}`, ...s.asTech, '--json']);
    const b = await start(['expose', 'acme-hq', `127.0.0.1:${webB.port}`, ...s.asTech, '--json']);
    await expectServing([
      { svc: a, body: 'page A' },
      { svc: b, body: 'page B' },
    ]);

    const removed = await cli(['relay', 'credential', 'remove', '--kind', 'external', '--id', 'tech', '--state', s.relayState]);
    expect(removed.code, removed.stderr).toBe(0);
    const [ca, cb] = await Promise.all([a.exited(10_000), b.exited(10_000)]);
    expect({ ca, cb }).toEqual({ ca: 1, cb: 1 });
    for (const svc of [a, b]) {
      expect(svc.stderr()).toContain('REVOKED');
      expect(await fetchPage(Number(svc.ready.publicPort))).toMatch(/^error (ECONNREFUSED|ECONNRESET)/);
    }
  });
});
