import { describe, expect, it } from 'vitest';
import { AdminClient } from '../core/admin/client.js';
import { PeerDetailPage } from './pages/peer-detail-page.js';
import { PeersPage } from './pages/peers-page.js';
import { guiSuite } from './support/gui-suite.js';
import { Stack } from './support/stack.js';
import { runCli } from '../test/cli/cli-process.js';

/**
 * The peer page and the Audit view in Chromium, against a real relay process, contact point
 * and peer processes: decisions made in the GUI are audited as GUI, those made on the admin
 * API as API, and both show in the peer's state history and the Audit view, also after a reload.
 */
const suite = guiSuite();

describe('peer page and audit view in Chromium', { timeout: 60_000 }, () => {
  it('opens from the peers table with the facts, state history, traffic and actions; the Audit view lists each decision and its surface', async () => {
    const stack = (suite.stack = await Stack.start());
    const { page, app } = await suite.open(stack);
    const peers = new PeersPage(page);
    const detail = new PeerDetailPage(page);

    const printer = await stack.internalPeer('printer');
    printer.send({ cmd: 'register' });
    await peers.openTab('pending');
    await peers.row('printer').waitFor();
    await detail.openFromTable('printer');

    const view = stack.cp.registrar.view(stack.cp.registrar.get('printer')!);
    expect(await detail.fact('Address').textContent()).toBe('printer@acme-hq');
    expect(await detail.fact('Key fingerprint').textContent()).toBe(view.keyFingerprint);
    expect(await detail.fact('LAN IP').textContent()).toBe('127.0.0.1');
    expect(await detail.state.textContent()).toBe('pending');
    expect(await detail.history().allTextContents()).toEqual([expect.stringContaining('Asked to be registered'), expect.stringContaining('First seen')]);

    // Approve on the page: the state and the history follow, audited as GUI.
    await detail.button('Approve printer').click();
    await detail.state.filter({ hasText: 'registered' }).waitFor();
    await detail.history('approve').filter({ hasText: 'Approved via GUI' }).waitFor();
    expect(await detail.history('approve').textContent()).toContain('state: pending → registered');
    await printer.waitFor((e) => e.event === 'registration' && e.state === 'registered', 'printer registered');

    // The traffic section shows this peer's messages (from the stored history).
    const alice = await stack.externalPeer('alice');
    expect(await stack.send(alice, 'printer@acme-hq', 'hello printer')).toMatchObject({ event: 'sent' });
    await detail.traffic.locator('tr[data-outcome="delivered"]', { hasText: 'alice@relay' }).waitFor();

    // Revoke on the page asks first, and says what a sender will be told.
    await detail.button('Revoke printer').click();
    const dialog = page.getByRole('dialog', { name: 'Revoke printer?' });
    await dialog.waitFor();
    expect(await dialog.textContent()).toContain('peer printer@acme-hq is not registered');
    await dialog.getByRole('button', { name: 'Revoke' }).click();
    await detail.state.filter({ hasText: 'revoked' }).waitFor();
    await detail.history('revoke').filter({ hasText: 'Revoked via GUI' }).waitFor();
    expect(await detail.fact('Last decision').textContent()).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d via GUI$/);
    // What the dialog promised is what the sender gets.
    expect(await stack.send(alice, 'printer@acme-hq', 'still there?')).toMatchObject({ event: 'refused', code: 12, reason: 'peer printer@acme-hq is not registered' });

    // A decision from another surface (a program on the admin API) arrives live.
    const api = await AdminClient.connect(stack.admin.wsUrl, stack.admin.token);
    suite.cleanup(() => api.close());
    await api.call('peers:approve', { name: 'printer' });
    await detail.history('approve').filter({ hasText: 'Approved via API' }).waitFor();
    await detail.state.filter({ hasText: 'registered' }).waitFor();
    expect(await detail.history().allTextContents()).toEqual([
      expect.stringContaining('Approved via API'),
      expect.stringContaining('Revoked via GUI'),
      expect.stringContaining('Approved via GUI'),
      expect.stringContaining('Asked to be registered'),
      expect.stringContaining('First seen'),
    ]);
    await app.dismissNotices();
    await app.screenshot('peer-page');

    // Revoked rows in the table say when and through which surface.
    await api.call('peers:revoke', { name: 'printer' });
    await detail.back();
    await peers.openTab('revoked');
    expect(await peers.row('printer').getByTestId('revoked-at').textContent()).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d via API$/);
    await app.dismissNotices();
    await app.screenshot('peers-revoked');

    // The port policy from the GUI's Ports view, then a rule added by the CLI (a real process on the admin endpoint).
    await app.go('Ports');
    await page.getByLabel('LAN targets').fill('192.168.1.0/24:80,443');
    await page.getByLabel('Local ports').fill('tcp:8000-8100');
    await page.getByRole('button', { name: 'Apply port policy' }).click();
    await app.notice('Port policy saved').waitFor();
    const cli = await runCli(['ports', 'policy', 'set', '--add', '--target', '192.168.1.30/32:631', '--admin', stack.admin.wsUrl], {
      home: stack.dir,
      env: { CONTACT_POINT_ADMIN_TOKEN: stack.admin.token },
    });
    expect(cli.code, cli.stderr).toBe(0);

    // The Audit view: every decision, newest first, with its surface; the same after a reload.
    await app.go('Audit');
    const expected = [
      ['ports:policy', 'cli'],
      ['ports:policy', 'gui'],
      ['peer:revoke', 'api'],
      ['peer:approve', 'api'],
      ['peer:revoke', 'gui'],
      ['peer:approve', 'gui'],
    ];
    const rows = async (): Promise<string[][]> =>
      Promise.all((await detail.auditRows().all()).map(async (tr) => [(await tr.getAttribute('data-action')) ?? '', (await tr.getAttribute('data-surface')) ?? '']));
    await detail.auditRows().nth(5).waitFor();
    expect(await rows()).toEqual(expected);
    expect(await detail.auditRows().nth(0).textContent()).toContain('targets: 192.168.1.0/24:80,443 → 192.168.1.0/24:80,443 192.168.1.30/32:631');
    expect(await detail.auditRows().nth(1).textContent()).toContain('targets: none → 192.168.1.0/24:80,443; listen: none → tcp:8000-8100');
    expect(await detail.auditRows().nth(2).textContent()).toMatch(/revoked printer.*state: registered → revoked/);
    await app.dismissNotices();
    await app.screenshot('audit');
    await page.reload();
    await app.go('Audit');
    await detail.auditRows().nth(5).waitFor();
    expect(await rows()).toEqual(expected);

    // From the Audit view to the peer's page.
    await detail.auditRows().nth(2).getByRole('button', { name: 'revoked printer' }).click();
    await detail.state.filter({ hasText: 'revoked' }).waitFor();
  });
});
