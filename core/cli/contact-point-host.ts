import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_HISTORY_RETENTION, MAX_HISTORY_DAYS, MAX_HISTORY_ENTRIES, type HistoryRetention, type TunnelView } from '../admin/contract.js';
import type { LaunchFlag, LaunchView } from '../admin/launch.js';
import { AdminServer } from '../admin/server.js';
import { ContactPoint, type ContactPointOptions } from '../contact-point/contact-point.js';
import { isDirectListenError } from '../contact-point/direct-mode.js';
import type { PortPolicyConfig } from '../contact-point/port-policy.js';
import { StateStore } from '../contact-point/state-store.js';
import { primeAllocatorOnBulk } from '../runtime/allocator.js';
import { gcOnMainThread, youngGenerationSetting } from '../runtime/gc.js';
import type { Logger } from '../runtime/logger.js';
import { MAX_UNDECIDED_PEERS, MAX_UNDECIDED_PER_ADDRESS, NEW_PEERS_PER_ADDRESS_PER_MINUTE } from '../protocol/limits.js';
import { countFlag, flagHelp, integer, listenRule, targetRule } from './args.js';
import { CliError, UsageError } from './errors.js';
import { listenError, type ListenFlag } from './listen.js';
import { selfWords } from './output.js';
import { removeAdminFile, writeAdminFile } from './state-dir.js';

/**
 * Hosting a contact point from the CLI, shared by `serve` and `start`: the core ContactPoint,
 * its loopback admin endpoint, and <state>/admin.json for the admin commands.
 */

/** The built renderer (renderer/dist) when present: the admin GUI at the admin URL, the relay dashboard at the relay's status URL. */
export function guiDir(): string | undefined {
  const dir = fileURLToPath(new URL('../../../renderer/dist', import.meta.url));
  return existsSync(join(dir, 'index.html')) ? dir : undefined;
}

/** serve and start: `--allow-target RULE` / `--allow-listen RULE`, the port mediation allowlist. */
export const portPolicyOptions = {
  'allow-target': { type: 'string', multiple: true },
  'allow-listen': { type: 'string', multiple: true },
} as const;

/** Help lines of --allow-target / --allow-listen, descriptions starting at `column`. */
export function portPolicyFlagsHelp(column: number): string {
  const flag = (f: string, lines: string[]): string => flagHelp(column, f, lines);
  return [
    flag('--allow-target RULE', ['port mediation may connect to RULE on the LAN, e.g.', '192.168.1.0/24:80,443 (repeatable; replaces the stored target list)']),
    flag('--allow-listen RULE', ['port mediation may open ports RULE on this host, e.g.', 'tcp:1-65535 (repeatable; replaces the stored listen list)']),
  ].join('\n');
}

export interface PortPolicyFlags {
  readonly targets: readonly string[] | undefined;
  readonly listen: readonly string[] | undefined;
}

/** Checks the rules as the contact point will (a bad one is a UsageError naming it). */
export function portPolicyFlags(values: { 'allow-target'?: string[] | undefined; 'allow-listen'?: string[] | undefined }): PortPolicyFlags {
  return {
    targets: values['allow-target']?.map((t) => targetRule('--allow-target', t).text),
    listen: values['allow-listen']?.map((l) => listenRule('--allow-listen', l)),
  };
}

/**
 * ContactPointOptions.ports from the flags: each given flag replaces its list, the other list
 * is kept from the state folder. Undefined when neither flag was given (the stored policy applies).
 */
async function portPolicyOption(flags: PortPolicyFlags | undefined, stateDir: string): Promise<PortPolicyConfig | undefined> {
  if (!flags || (flags.targets === undefined && flags.listen === undefined)) return undefined;
  // A state file that cannot be read fails ContactPoint.create right after, with its own message.
  const stored = (await StateStore.load(stateDir).catch(() => undefined))?.ports;
  return { targets: flags.targets ?? stored?.targets ?? [], listen: flags.listen ?? stored?.listen ?? [] };
}

/** serve: the registration flood limits (docs/PROTOCOL.md section 8). */
export const floodLimitOptions = {
  'max-undecided': { type: 'string' },
  'max-undecided-per-address': { type: 'string' },
  'new-peers-per-minute': { type: 'string' },
} as const;

/** Help lines of the flood limit flags, descriptions starting at `column`. */
export function floodLimitFlagsHelp(column: number): string {
  const flag = (f: string, lines: string[]): string => flagHelp(column, f, lines);
  return [
    flag('--max-undecided N', [`registration requests waiting for the admin, in total (default ${MAX_UNDECIDED_PEERS});`, 'past it the oldest from the address with the most is dropped']),
    flag('--max-undecided-per-address N', [`the same per source address (default ${MAX_UNDECIDED_PER_ADDRESS}); past it that`, "address's oldest request is dropped"]),
    flag('--new-peers-per-minute N', [`new peer identities one address may bring a minute (default ${NEW_PEERS_PER_ADDRESS_PER_MINUTE});`, 'more are refused (RATE_LIMITED); auto-approve subnets are exempt']),
  ].join('\n');
}

/** ContactPointOptions of the flood limit flags, each checked (a bad one is a UsageError naming it). */
export function floodLimitFlags(values: { 'max-undecided'?: string | undefined; 'max-undecided-per-address'?: string | undefined; 'new-peers-per-minute'?: string | undefined }): {
  maxUndecidedPeers?: number;
  maxUndecidedPerAddress?: number;
  newPeersPerAddressPerMinute?: number;
} {
  const total = countFlag('--max-undecided', values['max-undecided'], 100_000);
  const perAddress = countFlag('--max-undecided-per-address', values['max-undecided-per-address'], 100_000);
  const perMinute = countFlag('--new-peers-per-minute', values['new-peers-per-minute']);
  return {
    ...(total !== undefined ? { maxUndecidedPeers: total } : {}),
    ...(perAddress !== undefined ? { maxUndecidedPerAddress: perAddress } : {}),
    ...(perMinute !== undefined ? { newPeersPerAddressPerMinute: perMinute } : {}),
  };
}

/** serve and start: how much message history to keep (issue 16). */
export const historyOptions = {
  'history-entries': { type: 'string' },
  'history-days': { type: 'string' },
  'no-history': { type: 'boolean' },
} as const;

/** Help lines of the history flags, descriptions starting at `column`. */
export function historyFlagsHelp(column: number): string {
  const flag = (f: string, lines: string[]): string => flagHelp(column, f, lines);
  const d = DEFAULT_HISTORY_RETENTION;
  return [
    flag('--history-entries N', [`keep at least the newest N history entries (default ${d.entries.toLocaleString('en-US')}, at most`, `${MAX_HISTORY_ENTRIES.toLocaleString('en-US')}); replaces the stored setting (history retention)`]),
    flag('--history-days D', ['also drop history entries older than D days (default 0: no age limit)']),
    flag('--no-history', ['keep no history: nothing is written to <state>/history']),
  ].join('\n');
}

/** ContactPointOptions.history from the flags: undefined keeps the stored setting. */
export function historyFlags(values: { 'history-entries'?: string | undefined; 'history-days'?: string | undefined; 'no-history'?: boolean | undefined }): { history?: Partial<HistoryRetention> | false } {
  const entries = countFlag('--history-entries', values['history-entries'], MAX_HISTORY_ENTRIES);
  const days = values['history-days'] !== undefined ? integer('--history-days', values['history-days'], 0, MAX_HISTORY_DAYS) : undefined;
  if (values['no-history']) {
    if (entries !== undefined || days !== undefined) throw new UsageError('--no-history keeps no history: --history-entries and --history-days do not apply');
    return { history: false };
  }
  if (entries === undefined && days === undefined) return {};
  return { history: { ...(entries !== undefined ? { entries } : {}), ...(days !== undefined ? { days } : {}) } };
}

/** One line on the port policy for the ready banner of serve and start. */
export function portPolicyLine(p: PortPolicyConfig): string {
  if (p.targets.length === 0 && p.listen.length === 0) return 'nothing allowed: every port mediation request is refused (--allow-target, --allow-listen)';
  return `targets ${p.targets.length > 0 ? p.targets.join(' ') : 'none'}; listen ${p.listen.length > 0 ? p.listen.join(' ') : 'none'}`;
}

export interface HostOptions {
  /** everything but the peer port's host and port, which come from `peer` */
  readonly contactPoint: Omit<ContactPointOptions, 'peerHost' | 'peerPort' | 'stateDir' | 'logger'>;
  readonly stateDir: string;
  readonly peer: ListenFlag;
  readonly admin: ListenFlag;
  /** --direct-listen, when direct mode is on (for its bind errors) */
  readonly direct?: ListenFlag;
  readonly logger: Logger;
  /** --allow-target / --allow-listen, checked by portPolicyFlags */
  readonly ports?: PortPolicyFlags;
}

export interface HostedContactPoint {
  readonly cp: ContactPoint;
  readonly admin: AdminServer;
  /** logs "contact point running": the caller calls it once everything it starts listens (its metrics endpoint too) */
  logRunning(): void;
  /** the ready line's fields (serve and start) */
  readyFields(): Record<string, unknown>;
  /** the same without the admin token (in `token` and in the GUI URL): for logs, which more people read */
  logFields(): Record<string, unknown>;
  /** stops the admin endpoint and the contact point, and removes admin.json */
  stop(): Promise<void>;
}

export async function hostContactPoint(o: HostOptions): Promise<HostedContactPoint> {
  o.logger.debug('allocator', { glibc_trim: primeAllocatorOnBulk() });
  o.logger.debug('gc', { threads: gcOnMainThread(), youngSize: youngGenerationSetting() });
  const ports = await portPolicyOption(o.ports, o.stateDir);
  const cp = await ContactPoint.create({
    ...o.contactPoint,
    ...(ports ? { ports } : {}),
    stateDir: o.stateDir,
    peerHost: o.peer.listen.host,
    peerPort: o.peer.listen.port,
    logger: o.logger,
  });
  try {
    await cp.start();
  } catch (err: unknown) {
    await cp.stop();
    throw listenError(err, o.direct && isDirectListenError(err) ? o.direct : o.peer);
  }
  const admin = new AdminServer({ api: cp, logger: o.logger.child({ part: 'admin' }), host: o.admin.listen.host, port: o.admin.listen.port, staticDir: guiDir() });
  try {
    await admin.start();
  } catch (err: unknown) {
    await cp.stop();
    throw listenError(err, o.admin);
  }
  try {
    await writeAdminFile(o.stateDir, { wsUrl: admin.wsUrl, token: admin.token, guiUrl: admin.guiUrl, pid: process.pid });
  } catch (err: unknown) {
    await admin.stop();
    await cp.stop();
    throw new CliError(`cannot write the admin endpoint file in ${o.stateDir}: ${(err as Error).message}`);
  }
  const readyFields = (): Record<string, unknown> => ({
      contactPoint: cp.id,
      relayUrl: o.contactPoint.relayUrl,
      // every --relay URL, and with two tunnels where each is (issue 12)
      ...(o.contactPoint.relayUrl !== undefined ? { relayUrls: [o.contactPoint.relayUrl, ...(o.contactPoint.relayUrls ?? [])] } : {}),
      ...(cp.gateway.status().tunnels ? { tunnels: cp.gateway.status().tunnels } : {}),
      peerPortUrl: cp.peerPortUrl,
      adminWsUrl: admin.wsUrl,
      guiUrl: admin.guiUrl,
      token: admin.token,
      stateDir: o.stateDir,
      tunnel: cp.gateway.status().state,
      ...(cp.gateway.status().lastError !== undefined ? { tunnelError: cp.gateway.status().lastError } : {}),
      portPolicy: cp.ports.policy.config,
      ...(cp.direct ? { directUrl: cp.direct.url, directDomain: cp.direct.domain } : {}),
      mediation: cp.ports.offered,
    });
  return {
    cp,
    admin,
    // Only once everything the command starts listens (issue 16, item 12): its caller says when.
    logRunning: () => o.logger.info('contact point running', { id: cp.id, relay: [o.contactPoint.relayUrl, ...(o.contactPoint.relayUrls ?? [])].filter((u) => u !== undefined).join(' ') || undefined, peerPort: cp.peerPortUrl, admin: admin.wsUrl }),
    readyFields,
    logFields: () => {
      const { token: _token, guiUrl: _guiUrl, ...rest } = readyFields();
      return { ...rest, adminUrl: admin.url };
    },
    stop: async () => {
      await admin.stop();
      await cp.stop();
      await removeAdminFile(o.stateDir);
    },
  };
}

/** Resolves true once the tunnel is up, false after `timeoutMs` (the contact point keeps trying). */
export function waitForTunnel(cp: ContactPoint, timeoutMs: number): Promise<boolean> {
  if (cp.gateway.connected) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (up: boolean): void => {
      clearTimeout(timer);
      cp.gateway.off('status', onStatus);
      resolve(up);
    };
    const onStatus = (): void => {
      if (cp.gateway.connected) done(true);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    cp.gateway.on('status', onStatus);
  });
}

/** Flags whose value is a file or folder: made absolute, so the restart command works from any folder. */
const PATH_FLAGS = new Set(['credential-file', 'ca', 'state', 'join-code-file', 'direct-cert', 'direct-key']);

/**
 * How this serve or start run was started (its parsed flags), for the GUI's restart command
 * (core/admin/launch.ts). `peerListen`: the peer port's bind as given or defaulted.
 */
export function launchView(command: LaunchView['command'], values: Readonly<Record<string, string | boolean | string[] | undefined>>, peerListen: string): LaunchView {
  const flags: LaunchFlag[] = [];
  for (const [k, v] of Object.entries(values)) {
    if (v === true) flags.push([`--${k}`]);
    else if (typeof v === 'string') flags.push([`--${k}`, PATH_FLAGS.has(k) ? resolve(v) : v]);
    else if (Array.isArray(v)) for (const x of v) flags.push([`--${k}`, x]);
  }
  return { program: selfWords(), cwd: process.cwd(), command, flags, peerListen };
}

/**
 * Resolves with what to change once every relay URL is found unusable (dial-failure.ts `url`:
 * a wrong path, scheme or host) before any tunnel was ever up: serve then exits instead of
 * retrying what cannot work. With several URLs, one unusable URL among others is not fatal
 * whichever tunnel reports first: the tunnels skip it (the dialer warns each time), and serve
 * ends only when each URL has been tried and none can work. A URL that worked once is retried
 * whatever happens later.
 */
export function wrongRelayUrl(cp: ContactPoint): { readonly problem: Promise<{ readonly why: string }>; dispose(): void } {
  let onStatus: (t: TunnelView) => void = () => undefined;
  const gw = cp.gateway;
  const problem = new Promise<{ readonly why: string }>((resolve) => {
    onStatus = (t) => {
      const bad = gw.unusableUrls;
      if (t.everConnected || gw.connected || bad.size < gw.urls.length) return;
      const each = gw.urls.map((u) => `--relay ${u} cannot work: ${bad.get(u)}`);
      resolve({ why: each.length === 1 ? each[0]! : `no --relay URL can work: ${each.join('; ')}` });
    };
  });
  gw.on('status', onStatus);
  onStatus(gw.status());
  return { problem, dispose: () => gw.off('status', onStatus) };
}

/** The tunnel in one line for serve's banner: connected, or what keeps it down (a refusal said as one). */
export function tunnelLine(t: TunnelView): string {
  if (t.state === 'connected') return 'tunnel connected';
  if (t.lastError === undefined) return `tunnel ${t.state}`;
  const next = t.nextRetryAt !== undefined ? `; next try in ${Math.max(0, Math.round((t.nextRetryAt - Date.now()) / 1000))} s` : '';
  if (t.lastErrorKind === 'refused') return `tunnel REFUSED by the relay: ${t.lastError}${next}`;
  return `tunnel ${t.state}: ${t.lastError}${next}`;
}
