import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { BIN, childEnv, cliSuite, ROOT } from './cli-process.js';

/**
 * Issue 13 items 3 and 5 through the real CLI: `--log-format json` makes every line a relay
 * and a contact point write parse as JSON, and /livez, /readyz, /healthz tell live from ready
 * on the relay's port and on the contact point's admin endpoint.
 */

const suite = cliSuite();
const { cli, start } = suite;

interface Probe {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

async function probe(base: string, path: string): Promise<Probe> {
  const res = await fetch(new URL(path, base), { signal: AbortSignal.timeout(5_000) });
  expect(res.headers.get('content-type')).toBe('application/json');
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

function statusWithHost(base: string, path: string, host: string): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, base), { headers: { host }, timeout: 5_000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', reject);
    req.end();
  });
}

async function until(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > ms) throw new Error(`no ${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every line parsed as a JSON object; a line that is not one fails the test, naming it. */
function jsonLines(text: string, where: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((line) => {
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        throw new Error(`${where}: not a JSON line: ${line}`);
      }
      expect(v, `${where}: ${line}`).toBeTypeOf('object');
      return v as Record<string, unknown>;
    });
}

/** The relay's HTTP base URL from its ws:// URL. */
const httpBase = (wsUrl: string): string => wsUrl.replace(/^ws:/, 'http:').replace(/\/v1$/, '/');

async function addCredential(kind: string, id: string, relayState: string): Promise<string> {
  const out = join(suite.home, `${id}.credential`);
  const r = await cli(['relay', 'credential', 'add', '--kind', kind, '--id', id, '--out', out, '--state', relayState]);
  expect(r.code, r.stderr).toBe(0);
  return out;
}

describe('--log-format json', () => {
  it('makes every stdout and stderr line of a relay and a contact point a JSON object with time, level and msg', async () => {
    const relayState = join(suite.home, 'relay');
    const cpState = join(suite.home, 'cp');
    const cred = await addCredential('contact-point', 'acme-hq', relayState);
    const relay = await start(['relay', '--listen', '127.0.0.1:0', '--state', relayState, '--log-format', 'json', '--log-level', 'debug', '--json']);
    const relayUrl = String(relay.ready.url);
    // --log-format=json and the environment variable are the same switch.
    const serve = await start(
      ['serve', '--relay', relayUrl, '--id', 'acme-hq', '--credential-file', cred, '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--state', cpState, '--log-level', 'debug', '--json'],
      { env: { CONTACT_POINT_LOG_FORMAT: 'json' } },
    );
    expect(serve.ready).toMatchObject({ tunnel: 'connected' });
    // A refused hello gives the relay a warning and the sender an error, both with fields.
    const wrong = join(suite.home, 'wrong.credential');
    await writeFile(wrong, 'epk_not-a-real-secret\n', { mode: 0o600 });
    const send = await cli(['peer', 'send', '--relay', relayUrl, '--id', 'mallory', '--credential-file', wrong, '--to', 'printer@acme-hq', '--deadline-ms', '2000', '--log-format', 'json', 'hi']);
    expect(send.code).not.toBe(0);
    expect(send.stderr).not.toBe('');
    for (const line of jsonLines(send.stderr, 'peer send stderr')) expect(line).toMatchObject({ level: expect.any(String) as string });

    expect(await serve.stop()).toBe(0);
    expect(await relay.stop()).toBe(0);
    for (const [where, text] of [
      ['relay stdout', relay.stdout()],
      ['relay stderr', relay.stderr()],
      ['serve stdout', serve.stdout()],
      ['serve stderr', serve.stderr()],
    ] as const) {
      for (const line of jsonLines(text, where)) {
        if (where.endsWith('stdout')) {
          expect(line.event).toBe('ready');
          continue;
        }
        expect(Object.keys(line).slice(0, 3), `${where}: ${JSON.stringify(line)}`).toEqual(['time', 'level', 'msg']);
        expect(new Date(String(line.time)).toISOString()).toBe(line.time);
        expect(['debug', 'info', 'warn', 'error']).toContain(line.level);
      }
    }
    const relayLogs = jsonLines(relay.stderr(), 'relay stderr');
    expect(relayLogs.find((l) => l.msg === 'tunnel up')).toMatchObject({ level: 'info', id: 'acme-hq' });
    expect(relayLogs.length).toBeGreaterThan(3);
    expect(jsonLines(serve.stderr(), 'serve stderr').some((l) => l.level === 'debug')).toBe(true);
  });

  it('logs the ready event instead of the text banner, without the admin token', async () => {
    const relayState = join(suite.home, 'relay');
    const cpState = join(suite.home, 'cp');
    const cred = await addCredential('contact-point', 'acme-hq', relayState);
    const relay = await start(['relay', '--listen', '127.0.0.1:0', '--state', relayState, '--json']);
    // No --json: with --log-format json the banner becomes a log line on stderr, so this serve
    // is watched there (startCli waits for a stdout event).
    const args = ['serve', '--relay', String(relay.ready.url), '--id', 'acme-hq', '--credential-file', cred, '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--state', cpState, '--log-format', 'json'];
    const proc = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: childEnv(suite.home, {}), stdio: ['ignore', 'pipe', 'pipe'] });
    suite.cleanup(() => proc.kill('SIGKILL'));
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const lines: Record<string, unknown>[] = [];
    createInterface({ input: proc.stderr }).on('line', (l) => lines.push(...jsonLines(l, 'serve stderr')));
    await until(() => Promise.resolve(lines.some((l) => l.msg === 'ready')), 10_000, 'ready log line');
    const ready = lines.find((l) => l.msg === 'ready');
    const { token } = JSON.parse(await readFile(join(cpState, 'admin.json'), 'utf8')) as { token: string };
    expect(JSON.stringify(lines)).not.toContain(token);
    expect(out).toBe('');
    expect(ready).toMatchObject({ level: 'info', contactPoint: 'acme-hq', tunnel: 'connected', adminUrl: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/) as string });
    expect(ready).not.toHaveProperty('token');
    expect(ready).not.toHaveProperty('guiUrl');
  });

  it('refuses a bad format with exit 2 and says which values it takes; errors after it are JSON lines', async () => {
    const bad = await cli(['relay', '--log-format', 'xml']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('contact-point relay: --log-format "xml": expected text or json');
    const missing = await cli(['serve', '--log-format']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--log-format needs a value: text or json');
    const env = await cli(['relay'], { CONTACT_POINT_LOG_FORMAT: 'yaml' });
    expect(env.code).toBe(2);
    expect(env.stderr).toContain('CONTACT_POINT_LOG_FORMAT "yaml": expected text or json');

    const usage = await cli(['relay', '--log-format', 'json', '--listen', 'nowhere']);
    expect(usage.code).toBe(2);
    const [line, ...more] = jsonLines(usage.stderr, 'relay stderr');
    expect(more).toEqual([]);
    expect(line).toMatchObject({ level: 'error', command: 'contact-point relay', msg: expect.stringContaining('--listen') as string, hint: 'Run `contact-point relay --help` for usage.' });
    const help = await cli(['relay', '--help']);
    expect(help.stdout).toMatch(/--log-format FORMAT +text or json/);
  });
});

describe('health: live and ready', () => {
  it('relay: ready while its credentials file reads; corrupt, /readyz is 503 with a reason while /livez stays 200; fixed, ready again', async () => {
    const relayState = join(suite.home, 'relay');
    await addCredential('contact-point', 'acme-hq', relayState);
    const relay = await start(['relay', '--listen', '127.0.0.1:0', '--state', relayState, '--json']);
    const base = httpBase(String(relay.ready.url));
    expect(await probe(base, '/livez')).toEqual({ status: 200, body: { live: true } });
    expect(await probe(base, '/readyz')).toEqual({ status: 200, body: { ready: true } });
    expect(await probe(base, '/readyz?verbose')).toMatchObject({ status: 200 });
    expect(await probe(base, '/healthz')).toEqual({ status: 200, body: { ok: true, ready: true, name: 'relay', tunnels: 0, externals: 0, sockets: 0 } });
    const head = await fetch(new URL('/readyz', base), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');

    const file = join(relayState, 'credentials.json');
    const good = await readFile(file, 'utf8');
    // Corrupt rather than chmod 000: these tests may run as root, who reads any file.
    await writeFile(file, good.slice(0, good.length / 2));
    await until(async () => (await probe(base, '/readyz')).status === 503, 10_000, '/readyz 503');
    const notReady = await probe(base, '/readyz');
    expect(notReady.body).toEqual({ ready: false, reason: 'the credentials file cannot be read; the relay keeps the last good set (its log says why)' });
    // The public reason names no path; the log does.
    expect(JSON.stringify(notReady.body)).not.toContain(relayState);
    expect(relay.stderr()).toMatch(/credentials file unreadable; keeping the last good set/);
    expect(await probe(base, '/livez')).toEqual({ status: 200, body: { live: true } });
    expect(await probe(base, '/healthz')).toMatchObject({ status: 200, body: { ok: true, ready: false } });

    await writeFile(file, good);
    await until(async () => (await probe(base, '/readyz')).status === 200, 10_000, '/readyz 200 again');
  });

  it('contact point: /readyz on the admin endpoint (no token) is 503 with the tunnel state while the relay is down, 200 after it reconnects', async () => {
    const relayState = join(suite.home, 'relay');
    const cred = await addCredential('contact-point', 'acme-hq', relayState);
    const relay = await start(['relay', '--listen', '127.0.0.1:0', '--state', relayState, '--json']);
    const relayUrl = String(relay.ready.url);
    const serve = await start(['serve', '--relay', relayUrl, '--id', 'acme-hq', '--credential-file', cred, '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--state', join(suite.home, 'cp'), '--json']);
    const admin = new URL(String(serve.ready.adminWsUrl).replace(/^ws:/, 'http:')).origin;
    expect(await probe(admin, '/readyz')).toEqual({ status: 200, body: { ready: true } });
    expect(await probe(admin, '/livez')).toEqual({ status: 200, body: { live: true } });

    expect(await relay.stop()).toBe(0);
    await until(async () => (await probe(admin, '/readyz')).status === 503, 10_000, '/readyz 503');
    const down = await probe(admin, '/readyz');
    expect(down.body.ready).toBe(false);
    expect(down.body.reason).toMatch(/^tunnel to the relay (reconnecting|connecting)/);
    expect(await probe(admin, '/livez')).toEqual({ status: 200, body: { live: true } });
    expect(await probe(admin, '/healthz')).toMatchObject({ status: 200, body: { ok: true, ready: false } });
    // Any Host header: a probe may name the endpoint by any address. Everything else there
    // still checks Host (DNS rebinding). fetch() cannot set Host, so node:http does.
    expect(await statusWithHost(admin, '/livez', 'probe.example:80')).toBe(200);
    expect(await statusWithHost(admin, '/readyz', 'probe.example:80')).toBe(503);
    expect(await statusWithHost(admin, '/', 'probe.example:80')).toBe(421);

    // The relay again, on the same port: the contact point reconnects by itself.
    await start(['relay', '--listen', new URL(relayUrl).host, '--state', relayState, '--json']);
    await until(async () => (await probe(admin, '/readyz')).status === 200, 30_000, '/readyz 200 after reconnect');
  });
});
