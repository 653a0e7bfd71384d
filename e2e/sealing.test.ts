import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { STATE_FILE } from '../core/contact-point/state-store.js';
import { AdminPage } from './pages/admin-page.js';
import { SettingsPage } from './pages/settings-page.js';
import { browserSuite } from './support/browser-suite.js';
import { Stack } from './support/stack.js';

/**
 * Issue 14 in the admin GUI: Settings shows the contact point's key fingerprint (what external
 * peers pin) and sets "sealed payloads only" per peer and office-wide; each choice is in the
 * state file when the GUI says saved, and a plain message is then refused with the reason.
 */
const suite = browserSuite();

describe('sealing in the admin GUI', { timeout: 60_000 }, () => {
  it('shows the key fingerprint and saves "sealed payloads only" for a peer, then for every peer', async () => {
    const stack = (suite.stack = await Stack.start());
    const printer = await stack.internalPeer('printer');
    printer.send({ cmd: 'register' });
    await printer.waitFor((e) => e.event === 'registration' && e.state === 'pending', 'printer pending');
    await stack.cp.call('peers:approve', { name: 'printer' });
    await printer.waitFor((e) => e.event === 'registration' && e.state === 'registered', 'printer registered');

    const { page, errors } = await suite.newPage({ width: 1280, height: 1000 }, 'light');
    const app = new AdminPage(page);
    await app.open(stack.guiUrl);
    await app.go('Settings');
    const settings = new SettingsPage(page);
    const fp = settings.sealing.getByTestId('seal-fingerprint');
    await fp.waitFor();
    expect((await fp.textContent())?.trim()).toBe(stack.cp.seal.key.fingerprint);

    await settings.sealing.getByLabel('printer', { exact: true }).check();
    await settings.sealing.getByRole('button', { name: 'Apply sealing policy' }).click();
    await page.getByText('Sealing policy saved').waitFor();
    const stateFile = join(stack.dir, 'cp', STATE_FILE);
    expect((JSON.parse(await readFile(stateFile, 'utf8')) as { seal: { peers: string[] } }).seal.peers).toEqual(['printer']);
    expect(stack.cp.seal.view()).toMatchObject({ required: false, peers: ['printer'] });
    await settings.sealing.scrollIntoViewIfNeeded();
    await app.screenshot('settings-sealing');

    await settings.sealing.getByLabel(/Sealed payloads only, for every peer/).check();
    await settings.sealing.getByRole('button', { name: 'Apply sealing policy' }).click();
    await expect.poll(async () => (JSON.parse(await readFile(stateFile, 'utf8')) as { seal: { required: boolean } }).seal.required).toBe(true);
    // On disk first, then in memory (after the folder's and the audit log's fsync): the running state follows within moments.
    await expect.poll(() => stack.cp.snapshot().seal?.required).toBe(true);
    // The list of peers hides while the whole office is sealed-only.
    expect(await settings.sealing.getByLabel('printer', { exact: true }).count()).toBe(0);
    expect(errors).toEqual([]);
  });
});
