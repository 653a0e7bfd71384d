import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import type { HistoryEntry } from '../core/admin/contract.js';
import { HISTORY_CSV_COLUMNS } from '../core/admin/history-export.js';
import { parseCsv } from '../test/csv.js';
import { AdminPage } from './pages/admin-page.js';
import { FlowPage } from './pages/flow-page.js';
import { HistoryPage } from './pages/history-page.js';
import { PeerDetailPage } from './pages/peer-detail-page.js';
import { PeersPage } from './pages/peers-page.js';
import { browserSuite } from './support/browser-suite.js';
import { Stack } from './support/stack.js';

/**
 * The stored history in the GUI (issue 16, item 1): messages sent by real peers through a real
 * relay and contact point are still there after the page is reloaded, the live totals and the
 * history agree, filters by peer and outcome narrow it, and both exports download and parse.
 */
const suite = browserSuite();

/** LAN peer processes that ask to be registered and are approved (through the admin API). */
async function registeredPeers(s: Stack, names: readonly string[]): Promise<void> {
  const peers = await Promise.all(names.map((n) => s.internalPeer(n)));
  for (const p of peers) p.send({ cmd: 'register' });
  for (const p of peers) {
    await expect.poll(() => s.cp.registrar.get(p.name)?.state).toBe('pending');
    await s.cp.call('peers:approve', { name: p.name });
    await p.waitFor((e) => e.event === 'registration' && e.state === 'registered', `${p.name} registered`);
  }
}

describe('history in the admin GUI (Chromium)', { timeout: 60_000 }, () => {
  it('survives a reload, agrees with the totals, filters by peer and outcome, and exports CSV and JSON lines', async () => {
    const stack = (suite.stack = await Stack.start({ externals: ['alice', 'bob'] }));
    await registeredPeers(stack, ['printer', 'scanner']);
    const alice = await stack.externalPeer('alice');
    const bob = await stack.externalPeer('bob');
    for (let i = 0; i < 4; i++) expect(await stack.send(alice, 'printer@acme-hq', `job ${i}`)).toMatchObject({ event: 'sent' });
    expect(await stack.send(bob, 'scanner@acme-hq', 'scan')).toMatchObject({ event: 'sent' });
    expect(await stack.send(bob, 'fax@acme-hq', 'anyone?')).toMatchObject({ event: 'refused', code: 12 });
    await stack.cp.call('peers:revoke', { name: 'scanner' });
    expect(await stack.send(alice, 'scanner@acme-hq', 'again')).toMatchObject({ event: 'refused', code: 12 });
    expect(await stack.send(bob, 'printer@acme-hq', 'from bob')).toMatchObject({ event: 'sent' });

    const { page, pageErrors: errors } = await suite.newPage({ width: 1280, height: 800 });
    const app = new AdminPage(page);
    await app.open(stack.guiUrl);
    // The messages were all sent before the page opened: the live list has none of them, the history has all.
    await app.go('Live flow');
    const flow = new FlowPage(page);
    expect(await flow.row().count()).toBe(0);
    const history = new HistoryPage(page);
    await history.open();
    await history.summary.filter({ hasText: '8 matching: 6 delivered, 2 refused' }).waitFor();
    await history.row('bob@relay', 'fax@acme-hq', 'refused', 'no such peer').waitFor();

    await page.reload();
    await app.tunnelPill.waitFor();
    await app.go('Live flow');
    // The live totals (since the contact point started) and the stored history agree.
    await page.getByTestId('total-messages').filter({ hasText: /^8$/ }).waitFor();
    expect(await flow.totalRefused()).toBe(2);
    await history.open();
    await history.summary.filter({ hasText: '8 matching: 6 delivered, 2 refused' }).waitFor();
    expect(await history.row().count()).toBe(8);
    await history.row('alice@relay', 'scanner@acme-hq', 'refused', 'peer is revoked').waitFor();
    await app.screenshot('history');

    await history.search({ peer: 'printer@acme-hq' }, /^5 matching: 5 delivered, 0 refused/);
    expect(await history.row().count()).toBe(5);
    expect(await history.row('scanner').count()).toBe(0);
    await history.search({ peer: '', outcome: 'refused' }, /^2 matching: 0 delivered, 2 refused/);
    expect(await history.row('delivered').count()).toBe(0);
    await history.search({ outcome: 'all', reason: 'revoked' }, /^1 matching/);
    await history.row('scanner@acme-hq', 'peer is revoked').waitFor();

    // Export what the filter shows (refusals), then everything.
    await history.reset(/^8 matching/);
    await history.search({ outcome: 'refused' }, /^2 matching/);
    const csv = await history.export('CSV');
    expect(csv.suggestedFilename()).toMatch(/^contact-point-history-.*\.csv$/);
    const rows = parseCsv(await readFile(await csv.path(), 'utf8'));
    expect(rows[0]).toEqual([...HISTORY_CSV_COLUMNS]);
    expect(rows.slice(1).map((r) => [r[3], r[5], r[6], r[9]])).toEqual([
      ['refused', 'alice@relay', 'scanner@acme-hq', 'PEER_NOT_REGISTERED'],
      ['refused', 'bob@relay', 'fax@acme-hq', 'PEER_NOT_REGISTERED'],
    ]);
    await app.notice('Exported 2 entries as CSV').waitFor();
    await history.reset(/^8 matching/);
    const jsonl = await history.export('JSON lines');
    expect(jsonl.suggestedFilename()).toMatch(/\.jsonl$/);
    const lines = (await readFile(await jsonl.path(), 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l) as HistoryEntry);
    expect(lines).toHaveLength(8);
    expect(lines.map((e) => e.seq)).toEqual([8, 7, 6, 5, 4, 3, 2, 1]);
    expect(lines.filter((e) => e.outcome === 'delivered' && e.to === 'printer@acme-hq')).toHaveLength(5);
    expect(errors).toEqual([]);
  });
  it("a peer's page shows its traffic over time and its recent messages and refusals from the history, after a reload", async () => {
    const stack = (suite.stack = await Stack.start({ externals: ['alice'] }));
    await registeredPeers(stack, ['printer', 'scanner']);
    const alice = await stack.externalPeer('alice');
    for (let i = 0; i < 6; i++) expect(await stack.send(alice, 'printer@acme-hq', `job ${i}`)).toMatchObject({ event: 'sent' });
    expect(await stack.send(alice, 'scanner@acme-hq', 'scan')).toMatchObject({ event: 'sent' });
    await stack.cp.call('peers:revoke', { name: 'printer' });
    expect(await stack.send(alice, 'printer@acme-hq', 'again')).toMatchObject({ event: 'refused', code: 12 });

    // Everything above happened before the page opened: what the peer page shows comes from the history.
    const { page, pageErrors: errors } = await suite.newPage({ width: 1280, height: 1000 });
    const app = new AdminPage(page);
    await app.open(stack.guiUrl);
    await page.reload();
    await app.tunnelPill.waitFor();
    const peers = new PeersPage(page);
    const detail = new PeerDetailPage(page);
    await peers.openTab('revoked');
    await detail.openFromTable('printer');
    await detail.traffic.getByTestId('traffic-total').filter({ hasText: /^7$/ }).waitFor(); // 6 delivered + 1 refused, none of scanner's
    expect(await detail.traffic.getByRole('img').getAttribute('aria-label')).toMatch(/: 7 messages, 1 refused, from /);
    const recent = detail.traffic.getByRole('table', { name: 'Recent messages' });
    expect(await recent.locator('tbody tr').count()).toBe(7);
    expect(await recent.locator('tbody tr[data-outcome="delivered"]').count()).toBe(6);
    expect(await recent.locator('tbody tr', { hasText: 'scanner' }).count()).toBe(0);
    const refusals = detail.traffic.getByRole('table', { name: 'Recent refusals' });
    expect(await refusals.locator('tbody tr').count()).toBe(1);
    expect(await refusals.locator('tbody tr').textContent()).toContain('alice@relay');

    // A new refusal shows on the open page within the refresh.
    expect(await stack.send(alice, 'printer@acme-hq', 'one more')).toMatchObject({ event: 'refused', code: 12 });
    await detail.traffic.getByTestId('traffic-total').filter({ hasText: /^8$/ }).waitFor({ timeout: 10_000 });
    await expect.poll(() => refusals.locator('tbody tr').count()).toBe(2);
    expect(await recent.locator('tbody tr').count()).toBe(8);
    await app.screenshot('peer-traffic');
    expect(errors).toEqual([]);
  });
});
