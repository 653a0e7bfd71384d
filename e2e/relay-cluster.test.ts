import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RelayAdminServer } from '../core/relay/admin-server.js';
import { joinNatsCluster } from '../core/relay/cluster-nats.js';
import { logger, startHarness, waitFor, type Harness } from '../test/helpers.js';
import { haveNatsServer, NO_NATS_REASON, startNatsServer } from '../test/nats-fixtures.js';
import { SCREENSHOTS } from './pages/admin-page.js';
import { browserSuite } from './support/browser-suite.js';
import { RENDERER_DIST, requireBuilt } from './support/stack.js';

/**
 * The relay dashboard of a cluster node (issue 12, item 7) in Debian's Chromium: a real
 * nats-server, two relay nodes each holding an office's tunnel, an external session on the
 * second. The first node's dashboard shows both nodes and which node holds which office, and
 * follows an office that comes up on the other node.
 */
if (!haveNatsServer) console.warn(NO_NATS_REASON);
const gui = browserSuite();

describe.skipIf(!haveNatsServer)('relay dashboard of a cluster node in Chromium', { timeout: 60_000 }, () => {
  it('shows the nodes and which node holds which office, and follows changes', async () => {
    requireBuilt();
    const nats = await startNatsServer();
    gui.cleanup(() => nats.stop());
    /** An office (its contact point and tunnel) on a new relay node `node`. */
    const office = async (node: string, id: string): Promise<Harness> => {
      const joined = await joinNatsCluster({ servers: [nats.url], node, logger });
      const h = await startHarness({ id, relay: { name: 'relay.example.net', credentials: joined.credentials, cluster: joined.cluster } });
      gui.cleanup(() => h.close());
      return h;
    };
    const r1 = await office('r1', 'acme-hq');
    const r2 = await office('r2', 'acme-branch');
    const printer = await r1.registered('printer');
    const alice = await r2.external('alice');
    await waitFor(() => r1.relay.cluster.tunnel('acme-branch')?.kind === 'remote' && r1.relay.cluster.external('alice')?.kind === 'remote', 5_000, 'r1 sees r2');
    // Across nodes both ways: alice (on r2) to the printer (r1 routes it), the printer to alice (r1 forwards it).
    for (let i = 0; i < 3; i++) await alice.send('printer@acme-hq', `job ${i}`);
    await printer.send('alice@relay.example.net', 'done');
    const admin = new RelayAdminServer({ relay: r1.relay, logger, staticDir: RENDERER_DIST });
    await admin.start();
    gui.cleanup(() => admin.stop());

    const { page, errors } = await gui.newPage({ width: 1440, height: 900 }, 'light');
    await page.goto(admin.dashboardUrl);
    await page.getByTestId('live-pill').filter({ hasText: 'live' }).waitFor();
    const cluster = page.getByLabel('Cluster', { exact: true });
    await cluster.waitFor();
    expect(await cluster.textContent()).toContain('This relay is node r1');
    const totals = await page.getByLabel('Totals').textContent();
    expect(totals).toContain(`Messages routed${r1.relay.status().routed}`);
    expect(totals).toContain(`Forwarded to other nodes${r1.relay.status().forwarded}`);
    expect(r1.relay.status().forwarded).toBeGreaterThan(0);
    const row = async (testId: string): Promise<string[]> => page.getByTestId(testId).locator('td').allTextContents();
    expect(await row('node-r1')).toEqual(['r1this node', '1', '0']);
    expect(await row('node-r2')).toEqual(['r2', '1', '1']);
    expect(await row('placed-acme-hq')).toEqual(['acme-hq', 'r1this node']);
    expect(await row('placed-acme-branch')).toEqual(['acme-branch', 'r2']);
    // The node's own offices table lists only the tunnel it holds.
    expect(await page.getByTestId('office-acme-hq').count()).toBe(1);
    expect(await page.getByTestId('office-acme-branch').count()).toBe(0);

    // Live: an office comes up on r2 and is placed there without a reload.
    await r2.contactPoint('acme-lab');
    await page.getByTestId('placed-acme-lab').waitFor({ timeout: 6_000 });
    expect(await row('placed-acme-lab')).toEqual(['acme-lab', 'r2']);
    expect(await row('node-r2')).toEqual(['r2', '2', '1']);
    expect(errors).toEqual([]);

    await mkdir(SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: join(SCREENSHOTS, 'relay-cluster.png'), animations: 'disabled', fullPage: true });
  });
});
