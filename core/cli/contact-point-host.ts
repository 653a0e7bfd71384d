import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdminServer } from '../admin/server.js';
import { ContactPoint, type ContactPointOptions } from '../contact-point/contact-point.js';
import type { Logger } from '../runtime/logger.js';
import { CliError } from './errors.js';
import { listenError, type ListenFlag } from './listen.js';
import { removeAdminFile, writeAdminFile } from './state-dir.js';

/**
 * Hosting a contact point from the CLI, shared by `serve` and `start`: the core ContactPoint,
 * its loopback admin endpoint, and <state>/admin.json for the admin commands.
 */

/** Built admin GUI (renderer/dist), served at the admin URL when present. */
function guiDir(): string | undefined {
  const dir = fileURLToPath(new URL('../../../renderer/dist', import.meta.url));
  return existsSync(join(dir, 'index.html')) ? dir : undefined;
}

export interface HostOptions {
  /** everything but the peer port's host and port, which come from `peer` */
  readonly contactPoint: Omit<ContactPointOptions, 'peerHost' | 'peerPort' | 'stateDir' | 'logger'>;
  readonly stateDir: string;
  readonly peer: ListenFlag;
  readonly admin: ListenFlag;
  readonly logger: Logger;
}

export interface HostedContactPoint {
  readonly cp: ContactPoint;
  readonly admin: AdminServer;
  /** the ready line's fields (serve and start) */
  readyFields(): Record<string, unknown>;
  /** stops the admin endpoint and the contact point, and removes admin.json */
  stop(): Promise<void>;
}

export async function hostContactPoint(o: HostOptions): Promise<HostedContactPoint> {
  const cp = await ContactPoint.create({
    ...o.contactPoint,
    stateDir: o.stateDir,
    peerHost: o.peer.listen.host,
    peerPort: o.peer.listen.port,
    logger: o.logger,
  });
  try {
    await cp.start();
  } catch (err: unknown) {
    await cp.stop();
    throw listenError(err, o.peer);
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
  return {
    cp,
    admin,
    readyFields: () => ({
      contactPoint: cp.id,
      relayUrl: o.contactPoint.relayUrl,
      peerPortUrl: cp.peerPortUrl,
      adminWsUrl: admin.wsUrl,
      guiUrl: admin.guiUrl,
      token: admin.token,
      stateDir: o.stateDir,
      tunnel: cp.gateway.status().state,
    }),
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
