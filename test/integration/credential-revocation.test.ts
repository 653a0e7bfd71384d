import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { Operator } from '../../core/peer/operator.js';
import { PeerClient } from '../../core/peer/peer-client.js';
import { DeliveryError } from '../../core/protocol/errors.js';
import { Status } from '../../core/protocol/status.js';
import { CredentialStore } from '../../core/relay/credentials.js';
import { Relay } from '../../core/relay/relay.js';
import { FAST, logger, registeredPeer, waitFor } from '../helpers.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A relay with a file-backed credential store (watched every 50 ms), credentials acme-hq and tech (send, mediate), and contact point acme-hq up. */
async function startRelayAndContactPoint(): Promise<{ dir: string; store: CredentialStore; relay: Relay; url: string; cp: ContactPoint; techSecret: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'cp-revoke-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const store = await CredentialStore.open(dir);
  const cpSecret = await store.add('contact-point', 'acme-hq');
  const techSecret = await store.add('external', 'tech', ['send', 'mediate']);
  const relay = new Relay({ credentials: store, logger, credentialsPollMs: 50, pingIntervalMs: FAST.pingIntervalMs });
  const url = await relay.start();
  cleanups.push(() => relay.stop());
  const cp = await ContactPoint.create({ id: 'acme-hq', relayUrl: url, secret: cpSecret, peerHost: '127.0.0.1', logger, timing: FAST,
    ports: { targets: [], listen: ['udp:1-65535'] } });
  await cp.start();
  cleanups.push(() => cp.stop());
  await waitFor(() => cp.gateway.connected);
  return { dir, store, relay, url, cp, techSecret };
}

describe('revoking a credential at the relay', () => {
  it('closes its live session (and an operator\'s LAN ports) without a relay restart', async () => {
    const { dir, store, url, cp, techSecret } = await startRelayAndContactPoint();
    const aliceSecret = await store.add('external', 'alice');

    const tech = new Operator({ url, name: 'tech', secret: techSecret, logger, timing: FAST });
    tech.start();
    cleanups.push(() => tech.stop());
    await tech.ready();
    await tech.open('acme-hq', { proto: 'udp', port: 0 });
    const alice = new PeerClient({ role: 'external', url, name: 'alice', secret: aliceSecret, logger, timing: FAST });
    alice.start();
    cleanups.push(() => alice.stop());
    await alice.ready();
    expect(cp.ports.list()).toHaveLength(1);

    // The admin removes the operator's credential with the CLI: another process writes the file.
    const cli = await CredentialStore.open(dir);
    await cli.remove('external', 'tech');
    await waitFor(() => tech.client.status().state === 'stopped', 5_000, 'operator cut off');
    expect(tech.client.status().lastErrorCode).toBe(Status.REVOKED);
    await waitFor(() => cp.ports.list().length === 0, 3_000, 'its LAN ports closed');
    // Others are untouched.
    expect(alice.connected).toBe(true);
    expect(cp.gateway.connected).toBe(true);
  });

  it('closes every session of the credential at once, with the ports each of them opened (issue 18)', async () => {
    const { store, relay, url, cp, techSecret } = await startRelayAndContactPoint();

    const sessions = [0, 1, 2].map(() => new Operator({ url, name: 'tech', secret: techSecret, logger, timing: FAST }));
    for (const op of sessions) {
      op.start();
      cleanups.push(() => op.stop());
      await op.ready();
      await op.open('acme-hq', { proto: 'udp', port: 0 });
    }
    expect(relay.status().externals).toBe(3);
    expect(cp.ports.list()).toHaveLength(3);

    await store.remove('external', 'tech');
    relay.recheckSessions();
    await waitFor(() => sessions.every((op) => op.client.status().state === 'stopped'), 5_000, 'every session cut off');
    expect(sessions.map((op) => op.client.status().lastErrorCode)).toEqual([Status.REVOKED, Status.REVOKED, Status.REVOKED]);
    await waitFor(() => cp.ports.list().length === 0, 3_000, 'their LAN ports closed');
    expect(relay.status().externals).toBe(0);
  });

  it('fails the sends still waiting for their acknowledgement with REVOKED at once, not at their deadline', async () => {
    const { store, relay, url, cp } = await startRelayAndContactPoint();
    const aliceSecret = await store.add('external', 'alice');
    // A receiver that takes the message and never finishes with it: its ACK never comes.
    let taken = 0;
    await registeredPeer(cp, 'printer', (fn) => cleanups.push(fn), {
      onMessage: () => {
        taken++;
        return new Promise<void>(() => undefined);
      },
    });
    const alice = new PeerClient({ role: 'external', url, name: 'alice', secret: aliceSecret, logger, timing: FAST });
    alice.start();
    cleanups.push(() => alice.stop());
    await alice.ready();
    // A deadline past the test's own timeout: only the revocation can settle this send in time.
    const outcome = alice.send('printer@acme-hq', 'hello', { deadlineMs: 120_000 }).then(
      () => 'delivered',
      (err: unknown) => err,
    );
    await waitFor(() => taken === 1, 5_000, 'the message at the printer');

    await store.remove('external', 'alice');
    relay.recheckSessions();
    const err = await outcome;
    expect(err).toBeInstanceOf(DeliveryError);
    expect((err as DeliveryError).code).toBe(Status.REVOKED);
    expect((err as DeliveryError).reason).toContain('revoked');
    expect(alice.status().state).toBe('stopped');
    // A send after it fails at once too, with the reason, rather than wait for a connection that will not come.
    const later = await alice.send('printer@acme-hq', 'again', { deadlineMs: 120_000 }).then(
      () => 'delivered',
      (e: unknown) => e,
    );
    expect(later).toBeInstanceOf(DeliveryError);
    expect((later as DeliveryError).code).toBe(Status.REVOKED);
  });
});
