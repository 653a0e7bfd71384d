import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { STATE_FILE } from '../core/contact-point/state-store.js';
import { AdminPage } from './pages/admin-page.js';
import { FlowPage } from './pages/flow-page.js';
import { PeersPage } from './pages/peers-page.js';
import { SettingsPage } from './pages/settings-page.js';
import { TunnelPage } from './pages/tunnel-page.js';
import { closeFloodSockets, flood } from '../test/flood-client.js';
import { launchChromium } from './support/browser.js';
import { Stack } from './support/stack.js';
import { Operator } from '../core/peer/operator.js';

/**
 * The admin GUI as an admin uses it: the built renderer served by a real contact point's admin
 * endpoint, in Debian's Chromium, with a real relay process and real peer processes. Each test
 * has its own state folder (Stack.start) and its own browser context.
 */
let browser: Browser;
let context: BrowserContext | undefined;
let stack: Stack | undefined;

beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});
afterEach(async () => {
  closeFloodSockets();
  await context?.close();
  context = undefined;
  await stack?.close();
  stack = undefined;
});

async function open(s: Stack, opts: { colorScheme?: 'light' | 'dark'; notifications?: boolean } = {}): Promise<{ page: Page; app: AdminPage }> {
  context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: opts.colorScheme ?? 'light' });
  const page = await context.newPage();
  if (opts.notifications) {
    // Headless Chromium shows no notifications: record them instead, as if the admin allowed them.
    await page.addInitScript(() => {
      const g = globalThis as unknown as { __notifications: { title: string; body: string }[]; Notification: unknown };
      g.__notifications = [];
      g.Notification = class {
        static permission = 'granted';
        static requestPermission = (): Promise<string> => Promise.resolve('granted');
        onclick: (() => void) | null = null;
        constructor(title: string, o: { body: string }) {
          g.__notifications.push({ title, body: o.body });
        }
      };
    });
  }
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const app = new AdminPage(page);
  await app.open(s.guiUrl);
  expect(errors).toEqual([]);
  return { page, app };
}

describe('admin GUI in Chromium', { timeout: 60_000 }, () => {
  it('a peer joins, asks, is approved and receives; revoked, the next message is refused with the reason', async () => {
    stack = await Stack.start();
    const { page, app } = await open(stack);
    const peers = new PeersPage(page);
    const flow = new FlowPage(page);

    // The token went in the fragment and is gone from the address bar.
    expect(page.url()).not.toContain('token=');

    const printer = await stack.internalPeer('printer');
    await peers.openTab('unregistered');
    await peers.row('printer').waitFor();
    expect(await peers.row('printer').textContent()).toContain('online');
    expect(await peers.row('printer').textContent()).toContain('printer@acme-hq');

    printer.send({ cmd: 'register' });
    await app.pendingBadge.filter({ hasText: '1' }).waitFor();
    await peers.openTab('pending');
    await peers.row('printer').waitFor();
    expect(await page.title()).toMatch(/^\(1\) Contact Point/);
    await app.screenshot('peers-pending');

    await peers.approve('printer');
    await peers.waitForCount('registered', 1);
    await printer.waitFor((e) => e.event === 'registration' && e.state === 'registered', 'printer registered');
    await app.pendingBadge.waitFor({ state: 'detached' });

    const alice = await stack.externalPeer('alice');
    expect(await stack.send(alice, 'printer@acme-hq', 'hello printer')).toMatchObject({ event: 'sent' });
    await printer.waitFor((e) => e.event === 'message' && e.text === 'hello printer', 'delivery to printer');

    await app.go('Live flow');
    await flow.row('alice@relay', 'printer@acme-hq', 'delivered').waitFor();
    await app.screenshot('flow-delivered');

    await app.go('Peers');
    await peers.openTab('registered');
    await peers.row('printer').locator('td', { hasText: /^1$/ }).first().waitFor(); // messages in, refreshed once a second
    await app.screenshot('peers-registered');
    await peers.revoke('printer');
    await peers.waitForCount('revoked', 1);
    await peers.waitForCount('registered', 0);

    expect(await stack.send(alice, 'printer@acme-hq', 'are you there?')).toMatchObject({ event: 'refused', code: 12 });
    await app.go('Live flow');
    await flow.row('printer@acme-hq', 'refused', 'peer is revoked').waitFor();
    expect(await flow.totalRefused()).toBe(1);
    // Filters: only the refusal is left when refused messages are asked for.
    await flow.filterOutcome('refused');
    await flow.row('delivered').waitFor({ state: 'detached' });
    expect(await flow.row().count()).toBe(1);
    await flow.filterOutcome('all');
    await app.screenshot('flow-refused');
  });

  it('a decision the contact point cannot save is shown as an error, and nothing changes', async () => {
    stack = await Stack.start();
    const { page, app } = await open(stack);
    const peers = new PeersPage(page);
    const printer = await stack.internalPeer('printer');
    printer.send({ cmd: 'register' });
    await peers.openTab('pending');
    await peers.row('printer').waitFor();

    // The state file's path becomes a folder: every write of the contact point fails, for root too.
    // First the coalesced write of the peer's hello and request lands (then nothing else is due;
    // should one land between rm and mkdir all the same, again).
    const file = join(stack.dir, 'cp', STATE_FILE);
    await expect.poll(() => readFile(file, 'utf8').catch(() => ''), { timeout: 10_000 }).toMatch(/"state": "pending"/);
    for (let attempt = 1; ; attempt++) {
      await rm(file, { force: true });
      const made = await mkdir(file).then(
        () => true,
        (err: unknown) => (err as NodeJS.ErrnoException).code === 'EEXIST' && attempt < 10 ? false : Promise.reject(err as Error),
      );
      if (made) break;
    }

    await peers.approve('printer');
    const alert = app.notice(`Could not approve printer: nothing changed: could not save ${file}: EISDIR: illegal operation on a directory`);
    await alert.waitFor();
    expect(await alert.getAttribute('role')).toBe('alert');
    expect(await peers.count('pending')).toBe(1);
    expect(await peers.count('registered')).toBe(0);
    expect(stack.cp.registrar.get('printer')?.state).toBe('pending');

    await app.go('Ports');
    await page.getByLabel('LAN targets').fill('192.168.1.0/24:80');
    await page.getByRole('button', { name: 'Apply port policy' }).click();
    await page.getByRole('alert').filter({ hasText: /The contact point refused the policy: nothing changed: could not save/ }).waitFor();
    expect(stack.cp.snapshot().portPolicy).toEqual({ targets: [], listen: [] });
    await app.screenshot('decision-not-saved');

    // The folder is gone again: the same approval goes through.
    await rm(file, { recursive: true });
    await app.go('Peers');
    await peers.openTab('pending');
    await peers.approve('printer');
    await peers.waitForCount('registered', 1);
    await app.notice('Approved printer').waitFor();
  });

  it('shows the tunnel reconnecting when the relay is killed, then connected again after its restart', async () => {
    stack = await Stack.start();
    const { page, app } = await open(stack);
    const tunnel = new TunnelPage(page);
    // Two registered peers, served over the one tunnel.
    for (const name of ['printer', 'nas']) {
      const p = await stack.internalPeer(name);
      p.send({ cmd: 'register' });
      await p.waitFor((e) => e.event === 'registration' && e.state === 'pending', `${name} pending`);
      await stack.cp.call('peers:approve', { name });
    }
    await app.go('Tunnel');
    await tunnel.waitForState('connected');
    expect(await tunnel.fact('Relay').textContent()).toBe(stack.relayUrl);
    expect(await tunnel.fact('Proxy').textContent()).toBe('none'); // no HTTP proxy ("direct" would read as direct mode)
    await tunnel.fact('Peers served').filter({ hasText: '2 over one tunnel' }).waitFor();
    await page.waitForTimeout(1_200); // one keepalive, so the round trip is measured
    await app.screenshot('tunnel-connected');

    await stack.killRelay();
    await tunnel.waitForState('reconnecting');
    await app.tunnelPill.filter({ hasText: 'reconnecting' }).waitFor();
    await page.getByText(/Next try in \d+ s|Retrying/).first().waitFor();
    await app.screenshot('tunnel-reconnecting');

    await stack.restartRelay();
    await tunnel.waitForState('connected', 20_000);
    expect(Number(await tunnel.fact('Reconnects').textContent())).toBeGreaterThanOrEqual(1);
    await app.tunnelPill.filter({ hasText: 'connected' }).waitFor();
  });

  it('names every bad setting inline, and applies a good policy through the admin API', async () => {
    stack = await Stack.start();
    const { page, app } = await open(stack);
    const settings = new SettingsPage(page);
    await app.go('Settings');
    // A browser has no host settings API: the form says so and only checks.
    await settings.connection.getByText(/come from its command line/).waitFor();

    await settings.fillConnection({ relayUrl: 'http://relay.example.com', id: 'Bad Name!', peerPort: '70000' });
    await settings.submitConnection();
    await settings.errorOf(settings.connection, 'Relay URL').filter({ hasText: 'ws:// or wss://' }).waitFor();
    await settings.errorOf(settings.connection, 'Contact point id').filter({ hasText: 'lower-case letters' }).waitFor();
    await settings.errorOf(settings.connection, 'Peer port').filter({ hasText: '0 (any free port) to 65535' }).waitFor();
    expect(await settings.field(settings.connection, 'Relay URL').getAttribute('aria-invalid')).toBe('true');

    await settings.setSubnets('10.0.0.0/8\nnot-a-cidr\n10.1.0.0/33');
    await settings.applyPolicy();
    await settings.errorOf(settings.policy, 'Auto-approve subnets').filter({ hasText: 'Line 2 “not-a-cidr”' }).waitFor();
    expect(await settings.errorOf(settings.policy, 'Auto-approve subnets').textContent()).toContain('Line 3 “10.1.0.0/33” has a prefix over /32');
    await app.screenshot('settings-errors');
    expect(stack.cp.registrar.policyView().subnets).toEqual([]);

    await settings.setSubnets('10.9.0.0/16');
    await settings.applyPolicy();
    await app.notice('Registration policy saved').waitFor();
    expect(stack.cp.registrar.policyView().subnets).toEqual(['10.9.0.0/16']);

    // Port mediation's allowlist, from the Ports view.
    await app.go('Ports');
    await page.getByText('No open ports').waitFor();
    await page.getByLabel('LAN targets').fill('192.168.1.0/24:80,443\n10.0.0.0/8 :22');
    await page.getByRole('button', { name: 'Apply port policy' }).click();
    await page.getByText('“10.0.0.0/8 :22” contains a space').waitFor();
    await page.getByLabel('LAN targets').fill('192.168.1.0/24:80,443');
    await page.getByLabel('Local ports').fill('tcp:8000-8100');
    await page.getByRole('button', { name: 'Apply port policy' }).click();
    await app.notice('Port policy saved').waitFor();
    expect(stack.cp.snapshot().portPolicy).toEqual({ targets: ['192.168.1.0/24:80,443'], listen: ['tcp:8000-8100'] });
    await app.screenshot('ports');

    await app.go('Settings');
    await settings.fillConnection({ relayUrl: 'wss://relay.example.com/v1', id: 'acme-hq', peerPort: '7901' });
    await settings.submitConnection();
    await settings.connection.getByText('contact-point serve --relay wss://relay.example.com/v1 --id acme-hq').waitFor();

    // A wrong token gets a plain explanation, not an empty dashboard; no token at all likewise.
    const other = await context!.newPage();
    await other.goto(stack.admin.url + '/#token=wrong');
    await other.getByRole('alert').filter({ hasText: 'refused the admin token' }).waitFor();
    await other.goto(stack.admin.url + '/');
    await other.evaluate(() => (globalThis as unknown as { sessionStorage: { clear(): void } }).sessionStorage.clear());
    await other.reload();
    await other.getByRole('alert').filter({ hasText: 'No admin token' }).waitFor();
  });

  it('on the embedded demo relay says so; counts, badge and bulk approval of pending peers; dark theme', async () => {
    stack = await Stack.start({ embeddedRelay: true, id: 'demo' });
    const { page, app } = await open(stack, { colorScheme: 'dark', notifications: true });
    const peers = new PeersPage(page);
    await app.demoBanner.waitFor();
    expect(await app.demoBanner.textContent()).toContain('embedded local demo relay');

    const names = ['camera', 'nas', 'printer'];
    const procs = await Promise.all(names.map((n) => stack!.internalPeer(n)));
    for (const p of procs) p.send({ cmd: 'register' });
    await peers.waitForCount('pending', 3);
    await app.pendingBadge.filter({ hasText: '3' }).waitFor();
    // Each new pending peer raised one desktop notification.
    const shown = await page.evaluate(() => (globalThis as unknown as { __notifications: { title: string; body: string }[] }).__notifications);
    expect(shown.map((n) => n.body).sort()).toEqual(names.map((n) => `${n}@demo asks to be registered (from 127.0.0.1).`));
    await peers.search('nas');
    expect(await peers.row('nas').isVisible()).toBe(true);
    expect(await peers.row('camera').count()).toBe(0);
    await peers.search('');
    await app.screenshot('peers-pending-dark');

    // Keyboard: arrows move between the peer tabs, Alt+digit switches views.
    await peers.tab('pending').focus();
    await page.keyboard.press('ArrowRight');
    await page.locator('#tab-registered[aria-selected=true]').waitFor();
    await page.keyboard.press('ArrowLeft');
    await page.keyboard.press('Alt+3');
    await page.getByRole('heading', { level: 1, name: 'Tunnel' }).waitFor();
    await page.keyboard.press('Alt+1');
    await page.locator('#tab-pending[aria-selected=true]').waitFor();
    await peers.approveAllPending();
    await peers.waitForCount('registered', 3);
    await peers.waitForCount('pending', 0);
    for (const p of procs) await p.waitFor((e) => e.event === 'registration' && e.state === 'registered', `${p.name} registered`);
    await peers.openTab('registered');
    await app.go('Settings');
    await app.screenshot('settings-demo-dark');
  });
  it('shows an exposure as one port with its streams, and counts the connections refused over its limit', async () => {
    stack = await Stack.start({ operators: ['tech'], streamLimits: { maxStreamsPerExposure: 1 } });
    await stack.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: [] });
    const held = new Set<Socket>();
    const lan = createServer((c) => {
      held.add(c);
      c.on('error', () => undefined).pipe(c);
    });
    lan.listen(0, '127.0.0.1');
    await once(lan, 'listening');
    const op = new Operator({ url: stack.relayUrl, name: 'tech', secret: stack.secretOf('tech') });
    const clients: Socket[] = [];
    try {
      op.start();
      await op.ready(10_000);
      const { publicPort } = await op.expose('acme-hq', '127.0.0.1', (lan.address() as AddressInfo).port);
      const { page, app } = await open(stack);
      await app.go('Ports');
      const dial = (): Socket => {
        const c = connect(publicPort, '127.0.0.1').on('error', () => undefined);
        clients.push(c);
        return c;
      };
      const first = dial();
      first.write('hello');
      await once(first, 'data');
      // Over the exposure's limit of 1: both reset at the contact point, counted on its port.
      await Promise.all([dial(), dial()].map((c) => new Promise((resolve) => c.once('close', resolve))));
      const row = page.locator('tr[data-port]');
      await row.locator('td[data-refused="2"]').waitFor();
      const text = await row.textContent();
      expect(text).toContain('exposed');
      expect(text).toContain(`127.0.0.1:${(lan.address() as AddressInfo).port}`);
      expect(text).toContain('tech');
      expect(await row.locator('td.warn').textContent()).toBe('2');
      await app.screenshot('ports-exposure');
    } finally {
      for (const c of clients) c.destroy();
      for (const c of held) c.destroy();
      lan.close();
      await op.stop();
    }
  });

  it('a registration flood is one line on the Peers view, not a notification per request', async () => {
    stack = await Stack.start();
    const { page } = await open(stack, { notifications: true });
    const peers = new PeersPage(page);
    await peers.tab('pending').waitFor();
    expect(await peers.floodNotice.count()).toBe(0);

    // 40 hellos with fresh keys + REGISTER from one LAN address (a loopback one stands in).
    const outcomes = await flood(stack.cp.peerPortUrl, '127.0.0.2', 'flood', 40, 4);
    expect(outcomes.every((o) => o.state === 'pending')).toBe(true);
    // The first drop shows at once; the count catches up within a second.
    await peers.floodNotice.filter({ hasText: /^24 / }).waitFor({ timeout: 5_000 });
    expect(await peers.floodNotice.textContent()).toBe('24 registration requests from 127.0.0.2 were dropped in the last minute (flood limit)');
    await peers.waitForCount('pending', 16);
    await stack.internalPeer('printer').then((p) => p.send({ cmd: 'register' }));
    await peers.waitForCount('pending', 17);
    const shown = await page.evaluate(() => (globalThis as unknown as { __notifications: { body: string }[] }).__notifications);
    // Notifications stop once the flood is known: at most the 16 requests that came before it.
    expect(shown.length).toBeLessThanOrEqual(16);
    expect(shown.map((n) => n.body)).not.toContain('printer@acme-hq asks to be registered (from 127.0.0.1).');
    await new AdminPage(page).screenshot('peers-flood');
  });
});
