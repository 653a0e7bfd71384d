import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Locator, Page } from 'playwright-core';
import { ROOT } from '../support/stack.js';

/**
 * Where screenshots go: test-results/screenshots/ (ignored by git) on a normal test run, so
 * `npm test` leaves the tree clean; docs/screenshots/, the pictures the README shows, when
 * UPDATE_SCREENSHOTS=1 (after a GUI change: `UPDATE_SCREENSHOTS=1 npm test`).
 */
export const SCREENSHOTS = process.env.UPDATE_SCREENSHOTS === '1' ? join(ROOT, 'docs/screenshots') : join(ROOT, 'test-results/screenshots');
export type ViewLabel = 'Peers' | 'Live flow' | 'Tunnel' | 'Ports' | 'Audit' | 'Settings';

/** The shell around every view: navigation, tunnel pill, banners, notices. */
export class AdminPage {
  constructor(readonly page: Page) {}

  async open(guiUrl: string): Promise<void> {
    await this.page.goto(guiUrl);
    await this.tunnelPill.waitFor();
  }

  navButton(view: ViewLabel): Locator {
    return this.page.getByRole('navigation', { name: 'Views' }).getByRole('button', { name: new RegExp(`^${view}`) });
  }

  async go(view: ViewLabel): Promise<void> {
    await this.navButton(view).click();
    await this.page.getByRole('heading', { level: 1, name: view }).waitFor();
  }

  get tunnelPill(): Locator {
    return this.page.getByTestId('tunnel-pill');
  }

  get pendingBadge(): Locator {
    return this.page.getByTestId('pending-badge');
  }

  get demoBanner(): Locator {
    return this.page.getByTestId('demo-banner');
  }

  notice(text: string | RegExp): Locator {
    return this.page.locator('.notice', { hasText: text });
  }

  /** Clears the notices so a screenshot shows the view itself. */
  async dismissNotices(): Promise<void> {
    const dismiss = this.page.locator('.notice').getByRole('button', { name: 'Dismiss' });
    // Each click removes one (and ok notices also fade by themselves): click the first while any is left.
    while ((await dismiss.count()) > 0) await dismiss.first().click({ timeout: 2_000 }).catch(() => undefined);
  }

  /** SCREENSHOTS/NAME.png; returns the path. */
  async screenshot(name: string): Promise<string> {
    await mkdir(SCREENSHOTS, { recursive: true });
    const path = join(SCREENSHOTS, `${name}.png`);
    // Let transitions and the 250 ms flow batches settle so the picture is stable.
    await this.page.waitForTimeout(300);
    await this.page.screenshot({ path, animations: 'disabled' });
    return path;
  }
}
