import type { Locator, Page } from 'playwright-core';
import type { PeerState } from '../../core/admin/contract.js';

const LABEL: Record<PeerState, string> = { pending: 'Pending', registered: 'Registered', unregistered: 'Unregistered', revoked: 'Revoked' };

export class PeersPage {
  constructor(readonly page: Page) {}

  tab(state: PeerState): Locator {
    return this.page.getByRole('tab', { name: new RegExp(`^${LABEL[state]}`) });
  }

  async openTab(state: PeerState): Promise<void> {
    await this.tab(state).click();
    await this.page.locator(`[role=tab][aria-selected=true]#tab-${state}`).waitFor();
  }

  async count(state: PeerState): Promise<number> {
    return Number(await this.tab(state).locator('.count').textContent());
  }

  /** Waits until the tab's count reads `n`. */
  async waitForCount(state: PeerState, n: number, timeoutMs = 10_000): Promise<void> {
    await this.tab(state).locator('.count', { hasText: new RegExp(`^${n}$`) }).waitFor({ timeout: timeoutMs });
  }

  /** The one-line registration flood notice above the tabs. */
  get floodNotice(): Locator {
    return this.page.getByTestId('flood-notice');
  }

  row(name: string): Locator {
    return this.page.locator(`tr[data-peer="${name}"]`);
  }

  async search(text: string): Promise<void> {
    await this.page.getByRole('searchbox', { name: 'Search peers' }).fill(text);
  }

  async approve(name: string): Promise<void> {
    await this.row(name).getByRole('button', { name: `Approve ${name}` }).click();
  }

  async reject(name: string): Promise<void> {
    await this.row(name).getByRole('button', { name: `Reject ${name}` }).click();
  }

  /** Revoke asks first: the dialog names the peer and confirming does it. */
  async revoke(name: string): Promise<void> {
    await this.row(name).getByRole('button', { name: `Revoke ${name}` }).click();
    const dialog = this.page.getByRole('dialog', { name: `Revoke ${name}?` });
    await dialog.waitFor();
    await dialog.getByRole('button', { name: 'Revoke' }).click();
    await dialog.waitFor({ state: 'hidden' });
  }

  /** Approve all asks first: the dialog lists the names; confirming approves them. */
  async approveAllPending(): Promise<void> {
    await this.page.getByRole('button', { name: /^Approve all \d+ pending$/ }).click();
    const dialog = this.page.getByRole('dialog', { name: /^Approve \d+ pending peers\?$/ });
    await dialog.waitFor();
    await dialog.getByRole('button', { name: /^Approve \d+$/ }).click();
    await dialog.waitFor({ state: 'hidden' });
  }
}
