import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliSuite, type Service } from './cli-process.js';

/**
 * Issue 10 item 2 through the real CLI: two `serve` processes with one credential. The second
 * is refused while the first lives and says so in `contact-point status`; when the first
 * process freezes (SIGSTOP: its sockets stay open, nothing answers) the second takes the id
 * after the relay's liveness probe (3 s), long before the relay's own silence timeout (25 s).
 */

const suite = cliSuite();
const { cli, start } = suite;

async function tunnelOf(state: string): Promise<{ state: string; idInUse?: string; lastError?: string }> {
  const r = await cli(['status', '--json', '--state', state]);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { tunnel: { state: string; idInUse?: string } }).tunnel;
}

async function until<T>(probe: () => Promise<T>, ok: (v: T) => boolean, ms: number, what: string): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() - t0 > ms) throw new Error(`no ${what} within ${ms} ms: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('two serve processes with the same credential', () => {
  it('the second is refused and says who holds the id; it takes over from a frozen holder after the probe', async () => {
    const relayState = join(suite.home, 'relay');
    const cred = join(suite.home, 'acme-hq.credential');
    expect((await cli(['relay', 'credential', 'add', '--kind', 'contact-point', '--id', 'acme-hq', '--out', cred, '--state', relayState])).code).toBe(0);
    const relay = await start(['relay', '--listen', '127.0.0.1:0', '--state', relayState, '--json']);
    const relayUrl = String(relay.ready.url);
    const serve = (state: string): Promise<Service> =>
      start([
        'serve', '--relay', relayUrl, '--id', 'acme-hq', '--credential-file', cred, '--id-in-use-retry', '1',
        '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--state', join(suite.home, state), '--json',
      ]);
    const a = await serve('a');
    expect(a.ready).toMatchObject({ tunnel: 'connected' });
    const b = await serve('b'); // waits up to 5 s for a tunnel it will not get, then says ready
    expect(b.ready).toMatchObject({ tunnel: 'reconnecting' });

    const bt = await tunnelOf(join(suite.home, 'b'));
    expect(bt.state).toBe('reconnecting');
    expect(bt.idInUse).toMatch(/^contact point id "acme-hq" is held by another instance at 127\.0\.0\.1:\d+ \(host "[^"]+"\) since \d{4}-\d\d-\d\dT[\d:.]+Z$/);
    expect((await tunnelOf(join(suite.home, 'a'))).state).toBe('connected');
    const text = await cli(['status', '--state', join(suite.home, 'b')]);
    expect(text.stdout).toContain(`another running contact point holds this id at the relay: ${bt.idInUse}`);
    expect(text.stdout).toMatch(/tunnel +refused: another instance holds this id; reconnecting, next try in /);
    // One warning on b's log for the conflict, however many slow retries it made.
    expect(b.stderr().match(/another instance holds this id at the relay/g)).toHaveLength(1);
    expect(b.stderr()).not.toContain('tunnel up');

    a.proc.kill('SIGSTOP'); // frozen: its tunnel's socket stays open at the relay, nothing answers
    const t0 = Date.now();
    await until(() => tunnelOf(join(suite.home, 'b')), (t) => t.state === 'connected', 15_000, 'takeover by b');
    // b's next retry (1-2 s) + the probe (3 s) + status polling; the relay alone would wait 25 s.
    expect(Date.now() - t0).toBeLessThan(12_000);
    expect(relay.stderr()).toMatch(/no answer to a liveness probe; another instance took over/);
    a.proc.kill('SIGCONT');
    // a wakes up replaced; the id is b's now, so a is the one refused.
    await until(() => tunnelOf(join(suite.home, 'a')), (t) => t.idInUse !== undefined, 10_000, 'a refused after waking');
    expect((await tunnelOf(join(suite.home, 'b'))).state).toBe('connected');
  });
});
