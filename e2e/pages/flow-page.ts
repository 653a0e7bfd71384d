import type { Locator, Page } from 'playwright-core';

export class FlowPage {
  constructor(readonly page: Page) {}

  get table(): Locator {
    return this.page.getByRole('table', { name: 'Messages' });
  }

  /** A message row (not the header) containing all of `texts`. */
  row(...texts: string[]): Locator {
    let l = this.table.locator('[role=rowgroup] [role=row]');
    for (const t of texts) l = l.filter({ hasText: t });
    return l;
  }

  async pause(): Promise<void> {
    await this.page.getByRole('button', { name: 'Pause' }).click();
  }

  async resume(): Promise<void> {
    await this.page.getByRole('button', { name: 'Resume' }).click();
  }

  async filterOutcome(outcome: 'all' | 'delivered' | 'refused' | 'forwarded'): Promise<void> {
    await this.page.getByLabel('Outcome').selectOption(outcome);
  }

  async filterPeer(text: string): Promise<void> {
    await this.page.getByRole('searchbox', { name: 'Peer' }).fill(text);
  }

  async totalRefused(): Promise<number> {
    return Number((await this.page.getByTestId('total-refused').textContent())?.replaceAll(',', ''));
  }
}
