import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AdminError, type AdminApi } from '../core/admin/contract.js';
import { ContactPoint } from '../core/contact-point/contact-point.js';
import { STATE_FILE } from '../core/contact-point/state-store.js';
import { silentLogger } from '../core/runtime/logger.js';
import { serveGuiFile, GUI_CSP } from './gui-files.js';
import { handleAdminCall } from './ipc-handlers.js';
import { trayLook } from './tray-state.js';
import { fileURLToPath } from 'node:url';

function api(impl: (method: string, params: unknown) => unknown): AdminApi & { seen: unknown[] } {
  const seen: unknown[] = [];
  return {
    seen,
    call: (method, params) => {
      seen.push([method, params]);
      return Promise.resolve().then(() => impl(method, params)) as never;
    },
    subscribe: () => () => undefined,
  };
}

describe('IPC admin calls from the window', () => {
  it('answers with the value in an envelope', async () => {
    const a = api(() => ({ name: 'printer', state: 'registered' }));
    expect(await handleAdminCall(a, 'peers:approve', { name: 'printer' }, silentLogger)).toEqual({ ok: true, value: { name: 'printer', state: 'registered' } });
  });

  it('checks the method and the parameters against the contract before the core sees them', async () => {
    const a = api(() => 'never');
    expect(await handleAdminCall(a, 'shell:exec', {}, silentLogger)).toMatchObject({ ok: false, error: { code: 'UNKNOWN_METHOD' } });
    expect(await handleAdminCall(a, 'toString', {}, silentLogger)).toMatchObject({ ok: false, error: { code: 'UNKNOWN_METHOD' } });
    expect(await handleAdminCall(a, 'peers:approve', { name: '../etc' }, silentLogger)).toEqual({ ok: false, error: { code: 'INVALID_PARAMS', message: 'peers:approve: name may use only lower-case letters, digits, ".", "_" and "-", starting with a letter or digit, and no ".."' } });
    expect(await handleAdminCall(a, 'policy:set', { subnets: ['x'], extra: true }, silentLogger)).toMatchObject({ ok: false, error: { code: 'INVALID_PARAMS' } });
    expect(a.seen).toEqual([]);
  });

  it('passes the core’s errors with their code; hides anything else behind INTERNAL', async () => {
    const conflict = api(() => {
      throw new AdminError('CONFLICT', 'printer is registered, not pending');
    });
    expect(await handleAdminCall(conflict, 'peers:reject', { name: 'printer' }, silentLogger)).toEqual({ ok: false, error: { code: 'CONFLICT', message: 'printer is registered, not pending' } });
    const crash = api(() => {
      throw new Error('disk on fire at /home/admin/secret');
    });
    const r = await handleAdminCall(crash, 'snapshot:get', {}, silentLogger);
    expect(r).toMatchObject({ ok: false, error: { code: 'INTERNAL' } });
    expect(JSON.stringify(r)).not.toContain('secret');
  });
});

describe('IPC admin calls: a decision the contact point cannot save', () => {
  it('reaches the window as NOT_SAVED with the reason, and changes nothing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cp-ipc-'));
    try {
      const cp = await ContactPoint.create({ id: 'acme-hq', relayUrl: 'ws://127.0.0.1:9/v1', secret: 'x', stateDir: dir });
      await mkdir(join(dir, STATE_FILE)); // the state file's path is a folder: the write fails, for root too
      const r = await handleAdminCall(cp, 'policy:set', { subnets: ['10.0.0.0/8'] }, silentLogger);
      expect(r).toEqual({ ok: false, error: { code: 'NOT_SAVED', message: `nothing changed: could not save ${join(dir, STATE_FILE)}: EISDIR: illegal operation on a directory` } });
      expect(cp.snapshot().policy.subnets).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('GUI files for the window', () => {
  const dir = fileURLToPath(new URL('../renderer/public/', import.meta.url));
  it('serves the GUI folder with the strict CSP, and nothing outside it', async () => {
    const ok = await serveGuiFile(dir, 'cp-admin://gui/favicon.svg');
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-security-policy')).toBe(GUI_CSP);
    expect(GUI_CSP).toContain("connect-src 'none'");
    expect((await serveGuiFile(dir, 'cp-admin://gui/../../package.json')).status).toBe(404);
    expect((await serveGuiFile(dir, 'cp-admin://gui/%2e%2e/%2e%2e/package.json')).status).toBe(404);
    expect((await serveGuiFile(dir, 'cp-admin://other/favicon.svg')).status).toBe(404);
    // Not percent-encoding: an answer, not a thrown URIError.
    expect((await serveGuiFile(dir, 'cp-admin://gui/%E0%A4%A')).status).toBe(400);
  });
});

describe('tray', () => {
  it('shows the tunnel state by colour and tooltip', () => {
    expect(trayLook(undefined).icon).toBe('offline');
    const base = { stateSince: 0, everConnected: false, lastErrorAt: undefined, lastErrorKind: undefined, relayUrl: 'ws://r', session: undefined, idInUse: undefined, connectedAt: undefined, reconnects: 0, rttMs: undefined, bytesIn: 0, bytesOut: 0, framesIn: 0, framesOut: 0, peersServed: 2, keepaliveMs: 1, proxy: undefined } as const;
    expect(trayLook({ ...base, state: 'connected', lastError: undefined, nextRetryAt: undefined })).toEqual({ icon: 'connected', tooltip: 'Contact Point — tunnel connected (2 peers served)' });
    expect(trayLook({ ...base, state: 'reconnecting', lastError: 'ECONNREFUSED', nextRetryAt: 3_000 }, 1_000)).toEqual({ icon: 'reconnecting', tooltip: 'Contact Point — reconnecting in 2 s: ECONNREFUSED' });
  });
});
