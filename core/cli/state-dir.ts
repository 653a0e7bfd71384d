import { rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { readJson, writeJsonAtomic } from '../runtime/json-file.js';
import { CliError } from './errors.js';

/**
 * State folders: one per role under ~/.contact-point (relay, serve, demo, peer), or the one
 * named by --state or CONTACT_POINT_STATE. A running contact point leaves `admin.json` in
 * its folder so admin commands on the same machine find its endpoint and token.
 */
export type StateRole = 'relay' | 'serve' | 'demo' | 'peer';
export const STATE_ENV = 'CONTACT_POINT_STATE';
export const ADMIN_FILE = 'admin.json';

export function defaultStateDir(role: StateRole): string {
  return join(homedir(), '.contact-point', role);
}

/** --state, else $CONTACT_POINT_STATE, else ~/.contact-point/<role>; always absolute. */
export function resolveStateDir(role: StateRole, flag: string | undefined): string {
  const env = process.env[STATE_ENV];
  return resolve(flag ?? (env !== undefined && env !== '' ? env : defaultStateDir(role)));
}

/** What `serve` and `start` write to <state>/admin.json (mode 0600) while they run. */
export interface AdminEndpointFile {
  readonly wsUrl: string;
  readonly token: string;
  readonly guiUrl: string;
  readonly pid: number;
}

export async function writeAdminFile(stateDir: string, info: AdminEndpointFile): Promise<void> {
  await writeJsonAtomic(join(stateDir, ADMIN_FILE), info, 0o600);
}

/** Removes admin.json if it is still this process's (a newer instance may have replaced it). */
export async function removeAdminFile(stateDir: string, pid = process.pid): Promise<void> {
  await removeEndpointFile(stateDir, ADMIN_FILE, (dir) => readAdminFile(dir), pid);
}

/** The admin.json in `stateDir`; undefined when there is none. A malformed one is a CliError. */
export async function readAdminFile(stateDir: string): Promise<AdminEndpointFile | undefined> {
  return readEndpointFile(join(stateDir, ADMIN_FILE), ['wsUrl', 'token', 'guiUrl'], 'an admin endpoint file');
}

/** What `relay --admin-listen` writes to <relay state>/relay-admin.json (mode 0600) while it runs. */
export const RELAY_ADMIN_FILE = 'relay-admin.json';
export interface RelayAdminFile {
  /** base URL of the status endpoint */
  readonly url: string;
  readonly token: string;
  readonly dashboardUrl: string;
  readonly pid: number;
}

export async function writeRelayAdminFile(stateDir: string, info: RelayAdminFile): Promise<void> {
  await writeJsonAtomic(join(stateDir, RELAY_ADMIN_FILE), info, 0o600);
}

export async function removeRelayAdminFile(stateDir: string, pid = process.pid): Promise<void> {
  await removeEndpointFile(stateDir, RELAY_ADMIN_FILE, (dir) => readRelayAdminFile(dir), pid);
}

export async function readRelayAdminFile(stateDir: string): Promise<RelayAdminFile | undefined> {
  return readEndpointFile(join(stateDir, RELAY_ADMIN_FILE), ['url', 'token', 'dashboardUrl'], 'a relay status endpoint file');
}

async function removeEndpointFile(stateDir: string, file: string, read: (dir: string) => Promise<{ pid: number } | undefined>, pid: number): Promise<void> {
  const current = await read(stateDir).catch(() => undefined);
  if (current && current.pid !== pid) return;
  await rm(join(stateDir, file), { force: true });
}

/** An endpoint file: the named string fields and a pid; undefined when absent, a CliError when malformed. */
async function readEndpointFile<K extends string>(path: string, keys: readonly K[], what: string): Promise<(Record<K, string> & { pid: number }) | undefined> {
  let raw: unknown;
  try {
    raw = await readJson(path);
  } catch (err: unknown) {
    throw new CliError(`cannot read ${path}: ${(err as Error).message}`);
  }
  if (raw === undefined) return undefined;
  const r = raw as Record<string, unknown>;
  if (typeof r !== 'object' || r === null || keys.some((k) => typeof r[k] !== 'string') || typeof r.pid !== 'number') {
    throw new CliError(`${path} is not ${what} (${[...keys, 'pid'].join(', ')}); delete it if nothing runs there`);
  }
  return Object.fromEntries([...keys.map((k) => [k, r[k]]), ['pid', r.pid]]) as Record<K, string> & { pid: number };
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err: unknown) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Refuses to run a second contact point on a state folder another live process is using. */
export async function refuseIfInUse(stateDir: string): Promise<void> {
  const current = await readAdminFile(stateDir);
  if (current && current.pid !== process.pid && processAlive(current.pid)) {
    throw new CliError(
      `another contact point (pid ${current.pid}) is running with the state folder ${stateDir}; ` +
        `stop it first, or use another folder with --state DIR. If pid ${current.pid} is not a contact point, delete ${join(stateDir, ADMIN_FILE)}`,
    );
  }
}
