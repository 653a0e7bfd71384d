import type { Locator, Page } from 'playwright-core';

export class SettingsPage {
  constructor(readonly page: Page) {}

  get connection(): Locator {
    return this.page.getByRole('form', { name: 'Relay connection' });
  }

  get policy(): Locator {
    return this.page.getByRole('form', { name: 'Registration policy' });
  }

  get sealing(): Locator {
    return this.page.getByRole('form', { name: 'Sealed messages' });
  }

  field(form: Locator, label: string): Locator {
    return form.getByLabel(label, { exact: true });
  }

  /** The inline error under a field. */
  errorOf(form: Locator, label: string): Locator {
    return form.locator('.field', { has: this.page.getByLabel(label, { exact: true }) }).locator('.error');
  }

  async fillConnection(v: { relayUrl?: string; id?: string; credential?: string; peerPort?: string }): Promise<void> {
    const f = this.connection;
    if (v.relayUrl !== undefined) await this.field(f, 'Relay URL').fill(v.relayUrl);
    if (v.id !== undefined) await this.field(f, 'Contact point id').fill(v.id);
    if (v.credential !== undefined) await this.field(f, 'Credential').fill(v.credential);
    if (v.peerPort !== undefined) await this.field(f, 'Peer port').fill(v.peerPort);
  }

  async submitConnection(): Promise<void> {
    await this.connection.getByRole('button', { name: /Check settings|Save and restart/ }).click();
  }

  async setSubnets(text: string): Promise<void> {
    await this.field(this.policy, 'Auto-approve subnets').fill(text);
  }

  async applyPolicy(): Promise<void> {
    await this.policy.getByRole('button', { name: 'Apply policy' }).click();
  }
}
