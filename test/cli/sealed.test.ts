import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliSuite, relayForServe } from './cli-process.js';

/**
 * Issue 14 through the CLI: the contact point's fingerprint (fingerprint, status), handed to an
 * external peer with --pin; a wrong pin refused KEY_CHANGED; "sealed payloads only" set with
 * `seal set` refusing a plain send SEAL_REQUIRED. Real relay, serve, peer join and peer send.
 */
const suite = cliSuite();
const { cli, start } = suite;

describe('sealed messages and pinned keys from the command line', () => {
  it('hands over the fingerprint, delivers sealed with --pin, refuses a wrong pin and plain sends under "sealed only"', async () => {
    // alice's credential is in the relay's file before the relay starts (a running relay reads
    // the file every 2 s: added later, the first send could come before it).
    const relayState = join(suite.home, 'relay');
    const aliceCred = join(suite.home, 'alice.credential');
    const add = await cli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'alice', '--out', aliceCred, '--state', relayState]);
    expect(add.code, add.stderr).toBe(0);
    expect(add.stderr).toContain('contact-point fingerprint');
    const { serveArgs, cpState } = await relayForServe(suite);

    // The admin can read the fingerprint before the first start; serve then uses that same key.
    const fp = await cli(['fingerprint', '--state', cpState]);
    expect(fp.code, fp.stderr).toBe(0);
    const fingerprint = fp.stdout.trim();
    expect(fingerprint).toMatch(/^([0-9a-f]{4}:){15}[0-9a-f]{4}$/);

    const serve = await start(serveArgs);
    const status = await cli(['status', '--state', cpState]);
    expect(status.stdout).toContain(`key            ${fingerprint}`);
    expect(status.stdout).toMatch(/sealing +plain payloads allowed; 0 external key bindings/);

    const printer = await start(['peer', 'join', '--cp', String(serve.ready.peerPortUrl), '--name', 'printer', '--register', '--json', '--pin', fingerprint, '--state', join(suite.home, 'peer')]);
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'pending', 'pending');
    expect((await cli(['peers', 'approve', 'printer', '--state', cpState])).code).toBe(0);
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'registered', 'registered');

    const asAlice = ['peer', 'send', '--relay', serveArgs[2]!, '--id', 'alice', '--credential-file', aliceCred, '--to', 'printer@acme-hq'];
    const sent = await cli([...asAlice, '--pin', fingerprint.toUpperCase(), 'sealed hello']);
    expect(sent.code, sent.stderr).toBe(0);
    expect(await printer.waitForEvent((e) => e.event === 'message', 'message')).toMatchObject({ from: 'alice@relay', payload: 'sealed hello' });

    const wrong = await cli([...asAlice, '--pin', 'ab'.repeat(32), 'to an impostor?']);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/refused: KEY_CHANGED \(26\): contact point acme-hq presented key [0-9a-f:]+, but ab.* is pinned/);

    const set = await cli(['seal', 'set', '--required', '--state', cpState]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toMatch(/^sealed payloads only, for every peer; 1 external key binding/);
    const plain = await cli([...asAlice, '--seal', 'off', 'plain hello']);
    expect(plain.code).toBe(3);
    expect(plain.stderr).toContain('refused: SEAL_REQUIRED (22): contact point acme-hq accepts sealed payloads only');
    const show = await cli(['seal', '--state', cpState, '--json']);
    expect(JSON.parse(show.stdout)).toMatchObject({ fingerprint, required: true, peers: [], bindings: 1 });

    const badPin = await cli([...asAlice, '--pin', 'not-a-fingerprint', 'x']);
    expect(badPin.code).toBe(2);
    expect(badPin.stderr).toContain('--pin "not-a-fingerprint": expected a key fingerprint');
  });
});
