import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AdminError } from '../core/admin/contract.js';
import { silentLogger } from '../core/runtime/logger.js';
import { envelope } from './ipc-handlers.js';
import { DEFAULT_SETTINGS, SettingsStore, type SecretBox } from './settings-store.js';

/** Reversible stand-in for safeStorage, so the test can see that the file holds no clear text. */
const box = (available: boolean): SecretBox => ({
  available: () => available,
  encrypt: (s) => Buffer.from(`sealed:${Buffer.from(s).toString('hex')}`),
  decrypt: (b) => Buffer.from(b.toString().replace(/^sealed:/, ''), 'hex').toString(),
});

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cp-settings-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('desktop settings', () => {
  it('starts on the embedded demo relay when nothing is saved', async () => {
    const s = new SettingsStore(join(dir, 'settings.json'), box(true));
    expect(await s.load()).toEqual({ ok: true });
    expect(s.settings).toEqual(DEFAULT_SETTINGS);
    expect(s.view()).toEqual({ relayUrl: '', id: 'demo', peerPort: 7901, credentialSet: false, credentialStorage: 'none' });
  });

  it('refuses a bad form field by field, and writes nothing', async () => {
    const file = join(dir, 'settings.json');
    const s = new SettingsStore(file, box(true));
    const r = await s.save({ relayUrl: 'https://relay.example.com', id: 'Not OK', peerPort: 99_999 });
    expect(r).toEqual({
      ok: false,
      errors: {
        relayUrl: 'must start with ws:// or wss://, not https://',
        id: 'may use only lower-case letters, digits, ".", "_" and "-", starting with a letter or digit, and no ".."',
        peerPort: 'must be a whole number from 0 (any free port) to 65535',
      },
    });
    expect(await s.save({ relayUrl: 'wss://relay.example.com/v1', id: 'acme-hq', peerPort: 7901 })).toMatchObject({ ok: false, errors: { credential: expect.stringMatching(/required/) as unknown } });
    expect(await s.save({ relayUrl: '', id: 'demo', peerPort: 0, extra: 1 })).toMatchObject({ ok: false });
    await expect(stat(file)).rejects.toThrow();
  });

  it('keeps the credential sealed by the OS keychain, and keeps it when the form leaves it out', async () => {
    const file = join(dir, 'settings.json');
    const s = new SettingsStore(file, box(true));
    expect(await s.save({ relayUrl: 'wss://relay.example.com/v1', id: 'acme-hq', peerPort: 7901, credential: 'top-secret' })).toMatchObject({ ok: true });
    const text = await readFile(file, 'utf8');
    expect(text).not.toContain('top-secret');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    await s.save({ relayUrl: 'wss://relay.example.com/v2', id: 'acme-hq', peerPort: 7902 });

    const again = new SettingsStore(file, box(true));
    expect(await again.load()).toEqual({ ok: true });
    expect(again.settings).toEqual({ relayUrl: 'wss://relay.example.com/v2', id: 'acme-hq', peerPort: 7902, credential: 'top-secret', credentialStorage: 'os-keychain' });
    expect(again.view().credentialSet).toBe(true);
  });

  it('says so when the OS has no keychain, and reports a broken file instead of starting with it', async () => {
    const file = join(dir, 'settings.json');
    const s = new SettingsStore(file, box(false));
    await s.save({ relayUrl: 'ws://127.0.0.1:1/v1', id: 'acme-hq', peerPort: 0, credential: 'x' });
    expect(s.view().credentialStorage).toBe('plain');
    await writeFile(file, '{"version":1,"relayUrl":"ftp://x","id":"acme-hq","peerPort":0}');
    const broken = new SettingsStore(file, box(false));
    expect(await broken.load()).toMatchObject({ ok: false, problem: expect.stringMatching(/ws:\/\/ or wss:\/\//) as unknown });
    expect(broken.settings).toEqual(DEFAULT_SETTINGS);
  });
});

describe('desktop settings: saving', () => {
  it('saves that come at once are written one after the other: each succeeds, and the last is what the file and the app hold', async () => {
    const file = join(dir, 'settings.json');
    const s = new SettingsStore(file, box(true));
    const results = await Promise.all(
      [7901, 7902, 7903, 7904, 7905, 7906].map((peerPort) => s.save({ relayUrl: 'wss://relay.example.com/v1', id: 'acme-hq', peerPort, credential: 'top-secret' })),
    );
    expect(results.map((r) => r.ok)).toEqual([true, true, true, true, true, true]);
    expect(s.settings.peerPort).toBe(7906);
    const again = new SettingsStore(file, box(true));
    await again.load();
    expect(again.settings).toEqual(s.settings);
    expect(await readdir(dir)).toEqual(['settings.json']);
  });

  it('a save that cannot be written fails with NOT_SAVED and the reason, and the settings stay as the file says', async () => {
    const file = join(dir, 'settings.json');
    const s = new SettingsStore(file, box(true));
    await s.save({ relayUrl: 'wss://relay.example.com/v1', id: 'acme-hq', peerPort: 7901, credential: 'top-secret' });
    const before = s.settings;
    // The settings file's path becomes a folder: the write fails, for root too.
    await rename(file, `${file}.aside`);
    await mkdir(file);
    const err = await s.save({ relayUrl: 'wss://relay.example.com/v2', id: 'other', peerPort: 7902 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AdminError);
    expect((err as AdminError).code).toBe('NOT_SAVED');
    expect((err as AdminError).message).toBe(`nothing changed: could not save ${file}: EISDIR: illegal operation on a directory`);
    expect(s.settings).toEqual(before);
    // and the envelope the window gets carries it as it is
    expect(await envelope(() => s.save({ relayUrl: '', id: 'demo', peerPort: 0 }), silentLogger, 'saving the settings')).toMatchObject({
      ok: false,
      error: { code: 'NOT_SAVED', message: expect.stringMatching(/^nothing changed: could not save/) as unknown },
    });
    await rm(file, { recursive: true });
    await rename(`${file}.aside`, file);
    const reloaded = new SettingsStore(file, box(true));
    await reloaded.load();
    expect(reloaded.settings).toEqual(before);
    expect(await s.save({ relayUrl: 'wss://relay.example.com/v2', id: 'other', peerPort: 7902 })).toMatchObject({ ok: true });
  });
});
