import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser, BrowserContext } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RelayAdminServer } from '../core/relay/admin-server.js';
import { exposedEcho, logger, startHarness, waitFor, type Harness } from '../test/helpers.js';
import { RawClient } from '../test/raw-client.js';
import { SCREENSHOTS } from './pages/admin-page.js';
import { launchChromium } from './support/browser.js';
import { RENDERER_DIST, requireBuilt } from './support/stack.js';

/**
 * The relay dashboard (issue 13, item 2) in Debian's Chromium: the built relay.html served by
 * a real relay's status endpoint, with real contact points, an operator's exposure carrying a
 * real TCP connection, and refusals. It must show them, and keep up as the relay changes.
 */
let browser: Browser;
let context: BrowserContext | undefined;
let h: Harness | undefined;
let admin: RelayAdminServer | undefined;
const closers: (() => unknown)[] = [];

beforeAll(async () => {
  requireBuilt();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});
afterEach(async () => {
  await context?.close();
  context = undefined;
  for (const c of closers.splice(0).reverse()) await c();
  await admin?.stop();
  admin = undefined;
  await h?.close();
  h = undefined;
});



describe('relay dashboard in Chromium', { timeout: 60_000 }, () => {
  it('shows the live offices, sessions, an exposure with its connection, and refusals, and follows changes', async () => {
    h = await startHarness({ relay: { name: 'relay.example.net' } });
    admin = new RelayAdminServer({ relay: h.relay, logger, staticDir: RENDERER_DIST });
    await admin.start();
    await h.registered('printer');
    await h.registered('scanner');
    const alice = await h.external('alice');
    for (let i = 0; i < 3; i++) await alice.send('printer@acme-hq', `job ${i}`);
    // An operator exposes the office's LAN web service; one client is connected through it.
    const exposed = await exposedEcho(h);
    closers.push(() => exposed.close());
    const { lanPort, publicPort } = exposed;
    // Refusals: a message to an office that does not exist, a hello with a wrong secret.
    await expect(alice.send('printer@branch-x', 'hello')).rejects.toThrow(/unknown contact point/);
    const raw = await RawClient.open(h.relay.url);
    closers.push(() => raw.ws.terminate());
    raw.hello({ versions: { min: 1, max: 1 }, role: 'contact-point', id: 'branch-x', secret: 'not-the-secret-of-branch-x' });
    await raw.waitClosed();
    await waitFor(() => h!.relay.statusSnapshot().offices.every((o) => o.rttMs !== undefined), 5_000, 'round trips measured');

    context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, colorScheme: 'light' });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(admin.dashboardUrl);
    await page.getByTestId('live-pill').filter({ hasText: 'live' }).waitFor();
    // The token went in the fragment and is gone from the address bar.
    expect(page.url()).not.toContain('token=');

    const hq = page.getByTestId('office-acme-hq');
    await hq.waitFor();
    expect(await hq.textContent()).toContain('contact-point/');
    expect(await hq.locator('td').nth(5).textContent()).toBe('2'); // announced peers
    expect(await hq.textContent()).toContain('reachable');
    // Capabilities as announced, each with its meaning; this office takes port requests.
    expect(await hq.getByTestId('capability-mediation').getAttribute('title')).toMatch(/takes port requests/);
    expect(await hq.getByTestId('capability-udp-aead').count()).toBe(1);
    expect(await hq.getByTestId('no-mediation').count()).toBe(0);
    expect(await page.getByLabel('Totals').textContent()).toContain('Messages routed3');
    expect(await page.getByTestId('session-tech').textContent()).toContain('1 exposures');
    const exposure = page.getByTestId(`exposure-${publicPort}`);
    expect(await exposure.textContent()).toContain(`127.0.0.1:${lanPort}`);
    expect(await exposure.locator('td').nth(5).textContent()).toBe(`1 / ${h.relay.exposures()[0]!.maxConnections}`); // open / most at once
    const refusals = page.getByTestId('refusal');
    expect(await refusals.count()).toBe(2);
    expect(await refusals.nth(0).textContent()).toContain('BAD_CREDENTIALS (104)');
    expect(await refusals.nth(1).textContent()).toContain('UNKNOWN_CONTACT_POINT (10)');
    expect(await refusals.nth(1).textContent()).toContain('external alice');

    // Live: a second office, which takes no port requests (serve --no-mediation), appears without a reload.
    await h.contactPoint('branch-office', { mediation: false });
    await page.getByTestId('office-branch-office').waitFor({ timeout: 6_000 });
    const branch = page.getByTestId('office-branch-office');
    expect(await branch.getByTestId('no-mediation').textContent()).toBe('no port mediation');
    expect(await branch.getByTestId('capability-mediation').count()).toBe(0);
    await waitFor(() => h!.relay.statusSnapshot().offices.every((o) => o.rttMs !== undefined), 5_000, 'round trips measured');
    await page.waitForTimeout(2_500); // one more poll, with the new office's round trip
    expect(errors).toEqual([]);

    await mkdir(SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: join(SCREENSHOTS, 'relay-dashboard.png'), animations: 'disabled', fullPage: true });

    // The relay stops: the page says so and keeps the last status.
    await admin.stop();
    await page.getByTestId('live-pill').filter({ hasText: /stale|no answer/ }).waitFor({ timeout: 8_000 });
    expect(await page.getByRole('alert').textContent()).toContain('No answer from the relay');
    expect(await hq.count()).toBe(1);
  });

  it('without the token it says how to get one, and a wrong token is refused', async () => {
    h = await startHarness();
    admin = new RelayAdminServer({ relay: h.relay, logger, staticDir: RENDERER_DIST });
    await admin.start();
    context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(admin.url + '/');
    await page.getByRole('alert').filter({ hasText: 'No status token' }).waitFor();
    const second = await context.newPage();
    await second.goto(admin.url + '/#token=wrong');
    await second.getByRole('alert').filter({ hasText: 'Not allowed in' }).waitFor();
  });
});
