import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_EVENTS } from '../core/admin/contract.js';
import { CredentialStore } from '../core/relay/credentials.js';
import { silentLogger } from '../core/runtime/logger.js';
import { DesktopHost } from '../electron/desktop-host.js';
import { GUI_CSP, GUI_ORIGIN, serveGuiFile } from '../electron/gui-files.js';
import { envelope, handleAdminCall } from '../electron/ipc-handlers.js';
import { SettingsStore } from '../electron/settings-store.js';
import { AdminPage } from './pages/admin-page.js';
import { PeersPage } from './pages/peers-page.js';
import { SettingsPage } from './pages/settings-page.js';
import { TunnelPage } from './pages/tunnel-page.js';
import { launchChromium } from './support/browser.js';
import type { JsonChild } from './support/child-process.js';
import { RENDERER_DIST, requireBuilt, spawnInternalPeer, spawnRelay } from './support/stack.js';

/**
 * The desktop app without the Electron binary (which cannot be downloaded everywhere): Electron
 * main's own parts — DesktopHost, SettingsStore, the IPC handlers and the GUI file server with
 * the window's CSP — driven from Chromium through a stand-in of the preload bridge that keeps
 * its contract (envelopes in, `window.contactPoint` with call/subscribe/settings out).
 * Only main.ts and preload.cts (thin glue) are left to the Electron test.
 */
let browser: Browser;
const cleanups: (() => Promise<unknown>)[] = [];
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** The preload's behaviour, in the page: envelopes become errors, events queue until subscribed. */
const BRIDGE = `(() => {
  const listeners = new Map(); const queued = new Map();
  const unwrap = (env) => { if (env.ok) return env.value; const e = new Error(env.error.message); e.code = env.error.code; throw e; };
  window.__cpEmit = (name, data) => {
    const set = listeners.get(name);
    if (set && set.size) { for (const fn of set) fn(data); return; }
    const q = queued.get(name) ?? []; q.push(data); if (q.length > 64) q.shift(); queued.set(name, q);
  };
  window.__cspViolations = [];
  document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));
  window.contactPoint = Object.freeze({
    call: (m, p) => window.__cpCall(m, p).then(unwrap),
    subscribe: (ev, fn) => {
      let set = listeners.get(ev); if (!set) listeners.set(ev, (set = new Set())); set.add(fn);
      const q = queued.get(ev); if (q) { queued.delete(ev); for (const d of q) fn(d); }
      return () => set.delete(fn);
    },
    settings: Object.freeze({ get: () => window.__cpSettings('get').then(unwrap), save: (i) => window.__cpSettings('save', i).then(unwrap) }),
  });
})();`;

async function serveGui(): Promise<Server> {
  const server = createServer((req, res) => {
    void serveGuiFile(RENDERER_DIST, `${GUI_ORIGIN}${req.url ?? '/'}`).then(async (r) => {
      res.writeHead(r.status, Object.fromEntries(r.headers.entries()));
      res.end(Buffer.from(await r.arrayBuffer()));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

describe('desktop host through the bridge, under the window CSP', { timeout: 60_000 }, () => {
  it('first run on the embedded demo relay, then switched to a real relay from the settings form', async () => {
    requireBuilt();
    const dir = await mkdtemp(join(tmpdir(), 'cp-bridge-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const creds = await CredentialStore.open(join(dir, 'relay'));
    const secret = await creds.add('contact-point', 'acme-hq');
    const relay: JsonChild = (await spawnRelay(join(dir, 'relay'), 0)).child;
    const relayUrl = String(relay.events[0]?.url);
    cleanups.push(() => relay.kill());

    // What main.ts builds, minus Electron.
    const settings = new SettingsStore(join(dir, 'user-data', 'settings.json'), { available: () => true, encrypt: (s) => Buffer.from(s).reverse(), decrypt: (b) => Buffer.from(b).reverse().toString() });
    await settings.load();
    // A free peer port instead of the default 7901, which a demo on this machine may hold.
    await settings.save({ relayUrl: '', id: 'demo', peerPort: 0 });
    const host = new DesktopHost({ stateDir: join(dir, 'user-data', 'state'), logger: silentLogger, contactPoint: { timing: { pingIntervalMs: 1_000, backoffBaseMs: 100, backoffMaxMs: 500 } } });
    cleanups.push(() => host.stop());
    await host.apply(settings.settings);
    const server = await serveGui();
    cleanups.push(() => new Promise((r) => server.close(r)));

    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    cleanups.push(() => context.close());
    const page: Page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.exposeFunction('__cpCall', (method: unknown, params: unknown) => handleAdminCall(host, method, params, silentLogger));
    await page.exposeFunction('__cpSettings', (verb: unknown, input: unknown) =>
      verb === 'get'
        ? envelope(async () => settings.view(), silentLogger, 'reading the settings')
        : envelope(() => host.saveSettings(settings, input), silentLogger, 'saving the settings'),
    );
    await page.addInitScript(BRIDGE);
    for (const name of ADMIN_EVENTS) {
      host.subscribe(name, (data) => void page.evaluate(([n, d]) => (globalThis as unknown as { __cpEmit(n: string, d: unknown): void }).__cpEmit(n, d), [name, data] as const).catch(() => undefined));
    }

    const app = new AdminPage(page);
    const response = await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/index.html`);
    expect(response?.headers()['content-security-policy']).toBe(GUI_CSP);
    await app.tunnelPill.filter({ hasText: 'connected' }).waitFor();
    await app.demoBanner.waitFor();

    // The desktop settings are editable (the host has a settings API), and checked again in main.
    const form = new SettingsPage(page);
    await app.go('Settings');
    await form.connection.getByRole('button', { name: 'Save and restart' }).waitFor();
    await form.fillConnection({ relayUrl: relayUrl, id: 'acme-hq', peerPort: '0', credential: '' });
    await form.submitConnection();
    await form.errorOf(form.connection, 'Credential').filter({ hasText: 'Required for a relay' }).waitFor();
    await app.screenshot('desktop-settings-first-run');

    await form.fillConnection({ credential: secret });
    await form.submitConnection();
    await app.notice('Settings saved').waitFor({ timeout: 15_000 });
    await app.demoBanner.waitFor({ state: 'detached' });
    await page.locator('.cp-id', { hasText: 'acme-hq' }).waitFor();
    expect(settings.view()).toEqual({ relayUrl, id: 'acme-hq', peerPort: 0, credentialSet: true, credentialStorage: 'os-keychain' });

    const tunnel = new TunnelPage(page);
    await app.go('Tunnel');
    await tunnel.waitForState('connected');
    expect(await tunnel.fact('Relay').textContent()).toBe(relayUrl);

    // Peers of the new contact point show up through the bridge's events.
    const snap = await host.call('snapshot:get', {});
    const printer = await spawnInternalPeer(snap.contactPoint.peerPortUrl.replace('0.0.0.0', '127.0.0.1'), 'printer');
    cleanups.push(() => printer.kill());
    printer.send({ cmd: 'register' });
    await app.go('Peers');
    const peers = new PeersPage(page);
    await peers.openTab('pending');
    await peers.approve('printer');
    await printer.waitFor((e) => e.event === 'registration' && e.state === 'registered', 'printer registered');
    // Both went into the new contact point's audit trail as GUI decisions; the credential did not.
    const audit = await host.call('audit:list', {});
    expect(audit.entries.map((e) => [e.action, e.surface])).toEqual([
      ['peer:approve', 'gui'],
      ['settings:save', 'gui'],
    ]);
    expect(audit.entries[1]).toMatchObject({
      before: { relayUrl: 'embedded demo relay', id: 'demo', credentialSet: false },
      after: { relayUrl, id: 'acme-hq', peerPort: 0, credentialSet: true, credentialChanged: true },
    });
    expect(JSON.stringify(audit.entries)).not.toContain(secret);

    expect(await page.evaluate(() => (globalThis as unknown as { __cspViolations: string[] }).__cspViolations)).toEqual([]);
    expect(errors).toEqual([]);
  });
});
