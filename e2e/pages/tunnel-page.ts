import type { Locator, Page } from 'playwright-core';
import type { TunnelState } from '../../core/admin/contract.js';
import { AdminPage } from './admin-page.js';

export class TunnelPage {
  constructor(readonly page: Page) {}

  /** Opens the GUI at `guiUrl` on the Tunnel view, once it shows the tunnel connected. */
  static async openConnected(page: Page, guiUrl: string): Promise<{ app: AdminPage; tunnel: TunnelPage }> {
    const app = new AdminPage(page);
    await app.open(guiUrl);
    const tunnel = new TunnelPage(page);
    await app.go('Tunnel');
    await tunnel.waitForState('connected');
    return { app, tunnel };
  }

  get state(): Locator {
    return this.page.getByTestId('tunnel-state');
  }

  async waitForState(state: TunnelState, timeoutMs = 15_000): Promise<void> {
    await this.page.locator(`[data-testid=tunnel-state][data-state=${state}]`).waitFor({ timeout: timeoutMs });
  }

  fact(label: string): Locator {
    return this.page.locator('.facts div', { has: this.page.locator('dt', { hasText: label }) }).locator('dd');
  }

  /** Reconnect now; on a connected tunnel it asks first, and `confirm` answers. */
  async reconnectNow(confirm = true): Promise<void> {
    const connected = (await this.state.getAttribute('data-state')) === 'connected';
    await this.page.getByRole('button', { name: 'Reconnect now' }).click();
    if (!connected) return;
    const dialog = this.confirmDialog;
    await dialog.waitFor();
    await dialog.getByRole('button', { name: confirm ? 'Reconnect' : 'Cancel' }).click();
    await dialog.waitFor({ state: 'hidden' });
  }

  get confirmDialog(): Locator {
    return this.page.getByRole('dialog', { name: 'Reconnect a healthy tunnel?' });
  }

  /** Recent states, newest first: each entry's text. */
  async log(): Promise<string[]> {
    return this.page.getByTestId('tunnel-log').locator('li').allTextContents();
  }
}
