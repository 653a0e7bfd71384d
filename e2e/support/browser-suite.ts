import type { Browser, BrowserContext, ConsoleMessage, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { launchChromium } from './browser.js';
import type { Stack } from './stack.js';

/** What a GUI test file gets from browserSuite(). */
export interface BrowserSuite {
  /** the current test's stack, closed after it (set it to what the test started) */
  stack: Stack | undefined;
  /**
   * A page in a fresh context (closed after the test): `errors` records console errors and page
   * errors, `pageErrors` the page errors alone (what the page's own code threw).
   */
  newPage(viewport?: { width: number; height: number }, colorScheme?: 'light' | 'dark'): Promise<{ page: Page; errors: string[]; pageErrors: string[] }>;
  /** `fn` runs after the test, before its context and stack are closed */
  cleanup(fn: () => unknown): void;
}

/**
 * The frame a GUI test file shares, set up by one call at its top level: one Chromium for the
 * file; after each test its cleanups run (last first), then its browser context and its stack
 * are closed.
 */
export function browserSuite(): BrowserSuite {
  let browser: Browser | undefined;
  const contexts: BrowserContext[] = [];
  const cleanups: (() => unknown)[] = [];
  const suite: BrowserSuite = {
    stack: undefined,
    async newPage(viewport = { width: 1280, height: 800 }, colorScheme) {
      if (!browser) throw new Error('browserSuite: no browser (called outside a test?)');
      const context = await browser.newContext({ viewport, ...(colorScheme ? { colorScheme } : {}) });
      contexts.push(context);
      const page = await context.newPage();
      const errors: string[] = [];
      const pageErrors: string[] = [];
      page.on('console', (m: ConsoleMessage) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      page.on('pageerror', (e) => {
        errors.push(e.message);
        pageErrors.push(e.message);
      });
      return { page, errors, pageErrors };
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
    for (const c of contexts.splice(0)) await c.close();
    await suite.stack?.close();
    suite.stack = undefined;
  });
  return suite;
}
