import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AdminServer } from '../../core/admin/server.js';
import { closeFloodSockets, flood } from '../flood-client.js';
import { logger, startHarness, type Harness } from '../helpers.js';
import { requireCliBuild, runCli, tempHome } from './cli-process.js';

let h: Harness | undefined;
let admin: AdminServer | undefined;
let home: Awaited<ReturnType<typeof tempHome>> | undefined;
beforeAll(() => requireCliBuild());
afterEach(async () => {
  closeFloodSockets();
  await admin?.stop();
  await h?.close();
  await home?.remove();
  h = admin = home = undefined;
});

describe('contact-point peers after a registration flood', () => {
  it('prints one line on the flood under the list, and status says the same', async () => {
    h = await startHarness();
    admin = new AdminServer({ api: h.cp, logger });
    await admin.start();
    home = await tempHome();
    await flood(h.cp.peerPortUrl, '127.0.0.2', 'flood', 24, 4);

    const env = { CONTACT_POINT_ADMIN_TOKEN: admin.token };
    const [peers, status] = await Promise.all([
      runCli(['peers', '--admin', admin.wsUrl], { home: home.path, env }),
      runCli(['status', '--admin', admin.wsUrl], { home: home.path, env }),
    ]);
    expect(peers.code, peers.stderr).toBe(0);
    const lines = peers.stdout.trim().split('\n');
    expect(lines).toHaveLength(1 + 16 + 1); // header, the 16 requests kept, the flood line
    expect(lines.at(-1)).toBe('8 registration requests from 127.0.0.2 were dropped in the last minute (flood limit)');
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^flood {10}8 registration requests from 127\.0\.0\.2 were dropped in the last minute \(flood limit\)$/m);
  }, 30_000);

  it('serve refuses flood limits that are not whole numbers of at least 1, naming the flag', async () => {
    home = await tempHome();
    const serve = ['serve', '--relay', 'ws://127.0.0.1:9/v1', '--id', 'acme-hq', '--state', home.path];
    const cases: [string[], RegExp][] = [
      [['--max-undecided-per-address', '0'], /--max-undecided-per-address "0": expected a whole number from 1 to 100000/],
      [['--max-undecided', '1e3'], /--max-undecided "1e3": expected a whole number from 1 to 100000/],
      [['--new-peers-per-minute', '-5'], /--new-peers-per-minute/],
    ];
    const results = await Promise.all(cases.map(([extra]) => runCli([...serve, ...extra], { home: home!.path })));
    results.forEach((r, i) => {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(cases[i]![1]);
    });
  }, 30_000);
});
