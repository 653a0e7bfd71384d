import { spawn } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CredentialStore } from '../../core/relay/credentials.js';
import { Relay } from '../../core/relay/relay.js';
import { logger } from '../helpers.js';
import { selfSignedCert } from '../net-fixtures.js';
import { BIN, cliSuite, ROOT } from './cli-process.js';

/**
 * serve against relay URLs a new user gets wrong (issue 16, items 8 and 12): a cause that
 * waiting cannot fix ends serve at once, with what to change; a relay that is merely down is
 * retried until it is back; a self-signed relay names --ca; a refused credential is said as
 * such; "running" is logged only once everything listens. Real relays, real servers, the real
 * CLI as a child process.
 */

const suite = cliSuite();

async function relay(opts: { tls?: boolean; port?: number } = {}): Promise<{ relay: Relay; url: string; secretFile: string; certFile: string }> {
  const credentials = CredentialStore.inMemory();
  const r = new Relay({ credentials, logger, ...(opts.tls ? { tls: selfSignedCert(suite.home) } : {}), ...(opts.port ? { port: opts.port } : {}) });
  const url = await r.start();
  suite.cleanup(() => r.stop());
  const secretFile = join(suite.home, `acme-hq-${Math.random().toString(36).slice(2)}.credential`);
  await writeFile(secretFile, (await credentials.add('contact-point', 'acme-hq')) + '\n');
  await chmod(secretFile, 0o600);
  return { relay: r, url, secretFile, certFile: join(suite.home, 'cert.pem') };
}

async function httpServer(handler: Parameters<typeof createHttpServer>[1]): Promise<{ server: Server; port: number }> {
  const server = createHttpServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  suite.cleanup(() => new Promise((resolve) => server.close(resolve)));
  return { server, port: (server.address() as AddressInfo).port };
}

/** `contact-point status` until its output matches `re` (the tunnel's state comes from the running serve). */
async function statusUntil(re: RegExp, timeoutMs: number): Promise<{ stdout: string }> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await suite.cli(['status', '--state', join(suite.home, 'state')]);
    if (s.code === 0 && re.test(s.stdout)) return s;
    if (Date.now() > end) throw new Error(`status never matched ${re}: ${s.stdout}${s.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** serve in text mode (no --json): its banner on stdout, up to "Ctrl-C stops it." */
async function textBanner(args: readonly string[]): Promise<string> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, HOME: suite.home }, stdio: ['ignore', 'pipe', 'pipe'] });
  suite.cleanup(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner within 15 s: ${out}${err}`)), 15_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ctrl-C stops it.')) {
        clearTimeout(timer);
        resolve(out);
      }
    });
  });
}

function serveArgs(url: string, secretFile: string, extra: readonly string[] = []): string[] {
  return ['serve', '--relay', url, '--id', 'acme-hq', '--credential-file', secretFile, '--state', join(suite.home, 'state'), '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--no-proxy', ...extra];
}

/** Runs serve to its end and checks it failed at once (exit 1, no ready line) saying `fix`. */
async function failsFast(url: string, secretFile: string, fix: RegExp): Promise<string> {
  const r = await suite.cli(serveArgs(url, secretFile, ['--json']));
  expect(r.code, r.stderr).toBe(1);
  // Fast: no ready line, so it ended within serve's 5 s wait for the tunnel (and not after
  // the 30 s a slow retry waits); no clock is read, so a loaded machine cannot fail this.
  expect(r.stdout).not.toMatch(/"event":"ready"/);
  const last = r.stderr.trim().split('\n').at(-1)!;
  expect(last).toMatch(new RegExp(`^contact-point serve: --relay ${url.replace(/[.?/]/g, '\\$&')} cannot work: `));
  expect(last).toMatch(fix);
  return last;
}

describe('serve: a relay URL that cannot work fails fast and says what to change', () => {
  it('no /v1 path: exits 1 naming the URL with the path', async () => {
    const r = await relay();
    const bare = r.url.replace(/\/v1$/, '');
    await failsFast(bare, r.secretFile, new RegExp(`HTTP 404 for /: a relay's URL ends in /v1, e\\.g\\. ${bare.replace(/[.?/]/g, '\\$&')}/v1`));
  });

  it('ws:// against a TLS relay: exits 1 saying to use wss://', async () => {
    const r = await relay({ tls: true });
    const plain = r.url.replace(/^wss:/, 'ws:');
    await failsFast(plain, r.secretFile, new RegExp(`speaks TLS but the URL says ws://: use ${r.url.replace(/[.?/]/g, '\\$&')}$`));
  });

  it('wss:// against a plain relay: exits 1 saying to use ws:// (or give the relay a certificate)', async () => {
    const r = await relay();
    await failsFast(r.url.replace(/^ws:/, 'wss:'), r.secretFile, /does not speak TLS \(it answers plain HTTP\): use ws:\/\/127\.0\.0\.1:\d+\/v1 .*--tls-cert/);
  });

  it('an https-only host (ws:// redirected to https://): exits 1 saying to use wss://', async () => {
    const r = await relay();
    const web = await httpServer((req, res) => {
      res.writeHead(301, { location: `https://${req.headers.host}${req.url}` });
      res.end();
    });
    await failsFast(`ws://127.0.0.1:${web.port}/v1`, r.secretFile, new RegExp(`redirects to https://127\\.0\\.0\\.1:${web.port}/v1 \\(https only\\): use wss://127\\.0\\.0\\.1:${web.port}/v1`));
  });

  it('a web server, not a relay, at /v1: exits 1 saying no relay answers there', async () => {
    const r = await relay();
    const web = await httpServer((_req, res) => {
      res.writeHead(404);
      res.end('not here');
    });
    await failsFast(`ws://127.0.0.1:${web.port}/v1`, r.secretFile, /HTTP 404 instead of a WebSocket upgrade: no relay answers at .*; check the host and port/);
  });

  it('a host that does not exist (NXDOMAIN, the reserved .invalid domain): exits 1 naming the host', async () => {
    const r = await relay();
    await failsFast('ws://no-such-relay.invalid/v1', r.secretFile, /no such host: no-such-relay\.invalid \(DNS says it does not exist\)/);
  });

  it('a relay that is merely down is retried until it is back, and status keeps the outage\'s error with its time', async () => {
    // A port nobody listens on (yet): ECONNREFUSED is transient.
    const holder = createNetServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as AddressInfo).port;
    await new Promise((resolve) => holder.close(resolve));
    const credentials = CredentialStore.inMemory();
    const secretFile = join(suite.home, 'acme-hq.credential');
    await writeFile(secretFile, (await credentials.add('contact-point', 'acme-hq')) + '\n');
    await chmod(secretFile, 0o600);

    const cp = await suite.start(serveArgs(`ws://127.0.0.1:${port}/v1`, secretFile, ['--json']), { timeoutMs: 15_000 });
    expect(cp.ready.tunnel).not.toBe('connected');
    expect(String(cp.ready.tunnelError)).toMatch(/ECONNREFUSED.*no relay listens there now .*retrying/);

    const r = new Relay({ credentials, logger, host: '127.0.0.1', port });
    await r.start();
    suite.cleanup(() => r.stop());
    const status = await statusUntil(/tunnel +connected/, 15_000);
    // Not "none": the cause of the outage, and when it was.
    expect(status.stdout).toMatch(/last error +connect ECONNREFUSED 127\.0\.0\.1:\d+: no relay listens there now.* \(at \d{4}-\d\d-\d\dT[\d:.]+Z, \d+s ago\)/);
    expect(await cp.stop()).toBe(0);
  });
});

describe('serve with several --relay URLs: the rule for one that cannot work (issue 12)', () => {
  /** A web server that answers 404 at /v1: a URL that cannot work (kind `url`), found in a moment. */
  async function notARelay(): Promise<string> {
    const web = await httpServer((_req, res) => {
      res.writeHead(404);
      res.end('not here');
    });
    return `ws://127.0.0.1:${web.port}/v1`;
  }

  it('one unusable URL among working ones does not end serve, whichever tunnel reports first; the ready line lists every URL', async () => {
    const r = await relay();
    const bad = await notARelay();
    // The unusable URL first: tunnel 0 starts on it and reports before tunnel 1 is up on the relay.
    const cp = await suite.start(['serve', '--relay', bad, ...serveArgs(r.url, r.secretFile, ['--json']).slice(1)], { timeoutMs: 15_000 });
    expect(cp.ready.relayUrls).toEqual([bad, r.url]);
    expect(cp.ready.relayUrl).toBe(bad);
    expect((cp.ready.tunnels as { slot: number }[]).map((t) => t.slot)).toEqual([0, 1]);
    await statusUntil(/tunnel +connected/, 15_000);
    expect(cp.stderr()).toMatch(/warn .*HTTP 404 instead of a WebSocket upgrade: no relay answers at/);
    expect(cp.proc.exitCode).toBeNull();
    expect(await cp.stop()).toBe(0);
  });

  it('every URL unusable: exits 1 naming each with what to change', async () => {
    const r = await relay();
    const [a, b] = [await notARelay(), r.url.replace(/\/v1$/, '')];
    const run = await suite.cli(['serve', '--relay', a, ...serveArgs(b, r.secretFile, ['--json']).slice(1)]);
    expect(run.code, run.stderr).toBe(1);
    expect(run.stdout).not.toMatch(/"event":"ready"/);
    const last = run.stderr.trim().split('\n').at(-1)!;
    expect(last).toContain(`contact-point serve: no --relay URL can work: --relay ${a} cannot work: HTTP 404 instead of a WebSocket upgrade`);
    expect(last).toContain(`; --relay ${b} cannot work: HTTP 404 for /: a relay's URL ends in /v1`);
  });
});

describe('serve: the truth about a tunnel that is refused', () => {
  it('a self-signed relay without --ca: keeps running and retrying, and the log and status name --ca', async () => {
    const r = await relay({ tls: true });
    const cp = await suite.start(serveArgs(r.url, r.secretFile, ['--json']), { timeoutMs: 15_000 });
    expect(cp.ready.tunnel).not.toBe('connected');
    expect(String(cp.ready.tunnelError)).toMatch(/self-signed certificate: .* trust it with --ca FILE/);
    expect(cp.stderr()).toMatch(/warn .*self-signed certificate: .*--ca FILE/);
    const status = await suite.cli(['status', '--state', join(suite.home, 'state')]);
    expect(status.stdout).toMatch(/last error +self-signed certificate: .*--ca FILE/);
    expect(cp.proc.exitCode).toBeNull();
    expect(await cp.stop()).toBe(0);
  });

  it('a credential the relay refuses: the banner says running, but refused, with the relay\'s reason', async () => {
    const r = await relay();
    const other = await relay(); // a valid credential, of another relay
    const banner = await textBanner(serveArgs(r.url, other.secretFile));
    expect(banner).toMatch(/^contact point "acme-hq" running, but the relay refuses its tunnel\n/);
    expect(banner).toMatch(/relay +ws:\/\/127\.0\.0\.1:\d+\/v1 \(tunnel REFUSED by the relay: BAD_CREDENTIALS: no valid credential for contact-point "acme-hq"; next try in \d+ s\)/);
    const status = await suite.cli(['status', '--state', join(suite.home, 'state')]);
    expect(status.stdout).toMatch(/tunnel +refused by the relay \(see last error\); reconnecting/);
  });

  it.each(['--admin-listen', '--metrics'])('a taken %s port: exits 1 naming the port, and never logs "running"', async (flag) => {
    const holder = createNetServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    suite.cleanup(() => new Promise((resolve) => holder.close(resolve)));
    const port = (holder.address() as AddressInfo).port;
    const r = await relay();
    const args = serveArgs(r.url, r.secretFile);
    if (flag === '--admin-listen') args[args.indexOf('--admin-listen') + 1] = `127.0.0.1:${port}`;
    else args.push('--metrics', `127.0.0.1:${port}`);
    const run = await suite.cli(args);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}`));
    expect(run.stderr).not.toMatch(/contact point running|running id=/);
    expect(run.stdout).toBe('');
  });
});
