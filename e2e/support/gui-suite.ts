import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { AdminPage } from '../pages/admin-page.js';
import { launchChromium } from './browser.js';
import type { Stack } from './stack.js';

/** What guiSuite() gives a GUI test file. */
export interface GuiSuite {
  /** the test's stack, closed after it */
  stack: Stack | undefined;
  /** opens the admin GUI of `stack` in a fresh browser context (1280×800, light) and checks the page threw nothing */
  open(stack: Stack): Promise<{ page: Page; app: AdminPage }>;
  /** `fn` runs after the test, before its browser context and stack close */
  cleanup(fn: () => unknown): void;
}

/**
 * The frame of a GUI test file, set up by one call at its top level: one Chromium for the
 * file, a browser context per test, and after each test its cleanups (last first), its
 * context and its stack closed.
 */
export function guiSuite(): GuiSuite {
  let browser: Browser | undefined;
  let context: BrowserContext | undefined;
  const cleanups: (() => unknown)[] = [];
  const suite: GuiSuite = {
    stack: undefined,
    async open(stack) {
      if (!browser) throw new Error('guiSuite: the browser is not up');
      context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      const app = new AdminPage(page);
      await app.open(stack.guiUrl);
      expect(errors).toEqual([]);
      return { page, app };
    },
    cleanup: (fn) => void cleanups.push(fn),
  };
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
    await context?.close();
    context = undefined;
    await suite.stack?.close();
    suite.stack = undefined;
  });
  return suite;
}
