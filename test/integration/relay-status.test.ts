import { request } from 'node:http';
import { hostname } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { RELAY_STATUS_PATH, type RelayStatusView } from '../../core/admin/relay-contract.js';
import { CAPABILITY_REACHABLE } from '../../core/protocol/frames.js';
import { Status } from '../../core/protocol/status.js';
import { RelayAdminServer } from '../../core/relay/admin-server.js';
import { REFUSAL_LOG_BURST, REFUSAL_LOG_PER_SECOND } from '../../core/relay/refusals.js';
import { MAX_AUTH_FAILURES_PER_MINUTE, type RelayOptions } from '../../core/relay/relay.js';
import { PeerClient } from '../../core/peer/peer-client.js';
import { createLogger } from '../../core/runtime/logger.js';
import { VERSION } from '../../core/version.js';
import { exposedEcho, FAST, logger, startHarness, waitFor, type Harness } from '../helpers.js';
import { RawClient } from '../raw-client.js';

/**
 * The relay's status endpoint (issue 13, item 2) and its refusal log (item 3): a real relay,
 * two real contact points, an external peer, an operator with an exposure carrying a real TCP
 * connection, and refusals of several kinds; read over HTTP as the CLI and the dashboard do.
 */

let h: Harness | undefined;
let admin: RelayAdminServer | undefined;
const closers: (() => unknown)[] = [];
let lines: string[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await admin?.stop();
  admin = undefined;
  await h?.close();
  h = undefined;
  lines = [];
});

/** The relay logs at info into `lines` (what an operator keeps on). */
async function stack(relay: Partial<RelayOptions> = {}): Promise<{ h: Harness; admin: RelayAdminServer }> {
  const relayLogger = createLogger({ level: 'info', write: (l) => lines.push(l) });
  h = await startHarness({ relay: { logger: relayLogger, ...relay } });
  admin = new RelayAdminServer({ relay: h.relay, logger: relayLogger });
  await admin.start();
  return { h, admin };
}

function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const u = new URL(admin!.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function status(): Promise<RelayStatusView> {
  const r = await get(RELAY_STATUS_PATH, { authorization: `Bearer ${admin!.token}` });
  expect(r.status).toBe(200);
  expect(r.headers['content-type']).toBe('application/json');
  return JSON.parse(r.body) as RelayStatusView;
}



/** Log lines of the relay's refusal log. */
function refusalLines(): string[] {
  return lines.filter((l) => / relay refused /.test(l));
}

describe('relay status endpoint', () => {
  it('lists each session of a credential that has several (issue 18), and the one over the cap as a refusal', async () => {
    const { h } = await stack({ maxSessionsPerCredential: 2 });
    const secret = await h.credentials.add('external', 'tech');
    const sessions: PeerClient[] = [];
    for (let i = 0; i < 3; i++) {
      const c = new PeerClient({ role: 'external', url: h.relay.url, name: 'tech', secret, logger, timing: FAST, ackTimeoutMs: 500 });
      closers.push(() => c.stop());
      c.start();
      if (i < 2) {
        await c.ready();
        sessions.push(c);
      }
    }
    await waitFor(() => h.relay.statusSnapshot().refusals.total === 1, 5_000, 'the third session refused');
    const s = await status();
    expect(s.externals.map((e) => e.address)).toEqual(['tech@relay', 'tech@relay']);
    expect(new Set(s.externals.map((e) => e.session)).size).toBe(2);
    expect(s.totals.externals).toBe(2);
    expect(s.refusals.recent[0]).toMatchObject({ kind: 'hello', code: Status.SESSION_LIMIT, name: 'SESSION_LIMIT', who: 'external tech' });
  });

  it('lists both offices with the environment each said at hello, the sessions, an exposure with its port and connections, and refusals', async () => {
    const { h } = await stack();
    await h.contactPoint('branch-b');
    await h.registered('printer');
    const alice = await h.external('alice');
    // An operator exposes a LAN echo service behind acme-hq; one client connects through it.
    const exposed = await exposedEcho(h);
    closers.push(() => exposed.close());
    const { op, lanPort, publicPort } = exposed;
    // Refusals: a message to an unknown office, a hello with a bad secret, an operator asking about an unknown office.
    await expect(alice.send('someone@nowhere', 'hi')).rejects.toMatchObject({ code: Status.UNKNOWN_CONTACT_POINT });
    const raw = await RawClient.open(h.relay.url);
    closers.push(() => raw.ws.terminate());
    raw.hello({ versions: { min: 1, max: 1 }, role: 'external', id: 'mallory', secret: 'x'.repeat(32) });
    await raw.waitClosed();
    await expect(op.open('ghost', { proto: 'tcp' })).rejects.toThrow();
    // The relay's first round-trip ping goes out at its first check (a few hundred ms with FAST timing).
    await waitFor(() => h.relay.statusSnapshot().offices.every((o) => o.rttMs !== undefined), 5_000, 'round trips measured');

    const s = await status();
    expect(s.relay).toMatchObject({ name: 'relay', url: h.relay.url });
    expect(s.offices.map((o) => o.id)).toEqual(['acme-hq', 'branch-b']);
    const [hq, branch] = s.offices;
    expect(hq!.env.host).toBe(hostname().slice(0, 255));
    expect(hq!.env.capabilities).toContain(CAPABILITY_REACHABLE);
    expect(hq!.env.software).toBe(`contact-point/${VERSION}`);
    expect(branch!.env).toEqual(hq!.env); // the same software on the same host
    expect(hq!.env.addresses).toEqual(expect.any(Array));
    expect(hq!.peers).toBe(1);
    expect(branch!.peers).toBe(0);
    expect(hq!.since).toBeLessThanOrEqual(s.relay.now);
    expect(hq!.rttMs).toBeGreaterThanOrEqual(0);
    expect(hq!.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    // Traffic moved through acme-hq's tunnel (PEERS, the exposure's stream), more than through branch-b's.
    expect(hq!.traffic.bytesIn).toBeGreaterThan(branch!.traffic.bytesIn);
    expect(hq!.traffic.framesOut).toBeGreaterThan(0);

    expect(s.externals.map((e) => e.name)).toEqual(['alice', 'tech']);
    const [a, tech] = s.externals;
    expect(a).toMatchObject({ address: 'alice@relay', rights: ['send'] });
    expect(a!.operator).toBeUndefined();
    expect(a!.software).toMatch(/^contact-point-sdk\//);
    expect(tech).toMatchObject({ address: 'tech@relay', rights: ['send', 'mediate'], operator: { exposures: 1 } });
    expect(s.totals).toMatchObject({ offices: 2, externals: 2, operators: 1, exposures: 1 });

    expect(s.exposures).toEqual([expect.objectContaining({ cp: 'acme-hq', proto: 'tcp', target: `127.0.0.1:${lanPort}`, publicPort, operator: 'tech', connections: 1, active: 1 })]);

    const [port, hello, message] = s.refusals.recent;
    expect(message).toMatchObject({ kind: 'message', code: Status.UNKNOWN_CONTACT_POINT, name: 'UNKNOWN_CONTACT_POINT', who: 'external alice', count: 1 });
    expect(message!.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(hello).toMatchObject({ kind: 'hello', code: Status.BAD_CREDENTIALS, who: 'external mallory', reason: 'no valid credential for external "mallory"' });
    expect(port).toMatchObject({ kind: 'port', code: Status.UNKNOWN_CONTACT_POINT, who: 'operator tech' });
    expect(s.refusals.recent).toHaveLength(3); // newest first
    expect(s.refusals.total).toBe(3);
    expect(s.totals.refused).toBe(1);

    // Each refusal is one log line with its code's name and number and who; bad credentials at warn.
    const logged = refusalLines();
    expect(logged).toHaveLength(3);
    expect(logged[0]).toMatch(/ info {2}relay refused kind=message code=UNKNOWN_CONTACT_POINT status=10 who="external alice" remote=127\.0\.0\.1:\d+ /);
    expect(logged[1]).toMatch(/ warn {2}relay refused kind=hello code=BAD_CREDENTIALS status=104 who="external mallory" /);
    expect(logged[2]).toMatch(/ info {2}relay refused kind=port code=UNKNOWN_CONTACT_POINT status=10 who="operator tech" /);
  });

  it('refuses what the contact point admin endpoint refuses: no token, a wrong token, a foreign Host, a foreign Origin', async () => {
    const { admin } = await stack();
    expect(admin.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const bearer = { authorization: `Bearer ${admin.token}` };
    expect((await get(RELAY_STATUS_PATH)).status).toBe(401);
    expect((await get(RELAY_STATUS_PATH, { authorization: 'Bearer wrong-token' })).status).toBe(401);
    expect((await get(RELAY_STATUS_PATH, { authorization: admin.token })).status).toBe(401);
    // DNS rebinding: the page's own name arrives in Host.
    expect((await get(RELAY_STATUS_PATH, { ...bearer, host: 'evil.example:80' })).status).toBe(421);
    expect((await get('/', { host: 'evil.example:80' })).status).toBe(421);
    expect((await get(RELAY_STATUS_PATH, { ...bearer, origin: 'http://evil.example' })).status).toBe(403);
    expect((await get(RELAY_STATUS_PATH, { ...bearer, origin: 'null' })).status).toBe(403);
    // The same requests from itself pass.
    expect((await get(RELAY_STATUS_PATH, { ...bearer, origin: admin.url })).status).toBe(200);
    expect((await get(RELAY_STATUS_PATH, { ...bearer, host: new URL(admin.url).host })).status).toBe(200);
    // Read only, and nothing but the dashboard's files.
    expect((await get('/index.html')).status).toBe(404);
    const page = await get('/');
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toMatch(/script-src 'self';/);
    // The bad tokens were counted and will be logged in one line, not one per request.
    const badTokenLines = (): string[] => lines.filter((l) => /relay status request refused: bad token/.test(l));
    expect(badTokenLines()).toHaveLength(1); // the first at once, the rest within the minute summed
    await admin.stop();
    expect(badTokenLines()).toHaveLength(2);
    expect(badTokenLines()[0]).toMatch(/refused=1 reason="no token"/);
    expect(badTokenLines()[1]).toMatch(/refused=2 /);
  });

  it('logs each refusal once, and a flood as a few summary lines with the count', async () => {
    const { h } = await stack();
    const alice = await h.external('alice', { ackTimeoutMs: 5_000 });
    const n = 10;
    for (let i = 0; i < n; i++) await expect(alice.send(`x@nowhere-${i}`, 'hi')).rejects.toMatchObject({ code: Status.UNKNOWN_CONTACT_POINT });
    expect(refusalLines()).toHaveLength(n);
    for (let i = 0; i < n; i++) expect(refusalLines()[i]).toContain(`to=x@nowhere-${i}`);

    // A flood of bad hellos: the ring keeps the last ones, the log stays at its burst plus summaries.
    const flood = 3 * REFUSAL_LOG_BURST;
    const started = performance.now();
    for (let i = 0; i < flood; i++) {
      try {
        const raw = await RawClient.open(h.relay.url);
        raw.hello({ versions: { min: 1, max: 1 }, role: 'external', id: `bot-${i}`, secret: 'x'.repeat(32) });
        await raw.waitClosed();
      } catch (err: unknown) {
        // past MAX_AUTH_FAILURES_PER_MINUTE the upgrade itself is refused (429): also a refusal
        expect(String(err)).toContain('HTTP 429');
      }
    }
    const seconds = (performance.now() - started) / 1000;
    await h.relay.stop(); // flushes the summary
    const s = h.relay.statusSnapshot();
    expect(s.refusals.total).toBe(n + flood);
    expect(s.refusals.recent).toHaveLength(n + flood);
    expect(s.refusals.recent.filter((r) => r.code === Status.BAD_CREDENTIALS)).toHaveLength(MAX_AUTH_FAILURES_PER_MINUTE);
    expect(s.refusals.recent.filter((r) => r.code === Status.RATE_LIMITED && r.kind === 'upgrade')).toHaveLength(flood - MAX_AUTH_FAILURES_PER_MINUTE);
    const logged = refusalLines().length;
    expect(logged).toBeLessThanOrEqual(REFUSAL_LOG_BURST + Math.ceil(seconds * REFUSAL_LOG_PER_SECOND) + 1);
    expect(s.refusals.notLogged).toBe(n + flood - logged);
    const summaries = lines.filter((l) => /relay refusals over the log rate/.test(l));
    expect(summaries.length).toBeGreaterThan(0);
    const summed = summaries.reduce((sum, l) => sum + Number(/refused=(\d+)/.exec(l)![1]), 0);
    expect(summed).toBe(s.refusals.notLogged);
  });
});
