import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DIRECT_DIR } from '../core/contact-point/direct-mode.js';
import { CredentialStore } from '../core/relay/credentials.js';
import { TunnelPage } from './pages/tunnel-page.js';
import { browserSuite } from './support/browser-suite.js';
import { Stack } from './support/stack.js';

/**
 * Issue 15, part 1 in the GUI: direct mode's listener and its sessions beside the tunnel. An
 * external peer connects to the contact point itself; the Tunnel page lists it, and drops it
 * when its credential is removed (as `contact-point credential remove` does, from another store).
 */
const gui = browserSuite();

describe('admin GUI: direct sessions beside the tunnel', { timeout: 60_000 }, () => {
  it('the Tunnel page shows the direct listener and its sessions, and a removed credential\'s session goes', async () => {
    const stack = (gui.stack = await Stack.start({ direct: true }));
    const store = await CredentialStore.open(join(stack.dir, 'cp', DIRECT_DIR));
    const secret = await store.add('external', 'bob');
    const { page, errors } = await gui.newPage();
    const { app, tunnel } = await TunnelPage.openConnected(page, stack.guiUrl);

    const section = page.getByTestId('direct');
    await section.waitFor();
    expect(await page.getByTestId('direct-url').textContent()).toBe(stack.cp.direct!.url);
    expect(await tunnel.fact('Encryption').textContent()).toBe('none (plain ws)');
    // The contact point reads the file within its poll: then bob's hello passes.
    for (let i = 0; i < 50 && !stack.cp.direct!.credentials.has('external', 'bob'); i++) await new Promise((r) => setTimeout(r, 100));
    const bob = await stack.directPeer('bob', secret);
    const printer = await stack.internalPeer('printer');
    printer.send({ cmd: 'register' });
    await printer.waitFor((e) => e.event === 'registration' && e.state === 'pending', 'printer pending');
    await stack.cp.call('peers:approve', { name: 'printer' });
    await printer.waitFor((e) => e.event === 'registration' && e.state === 'registered', 'printer registered');
    expect(await stack.send(bob, 'printer@acme-hq', 'hello from outside')).toMatchObject({ event: 'sent' });

    const row = page.getByTestId('direct-sessions').locator('tbody tr');
    await row.first().waitFor();
    expect(await row.count()).toBe(1);
    expect(await row.first().locator('th').textContent()).toBe('bob@direct');
    expect(await row.first().locator('td').nth(1).textContent()).toBe('peer');
    expect(await page.getByTestId('direct-count').textContent()).toBe('1');
    // The tunnel to the relay is up at the same time.
    expect(await tunnel.state.getAttribute('data-state')).toBe('connected');
    await app.screenshot('tunnel-direct');

    expect(await store.remove('external', 'bob')).toBe(true);
    await page.getByText('No direct sessions.').waitFor({ timeout: 10_000 });
    expect(await page.getByTestId('direct-count').textContent()).toBe('0');
    expect(errors).toEqual([]);
  });
});
