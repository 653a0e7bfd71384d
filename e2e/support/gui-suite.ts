import type { Page } from 'playwright-core';
import { expect } from 'vitest';
import { AdminPage } from '../pages/admin-page.js';
import { browserSuite, type BrowserSuite } from './browser-suite.js';
import type { Stack } from './stack.js';

/** What guiSuite() gives a GUI test file: browserSuite() plus the admin GUI opened. */
export interface GuiSuite extends BrowserSuite {
  /** opens the admin GUI of `stack` in a fresh browser context (1280×800, light) and checks the page threw nothing */
  open(stack: Stack): Promise<{ page: Page; app: AdminPage }>;
}

/**
 * browserSuite() (one Chromium for the file; after each test its cleanups, its contexts and its
 * stack closed) for tests that start on the admin GUI.
 */
export function guiSuite(): GuiSuite {
  const base = browserSuite();
  return Object.assign(base, {
    async open(stack: Stack): Promise<{ page: Page; app: AdminPage }> {
      const { page, pageErrors } = await base.newPage({ width: 1280, height: 800 }, 'light');
      const app = new AdminPage(page);
      await app.open(stack.guiUrl);
      expect(pageErrors).toEqual([]);
      return { page, app };
    },
  });
}
