import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RELAY_STATUS_PATH, type RelayStatusView } from '../../core/admin/relay-contract.js';
import { RELAY_ADMIN_FILE, readRelayAdminFile } from '../../core/cli/state-dir.js';
import { Status } from '../../core/protocol/status.js';
import { cliSuite } from './cli-process.js';

/**
 * `relay --admin-listen` and `contact-point relay status` through the real CLI (issue 13,
 * item 2): a relay process, a `serve` process connected to it, a refused `peer send`; the
 * status the command prints is the status the endpoint serves.
 */

const suite = cliSuite();
const { cli, start } = suite;

describe('relay status', () => {
  it('prints the offices, sessions and refusals of a running relay, as JSON the endpoint serves and as text', async () => {
    const relayState = join(suite.home, 'relay');
    const cred = join(suite.home, 'acme-hq.credential');
    const alice = join(suite.home, 'alice.credential');
    expect((await cli(['relay', 'credential', 'add', '--kind', 'contact-point', '--id', 'acme-hq', '--out', cred, '--state', relayState])).code).toBe(0);
    expect((await cli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'alice', '--out', alice, '--state', relayState])).code).toBe(0);
    const relay = await start(['relay', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--state', relayState, '--json']);
    const relayUrl = String(relay.ready.url);
    expect(String(relay.ready.statusUrl)).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(String(relay.ready.dashboardUrl)).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/#token=[\w-]{32}$/);
    // The token is in the state folder, readable by the relay's user only.
    const file = await readRelayAdminFile(relayState);
    expect(file).toMatchObject({ url: relay.ready.statusUrl, dashboardUrl: relay.ready.dashboardUrl, pid: relay.proc.pid });
    expect((await stat(join(relayState, RELAY_ADMIN_FILE))).mode & 0o777).toBe(0o600);

    const serve = await start(['serve', '--relay', relayUrl, '--id', 'acme-hq', '--credential-file', cred, '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--state', join(suite.home, 'serve'), '--json']);
    expect(serve.ready).toMatchObject({ tunnel: 'connected' });
    const sent = await cli(['peer', 'send', '--to', 'printer@nowhere', 'hi', '--relay', relayUrl, '--id', 'alice', '--credential-file', alice]);
    expect(sent.code, sent.stderr).toBe(3);

    const r = await cli(['relay', 'status', '--json', '--state', relayState]);
    expect(r.code, r.stderr).toBe(0);
    const printed = JSON.parse(r.stdout) as RelayStatusView;
    const res = await fetch(file!.url + RELAY_STATUS_PATH, { headers: { authorization: `Bearer ${file!.token}` } });
    const served = (await res.json()) as RelayStatusView;
    // The same relay, office and refusals (counters and clocks move between the two reads).
    expect(printed.relay).toEqual({ ...served.relay, now: printed.relay.now });
    expect(printed.offices.map((o) => [o.id, o.session, o.env])).toEqual(served.offices.map((o) => [o.id, o.session, o.env]));
    expect(printed.offices).toHaveLength(1);
    expect(printed.offices[0]!.env.software).toMatch(/^contact-point\//);
    expect(printed.refusals.recent).toEqual(served.refusals.recent);
    expect(printed.refusals.recent[0]).toMatchObject({ kind: 'message', code: Status.UNKNOWN_CONTACT_POINT, who: 'external alice' });

    const text = await cli(['relay', 'status', '--state', relayState]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^offices {8}1 connected$/m);
    expect(text.stdout).toMatch(/^OFFICES/m);
    expect(text.stdout).toMatch(/^acme-hq +\S+ +contact-point\//m);
    expect(text.stdout).toMatch(/RECENT REFUSALS[\s\S]*message +UNKNOWN_CONTACT_POINT \(10\) +external alice +127\.0\.0\.1:\d+ +unknown contact point/);

    // --admin URL takes the token from the environment only.
    const noToken = await cli(['relay', 'status', '--admin', file!.url]);
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain('CONTACT_POINT_ADMIN_TOKEN');
    const wrong = await cli(['relay', 'status', '--admin', file!.url], { CONTACT_POINT_ADMIN_TOKEN: 'wrong' });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('refused the token (401)');
    const viaUrl = await cli(['relay', 'status', '--json', '--admin', file!.url], { CONTACT_POINT_ADMIN_TOKEN: file!.token });
    expect(viaUrl.code, viaUrl.stderr).toBe(0);
    expect((JSON.parse(viaUrl.stdout) as RelayStatusView).offices.map((o) => o.id)).toEqual(['acme-hq']);

    // The relay logged the refusal once, at info, with its code.
    expect(relay.stderr().match(/relay refused kind=message code=UNKNOWN_CONTACT_POINT status=10 who="external alice"/g)).toHaveLength(1);

    expect(await relay.stop('SIGTERM')).toBe(0);
    expect(await readRelayAdminFile(relayState)).toBeUndefined();
    const gone = await cli(['relay', 'status', '--state', relayState]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('--admin-listen');
  });

  it('keeps the status endpoint on loopback', async () => {
    const r = await cli(['relay', '--listen', '127.0.0.1:0', '--admin-listen', '0.0.0.0:0', '--state', join(suite.home, 'relay')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('is not a loopback address');
  });
});
