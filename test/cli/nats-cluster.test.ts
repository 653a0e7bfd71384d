import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { PeerClient } from '../../core/peer/peer-client.js';
import { connectNats, CREDENTIALS_BUCKET, PRESENCE_BUCKET } from '../../core/relay/cluster-nats.js';
import { FAST, logger, registeredPeer, waitFor } from '../helpers.js';
import { haveNatsServer, NO_NATS_REASON, startNatsCluster } from '../nats-fixtures.js';
import { cliSuite, runCli } from './cli-process.js';

/**
 * Issue 12: the README's three-server NATS cluster ("Running a relay cluster": routes, JetStream,
 * `--cluster-replicas 3`) started for real, with relay node processes on it. The buckets live on
 * all three servers, and the relay cluster carries messages and takes credentials while one of
 * the three NATS servers is dead.
 */
if (!haveNatsServer) console.warn(NO_NATS_REASON);

const suite = cliSuite();
const { cli, start } = suite;

describe.skipIf(!haveNatsServer)('relay cluster on a three-server NATS cluster (README config)', () => {
  /** The README's cluster: three servers, r1 given only the first, r2 all; office on r1, alice on r2. */
  async function threeServers() {
    const nats = await startNatsCluster(3);
    suite.cleanup(() => nats.stop());
    const N = nats.urls;
    const cpCred = join(suite.home, 'acme-hq.credential');
    const aliceCred = join(suite.home, 'alice.credential');
    // As in the README: the first command that opens the buckets creates them with 3 replicas.
    const add = await cli(['relay', 'credential', 'add', '--kind', 'contact-point', '--id', 'acme-hq', '--out', cpCred, '--cluster', N, '--cluster-replicas', '3']);
    expect(add.code, add.stderr).toBe(0);
    expect((await cli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'alice', '--out', aliceCred, '--cluster', N])).code).toBe(0);
    const node = (id: string, servers: string): ReturnType<typeof start> => start(['relay', '--cluster', servers, '--cluster-replicas', '3', '--node-id', id, '--listen', '127.0.0.1:0', '--no-udp', '--json']);
    // r1 is given only the server the test kills: it must move to one it learned from the cluster.
    const [r1, r2] = await Promise.all([node('r1', nats.servers[0]!.url), node('r2', N)]);
    expect(r1.ready).toMatchObject({ node: 'r1', credentials: 2 });

    // Both buckets are replicated on all three NATS servers.
    const nc = await connectNats([N], 'test admin', logger);
    suite.cleanup(() => nc.close());
    for (const bucket of [CREDENTIALS_BUCKET, PRESENCE_BUCKET]) {
      const st = await (await new Kvm(nc).open(bucket)).status();
      expect(st.replicas, bucket).toBe(3);
      const c = st.streamInfo.cluster;
      expect([c?.leader, ...(c?.replicas ?? []).map((r) => r.name)].sort(), bucket).toEqual(['n1', 'n2', 'n3']);
    }

    const stateDir = await mkdtemp(join(tmpdir(), 'cp-nats3-'));
    suite.cleanup(() => rm(stateDir, { recursive: true, force: true }));
    const cp = await ContactPoint.create({ id: 'acme-hq', relayUrl: String(r1.ready.url), secret: (await readFile(cpCred, 'utf8')).trim(), stateDir, peerHost: '127.0.0.1', logger, timing: FAST });
    suite.cleanup(() => cp.stop());
    await cp.start();
    await waitFor(() => cp.gateway.connected, 5_000, 'tunnel up on r1');
    const got: string[] = [];
    await registeredPeer(cp, 'printer', suite.cleanup, { ackTimeoutMs: 500, onMessage: (m) => void got.push(m.payload.toString()) });
    const alice = new PeerClient({ role: 'external', url: String(r2.ready.url), name: 'alice', secret: (await readFile(aliceCred, 'utf8')).trim(), logger, timing: FAST, ackTimeoutMs: 500 });
    suite.cleanup(() => alice.stop());
    alice.start();
    await alice.ready();
    return { nats, N, r1, r2, cp, alice, got };
  }

  it('keeps both buckets on all three servers and carries messages between relay nodes on it', async () => {
    const { alice, got } = await threeServers();
    await alice.send('printer@acme-hq', 'three servers up', { deadlineMs: 10_000 });
    expect(got).toEqual(['three servers up']);
  }, 60_000);

  // After the kill, JetStream leaves some consumer creations unanswered for 10-15 s (nats-server
  // 2.9.10): the nodes retry each watch on its own with short timeouts (cluster-nats.ts), so r1 is
  // back within about 10 s and r2 notices its silent watch by its heartbeat within about 5 s.
  it('carries messages and credential changes with one NATS server killed', async () => {
    const { nats, N, r1, r2, cp, alice, got } = await threeServers();
    await alice.send('printer@acme-hq', 'three servers up', { deadlineMs: 10_000 });

    // One NATS server dies (SIGKILL). r1, on it, reconnects to another by itself (the office it
    // cut off re-dials and comes back); JetStream keeps its quorum of two.
    const reconnectsBefore = cp.gateway.status().reconnects;
    await nats.servers[0]!.kill();
    await alice.send('printer@acme-hq', 'one server dead', { deadlineMs: 30_000 }).catch((err: unknown) => {
      // The contact point's re-dials refused meanwhile fill the log: what the nodes did is the rest.
      const log = (p: typeof r1, n: number): string => p.stderr().split('\n').filter((l) => !/closing link|losing link|relay refused/.test(l)).join('\n').slice(-n);
      throw new Error(`${(err as Error).message}\nr1: ${log(r1, 3000)}\nr2: ${log(r2, 3000)}`);
    });
    expect(got).toEqual(['three servers up', 'one server dead']);
    // r1 lost its server, so it closed the office's tunnel; the office came back once r1 was in the cluster again.
    expect(cp.gateway.status().reconnects).toBeGreaterThan(reconnectsBefore);
    const bobCred = join(suite.home, 'bob.credential');
    // Right after a server's death JetStream may still be electing leaders: the write is retried
    // for up to CREDENTIAL_WRITE_RETRY_MS (30 s), so the command may take longer than the usual 10 s.
    const bobAdd = await runCli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'bob', '--out', bobCred, '--cluster', N], { home: suite.home, timeoutMs: 45_000 });
    expect(bobAdd.code, bobAdd.stderr).toBe(0);
    // r1 learns the new credential through its watch, which may still be catching up: its
    // consumer may have been on the dead server, and the client recreates it after missed heartbeats.
    const bobSecret = (await readFile(bobCred, 'utf8')).trim();
    const added = Date.now();
    let bob: PeerClient | undefined;
    while (!bob) {
      const c = new PeerClient({ role: 'external', url: String(r1.ready.url), name: 'bob', secret: bobSecret, logger, timing: FAST, ackTimeoutMs: 500 });
      suite.cleanup(() => c.stop());
      c.start();
      try {
        await c.ready();
        bob = c;
      } catch (err: unknown) {
        await c.stop();
        if (!/BAD_CREDENTIALS/.test((err as Error).message) || Date.now() - added > 20_000) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    await bob.send('printer@acme-hq', 'new credential', { deadlineMs: 20_000 });
    expect(got).toEqual(['three servers up', 'one server dead', 'new credential']);
    expect(await r2.stop()).toBe(0);
    expect(await r1.stop()).toBe(0);
  }, 120_000);
});
