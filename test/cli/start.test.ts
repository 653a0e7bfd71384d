import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliSuite, ROOT, runCli, shellWords, startCli } from './cli-process.js';

const suite = cliSuite();

/** A command the CLI printed, as spawn arguments: `node bin/contact-point.js ...` → [script, ...args]. */
function printed(line: string): { argv0: string[]; args: string[] } {
  const words = shellWords(line);
  expect(words[0]).toBe('node');
  return { argv0: [words[1]!], args: words.slice(2) };
}

describe('contact-point start (npm start)', () => {
  it('through bin/start.js (what npm start runs), prints commands of the CLI, not of the launcher', async () => {
    const state = join(suite.home, 'demo');
    const demo = await startCli(['--headless', '--state', state, '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--json'], {
      home: suite.home,
      argv0: [join(ROOT, 'bin/start.js')],
    });
    const next = demo.ready.next as string[];
    expect(next).toHaveLength(3);
    for (const command of next) {
      const script = shellWords(command)[1]!;
      expect(script.endsWith('bin/contact-point.js'), command).toBe(true);
    }
    // And the printed command works: the approve of an unknown peer answers NOT_FOUND through the admin endpoint.
    const approve = printed(next[1]!);
    const r = await runCli(approve.args, { home: suite.home, argv0: approve.argv0 });
    expect(r.stderr).toMatch(/no peer named "printer"/);
  });

  it('prints the banner and ready line, and a message flows using only the commands it printed', async () => {
    const state = join(suite.home, 'demo');
    const demo = await startCli(['start', '--state', state, '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--json'], { home: suite.home });
    const ready = demo.ready;
    expect(ready).toMatchObject({ contactPoint: 'demo', embeddedRelay: true, stateDir: state, tunnel: 'connected' });
    expect(String(ready.relayUrl)).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/v1$/);
    for (const k of ['peerPortUrl', 'adminWsUrl', 'guiUrl', 'token']) expect(typeof ready[k]).toBe('string');
    expect(demo.stdout().trim().split('\n')).toHaveLength(1);

    const banner = demo.stderr();
    expect(banner).toContain('EMBEDDED LOCAL RELAY — demo only, not reachable from outside');
    expect(banner).toContain(String(ready.relayUrl));
    expect(banner).toContain(String(ready.peerPortUrl));
    // The banner goes to stderr, the log stream, beside --json: the GUI without its token.
    expect(banner).toContain(String(ready.guiUrl).split('#')[0]);
    expect(banner).not.toContain(String(ready.token));
    const next = ready.next as string[];
    expect(next).toHaveLength(3);
    for (const command of next) expect(banner).toContain(command);
    expect(next[0]).toContain('peer join');
    expect(next[0]).toContain('--register');
    expect(next[1]).toContain('peers approve printer');
    expect(next[2]).toContain('peer send');
    expect(next[2]).toContain(`--credential-file ${join(state, 'demo-sender.credential')}`);
    expect((await stat(join(state, 'demo-sender.credential'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(state, 'admin.json'))).mode & 0o777).toBe(0o600);

    // 1. the peer, exactly as printed (plus --json, so the test waits on lines, not log text)
    const join1 = printed(next[0]!);
    const printer = await startCli([...join1.args, '--json'], { home: suite.home, argv0: join1.argv0 });
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'pending', 'pending state');
    // 2. the admin approves
    const approve = printed(next[1]!);
    const approved = await runCli(approve.args, { home: suite.home, argv0: approve.argv0 });
    expect(approved.code, approved.stderr).toBe(0);
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'registered', 'registered state');
    // 3. the outside sender
    const send = printed(next[2]!);
    const sent = await runCli(send.args, { home: suite.home, argv0: send.argv0 });
    expect(sent.code, sent.stderr).toBe(0);
    expect(sent.stdout).toMatch(/^delivered \S+ to printer@demo in \d+ ms$/m);
    expect(sent.stdout).toContain('reply from printer@demo: hello printer');
    expect(await printer.waitForEvent((e) => e.event === 'message', 'message')).toMatchObject({ from: 'demo-sender@relay', payload: 'hello printer' });

    expect(await printer.stop('SIGINT')).toBe(0);
    expect(await demo.stop('SIGTERM')).toBe(0);
    expect(existsSync(join(state, 'admin.json'))).toBe(false);

    // A second run on the same state folder: new relay and credentials, the peer's decision kept.
    const again = await startCli(['start', '--state', state, '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--json'], { home: suite.home });
    const next2 = again.ready.next as string[];
    const rejoin = printed(next2[0]!);
    const printer2 = await startCli([...rejoin.args, '--json'], { home: suite.home, argv0: rejoin.argv0 });
    await printer2.waitForEvent((e) => e.event === 'state' && e.state === 'registered', 'registered state (kept from the first run)');
    const resend = printed(next2[2]!);
    const resent = await runCli(resend.args, { home: suite.home, argv0: resend.argv0 });
    expect(resent.code, resent.stderr).toBe(0);
    expect(resent.stdout).toContain('reply from printer@demo: hello printer');
    expect(await again.stop('SIGTERM')).toBe(0);
  });
});
