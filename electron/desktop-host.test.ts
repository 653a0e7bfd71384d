import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { TunnelView } from '../core/admin/contract.js';
import { CredentialStore } from '../core/relay/credentials.js';
import { Relay } from '../core/relay/relay.js';
import { silentLogger } from '../core/runtime/logger.js';
import { DesktopHost } from './desktop-host.js';
import { DEFAULT_SETTINGS } from './settings-store.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('desktop host', () => {
  it('runs on the embedded demo relay first, then moves to a real relay on a settings change, keeping the window’s subscriptions', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cp-desktop-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const host = new DesktopHost({ stateDir: dir, logger: silentLogger, contactPoint: { timing: { pingIntervalMs: 1_000, backoffBaseMs: 50, backoffMaxMs: 200 } } });
    cleanups.push(() => host.stop());
    const seen: TunnelView[] = [];
    host.subscribe('tunnel:status', (t) => void seen.push(t));

    await host.apply({ ...DEFAULT_SETTINGS, peerPort: 0 });
    const demo = await host.call('snapshot:get', {});
    expect(demo.contactPoint).toMatchObject({ id: 'demo', embeddedRelay: true });
    await until(() => host.tunnel()?.state === 'connected', 'demo tunnel');

    const credentials = CredentialStore.inMemory();
    const secret = await credentials.add('contact-point', 'acme-hq');
    const relay = new Relay({ credentials, host: '127.0.0.1', port: 0, logger: silentLogger });
    const url = await relay.start();
    cleanups.push(() => relay.stop());
    await host.apply({ relayUrl: url, id: 'acme-hq', peerPort: 0, credential: secret, credentialStorage: 'plain' });
    const real = await host.call('snapshot:get', {});
    expect(real.contactPoint).toMatchObject({ id: 'acme-hq', embeddedRelay: false });
    await until(() => seen.some((t) => t.relayUrl === url && t.state === 'connected'), 'tunnel status from the new contact point');
    await expect(host.call('peers:approve', { name: 'ghost' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
