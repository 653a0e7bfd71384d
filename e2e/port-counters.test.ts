import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { Browser, BrowserContext } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Operator } from '../core/peer/operator.js';
import { AdminPage } from './pages/admin-page.js';
import { launchChromium } from './support/browser.js';
import { Stack } from './support/stack.js';

/**
 * The Ports view's byte counters follow the bytes while a connection through a mediated port
 * stays open (issue 16 item 4: they stayed at what they were when the port opened): a real TCP
 * echo service on the LAN, exposed through a real relay process by an operator.
 */
let browser: Browser;
let context: BrowserContext | undefined;
let stack: Stack | undefined;
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await context?.close();
  context = undefined;
  await stack?.close();
  stack = undefined;
});

/** Writes `n` bytes and waits until the echo has brought them all back. */
async function roundTrip(c: Socket, n: number): Promise<void> {
  let got = 0;
  const done = new Promise<void>((resolve) => {
    const onData = (d: Buffer): void => {
      got += d.length;
      if (got >= n) {
        c.off('data', onData);
        resolve();
      }
    };
    c.on('data', onData);
  });
  c.write(Buffer.alloc(n, 0x61));
  await done;
}

describe('Ports view in Chromium', { timeout: 60_000 }, () => {
  it('byte counters move while bytes flow through an open connection', async () => {
    stack = await Stack.start({ operators: ['tech'] });
    await stack.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: [] });
    const lan = createServer((s) => s.on('error', () => undefined).pipe(s));
    lan.listen(0, '127.0.0.1');
    await once(lan, 'listening');
    cleanups.push(() => new Promise((r) => lan.close(r)));
    const op = new Operator({ url: stack.relayUrl, name: 'tech', secret: stack.secretOf('tech') });
    op.start();
    cleanups.push(() => op.stop());
    await op.ready(10_000);
    const { publicPort } = await op.expose('acme-hq', '127.0.0.1', (lan.address() as AddressInfo).port);

    context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const app = new AdminPage(page);
    await app.open(stack.guiUrl);
    await app.go('Ports');

    const client = connect(publicPort, '127.0.0.1');
    client.on('error', () => undefined);
    cleanups.push(() => client.destroy());
    await once(client, 'connect');
    const row = page.locator('tr[data-port]');
    const chunk = 48 * 1024;
    for (let i = 1; i <= 3; i++) {
      await roundTrip(client, chunk);
      // The connection stays open: no port opens or closes, only the counters move.
      await row.locator(`td[data-bytes-in="${i * chunk}"]`).waitFor({ timeout: 5_000 });
      await row.locator(`td[data-bytes-out="${i * chunk}"]`).waitFor({ timeout: 5_000 });
    }
    // The same figures the CLI shows (contact-point ports reads the same list).
    expect(stack.cp.ports.list()).toMatchObject([{ state: 'exposed', streams: 1, bytesIn: 3 * chunk, bytesOut: 3 * chunk }]);
    expect(await row.locator('td[data-bytes-in]').textContent()).toBe('144 KiB');
  });
});
