import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { PeerClient } from '../../core/peer/peer-client.js';
import { FAST, logger, registeredPeer, waitFor } from '../helpers.js';
import { freePort, haveNatsServer, NO_NATS_REASON, startNatsServer } from '../nats-fixtures.js';
import { tcpForwarder } from '../net-fixtures.js';
import { cliSuite } from './cli-process.js';

/**
 * Issue 12 through the real CLI: relay node processes joined by a real nats-server. A node that
 * cannot reach NATS at start says which URL and exits; a node cut off from NATS closes its
 * tunnels and turns contact points away, so the office re-homes to a node the others can reach.
 */
if (!haveNatsServer) console.warn(NO_NATS_REASON);

const suite = cliSuite();
const { cli, start } = suite;

interface Health {
  readonly tunnels: number;
  readonly ready?: boolean;
  readonly node?: string;
  readonly cluster?: string;
}

async function healthz(url: string): Promise<Health> {
  const res = await fetch(url.replace(/^ws/, 'http').replace(/\/v1$/, '/healthz'));
  return (await res.json()) as Health;
}

async function readyz(url: string): Promise<number> {
  return (await fetch(url.replace(/^ws/, 'http').replace(/\/v1$/, '/readyz'))).status;
}

async function untilHealth(url: string, ok: (h: Health) => boolean, ms: number, what: string): Promise<Health> {
  const t0 = Date.now();
  for (;;) {
    const h = await healthz(url);
    if (ok(h)) return h;
    if (Date.now() - t0 > ms) throw new Error(`no ${what} within ${ms} ms: ${JSON.stringify(h)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('relay --cluster: flags', () => {
  it('names the NATS URL and exits 1 when NATS is not reachable at start', async () => {
    const url = `nats://127.0.0.1:${await freePort()}`;
    const r = await cli(['relay', '--cluster', url, '--node-id', 'r1', '--listen', '127.0.0.1:0', '--json']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot reach NATS at ${url}`);
    expect(r.stdout).not.toContain('"ready"');
    const c = await cli(['relay', 'credential', 'list', '--cluster', url]);
    expect(c.code).toBe(1);
    expect(c.stderr).toContain(`cannot reach NATS at ${url}`);
    const st = await cli(['relay', 'status', '--cluster', url]);
    expect(st.code).toBe(1);
    expect(st.stderr).toContain(`cannot reach NATS at ${url}`);
    const both = await cli(['relay', 'status', '--cluster', url, '--state', suite.home]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--cluster reads the cluster from NATS/);
  });

  it('refuses a missing or bad --node-id, --node-id alone, and a URL that is not nats://', async () => {
    const cases: [string[], RegExp][] = [
      [['--cluster', 'nats://127.0.0.1:4222'], /--node-id is required/],
      [['--cluster', 'nats://127.0.0.1:4222', '--node-id', 'r.1'], /--node-id "r\.1": use 1-32 characters/],
      [['--node-id', 'r1'], /--node-id needs --cluster/],
      [['--cluster', 'http://127.0.0.1:4222', '--node-id', 'r1'], /expected a nats:\/\/ or tls:\/\/ URL/],
      [['--cluster-replicas', '3'], /--cluster-replicas needs --cluster/],
      [['--cluster', 'nats://127.0.0.1:4222', '--node-id', 'r1', '--cluster-replicas', '9'], /--cluster-replicas "9": expected a whole number from 1 to 5/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(['relay', ...args, '--listen', '127.0.0.1:0']);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });
});

describe.skipIf(!haveNatsServer)('relay cluster: a node cut off from NATS', () => {
  it('closes its tunnels and turns contact points away; the office re-homes to another node and is reachable again', async () => {
    const nats = await startNatsServer();
    suite.cleanup(() => nats.stop());
    // r1 reaches NATS through a forwarder the test cuts; r2 directly.
    const toNats = await tcpForwarder(nats.port);
    suite.cleanup(() => toNats.close());
    const cpCred = join(suite.home, 'acme-hq.credential');
    const aliceCred = join(suite.home, 'alice.credential');
    expect((await cli(['relay', 'credential', 'add', '--kind', 'contact-point', '--id', 'acme-hq', '--out', cpCred, '--cluster', nats.url])).code).toBe(0);
    expect((await cli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'alice', '--out', aliceCred, '--cluster', nats.url])).code).toBe(0);
    const node = (id: string, natsUrl: string): ReturnType<typeof start> => start(['relay', '--cluster', natsUrl, '--node-id', id, '--listen', '127.0.0.1:0', '--no-udp', '--json']);
    const [r1, r2] = await Promise.all([node('r1', `nats://127.0.0.1:${toNats.port}`), node('r2', nats.url)]);
    expect(r1.ready).toMatchObject({ node: 'r1', credentials: 2 });
    const r1Url = String(r1.ready.url);
    const r2Url = String(r2.ready.url);

    // The office's relay URL is a name that first leads to r1 (a forwarder the test retargets).
    const front = await tcpForwarder(Number(new URL(r1Url).port));
    suite.cleanup(() => front.close());
    const stateDir = await mkdtemp(join(tmpdir(), 'cp-cluster-'));
    suite.cleanup(() => rm(stateDir, { recursive: true, force: true }));
    const cp = await ContactPoint.create({
      id: 'acme-hq', relayUrl: `ws://127.0.0.1:${front.port}/v1`, secret: (await readFile(cpCred, 'utf8')).trim(), stateDir, peerHost: '127.0.0.1', logger, timing: FAST,
    });
    suite.cleanup(() => cp.stop());
    await cp.start();
    await waitFor(() => cp.gateway.connected, 5_000, 'tunnel up on r1');
    const got: string[] = [];
    await registeredPeer(cp, 'printer', suite.cleanup, { ackTimeoutMs: 500, onMessage: (m) => void got.push(m.payload.toString()) });

    const alice = new PeerClient({ role: 'external', url: r2Url, name: 'alice', secret: (await readFile(aliceCred, 'utf8')).trim(), logger, timing: FAST, ackTimeoutMs: 500 });
    suite.cleanup(() => alice.stop());
    alice.start();
    await alice.ready();
    await alice.send('printer@acme-hq', 'before the cut', { deadlineMs: 5_000 });
    expect(got).toEqual(['before the cut']);

    toNats.cut();
    await waitFor(() => !cp.gateway.connected, 5_000, 'r1 closes the tunnel when it loses NATS');
    // r1 forgets the session when the close handshake ends, a moment after the office saw the fault.
    await untilHealth(r1Url, (h) => h.tunnels === 0, 3_000, 'r1 to forget the tunnel');
    expect(await healthz(r1Url)).toMatchObject({ tunnels: 0, node: 'r1', cluster: 'cut off', ready: false });
    expect(await readyz(r1Url)).toBe(503); // a load balancer sends contact points elsewhere
    expect(await readyz(r2Url)).toBe(200);
    // Still cut off: r1 turns the office's redials away rather than holding a tunnel nobody can reach.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(cp.gateway.connected).toBe(false);
    expect((await healthz(r1Url)).tunnels).toBe(0);

    front.retarget(Number(new URL(r2Url).port));
    await waitFor(() => cp.gateway.connected, 5_000, 'the office re-homes to r2');
    expect((await healthz(r2Url)).tunnels).toBe(1);
    await alice.send('printer@acme-hq', 'after the cut', { deadlineMs: 5_000 });
    expect(got).toEqual(['before the cut', 'after the cut']);

    // relay status --cluster reads the presence records from NATS: the office is on r2 now.
    const status = await cli(['relay', 'status', '--cluster', nats.url, '--json']);
    expect(status.code, status.stderr).toBe(0);
    const view = JSON.parse(status.stdout) as { nodes: { node: string; offices: number; externals: number }[]; offices: { id: string; node: string }[] };
    expect(view.offices).toEqual([{ id: 'acme-hq', node: 'r2' }]);
    expect(view.nodes.find((n) => n.node === 'r2')).toEqual({ node: 'r2', offices: 1, externals: 1 });
    const text = await cli(['relay', 'status', '--cluster', nats.url]);
    expect(text.stdout).toMatch(/acme-hq\s+r2/);

    // NATS reachable again: r1 reconnects by itself and routes to the office's new node.
    toNats.restore();
    await untilHealth(r1Url, (h) => h.cluster === 'connected', 10_000, 'r1 back in the cluster');
    expect(await readyz(r1Url)).toBe(200);
    const bobCred = join(suite.home, 'bob.credential');
    expect((await cli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'bob', '--out', bobCred, '--cluster', nats.url])).code).toBe(0);
    const bob = new PeerClient({ role: 'external', url: r1Url, name: 'bob', secret: (await readFile(bobCred, 'utf8')).trim(), logger, timing: FAST, ackTimeoutMs: 500 });
    suite.cleanup(() => bob.stop());
    bob.start();
    await bob.ready();
    await bob.send('printer@acme-hq', 'from r1 again', { deadlineMs: 10_000 });
    expect(got).toEqual(['before the cut', 'after the cut', 'from r1 again']);
    // A node stops cleanly (SIGTERM): its records deleted, NATS drained, exit 0.
    expect(await r2.stop()).toBe(0);
    expect(await r1.stop()).toBe(0);
  }, 40_000);
});
