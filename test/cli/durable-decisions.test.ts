import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AdminClient } from '../../core/admin/client.js';
import type { PeerView, Snapshot } from '../../core/admin/contract.js';
import { cliSuite, relayForServe, type Service } from './cli-process.js';

/**
 * Admin decisions are on disk before the command says they are done: the real `serve` is
 * SIGKILLed the moment a decision returns (power loss, kill -9), started again on the same
 * state folder, and the decision holds. And a decision that cannot be written fails, with the
 * reason, and changes nothing.
 */

const suite = cliSuite();
const { cli, start } = suite;

/** Kills serve without a chance to write anything more, and starts it again on the same state folder. */
async function crashAndRestart(serve: Service, serveArgs: string[]): Promise<Service> {
  expect(await serve.stop('SIGKILL')).toBeNull();
  return start(serveArgs);
}

async function peersOf(cpState: string): Promise<Record<string, PeerView['state']>> {
  const list = await cli(['peers', 'list', '--json', '--state', cpState]);
  expect(list.code, list.stderr).toBe(0);
  return Object.fromEntries((JSON.parse(list.stdout) as PeerView[]).map((p) => [p.name, p.state]));
}

describe('a decision acknowledged to the admin survives kill -9 of the contact point', () => {
  it('an approval, a revocation of a registered peer, a registration policy and a port policy each hold after a restart', async () => {
    const { serveArgs, cpState } = await relayForServe(suite);
    let serve = await start(serveArgs);
    const printer = await start(['peer', 'join', '--cp', String(serve.ready.peerPortUrl), '--name', 'printer', '--register', '--json', '--state', join(suite.home, 'peer')]);
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'pending', 'pending state');
    // Let the bookkeeping write of the hello and the request land first: the decision must be what is at stake.
    await new Promise((r) => setTimeout(r, 500));

    // The approval, through the CLI; the contact point dies as soon as the CLI has exited 0.
    const approve = await cli(['peers', 'approve', 'printer', '--state', cpState]);
    expect(approve.code, approve.stderr).toBe(0);
    serve = await crashAndRestart(serve, serveArgs);
    expect(await peersOf(cpState)).toEqual({ printer: 'registered' });

    // The revocation, through the admin API; the contact point dies the moment the answer arrives.
    const admin = await AdminClient.connect(String(serve.ready.adminWsUrl), String(serve.ready.token));
    const revoked = await admin.call('peers:revoke', { name: 'printer' });
    serve.proc.kill('SIGKILL');
    expect(revoked.state).toBe('revoked');
    serve = await crashAndRestart(serve, serveArgs);
    await admin.close();
    expect(await peersOf(cpState)).toEqual({ printer: 'revoked' }); // not back to registered

    const policy = await cli(['policy', 'set', '--subnet', '10.9.0.0/16', '--state', cpState]);
    expect(policy.code, policy.stderr).toBe(0);
    serve = await crashAndRestart(serve, serveArgs);
    const policyShow = await cli(['policy', 'show', '--json', '--state', cpState]);
    expect(JSON.parse(policyShow.stdout)).toMatchObject({ subnets: ['10.9.0.0/16'] });

    const ports = await cli(['ports', 'policy', 'set', '--target', '192.168.7.0/24:80,443', '--listen', 'tcp:8000-8100', '--state', cpState]);
    expect(ports.code, ports.stderr).toBe(0);
    await crashAndRestart(serve, serveArgs);
    const portsShow = await cli(['ports', 'policy', 'show', '--json', '--state', cpState]);
    expect(JSON.parse(portsShow.stdout)).toEqual({ targets: ['192.168.7.0/24:80,443'], listen: ['tcp:8000-8100'] });
    expect(await peersOf(cpState)).toEqual({ printer: 'revoked' });
  });
});

describe('a decision that cannot be written', () => {
  it('fails with the reason (exit 1, NOT_SAVED), changes nothing, and the state in memory equals the file', async () => {
    const { serveArgs, cpState } = await relayForServe(suite);
    const serve = await start(serveArgs);
    const printer = await start(['peer', 'join', '--cp', String(serve.ready.peerPortUrl), '--name', 'printer', '--register', '--json', '--state', join(suite.home, 'peer')]);
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'pending', 'pending state');
    const setPorts = await cli(['ports', 'policy', 'set', '--target', '192.168.7.0/24:80', '--state', cpState]);
    expect(setPorts.code, setPorts.stderr).toBe(0);

    // The state folder is replaced by a plain file while serve runs: every write there fails,
    // even for root (which chmod would not stop). The admin endpoint is reached with --admin.
    const aside = `${cpState}.aside`;
    await rename(cpState, aside);
    await writeFile(cpState, 'not a folder\n');
    const env = { CONTACT_POINT_ADMIN_TOKEN: String(serve.ready.token) };
    const viaAdmin = ['--admin', String(serve.ready.adminWsUrl)];

    const approve = await cli(['peers', 'approve', 'printer', ...viaAdmin], env);
    expect(approve.code).toBe(1);
    expect(approve.stdout).toBe('');
    expect(approve.stderr).toBe(`contact-point peers approve: nothing changed: could not save ${join(cpState, 'contact-point.json')}: ${cpState} is not a folder (EEXIST) (NOT_SAVED)\n`);
    const ports = await cli(['ports', 'policy', 'set', '--clear', ...viaAdmin], env);
    expect(ports.code).toBe(1);
    expect(ports.stderr).toMatch(/\(NOT_SAVED\)/);
    const policy = await cli(['policy', 'set', '--subnet', '10.9.0.0/16', ...viaAdmin], env);
    expect(policy.code).toBe(1);
    expect(policy.stderr).toMatch(/\(NOT_SAVED\)/);

    // What the contact point holds is what the file (set aside, untouched) holds.
    const admin = await AdminClient.connect(String(serve.ready.adminWsUrl), String(serve.ready.token));
    const snap: Snapshot = await admin.call('snapshot:get', {});
    const file = JSON.parse(await readFile(join(aside, 'contact-point.json'), 'utf8')) as {
      peers: { name: string; state: string }[];
      policy: { subnets: string[] };
      ports: { targets: string[]; listen: string[] };
    };
    expect(snap.peers.map((p) => [p.name, p.state])).toEqual([['printer', 'pending']]);
    expect(file.peers.map((p) => [p.name, p.state])).toEqual([['printer', 'pending']]);
    expect(snap.policy.subnets).toEqual(file.policy.subnets);
    expect(snap.portPolicy).toEqual(file.ports);
    expect(snap.portPolicy).toEqual({ targets: ['192.168.7.0/24:80'], listen: [] });

    // The folder is back: the same decision now goes through and is on disk.
    await rm(cpState);
    await rename(aside, cpState);
    const again = await cli(['peers', 'approve', 'printer', ...viaAdmin], env);
    expect(again.code, again.stderr).toBe(0);
    const saved = JSON.parse(await readFile(join(cpState, 'contact-point.json'), 'utf8')) as { peers: { name: string; state: string }[] };
    expect(saved.peers.map((p) => [p.name, p.state])).toEqual([['printer', 'registered']]);
    await admin.close();
  });
});
