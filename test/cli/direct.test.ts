import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { selfSignedCert } from '../net-fixtures.js';
import { cliSuite } from './cli-process.js';

const suite = cliSuite();
const { cli, start } = suite;

describe('direct mode through the CLI: serve --direct-listen with no relay, contact-point credential', () => {
  it('serves wss with the office\'s own credentials: peer join + peer send --relay at the contact point, credential list and remove', async () => {
    selfSignedCert(suite.home);
    const cert = join(suite.home, 'cert.pem');
    const key = join(suite.home, 'key.pem');
    const cpState = join(suite.home, 'cp');
    const aliceCred = join(suite.home, 'alice.credential');

    const add = await cli(['credential', 'add', '--id', 'alice', '--out', aliceCred, '--state', cpState]);
    expect(add.code, add.stderr).toBe(0);
    expect(add.stderr).toContain('the contact point keeps only its hash');
    const file = await readFile(join(cpState, 'direct', 'credentials.json'), 'utf8');
    expect(file).not.toContain((await readFile(aliceCred, 'utf8')).trim());
    expect((await stat(join(cpState, 'direct', 'credentials.json'))).mode & 0o777).toBe(0o600);

    const serve = await start([
      'serve', '--id', 'acme-hq', '--direct-listen', '127.0.0.1:0', '--direct-cert', cert, '--direct-key', key,
      '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--state', cpState, '--json',
    ]);
    const directUrl = String(serve.ready.directUrl);
    expect(directUrl).toMatch(/^wss:\/\/127\.0\.0\.1:\d+\/v1$/);
    expect(serve.ready).toMatchObject({ directDomain: 'direct', contactPoint: 'acme-hq' });

    const printer = await start(['peer', 'join', '--cp', String(serve.ready.peerPortUrl), '--name', 'printer', '--register', '--echo', '--json', '--state', join(suite.home, 'peer')]);
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'pending', 'pending state');
    expect((await cli(['peers', 'approve', 'printer', '--state', cpState])).code).toBe(0);
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'registered', 'registered state');

    // The same flags as for a relay: --relay names the contact point's direct listener.
    const asAlice = ['peer', 'send', '--relay', directUrl, '--ca', cert, '--id', 'alice', '--credential-file', aliceCred];
    const sent = await cli([...asAlice, '--to', 'printer@acme-hq', '--wait-reply', '5000', 'hello printer']);
    expect(sent.code, sent.stderr).toBe(0);
    expect(sent.stdout).toContain('reply from printer@acme-hq: hello printer');
    expect(await printer.waitForEvent((e) => e.event === 'message', 'message')).toMatchObject({ from: 'alice@direct', payload: 'hello printer' });
    const refused = await cli([...asAlice, '--to', 'scanner@acme-hq', 'anyone there?']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('refused: PEER_NOT_REGISTERED (12)');

    const status = await cli(['status', '--state', cpState]);
    expect(status.stdout).toContain('relay          none (direct mode only)');
    expect(status.stdout).toMatch(/^direct {9}wss:\/\/127\.0\.0\.1:\d+\/v1: 0 sessions \(none\), 1 credential$/m);
    const list = await cli(['credential', 'list', '--json', '--state', cpState]);
    expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ kind: 'external', id: 'alice', rights: ['send'] })]);
    const removed = await cli(['credential', 'remove', '--id', 'alice', '--state', cpState]);
    expect(removed.code, removed.stderr).toBe(0);
    // Within the contact point's credential poll, the removed secret no longer connects. Until the
    // poll runs a send still goes through (exit 0); one whose session the poll cuts mid-send is
    // refused REVOKED at once (exit 3); after it, the hello is refused (exit 1).
    let after = await cli([...asAlice, '--to', 'printer@acme-hq', 'still there?']);
    for (let i = 0; i < 20 && after.code !== 1; i++) {
      if (after.code === 3) expect(after.stderr).toMatch(/refused: REVOKED \(113\)/);
      else expect(after.code, after.stderr).toBe(0);
      await new Promise((r) => setTimeout(r, 250));
      after = await cli([...asAlice, '--to', 'printer@acme-hq', 'still there?']);
    }
    expect(after.code).toBe(1);
    expect(after.stderr).toMatch(/BAD_CREDENTIALS/);

    expect(await serve.stop('SIGTERM')).toBe(0);
    await printer.stop();
  });

  it('refuses plain ws on a non-loopback address, a half TLS pair, direct flags without --direct-listen, and no relay nor direct mode', async () => {
    const plain = await cli(['serve', '--id', 'acme-hq', '--direct-listen', '0.0.0.0:0', '--state', join(suite.home, 'x')]);
    expect(plain.code).toBe(2);
    expect(plain.stderr).toMatch(/not a loopback address.*--direct-insecure/s);
    const half = await cli(['serve', '--id', 'acme-hq', '--direct-listen', '127.0.0.1:0', '--direct-cert', join(suite.home, 'nope.pem')]);
    expect(half.code).toBe(2);
    expect(half.stderr).toContain('--direct-cert needs --direct-key');
    const alone = await cli(['serve', '--id', 'acme-hq', '--relay', 'ws://127.0.0.1:9/v1', '--direct-domain', 'x']);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toContain('--direct-domain needs --direct-listen');
    const neither = await cli(['serve', '--id', 'acme-hq']);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toMatch(/--relay.*--direct-listen/);
    const own = await cli(['serve', '--id', 'acme-hq', '--direct-listen', '127.0.0.1:0', '--direct-domain', 'acme-hq']);
    expect(own.code).toBe(2);
    expect(own.stderr).toContain("is the contact point's own id");
  });
});
