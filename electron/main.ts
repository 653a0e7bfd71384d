/**
 * The desktop app's main process: runs the contact point (DesktopHost, the same core objects
 * as the CLI host), one locked-down window showing the admin GUI over IPC, and a tray icon
 * with the tunnel state. Thin on purpose: everything testable lives in Electron-free modules.
 */
import { join } from 'node:path';
import { app, BrowserWindow, dialog, ipcMain, Menu, nativeImage, protocol, safeStorage, session, Tray, type IpcMainInvokeEvent } from 'electron';
import { ADMIN_CALLS, ADMIN_EVENTS, type AdminEventName } from '../core/admin/contract.js';
import { HOST_SETTINGS_CHANNELS, type HostSettingsResult } from '../core/admin/host-settings.js';
import { keepYoungGenerationSmall } from '../core/runtime/gc.js';
import { createLogger, type LogLevel } from '../core/runtime/logger.js';
import { DesktopHost } from './desktop-host.js';
import { GUI_ORIGIN, GUI_SCHEME, GUI_URL, serveGuiFile } from './gui-files.js';
import { envelope, handleAdminCall } from './ipc-handlers.js';
import { SettingsStore } from './settings-store.js';
import { trayLook, type TrayIcon } from './tray-state.js';

// The contact point runs in this process: V8's young generation stops growing from here on, as
// bin/contact-point.js keeps it for the CLI (core/runtime/gc.ts; the modules above have loaded).
keepYoungGenerationSmall();

const ROOT = join(import.meta.dirname, '..', '..');
const GUI_DIR = join(ROOT, 'renderer', 'dist');
const ASSETS = join(ROOT, 'assets');
/** Events held for a window that is still loading (flow batches beyond this are samples anyway). */
const MAX_QUEUED_EVENTS = 256;

// CONTACT_POINT_LOG_FORMAT=json as for the CLI (README "Logs"); anything else is text.
const logger = createLogger({
  level: (process.env.CONTACT_POINT_LOG_LEVEL as LogLevel | undefined) ?? 'info',
  format: process.env.CONTACT_POINT_LOG_FORMAT === 'json' ? 'json' : 'text',
}).child({ part: 'desktop' });

// Tests and portable installs point the app at their own folder.
if (process.env.CONTACT_POINT_USER_DATA) app.setPath('userData', process.env.CONTACT_POINT_USER_DATA);

protocol.registerSchemesAsPrivileged([{ scheme: GUI_SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true, corsEnabled: true } }]);

if (!app.requestSingleInstanceLock()) {
  // Another instance owns the peer port and the state folder: it shows its window instead.
  app.quit();
} else {
  void main();
}

async function main(): Promise<void> {
  let win: BrowserWindow | undefined;
  let tray: Tray | undefined;
  let windowReady = false;
  const queue: [AdminEventName, unknown][] = [];

  const userData = app.getPath('userData');
  const settings = new SettingsStore(join(userData, 'settings.json'), {
    // On Linux without a keyring safeStorage falls back to a fixed key ('basic_text'): that is
    // not the OS keychain, so the credential is stored, and shown, as unencrypted instead.
    available: () => safeStorage.isEncryptionAvailable() && !(process.platform === 'linux' && safeStorage.getSelectedStorageBackend() === 'basic_text'),
    encrypt: (s) => safeStorage.encryptString(s),
    decrypt: (b) => safeStorage.decryptString(b),
  });
  const host = new DesktopHost({ stateDir: join(userData, 'state'), logger });

  app.on('second-instance', () => {
    if (win?.isMinimized()) win.restore();
    win?.focus();
  });

  // Nothing in the window may navigate away, open windows, or embed anything.
  app.on('web-contents-created', (_e, contents) => {
    contents.on('will-navigate', (e, url) => {
      if (!url.startsWith(`${GUI_ORIGIN}/`)) e.preventDefault();
    });
    contents.on('will-redirect', (e) => e.preventDefault());
    contents.on('will-attach-webview', (e) => e.preventDefault());
    contents.setWindowOpenHandler(() => ({ action: 'deny' }));
  });

  await app.whenReady();
  // No menu bar, except on macOS where the Edit menu is what makes copy and paste work.
  Menu.setApplicationMenu(process.platform === 'darwin' ? Menu.buildFromTemplate([{ role: 'appMenu' }, { role: 'editMenu' }, { role: 'windowMenu' }]) : null);
  protocol.handle(GUI_SCHEME, (req) => serveGuiFile(GUI_DIR, req.url));
  session.defaultSession.setPermissionRequestHandler((_wc, permission, done) => done(permission === 'notifications'));
  session.defaultSession.setPermissionCheckHandler((_wc, permission) => permission === 'notifications');

  const loaded = await settings.load();
  if (!loaded.ok) logger.warn('settings ignored', { problem: loaded.problem });

  // Only our window may call: every IPC handler checks who is asking.
  const fromOurWindow = (e: IpcMainInvokeEvent): boolean => win !== undefined && e.sender === win.webContents && (e.senderFrame?.url ?? '').startsWith(`${GUI_ORIGIN}/`);
  const denied = { ok: false, error: { code: 'UNAUTHORIZED', message: 'not the Contact Point window' } } as const;
  for (const method of Object.keys(ADMIN_CALLS)) {
    ipcMain.handle(method, (e, params: unknown) => (fromOurWindow(e) ? handleAdminCall(host, method, params, logger) : denied));
  }
  ipcMain.handle(HOST_SETTINGS_CHANNELS.get, (e) => (fromOurWindow(e) ? envelope(async () => settings.view(), logger, 'reading the settings') : denied));
  ipcMain.handle(HOST_SETTINGS_CHANNELS.save, (e, input: unknown) =>
    fromOurWindow(e)
      ? envelope(
          (): Promise<HostSettingsResult> => host.saveSettings(settings, input),
          logger,
          'saving the settings',
        )
      : denied,
  );

  const send = (name: AdminEventName, data: unknown): void => {
    if (win && windowReady && !win.isDestroyed()) win.webContents.send(name, data);
    else {
      queue.push([name, data]);
      if (queue.length > MAX_QUEUED_EVENTS) queue.shift();
    }
  };
  for (const name of ADMIN_EVENTS) host.subscribe(name, (data) => send(name, data));

  const trayImages = new Map<TrayIcon, Electron.NativeImage>();
  const image = (icon: TrayIcon): Electron.NativeImage => {
    let img = trayImages.get(icon);
    if (!img) trayImages.set(icon, (img = nativeImage.createFromPath(join(ASSETS, `tray-${icon}.png`))));
    return img;
  };
  const updateTray = (): void => {
    if (!tray) return;
    const look = trayLook(host.tunnel());
    tray.setImage(image(look.icon));
    tray.setToolTip(look.tooltip);
  };
  host.subscribe('tunnel:status', updateTray);

  try {
    await host.apply(settings.settings);
  } catch (err: unknown) {
    logger.error('the contact point did not start', { error: String(err) });
    dialog.showErrorBox('Contact Point did not start', `${(err as Error).message}\n\nFix the settings in the window (Settings view).`);
  }

  try {
    tray = new Tray(image('offline'));
    tray.setContextMenu(
      Menu.buildFromTemplate([
        { label: 'Open Contact Point', click: () => win?.show() },
        { label: 'Reconnect the tunnel now', click: () => void host.call('tunnel:reconnect', {}).catch(() => undefined) },
        { type: 'separator' },
        { label: 'Quit', click: () => app.quit() },
      ]),
    );
    tray.on('click', () => win?.show());
    updateTray();
  } catch (err: unknown) {
    logger.warn('no tray on this desktop', { error: String(err) });
  }

  win = new BrowserWindow({
    width: 1280,
    height: 820,
    minWidth: 900,
    minHeight: 560,
    show: false,
    title: 'Contact Point',
    icon: join(ASSETS, 'icon.png'),
    webPreferences: {
      preload: join(import.meta.dirname, 'preload.cjs'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      spellcheck: false,
    },
  });
  win.once('ready-to-show', () => win?.show());
  win.webContents.on('did-finish-load', () => {
    windowReady = true;
    for (const [name, data] of queue.splice(0)) win?.webContents.send(name, data);
  });
  win.webContents.on('did-start-loading', () => {
    windowReady = false;
  });
  win.on('closed', () => {
    win = undefined;
  });
  await win.loadURL(GUI_URL);

  // Closing the window quits: the contact point stops cleanly (tunnel closed, peers told).
  app.on('window-all-closed', () => app.quit());
  let stopping = false;
  app.on('before-quit', (e) => {
    if (stopping) return;
    stopping = true;
    e.preventDefault();
    tray?.destroy();
    host.stop().then(
      () => app.exit(0),
      (err: unknown) => {
        logger.error('stopping the contact point failed', { error: String(err) });
        app.exit(1);
      },
    );
  });
}
