import { join } from 'node:path';
import type { DirectSessionView, DirectView } from '../admin/contract.js';
import { isValidName } from '../protocol/address.js';
import type { Frame } from '../protocol/codec.js';
import type { Timing } from '../protocol/timing.js';
import { CredentialStore } from '../relay/credentials.js';
import { Relay } from '../relay/relay.js';
import type { Logger } from '../runtime/logger.js';
import { Gateway } from './gateway.js';
import { DIRECT_PORT_IDS, PortMediator, type PortLimits } from './mediation.js';
import type { PortPolicy } from './port-policy.js';

/** The domain of direct peers' addresses unless the admin names another (`alice@direct`). */
export const DIRECT_DOMAIN = 'direct';
/** The folder of the contact point's state where its direct credentials live (<state>/direct/credentials.json). */
export const DIRECT_DIR = 'direct';
/** How often the direct credentials file is checked for changes: a removed credential's live sessions close within this. */
export const DIRECT_CREDENTIALS_POLL_MS = 2_000;
/** How long start() waits for the contact point's own tunnel to its embedded relay (over loopback: normally milliseconds). */
export const DIRECT_TUNNEL_START_MS = 10_000;

export interface DirectOptions {
  /** the direct listener's address and port (serve --direct-listen) */
  readonly host: string;
  readonly port: number;
  /** certificate and key: wss:// (serve --direct-cert/--direct-key); without them plain ws:// */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** the domain of direct peers' addresses (default DIRECT_DOMAIN); not the contact point's own id */
  readonly domain?: string;
  /** the store of direct credentials; default <stateDir>/direct/credentials.json, in memory without a state folder */
  readonly credentials?: CredentialStore;
  /** default DIRECT_CREDENTIALS_POLL_MS */
  readonly credentialsPollMs?: number;
  /** sessions one credential may hold at once (the relay's MAX_SESSIONS_PER_CREDENTIAL by default) */
  readonly maxSessionsPerCredential?: number;
}

/** What direct mode needs of its contact point. */
export interface DirectHost {
  readonly id: string;
  readonly logger: Logger;
  readonly timing: Timing;
  readonly software: string;
  readonly registeredNames: () => string[];
  /** the admin's port policy: the same object the tunnel's mediator uses, so one policy rules both */
  readonly policy: PortPolicy;
  /** the relay tunnel's mediator: direct mode's shares its port and stream limits */
  readonly tunnelPorts: PortMediator;
  readonly portLimits: Partial<PortLimits> | undefined;
  /** false (`serve --no-mediation`): direct operators' port requests are refused NOT_OFFERED too */
  readonly mediation: boolean;
  /** every frame the embedded relay sends down the direct tunnel */
  readonly onFrame: (frame: Frame) => void;
  readonly onUp: () => void;
  readonly onDown: () => void;
}

const DIRECT_LISTEN = Symbol('direct listener');

/** The error of a direct listener that could not bind (the CLI names --direct-listen in its message). */
export function isDirectListenError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && DIRECT_LISTEN in err;
}

/** A domain for direct peers: a valid name, and not the contact point's own id (its LAN peers' domain). */
export function checkDirectDomain(domain: string, id: string): string {
  if (!isValidName(domain)) throw new RangeError(`direct.domain "${domain}": use only a-z, 0-9, ".", "_" and "-" (1-63 characters)`);
  if (domain === id) throw new RangeError(`direct.domain "${domain}" is this contact point's own id: its LAN peers are NAME@${id}; name direct peers' domain otherwise`);
  return domain;
}

/** The store DirectOptions name, or <stateDir>/direct/credentials.json, or one in memory; a bad domain fails first. */
export async function openDirectCredentials(opts: DirectOptions, id: string, stateDir: string | undefined): Promise<CredentialStore> {
  checkDirectDomain(opts.domain ?? DIRECT_DOMAIN, id);
  if (opts.credentials) return opts.credentials;
  return stateDir !== undefined ? CredentialStore.open(join(stateDir, DIRECT_DIR)) : CredentialStore.inMemory();
}

/**
 * Direct mode (seed 000 [0027], [0040]: with a static NAT or a port forward no relay is needed).
 * The direct listener IS a relay: core/relay/relay.ts, embedded, with the contact point's own
 * credential store and a name that is the domain of direct peers' addresses, so external peers
 * and operators speak to it exactly the protocol they speak to a public relay (admission,
 * SESSION_LIMIT, routing and its refusals, REACHABLE, the control server's port requests and
 * exposures, credential removal closing sessions) and the SDK and CLI need no change. The
 * contact point holds a second tunnel to it, over a loopback-only plain listener with a
 * credential that lives in memory only; frames on that tunnel are handled like the relay
 * tunnel's (contact-point.ts), and port requests go to a mediator of their own under the same
 * PortPolicy object.
 */
export class DirectMode {
  readonly relay: Relay;
  readonly credentials: CredentialStore;
  readonly domain: string;
  /** port mediation for direct operators (ids from DIRECT_PORT_IDS) */
  readonly ports: PortMediator;
  private tunnel: Gateway | undefined;

  /** `credentials`: from openDirectCredentials() */
  constructor(
    private readonly opts: DirectOptions,
    private readonly host: DirectHost,
    credentials: CredentialStore,
  ) {
    this.domain = checkDirectDomain(opts.domain ?? DIRECT_DOMAIN, host.id);
    this.credentials = credentials;
    this.ports = new PortMediator(host.policy, host.logger, host.portLimits, DIRECT_PORT_IDS, host.mediation);
    host.tunnelPorts.shareLimitsWith(this.ports);
    this.relay = new Relay({
      credentials,
      host: opts.host,
      port: opts.port,
      name: this.domain,
      logger: host.logger,
      ...(opts.tls ? { tls: opts.tls } : {}),
      pingIntervalMs: host.timing.pingIntervalMs,
      // Mediated datagrams stay inside the tunnel: the contact point is the far end itself.
      udp: false,
      credentialsPollMs: opts.credentialsPollMs ?? DIRECT_CREDENTIALS_POLL_MS,
      ...(opts.maxSessionsPerCredential !== undefined ? { maxSessionsPerCredential: opts.maxSessionsPerCredential } : {}),
      loopbackListener: true,
    });
  }

  /** The listener's URL (after start). */
  get url(): string {
    return this.relay.url;
  }

  get gateway(): Gateway | undefined {
    return this.tunnel;
  }

  /** Listens, then opens the contact point's own tunnel to it (resolves once that tunnel is up). */
  async start(): Promise<void> {
    try {
      await this.relay.start();
    } catch (err: unknown) {
      if (typeof err === 'object' && err !== null) Object.defineProperty(err, DIRECT_LISTEN, { value: true });
      throw err;
    }
    // A new secret each start, in memory only: nobody outside this process can hold this tunnel.
    const secret = this.credentials.addTransient('contact-point', this.host.id);
    const tunnel = new Gateway({
      relayUrl: this.relay.loopbackUrl,
      id: this.host.id,
      secret,
      logger: this.host.logger,
      software: this.host.software,
      registeredNames: this.host.registeredNames,
      timing: this.host.timing,
      onFrame: this.host.onFrame,
      proxy: null,
      direct: true,
    });
    this.tunnel = tunnel;
    let timer: NodeJS.Timeout | undefined;
    const up = new Promise<void>((resolve, reject) => {
      tunnel.once('up', resolve);
      timer = setTimeout(() => reject(new Error(`direct mode: the contact point's tunnel to its own listener was not up within ${DIRECT_TUNNEL_START_MS} ms: ${tunnel.status().lastError ?? 'no answer'}`)), DIRECT_TUNNEL_START_MS);
    });
    tunnel.on('up', () => {
      this.ports.attach(tunnel);
      this.host.onUp();
    });
    tunnel.on('down', () => {
      this.ports.detach('direct tunnel lost');
      this.host.onDown();
    });
    tunnel.start();
    try {
      await up;
    } finally {
      clearTimeout(timer);
    }
  }

  async stop(): Promise<void> {
    this.tunnel?.stop();
    this.ports.detach('contact point stopping');
    await this.relay.stop();
  }

  /** Listener and sessions, for the admin. */
  view(): DirectView {
    const sessions: DirectSessionView[] = [];
    for (const s of this.relay.sessions.all()) {
      if (s.kind !== 'external') continue;
      sessions.push({ id: s.id, address: s.address, session: s.session, operator: s.operator !== undefined, remote: s.remote, since: s.since });
    }
    return { url: this.relay.url, domain: this.domain, tls: this.opts.tls !== undefined, credentials: this.credentials.count('external'), sessions };
  }
}
