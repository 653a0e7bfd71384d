import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliSuite } from './cli-process.js';

const suite = cliSuite();
const { cli, start } = suite;

describe('relay + serve + peer join + peers approve + peer send, all through the CLI', () => {
  it('delivers and echoes, refuses unregistered and revoked peers with exit 3, and stops cleanly on SIGTERM', async () => {
    const relayState = join(suite.home, 'relay');
    const cpState = join(suite.home, 'cp');
    const cpCred = join(suite.home, 'acme-hq.credential');
    const aliceCred = join(suite.home, 'alice.credential');
    const [addCp, addAlice] = await Promise.all([
      cli(['relay', 'credential', 'add', '--kind', 'contact-point', '--id', 'acme-hq', '--out', cpCred, '--state', relayState]),
      cli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'alice', '--out', aliceCred, '--state', join(suite.home, 'relay2')]),
    ]);
    expect(addCp.code, addCp.stderr).toBe(0);
    expect(addAlice.code, addAlice.stderr).toBe(0);
    // Two stores only so the adds can run in parallel; the relay reads the first.
    expect((await cli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'alice', '--out', aliceCred, '--state', relayState])).code).toBe(0);

    const relay = await start(['relay', '--listen', '127.0.0.1:0', '--state', relayState, '--json']);
    const relayUrl = String(relay.ready.url);
    expect(relayUrl).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/v1$/);

    const serve = await start([
      'serve', '--relay', relayUrl, '--id', 'acme-hq', '--credential-file', cpCred,
      '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--state', cpState, '--json',
    ]);
    expect(serve.ready).toMatchObject({ relayUrl, tunnel: 'connected', stateDir: cpState, contactPoint: 'acme-hq' });
    for (const k of ['peerPortUrl', 'adminWsUrl', 'guiUrl', 'token']) expect(typeof serve.ready[k]).toBe('string');
    expect(serve.stdout().trim().split('\n')).toHaveLength(1); // exactly one JSON line on stdout
    const adminFile = join(cpState, 'admin.json');
    expect((await stat(adminFile)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(adminFile, 'utf8'))).toEqual({
      wsUrl: serve.ready.adminWsUrl,
      token: serve.ready.token,
      guiUrl: serve.ready.guiUrl,
      pid: serve.proc.pid,
    });

    const printer = await start(['peer', 'join', '--cp', String(serve.ready.peerPortUrl), '--name', 'printer', '--register', '--echo', '--json', '--state', join(suite.home, 'peer')]);
    expect(printer.ready).toMatchObject({ event: 'ready', address: 'printer@acme-hq' });
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'pending', 'pending state');

    const approve = await cli(['peers', 'approve', 'printer', '--state', cpState]);
    expect(approve.code, approve.stderr).toBe(0);
    expect(approve.stdout).toMatch(/^printer: registered \(admitted by admin\)/);
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'registered', 'registered state');

    const asAlice = ['peer', 'send', '--relay', relayUrl, '--id', 'alice', '--credential-file', aliceCred];
    const sent = await cli([...asAlice, '--to', 'printer@acme-hq', '--wait-reply', '5000', 'hello printer']);
    const refused = await cli([...asAlice, '--to', 'scanner@acme-hq', 'anyone there?']);
    expect(sent.code, sent.stderr).toBe(0);
    expect(sent.stdout).toMatch(/^delivered \S+ to printer@acme-hq in \d+ ms$/m);
    expect(sent.stdout).toContain('reply from printer@acme-hq: hello printer');
    const got = await printer.waitForEvent((e) => e.event === 'message', 'message');
    expect(got).toMatchObject({ from: 'alice@relay', payload: 'hello printer' });
    await printer.waitForEvent((e) => e.event === 'echo' && e.to === 'alice@relay', 'echo');

    expect(refused.code, refused.stderr).toBe(3);
    expect(refused.stderr).toContain('refused: PEER_NOT_REGISTERED (12): peer scanner@acme-hq is not registered');

    const [list, status] = await Promise.all([cli(['peers', 'list', '--json', '--state', cpState]), cli(['status', '--json', '--state', cpState])]);
    expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ name: 'printer', state: 'registered', online: true, messagesIn: 1, admittedBy: 'admin' })]);
    expect(JSON.parse(status.stdout)).toMatchObject({ tunnel: { state: 'connected', relayUrl }, peers: { known: 1, registered: 1, online: 1 } });
    // the keepalive the relay took up, and the bounds it keeps (PROTOCOL.md 12.2), in words
    const statusText = await cli(['status', '--state', cpState]);
    expect(statusText.stdout).toContain('keepalive      heartbeat from the relay · a dead tunnel is noticed within 30 s idle, 5 s with messages waiting');

    const revoke = await cli(['peers', 'revoke', 'printer', '--state', cpState]);
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(await printer.exited()).toBe(1); // a revoked peer is refused for good: join exits 1 and says why
    expect(printer.stderr()).toMatch(/refused printer: REVOKED/);
    const afterRevoke = await cli([...asAlice, '--to', 'printer@acme-hq', 'still there?']);
    expect(afterRevoke.code).toBe(3);
    expect(afterRevoke.stderr).toContain('refused: PEER_NOT_REGISTERED (12): peer printer@acme-hq is not registered');

    expect(await serve.stop('SIGTERM')).toBe(0);
    expect(existsSync(adminFile)).toBe(false);
    expect(existsSync(join(cpState, 'contact-point.json'))).toBe(true);
    expect(await relay.stop('SIGINT')).toBe(0);

    const gone = await cli(['peers', '--state', cpState]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/no running contact point found: .*admin\.json does not exist/);
  });
});
