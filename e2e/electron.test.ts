import { createServer } from 'node:net';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { _electron, type ElectronApplication } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import type { Snapshot } from '../core/admin/contract.js';
import type { ContactPointBridge } from '../core/admin/host-settings.js';
import { CredentialStore } from '../core/relay/credentials.js';
import { AdminPage } from './pages/admin-page.js';
import { FlowPage } from './pages/flow-page.js';
import { PeersPage } from './pages/peers-page.js';
import { TunnelPage } from './pages/tunnel-page.js';
import { findElectron } from './support/electron-binary.js';
import type { JsonChild } from './support/child-process.js';
import { requireBuilt, ROOT, sendFrom, spawnExternalPeer, spawnInternalPeer, spawnRelay } from './support/stack.js';

const electron = findElectron();
if ('why' in electron) console.log(`[e2e] SKIPPED the Electron app test: ${electron.why}`);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/**
 * The same journey in the desktop app: Electron main runs the contact point against a real
 * relay, the window talks to it over the preload bridge only. Runs wherever an Electron binary
 * exists; elsewhere it is reported skipped with the reason (above).
 */
describe('desktop app (Electron)', { timeout: 90_000 }, () => {
  it.skipIf(!electron.path)('approves, delivers, revokes and follows a relay restart through the preload bridge', async () => {
    requireBuilt();
    const dir = await mkdtemp(join(tmpdir(), 'cp-electron-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const creds = await CredentialStore.open(join(dir, 'relay'));
    const secret = await creds.add('contact-point', 'acme-hq');
    const aliceSecret = await creds.add('external', 'alice');
    let relay: JsonChild = (await spawnRelay(join(dir, 'relay'), 0)).child;
    const relayUrl = String(relay.events[0]?.url);
    cleanups.push(() => relay.kill());
    const peerPort = await freePort();
    const userData = join(dir, 'user-data');
    await mkdir(userData, { recursive: true });
    // The test's own profile: settings as the app writes them (credential stored plain: a CI has no keychain).
    await writeFile(join(userData, 'settings.json'), JSON.stringify({ version: 1, relayUrl, id: 'acme-hq', peerPort, credential: { scheme: 'plain', data: secret } }));

    const app: ElectronApplication = await _electron.launch({
      executablePath: electron.path!,
      args: [ROOT, ...(process.getuid?.() === 0 ? ['--no-sandbox'] : [])],
      env: { ...process.env, CONTACT_POINT_USER_DATA: userData, CONTACT_POINT_LOG_LEVEL: 'warn' },
    });
    cleanups.push(() => app.close());
    const page = await app.firstWindow();
    const shell = new AdminPage(page);
    await shell.tunnelPill.filter({ hasText: 'connected' }).waitFor({ timeout: 20_000 });

    // The page sees one bridge object and no Node.
    expect(await page.evaluate(() => typeof (globalThis as unknown as { require?: unknown }).require)).toBe('undefined');
    const snap = await page.evaluate(() => (globalThis as unknown as { contactPoint: ContactPointBridge }).contactPoint.call('snapshot:get', {}));
    expect((snap as Snapshot).contactPoint.id).toBe('acme-hq');
    const badCall = await page.evaluate(() =>
      (globalThis as unknown as { contactPoint: ContactPointBridge }).contactPoint.call('peers:approve', { name: 'NOT A NAME' }).then(
        () => 'resolved',
        (e: Error) => e.message,
      ),
    );
    expect(badCall).toContain('name may use only lower-case letters');

    const peers = new PeersPage(page);
    const printer = await spawnInternalPeer(`ws://127.0.0.1:${peerPort}/v1/peer`, 'printer');
    cleanups.push(() => printer.kill());
    printer.send({ cmd: 'register' });
    await peers.openTab('pending');
    await peers.approve('printer');
    await printer.waitFor((e) => e.event === 'registration' && e.state === 'registered', 'printer registered');
    const alice = await spawnExternalPeer(relayUrl, 'alice', aliceSecret);
    cleanups.push(() => alice.kill());
    expect(await sendFrom(alice, 'printer@acme-hq', 'hello from the desktop test')).toMatchObject({ event: 'sent' });
    await shell.go('Live flow');
    await new FlowPage(page).row('alice@relay', 'delivered').waitFor();
    await shell.screenshot('electron-flow');

    await shell.go('Peers');
    await peers.openTab('registered');
    await peers.revoke('printer');
    expect(await sendFrom(alice, 'printer@acme-hq', 'again')).toMatchObject({ event: 'refused', code: 12 });

    await shell.go('Tunnel');
    const tunnel = new TunnelPage(page);
    const port = Number(new URL(relayUrl).port);
    await relay.kill();
    await tunnel.waitForState('reconnecting');
    relay = (await spawnRelay(join(dir, 'relay'), port)).child;
    await tunnel.waitForState('connected', 20_000);
  });
});
