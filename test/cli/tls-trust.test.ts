import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CredentialStore } from '../../core/relay/credentials.js';
import { Relay } from '../../core/relay/relay.js';
import { logger } from '../helpers.js';
import { connectProxy, selfSignedCert } from '../net-fixtures.js';
import { cliSuite, runCli, startCli } from './cli-process.js';

/**
 * Only --ca changes which relay certificates the CLI trusts. NODE_TLS_REJECT_UNAUTHORIZED=0 in
 * the environment (which switches verification off for the whole Node process) must not: the
 * dialer pins verification on. The variable affects a whole process, so the clients run as
 * child processes; the relay, with a self-signed certificate, runs here.
 */

const suite = cliSuite();

const INSECURE_ENV = { NODE_TLS_REJECT_UNAUTHORIZED: '0' };

async function tlsRelay(): Promise<{ url: string; certFile: string; credentials: CredentialStore }> {
  const tls = selfSignedCert(suite.home);
  const credentials = CredentialStore.inMemory();
  const relay = new Relay({ credentials, tls, logger });
  const url = await relay.start();
  suite.cleanup(() => relay.stop());
  return { url, certFile: join(suite.home, 'cert.pem'), credentials };
}

/** A CONNECT proxy spoken to over TLS (an https:// proxy URL), with a self-signed certificate. */
async function httpsConnectProxy(): Promise<{ url: string; certFile: string; connects: string[] }> {
  const dir = join(suite.home, 'proxy-tls');
  await mkdir(dir);
  const proxy = await connectProxy({ tls: selfSignedCert(dir) });
  suite.cleanup(() => proxy.close());
  return { url: proxy.url, certFile: join(dir, 'cert.pem'), connects: proxy.connects };
}

async function secretFile(name: string, secret: string): Promise<string> {
  const path = join(suite.home, `${name}.credential`);
  await writeFile(path, secret + '\n');
  await chmod(path, 0o600);
  return path;
}

function serveArgs(url: string, credentialFile: string, state: string, extra: string[]): string[] {
  return ['serve', '--relay', url, '--id', 'acme-hq', '--credential-file', credentialFile, '--state', join(suite.home, state), '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--json', ...extra];
}

describe('TLS trust of the relay: --ca only, whatever the environment says', () => {
  it('serve with NODE_TLS_REJECT_UNAUTHORIZED=0 refuses a self-signed relay, and connects when --ca names its certificate', async () => {
    const r = await tlsRelay();
    const cred = await secretFile('acme-hq', await r.credentials.add('contact-point', 'acme-hq'));

    const untrusted = await startCli(serveArgs(r.url, cred, 'untrusted', ['--no-proxy']), { home: suite.home, env: INSECURE_ENV, timeoutMs: 20_000 });
    // serve waits up to TUNNEL_WAIT_MS for the tunnel before its ready line.
    expect(untrusted.ready.tunnel).not.toBe('connected');
    expect(untrusted.stderr()).toMatch(/self-signed certificate/);
    await untrusted.stop();

    const trusted = await startCli(serveArgs(r.url, cred, 'trusted', ['--no-proxy', '--ca', r.certFile]), { home: suite.home, env: INSECURE_ENV, timeoutMs: 20_000 });
    expect(trusted.ready.tunnel).toBe('connected');
    await trusted.stop();
  });

  it('through a CONNECT proxy too: the TLS session inside the tunnel is verified', async () => {
    const r = await tlsRelay();
    const cred = await secretFile('acme-hq', await r.credentials.add('contact-point', 'acme-hq'));
    const proxy = await connectProxy();
    suite.cleanup(() => proxy.close());

    const untrusted = await startCli(serveArgs(r.url, cred, 'untrusted', ['--proxy', proxy.url]), { home: suite.home, env: INSECURE_ENV, timeoutMs: 20_000 });
    expect(proxy.connects.length).toBeGreaterThan(0); // it did go through the proxy
    expect(untrusted.ready.tunnel).not.toBe('connected');
    expect(untrusted.stderr()).toMatch(/self-signed certificate/);
    await untrusted.stop();

    const trusted = await startCli(serveArgs(r.url, cred, 'trusted', ['--proxy', proxy.url, '--ca', r.certFile]), { home: suite.home, env: INSECURE_ENV, timeoutMs: 20_000 });
    expect(trusted.ready.tunnel).toBe('connected');
    await trusted.stop();
  });

  it('towards an https:// proxy too: the TLS session with the proxy is verified', async () => {
    // A plain ws:// relay, so the only TLS session is the one with the proxy.
    const credentials = CredentialStore.inMemory();
    const relay = new Relay({ credentials, logger });
    const url = await relay.start();
    suite.cleanup(() => relay.stop());
    const cred = await secretFile('acme-hq', await credentials.add('contact-point', 'acme-hq'));
    const proxy = await httpsConnectProxy();

    const untrusted = await startCli(serveArgs(url, cred, 'untrusted', ['--proxy', proxy.url]), { home: suite.home, env: INSECURE_ENV, timeoutMs: 20_000 });
    expect(untrusted.ready.tunnel).not.toBe('connected');
    expect(proxy.connects.length).toBe(0); // the TLS handshake with the proxy failed before any CONNECT
    expect(untrusted.stderr()).toMatch(/self-signed certificate/);
    await untrusted.stop();

    // --ca with the proxy's certificate: the proxy is trusted, and the tunnel comes up through it.
    const trusted = await startCli(serveArgs(url, cred, 'trusted', ['--proxy', proxy.url, '--ca', proxy.certFile]), { home: suite.home, env: INSECURE_ENV, timeoutMs: 20_000 });
    expect(trusted.ready.tunnel).toBe('connected');
    expect(proxy.connects.length).toBeGreaterThan(0);
    await trusted.stop();
  });

  it('the peer SDK (peer send) with NODE_TLS_REJECT_UNAUTHORIZED=0 refuses the self-signed relay unless --ca names it', async () => {
    const r = await tlsRelay();
    const cred = await secretFile('alice', await r.credentials.add('external', 'alice'));
    const send = (extra: string[]): ReturnType<typeof runCli> =>
      runCli(['peer', 'send', '--relay', r.url, '--id', 'alice', '--credential-file', cred, '--to', 'printer@acme-hq', '--deadline-ms', '1500', '--no-proxy', '--json', ...extra, 'hi'], {
        home: suite.home,
        env: INSECURE_ENV,
      });
    const untrusted = await send([]);
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stdout + untrusted.stderr).toMatch(/self-signed certificate/);
    // Trusted: the TLS session and hello succeed, and the relay answers for the message itself
    // (no contact point acme-hq is connected).
    const trusted = await send(['--ca', r.certFile]);
    expect(trusted.stdout + trusted.stderr).not.toMatch(/self-signed certificate/);
    expect(trusted.stdout + trusted.stderr).toMatch(/CONTACT_POINT_OFFLINE|UNKNOWN_CONTACT_POINT/);
  });
});
