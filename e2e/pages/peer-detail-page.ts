import type { Locator, Page } from 'playwright-core';

/** One peer's page (opened from the peers table) and the Audit view. */
export class PeerDetailPage {
  constructor(readonly page: Page) {}

  /** Clicks the peer's name in the peers table (the tab must show it). */
  async openFromTable(name: string): Promise<void> {
    await this.page.locator(`tr[data-peer="${name}"]`).getByRole('button', { name: `Open ${name}'s page` }).click();
    await this.page.getByRole('heading', { level: 1, name: new RegExp(`^${name}`) }).waitFor();
  }

  get root(): Locator {
    return this.page.getByTestId('peer-page');
  }

  /** The value next to a label in the facts list (Address, Key fingerprint, LAN IP...). */
  fact(label: string): Locator {
    return this.root.locator(`dt:text-is("${label}") + dd`);
  }

  get state(): Locator {
    return this.root.locator('h1 .state-badge');
  }

  /** State history lines, newest first; `kind` narrows to one kind (requested, approve, revoke...). */
  history(kind?: string): Locator {
    const items = this.page.getByTestId('peer-history').locator('li');
    return kind ? items.and(this.page.locator(`li[data-kind="${kind}"]`)) : items;
  }

  get traffic(): Locator {
    return this.page.getByTestId('peer-traffic');
  }

  button(name: string | RegExp): Locator {
    return this.root.locator('.view-head').getByRole('button', { name });
  }

  async back(): Promise<void> {
    await this.page.getByRole('button', { name: '← All peers' }).click();
    await this.page.getByRole('heading', { level: 1, name: 'Peers' }).waitFor();
  }

  /** Rows of the Audit view, newest first. */
  auditRows(): Locator {
    return this.page.getByTestId('audit-table').locator('tbody tr');
  }
}
