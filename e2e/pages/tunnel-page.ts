import type { Locator, Page } from 'playwright-core';
import type { TunnelState } from '../../core/admin/contract.js';

export class TunnelPage {
  constructor(readonly page: Page) {}

  get state(): Locator {
    return this.page.getByTestId('tunnel-state');
  }

  async waitForState(state: TunnelState, timeoutMs = 15_000): Promise<void> {
    await this.page.locator(`[data-testid=tunnel-state][data-state=${state}]`).waitFor({ timeout: timeoutMs });
  }

  fact(label: string): Locator {
    return this.page.locator('.facts div', { has: this.page.locator('dt', { hasText: label }) }).locator('dd');
  }

  async reconnectNow(): Promise<void> {
    await this.page.getByRole('button', { name: 'Reconnect now' }).click();
  }
}
