import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdminServer } from '../../core/admin/server.js';
import { ContactPoint, type ContactPointOptions } from '../../core/contact-point/contact-point.js';
import { CredentialStore } from '../../core/relay/credentials.js';
import { createLogger } from '../../core/runtime/logger.js';
import { JsonChild } from './child-process.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const RENDERER_DIST = join(ROOT, 'renderer/dist');
const RELAY_SCRIPT = join(ROOT, 'e2e/fixtures/relay-process.mjs');
const PEER_SCRIPT = join(ROOT, 'e2e/fixtures/peer-process.mjs');
const logger = createLogger({ level: (process.env.CP_TEST_LOG as 'debug' | undefined) ?? 'silent' });

/** Fast timers: a dead tunnel is noticed and redialled within a couple of seconds. */
const FAST = { pingIntervalMs: 1_000, pongTimeoutMs: 1_000, backoffBaseMs: 200, backoffMaxMs: 1_500 } as const;

/** The GUI tests run the built renderer and the compiled core in child processes. */
export function requireBuilt(): void {
  const missing = [join(RENDERER_DIST, 'index.html'), join(ROOT, 'dist/core/peer/peer-client.js')].filter((f) => !existsSync(f));
  if (missing.length > 0) throw new Error(`not built: ${missing.join(', ')} missing. Run \`npm run build\` (npm test does it first).`);
}

export interface Peer extends JsonChild {
  readonly name: string;
}

/** A relay process on loopback (port 0: any free one) with the credentials in `dir`. */
export async function spawnRelay(dir: string, port: number): Promise<{ child: JsonChild; url: string }> {
  const child = JsonChild.spawn(RELAY_SCRIPT, [dir, String(port)], 'relay');
  const url = String((await child.waitFor((e) => e.event === 'ready', 'relay ready')).url);
  return { child, url };
}

/** A LAN peer process connected to a contact point's peer port. */
export async function spawnInternalPeer(peerPortUrl: string, name: string): Promise<Peer> {
  const p = Object.assign(JsonChild.spawn(PEER_SCRIPT, ['peer', peerPortUrl, name], `peer ${name}`), { name });
  await p.waitFor((e) => e.event === 'ready', `${name} ready`);
  return p;
}

/** An external peer process at the relay. */
export async function spawnExternalPeer(relayUrl: string, name: string, secret: string, seal?: 'auto' | 'required' | 'off'): Promise<Peer> {
  const p = Object.assign(JsonChild.spawn(PEER_SCRIPT, ['external', relayUrl, name, secret, ...(seal ? [seal] : [])], `external ${name}`), { name });
  await p.waitFor((e) => e.event === 'ready', `${name} ready`);
  return p;
}

let sendRef = 0;
/** Sends from an external peer and resolves with its outcome event (sent or refused). */
export async function sendFrom(from: Peer, to: string, text: string): Promise<Record<string, unknown>> {
  const ref = ++sendRef;
  from.send({ cmd: 'send', ref, to, text });
  return from.waitFor((e) => (e.event === 'sent' || e.event === 'refused') && e.ref === ref, `outcome of message ${ref}`);
}

/**
 * A real relay (its own process, so it can be killed), a real contact point with its admin
 * endpoint serving the built GUI, and real peer processes, all on loopback, in a fresh state
 * folder per test.
 */
export class Stack {
  private relay: JsonChild | undefined;
  private relayPort = 0;
  private readonly peers: JsonChild[] = [];

  private constructor(
    readonly dir: string,
    readonly id: string,
    readonly cp: ContactPoint,
    readonly admin: AdminServer,
    private readonly secrets: ReadonlyMap<string, string>,
    relay: JsonChild,
    readonly relayUrl: string,
    /** the contact point's credential, for a second instance with the same one */
    readonly cpSecret: string,
  ) {
    this.relay = relay;
    this.relayPort = Number(new URL(relayUrl).port);
  }

  static async start(
    opts: { id?: string; externals?: readonly string[]; operators?: readonly string[]; embeddedRelay?: boolean; streamLimits?: ContactPointOptions['streamLimits']; direct?: boolean } = {},
  ): Promise<Stack> {
    requireBuilt();
    const id = opts.id ?? 'acme-hq';
    const dir = await mkdtemp(join(tmpdir(), 'cp-e2e-'));
    const creds = await CredentialStore.open(join(dir, 'relay'));
    const cpSecret = await creds.add('contact-point', id);
    const secrets = new Map<string, string>();
    for (const name of opts.externals ?? ['alice']) secrets.set(name, await creds.add('external', name));
    for (const name of opts.operators ?? []) secrets.set(name, await creds.add('external', name, ['send', 'mediate']));
    const { child: relay, url: relayUrl } = await spawnRelay(join(dir, 'relay'), 0);
    const cp = await ContactPoint.create({
      id,
      relayUrl,
      secret: cpSecret,
      stateDir: join(dir, 'cp'),
      peerHost: '127.0.0.1',
      logger,
      embeddedRelay: opts.embeddedRelay ?? false,
      ...(opts.streamLimits ? { streamLimits: opts.streamLimits } : {}),
      // Direct mode beside the tunnel: plain ws on loopback, credentials in <dir>/cp/direct.
      ...(opts.direct ? { direct: { host: '127.0.0.1', port: 0, credentialsPollMs: 200 } } : {}),
      timing: FAST,
    });
    await cp.start();
    const admin = new AdminServer({ api: cp, logger, staticDir: RENDERER_DIST });
    await admin.start();
    return new Stack(dir, id, cp, admin, secrets, relay, relayUrl, cpSecret);
  }

  get guiUrl(): string {
    return this.admin.guiUrl;
  }

  /** A LAN peer connected to the peer port (unregistered until it asks and the admin approves). */
  async internalPeer(name: string): Promise<Peer> {
    const p = await spawnInternalPeer(this.cp.peerPortUrl, name);
    this.peers.push(p);
    return p;
  }

  /** The secret of a credential made at start (externals, operators). */
  secretOf(name: string): string {
    const secret = this.secrets.get(name);
    if (!secret) throw new Error(`no credential made for ${name}`);
    return secret;
  }

  /** An outside sender at the contact point's direct listener (Stack.start({ direct: true })), with `secret` from addDirectCredential(). */
  async directPeer(name: string, secret: string): Promise<Peer> {
    const p = await spawnExternalPeer(this.cp.direct!.url, name, secret);
    this.peers.push(p);
    return p;
  }

  /** An outside sender at the relay. */
  async externalPeer(name: string, seal?: 'auto' | 'required' | 'off'): Promise<Peer> {
    const secret = this.secrets.get(name);
    if (!secret) throw new Error(`no credential made for ${name}: pass it in externals`);
    const p = await spawnExternalPeer(this.relayUrl, name, secret, seal);
    this.peers.push(p);
    return p;
  }

  send(from: Peer, to: string, text: string): Promise<Record<string, unknown>> {
    return sendFrom(from, to, text);
  }

  async killRelay(): Promise<void> {
    await this.relay?.kill();
    this.relay = undefined;
  }

  async restartRelay(): Promise<void> {
    this.relay = (await spawnRelay(join(this.dir, 'relay'), this.relayPort)).child;
  }

  async close(): Promise<void> {
    await Promise.all(this.peers.map((p) => p.kill()));
    await this.admin.stop();
    await this.cp.stop();
    await this.relay?.kill();
    await rm(this.dir, { recursive: true, force: true });
  }
}
