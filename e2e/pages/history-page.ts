import type { Download, Locator, Page } from 'playwright-core';

/** The History tab of the Flow view: the stored history, its filters and export. */
export class HistoryPage {
  constructor(readonly page: Page) {}

  /** Opens the tab (on the Flow view) and waits for the first page. */
  async open(): Promise<void> {
    await this.page.getByRole('tab', { name: 'History' }).click();
    await this.page.getByRole('heading', { level: 1, name: 'History' }).waitFor();
    await this.summary.filter({ hasText: 'matching' }).waitFor();
  }

  get table(): Locator {
    return this.page.getByRole('table', { name: 'History' });
  }

  /** An entry row (not the header) containing all of `texts`. */
  row(...texts: string[]): Locator {
    let l = this.table.locator('[role=rowgroup] [role=row]');
    for (const t of texts) l = l.filter({ hasText: t });
    return l;
  }

  get summary(): Locator {
    return this.page.getByTestId('history-summary');
  }

  private get filters(): Locator {
    return this.page.getByRole('search', { name: 'History filters' });
  }

  /** Sets the filters given (others as they are) and searches; waits for the new summary. */
  async search(f: { peer?: string; outcome?: string; reason?: string }, expectSummary: RegExp): Promise<void> {
    if (f.peer !== undefined) await this.filters.getByRole('searchbox', { name: 'Peer' }).fill(f.peer);
    if (f.reason !== undefined) await this.filters.getByRole('searchbox', { name: 'Reason' }).fill(f.reason);
    if (f.outcome !== undefined) await this.filters.getByLabel('Outcome').selectOption(f.outcome);
    await this.filters.getByRole('button', { name: 'Search' }).click();
    await this.summary.filter({ hasText: expectSummary }).waitFor();
  }

  async reset(expectSummary: RegExp): Promise<void> {
    await this.filters.getByRole('button', { name: 'Reset' }).click();
    await this.summary.filter({ hasText: expectSummary }).waitFor();
  }

  /** Clicks an export button and returns the file the browser downloads. */
  async export(format: 'CSV' | 'JSON lines'): Promise<Download> {
    const [download] = await Promise.all([this.page.waitForEvent('download'), this.page.getByRole('button', { name: `Export ${format}` }).click()]);
    return download;
  }
}
