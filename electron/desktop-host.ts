import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import {
  ADMIN_EVENTS,
  AdminError,
  type AdminHostApi,
  type AdminEventName,
  type AdminSurface,
  type AdminEvents,
  type AdminMethod,
  type AdminParams,
  type AdminResults,
  type AuditValue,
  type TunnelView,
} from '../core/admin/contract.js';
import { ContactPoint } from '../core/contact-point/contact-point.js';
import type { TimingOptions } from '../core/protocol/timing.js';
import { CredentialStore } from '../core/relay/credentials.js';
import { Relay } from '../core/relay/relay.js';
import type { Logger } from '../core/runtime/logger.js';
import type { DesktopSettings, SettingsStore } from './settings-store.js';
import type { HostSettingsResult, HostSettingsView } from '../core/admin/host-settings.js';

/** LAN peers connect here; the admin window is the only admin, so no admin endpoint is opened. */
const PEER_HOST = '0.0.0.0';

interface Running {
  readonly cp: ContactPoint;
  readonly relay: Relay | undefined;
  readonly unsubs: (() => void)[];
}

/**
 * The desktop app's host of the contact point: the same ContactPoint the CLI builds (and, with
 * nothing configured, the same embedded demo relay as `contact-point start`), exposed to the
 * window as one AdminApi that outlives restarts: a settings change builds a new contact point
 * and the window's subscriptions carry over.
 */
export class DesktopHost implements AdminHostApi {
  private running: Running | undefined;
  private readonly events = new EventEmitter();
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly opts: {
      readonly stateDir: string;
      readonly logger: Logger;
      /** test hooks: faster timers */
      readonly contactPoint?: { readonly timing?: TimingOptions };
    },
  ) {
    this.events.setMaxListeners(50);
  }

  get contactPoint(): ContactPoint | undefined {
    return this.running?.cp;
  }

  /** (Re)starts with these settings; calls are serialised so two saves cannot interleave. */
  apply(settings: DesktopSettings): Promise<void> {
    const next = this.chain.then(async () => {
      await this.stopRunning();
      this.running = await this.build(settings);
      this.events.emit('tunnel:status', this.running.cp.snapshot().tunnel);
    });
    this.chain = next.catch(() => undefined);
    return next;
  }

  async stop(): Promise<void> {
    await this.chain;
    await this.stopRunning();
    this.events.removeAllListeners();
  }

  call<M extends AdminMethod>(method: M, params: AdminParams<M>, surface?: AdminSurface): Promise<AdminResults[M]> {
    const cp = this.running?.cp;
    if (!cp) return Promise.reject(new AdminError('UNAVAILABLE', 'the contact point is restarting; try again in a moment'));
    return cp.call(method, params, surface);
  }

  /**
   * The window's settings save (`settings:save`): checked and written by the settings store,
   * applied (a new contact point), then audited in the trail of the contact point now running,
   * the one the window shows after the restart. The secret never goes in the trail: only
   * whether a new credential was given.
   */
  async saveSettings(settings: SettingsStore, input: unknown): Promise<HostSettingsResult> {
    const before = settings.view();
    const r = await settings.save(input);
    if (!r.ok) return r;
    await this.apply(r.settings);
    const after = settings.view();
    const view = (v: HostSettingsView): AuditValue => ({ relayUrl: v.relayUrl === '' ? 'embedded demo relay' : v.relayUrl, id: v.id, peerPort: v.peerPort, credentialSet: v.credentialSet });
    const credentialChanged = typeof (input as { credential?: unknown } | null)?.credential === 'string';
    await this.running?.cp.recordAudit('gui', 'settings:save', 'settings', view(before), { ...view(after), ...(credentialChanged ? { credentialChanged: true } : {}) });
    return { ok: true, settings: after };
  }

  subscribe<E extends AdminEventName>(event: E, listener: (data: AdminEvents[E]) => void): () => void {
    this.events.on(event, listener);
    return () => void this.events.off(event, listener);
  }

  tunnel(): TunnelView | undefined {
    return this.running?.cp.snapshot().tunnel;
  }

  private async build(s: DesktopSettings): Promise<Running> {
    const log = this.opts.logger;
    let relay: Relay | undefined;
    let relayUrl = s.relayUrl;
    let secret = s.credential ?? '';
    if (relayUrl === '') {
      // First run: a relay on loopback with in-memory credentials, like `contact-point start`.
      const credentials = CredentialStore.inMemory();
      secret = await credentials.add('contact-point', s.id);
      relay = new Relay({ credentials, host: '127.0.0.1', port: 0, logger: log.child({ part: 'embedded-relay' }) });
      relayUrl = await relay.start();
    }
    const cp = await ContactPoint.create({
      id: s.id,
      relayUrl,
      secret,
      stateDir: join(this.opts.stateDir, s.relayUrl === '' ? 'demo' : s.id),
      peerHost: PEER_HOST,
      peerPort: s.peerPort,
      logger: log,
      embeddedRelay: s.relayUrl === '',
      ...this.opts.contactPoint,
    });
    try {
      await cp.start();
    } catch (err: unknown) {
      await cp.stop();
      await relay?.stop();
      throw err;
    }
    log.info('contact point running', { id: s.id, relay: relayUrl, peerPort: cp.peerPortUrl });
    const unsubs = ADMIN_EVENTS.map((name) => cp.subscribe(name, (data) => this.events.emit(name, data)));
    return { cp, relay, unsubs };
  }

  private async stopRunning(): Promise<void> {
    const r = this.running;
    this.running = undefined;
    if (!r) return;
    for (const u of r.unsubs) u();
    await r.cp.stop();
    await r.relay?.stop();
  }
}
