import { chmod, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CredentialStore } from '../core/relay/credentials.js';
import { Relay } from '../core/relay/relay.js';
import { formatClock } from '../renderer/src/format/units.js';
import { cliSuite, shellWords } from '../test/cli/cli-process.js';
import { logger } from '../test/helpers.js';
import { selfSignedCert } from '../test/net-fixtures.js';
import { AdminPage } from './pages/admin-page.js';
import { FlowPage } from './pages/flow-page.js';
import { PeersPage } from './pages/peers-page.js';
import { SettingsPage } from './pages/settings-page.js';
import { TunnelPage } from './pages/tunnel-page.js';
import { browserSuite } from './support/browser-suite.js';
import { Stack } from './support/stack.js';

/**
 * The rough edges a new admin hit (issue 16, items 7, 9, 10, 11), in Chromium against real
 * processes: the restart command Settings print (run for real), tunnel states with the core's
 * times, a wrong token, confirmations, the 800 px layout, notices, and the CSP.
 */
const suite = cliSuite();
const gui = browserSuite();

/** The little of the DOM the page-side checks use (e2e compiles without the DOM library). */
interface DomAt {
  readonly document: { elementFromPoint(x: number, y: number): { closest(sel: string): { getAttribute(name: string): string | null } | null } | null };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

describe('rough edges of the admin GUI', { timeout: 90_000 }, () => {
  it('Settings print a restart command that keeps every flag (--ca, --admin-listen, the peer bind); run as printed, it connects with the same binds', async () => {
    // A TLS relay with a self-signed certificate: serve needs --ca for it.
    const credentials = CredentialStore.inMemory();
    const relay = new Relay({ credentials, logger, tls: selfSignedCert(suite.home) });
    const relayUrl = await relay.start();
    suite.cleanup(() => relay.stop());
    const credFile = join(suite.home, 'acme-hq.credential');
    await writeFile(credFile, (await credentials.add('contact-point', 'acme-hq')) + '\n');
    await chmod(credFile, 0o600);
    const state = join(suite.home, 'state with space');
    const serve = await suite.start(
      ['serve', '--relay', relayUrl, '--id', 'acme-hq', '--credential-file', credFile, '--ca', join(suite.home, 'cert.pem'), '--state', state,
        '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--allow-target', '192.168.1.0/24:80', '--json'],
      { timeoutMs: 15_000 },
    );
    expect(serve.ready.tunnel).toBe('connected');

    const { page, errors } = await gui.newPage();
    const app = new AdminPage(page);
    await app.open(String(serve.ready.guiUrl));
    const settings = new SettingsPage(page);
    await app.go('Settings');
    const newPort = await freePort();
    await settings.fillConnection({ peerPort: String(newPort) });
    await settings.submitConnection();
    const shown = page.getByTestId('restart-command');
    await shown.waitFor();
    await shown.scrollIntoViewIfNeeded();
    await app.screenshot('settings-restart-command');
    const line = (await shown.locator('code').textContent())!;
    expect(line).toContain(`--ca ${join(suite.home, 'cert.pem')}`);
    expect(line).toContain('--admin-listen 127.0.0.1:0');
    expect(line).toContain(`--peer-listen 127.0.0.1:${newPort}`);
    expect(line).toContain(`--state '${state}'`);
    expect(line).not.toContain('0.0.0.0');
    expect(await shown.textContent()).toContain('Stop the running contact point first');
    expect(errors).toEqual([]);

    // Run it as printed, after stopping the running one, as the note says.
    expect(await serve.stop()).toBe(0);
    const words = shellWords(line);
    expect(words.slice(0, 3)).toEqual(['node', 'bin/contact-point.js', 'serve']);
    const again = await suite.start(words.slice(2), { argv0: [words[1]!], timeoutMs: 15_000 });
    expect(again.ready).toMatchObject({ tunnel: 'connected', relayUrl, contactPoint: 'acme-hq', stateDir: state, peerPortUrl: `ws://127.0.0.1:${newPort}/v1/peer`, portPolicy: { targets: ['192.168.1.0/24:80'], listen: [] } });
    expect(String(again.ready.adminWsUrl)).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/admin$/);
    expect(await again.stop()).toBe(0);
  });

  it('Recent states carry when each state began at the contact point; the last error stays after recovery; Reconnect on a healthy tunnel asks', async () => {
    const stack = (gui.stack = await Stack.start());
    await new Promise((resolve) => setTimeout(resolve, 1_200)); // the page opens well after the tunnel came up
    const since = stack.cp.gateway.status().stateSince;
    const { page, errors } = await gui.newPage();
    const { app, tunnel } = await TunnelPage.openConnected(page, stack.guiUrl);
    expect((await tunnel.log())[0]).toContain(formatClock(since));
    expect(await tunnel.fact('Last error').textContent()).toBe('none since the contact point started');

    // Cancel leaves the healthy tunnel alone.
    await tunnel.reconnectNow(false);
    await page.waitForTimeout(500);
    expect(stack.cp.gateway.status()).toMatchObject({ state: 'connected', reconnects: 0 });

    // An outage: the relay dies and comes back.
    await stack.killRelay();
    await tunnel.waitForState('reconnecting');
    const down = stack.cp.gateway.status();
    await stack.restartRelay();
    await tunnel.waitForState('connected', 20_000);
    const log = await tunnel.log();
    expect(log[0]).toContain(formatClock(stack.cp.gateway.status().stateSince));
    expect(log[1]).toContain(formatClock(down.stateSince));
    expect(log[1]).toContain('reconnecting');
    // Connected again, and the cause of the outage is still there, with its time.
    const lastError = (await tunnel.fact('Last error').textContent())!;
    expect(stack.cp.gateway.status().lastError).toBeDefined();
    expect(lastError).toContain(stack.cp.gateway.status().lastError!);
    expect(lastError).toContain(`at ${formatClock(stack.cp.gateway.status().lastErrorAt!)}`);
    await app.screenshot('tunnel-after-outage');

    // Confirmed, it reconnects.
    const before = stack.cp.gateway.status().reconnects;
    await tunnel.reconnectNow(true);
    await expect.poll(() => stack.cp.gateway.status().reconnects, { timeout: 10_000 }).toBe(before + 1);
    expect(errors).toEqual([]);
  });

  it('a wrong admin token shows only the error and where the right address is, no dashboard', async () => {
    const stack = (gui.stack = await Stack.start());
    const { page } = await gui.newPage();
    await page.goto(`${stack.admin.url}/#token=wrong`);
    const help = page.getByTestId('admin-url-help');
    await help.waitFor();
    expect(await help.textContent()).toContain('refused the admin token');
    expect(await help.textContent()).toContain('~/.contact-point/serve/admin.json');
    expect(await help.textContent()).toContain('npm start');
    // Nothing of the dashboard: no navigation, no counts, no tunnel pill.
    expect(await page.getByRole('navigation', { name: 'Views' }).count()).toBe(0);
    expect(await page.getByText('Pending').count()).toBe(0);
    expect(await page.getByTestId('tunnel-pill').count()).toBe(0);
    await new AdminPage(page).screenshot('wrong-token');
  });

  it('Approve all asks with the names; at 800 px the actions stay in view; notices fade and cover no row; no CSP error on load', async () => {
    const stack = (gui.stack = await Stack.start({ embeddedRelay: true, id: 'demo' }));
    const { page, errors } = await gui.newPage({ width: 800, height: 600 });
    const app = new AdminPage(page);
    // Through localhost: connect-src 'self' lets the page reach its own ws endpoint by either name.
    await app.open(stack.guiUrl.replace('127.0.0.1', 'localhost'));
    await app.tunnelPill.filter({ hasText: 'connected' }).waitFor();
    // Headless: the banner says what to run, not "set it in Settings".
    expect(await app.demoBanner.textContent()).toContain('contact-point serve --relay');

    const peers = new PeersPage(page);
    const names = ['camera-entrance-hall', 'nas-basement-storage', 'printer-second-floor'];
    const procs = await Promise.all(names.map((n) => stack.internalPeer(n)));
    for (const p of procs) p.send({ cmd: 'register' });
    await peers.waitForCount('pending', 3);
    await peers.openTab('pending');

    // At 800 px the rows are wider than the window; each row's actions are still on screen, on top.
    for (const n of names) {
      const button = peers.row(n).getByRole('button', { name: `Approve ${n}` });
      const box = (await button.boundingBox())!;
      expect(box.x + box.width).toBeLessThanOrEqual(800);
      const hit = await page.evaluate(([x, y]) => (globalThis as unknown as DomAt).document.elementFromPoint(x!, y!)?.closest('button')?.getAttribute('aria-label'), [box.x + box.width / 2, box.y + box.height / 2]);
      expect(hit).toBe(`Approve ${n}`);
    }
    await app.screenshot('peers-800px');

    // Approve all asks, naming them; Cancel approves nothing.
    await page.getByRole('button', { name: 'Approve all 3 pending' }).click();
    const dialog = page.getByRole('dialog', { name: 'Approve 3 pending peers?' });
    await dialog.waitFor();
    for (const n of names) expect(await dialog.textContent()).toContain(n);
    await app.screenshot('approve-all-confirm');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await page.waitForTimeout(300);
    expect(stack.cp.registrar.views().filter((p) => p.state === 'pending')).toHaveLength(3);
    await peers.approveAllPending();
    await peers.waitForCount('registered', 3);

    // Notices: below the views, fading out 4 s after each was raised.
    const notice = app.notice('Approved');
    await notice.first().waitFor();
    const raised = Date.now();
    await app.go('Live flow');
    const alice = await stack.externalPeer('alice');
    for (let i = 0; i < 25; i++) await stack.send(alice, `nobody-${i}@demo`, `m${i}`);
    const flow = new FlowPage(page);
    await flow.row('nobody-24@demo').waitFor();
    const list = page.locator('main');
    await list.evaluate((m) => {
      const el = m as unknown as { scrollTo(x: number, y: number): void; readonly scrollHeight: number };
      el.scrollTo(0, el.scrollHeight);
    });
    const lastRow = flow.row('nobody-24@demo');
    const rowBox = (await lastRow.boundingBox())!;
    const noticesBox = (await page.getByTestId('notices').boundingBox())!;
    expect(rowBox.y + rowBox.height).toBeLessThanOrEqual(noticesBox.y);
    await notice.first().waitFor({ state: 'detached', timeout: 6_000 });
    expect(Date.now() - raised).toBeLessThan(6_000);
    expect(errors.filter((e) => /Content Security Policy|ws:\/\/\[::1\]/.test(e))).toEqual([]);
    expect(errors).toEqual([]);
  });
});
