import { describe, expect, it } from 'vitest';
import { ContactPoint } from '../core/contact-point/contact-point.js';
import { silentLogger } from '../core/runtime/logger.js';
import { TunnelPage } from './pages/tunnel-page.js';
import { browserSuite } from './support/browser-suite.js';
import { Stack } from './support/stack.js';

/**
 * Issue 10 item 2 in the GUI: a second running contact point with the same credential holds
 * the id at the relay; the admin of the one refused sees it on the Tunnel page, with the
 * holder's address, instead of a tunnel that flaps.
 */
const gui = browserSuite();

describe('admin GUI: another instance holds the id', { timeout: 60_000 }, () => {
  it('the Tunnel page says another running contact point holds the id, and where it runs', async () => {
    const stack = (gui.stack = await Stack.start());
    const { page, errors } = await gui.newPage();
    const { tunnel } = await TunnelPage.openConnected(page, stack.guiUrl);

    // A copy with the same credential starts: refused while this one holds the id, it retries
    // every 20-40 ms here (30-60 s by default). When this one reconnects, the copy slips in
    // during the ~0.1-0.2 s before this one redials, and this one is then the one refused.
    const other = await ContactPoint.create({ id: stack.id, relayUrl: stack.relayUrl, secret: stack.cpSecret, peerHost: '127.0.0.1', logger: silentLogger, timing: { idInUseRetryMs: 20 } });
    gui.cleanup(() => other.stop());
    await other.start();
    for (let i = 0; i < 5 && !other.gateway.connected; i++) {
      stack.cp.gateway.reconnectNow();
      await new Promise((r) => setTimeout(r, 1_000));
    }
    expect(other.gateway.connected).toBe(true);

    const line = page.getByTestId('tunnel-id-in-use');
    await line.waitFor({ timeout: 15_000 });
    expect(await line.textContent()).toMatch(
      /^Another running contact point holds this id at the relay: contact point id "acme-hq" is held by another instance at 127\.0\.0\.1:\d+ \(host "[^"]+"\) since \S+Z\. This one stays off while that one is alive and tries again in \d+ s\./,
    );
    await tunnel.waitForState('reconnecting');
    expect(await tunnel.fact('Last error').textContent()).toMatch(/^ID_IN_USE: contact point id "acme-hq" is held by another instance/);
    expect(errors).toEqual([]);
  });
});
