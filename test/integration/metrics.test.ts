import { request } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { contactPointMetrics } from '../../core/contact-point/metrics.js';
import { DeliveryError } from '../../core/protocol/errors.js';
import { SEAL_OVERHEAD } from '../../core/protocol/seal.js';
import { Status } from '../../core/protocol/status.js';
import { OFFERED_VERSIONS } from '../../core/protocol/version.js';
import { relayMetrics } from '../../core/relay/metrics.js';
import { MetricsServer, type MetricsSource } from '../../core/runtime/metrics.js';
import { RawClient } from '../raw-client.js';
import { FAST, logger, scrapeMetrics, startHarness, waitFor, type Harness, type Scrape } from '../helpers.js';

let h: Harness;
const servers: MetricsServer[] = [];
const extra: ContactPoint[] = [];

async function serve(source: MetricsSource): Promise<string> {
  const server = new MetricsServer({ host: '127.0.0.1', port: 0, sources: [source], logger });
  servers.push(server);
  return server.start();
}

beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
  await Promise.all(extra.splice(0).map((c) => c.stop()));
  await h.close();
});

async function refused(p: Promise<unknown>): Promise<number> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DeliveryError);
  return (err as DeliveryError).code;
}

/** What each counter says in `after` minus `before` (absent counts as 0). */
function delta(before: Scrape, after: Scrape, name: string, labels?: Record<string, string>): number {
  return (after.value(name, labels) ?? 0) - (before.value(name, labels) ?? 0);
}

function get(url: string, method = 'GET', headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('/metrics of the relay and the contact point', () => {
  it('count the traffic as it happened: messages each way, refusals by code, bytes, failed hellos', async () => {
    const relayUrl = await serve(relayMetrics(h.relay));
    const cpUrl = await serve(contactPointMetrics(h.cp));
    const printer = await h.registered('printer');
    // Long ACK timeouts: no retransmission may add a routed message or a second refusal.
    const alice = await h.external('alice', { ackTimeoutMs: 10_000 });
    const r0 = await scrapeMetrics(relayUrl);
    const c0 = await scrapeMetrics(cpUrl);

    const payload = Buffer.alloc(1024, 0x61);
    for (let i = 0; i < 5; i++) await alice.send('printer@acme-hq', payload);
    await printer.send('alice@relay', 'page printed');
    expect(await refused(alice.send('ghost@acme-hq', 'x'.repeat(100)))).toBe(Status.PEER_NOT_REGISTERED);
    expect(await refused(alice.send('printer@nowhere', 'y'))).toBe(Status.UNKNOWN_CONTACT_POINT);
    // A hello with a wrong secret is refused and counted once.
    const mallory = await RawClient.open(h.relay.url);
    mallory.hello({ versions: OFFERED_VERSIONS, role: 'external', id: 'alice', secret: 'epk_' + 'B'.repeat(43) });
    await mallory.waitClosed();
    expect(mallory.errorCode()).toBe(Status.BAD_CREDENTIALS);

    const r1 = await scrapeMetrics(relayUrl);
    const c1 = await scrapeMetrics(cpUrl);
    const R = 'contact_point_relay_';
    // Routed: 5 to printer, 1 back to alice, 1 to ghost (refused by the contact point, not the relay).
    expect(delta(r0, r1, `${R}messages_routed_total`)).toBe(7);
    expect(delta(r0, r1, `${R}messages_refused_total`, { code: 'UNKNOWN_CONTACT_POINT' })).toBe(1);
    expect(r1.value(`${R}messages_refused_total`, { code: 'PEER_NOT_REGISTERED' })).toBeUndefined();
    expect(delta(r0, r1, `${R}hello_refusals_total`, { code: 'BAD_CREDENTIALS' })).toBe(1);
    // Frames carry the payloads both ways (in from alice, out to the tunnel), plus headers.
    expect(delta(r0, r1, `${R}bytes_received_total`)).toBeGreaterThan(5 * 1024 + 100);
    expect(delta(r0, r1, `${R}bytes_sent_total`)).toBeGreaterThan(5 * 1024 + 100);
    expect(r1.value(`${R}connections`, { role: 'contact-point' })).toBe(1);
    expect(r1.value(`${R}connections`, { role: 'external' })).toBe(1);
    expect(r1.value(`${R}tunnels`)).toBe(1);
    expect(r1.value(`${R}offices_known`)).toBe(1);
    expect(r1.value(`${R}external_sessions`)).toBe(1);
    expect(r1.value(`${R}tunnels_opened_total`)).toBe(1);

    const C = 'contact_point_';
    expect(delta(c0, c1, `${C}messages_total`, { direction: 'in' })).toBe(6);
    expect(delta(c0, c1, `${C}messages_total`, { direction: 'out' })).toBe(1);
    expect(delta(c0, c1, `${C}messages_total`, { direction: 'local' })).toBe(0);
    expect(delta(c0, c1, `${C}messages_delivered_total`)).toBe(6);
    expect(delta(c0, c1, `${C}messages_refused_total`, { code: 'PEER_NOT_REGISTERED' })).toBe(1);
    // The SDK seals by default: the contact point counts the envelope's bytes for the sealed
    // messages (both peers have keys); the one to ghost goes plain (no key for an unregistered name).
    expect(delta(c0, c1, `${C}message_payload_bytes_total`)).toBe(5 * (1024 + SEAL_OVERHEAD) + 'page printed'.length + SEAL_OVERHEAD + 100);
    expect(delta(c0, c1, `${C}tunnel_bytes_received_total`)).toBeGreaterThan(5 * 1024 + 100);
    expect(c1.value(`${C}tunnel_up`)).toBe(1);
    expect(c1.value(`${C}tunnel_state`, { state: 'connected' })).toBe(1);
    expect(c1.value(`${C}peers`, { state: 'registered' })).toBe(1);
    expect(c1.value(`${C}peers_online`)).toBe(1);
    // Node's process metrics come with both, under the same prefix.
    expect(c1.value(`${C}nodejs_eventloop_lag_seconds`)).toBeGreaterThanOrEqual(0);
    expect(r1.text).toContain(`${C}process_cpu_user_seconds_total`);
    expect(r1.text).toContain(`${C}nodejs_gc_duration_seconds`);
  });

  it('counts port mediation refusals by code, apart from the messages', async () => {
    const cpUrl = await serve(contactPointMetrics(h.cp));
    const c0 = await scrapeMetrics(cpUrl);
    const ch = h.relay.control('acme-hq')!;
    // The port policy is empty: everything is PERMISSION_DENIED (and shows in the admin's flow).
    expect(await ch.request({ op: 'open', operator: 'tech', proto: 'udp', port: 0 })).toMatchObject({ ok: false, code: Status.PERMISSION_DENIED });
    expect(await ch.request({ op: 'close', operator: 'tech', portId: 99 })).toMatchObject({ ok: false, code: Status.UNKNOWN_PORT });
    expect(h.cp.flow.totals().refusals.PERMISSION_DENIED).toBe(1);
    const c1 = await scrapeMetrics(cpUrl);
    expect(delta(c0, c1, 'contact_point_port_refusals_total', { code: 'PERMISSION_DENIED' })).toBe(1);
    expect(delta(c0, c1, 'contact_point_port_refusals_total', { code: 'UNKNOWN_PORT' })).toBe(1);
    expect(c1.value('contact_point_messages_total', { direction: 'in' })).toBe(0);
    expect(c1.value('contact_point_messages_refused_total', { code: 'PERMISSION_DENIED' })).toBeUndefined();
    expect(c1.value('contact_point_ports_open')).toBe(0);
  });

  it('count a tunnel reconnect after the relay restarts on the same port', async () => {
    const cpUrl = await serve(contactPointMetrics(h.cp));
    const c0 = await scrapeMetrics(cpUrl);
    expect(c0.value('contact_point_tunnel_up')).toBe(1);
    expect(c0.value('contact_point_tunnel_reconnects_total')).toBe(0);
    await h.relay.stop();
    await waitFor(() => !h.cp.gateway.connected, 5_000, 'tunnel down');
    const down = await scrapeMetrics(cpUrl);
    expect(down.value('contact_point_tunnel_up')).toBe(0);
    expect(down.value('contact_point_tunnel_rtt_seconds')).toBeUndefined();
    await h.restartRelay();
    await waitFor(() => h.cp.gateway.connected, 10_000, 'tunnel back');
    const c1 = await scrapeMetrics(cpUrl);
    expect(c1.value('contact_point_tunnel_up')).toBe(1);
    expect(c1.value('contact_point_tunnel_reconnects_total')).toBe(1);
    // The new relay's own series start from its own start.
    const relayUrl = await serve(relayMetrics(h.relay));
    const r = await scrapeMetrics(relayUrl);
    expect(r.value('contact_point_relay_tunnels_opened_total')).toBe(1);
  });

  it('per-office series only when asked, for at most maxOffices offices', async () => {
    const plain = await scrapeMetrics(await serve(relayMetrics(h.relay)));
    expect(plain.text).not.toContain('relay_office_');
    const secret = await h.credentials.add('contact-point', 'branch');
    const branch = await ContactPoint.create({ id: 'branch', relayUrl: h.relay.url, secret, peerHost: '127.0.0.1', logger, timing: FAST });
    extra.push(branch);
    await branch.start();
    await waitFor(() => branch.gateway.connected, 5_000, 'branch tunnel up');
    await h.registered('printer');

    const perOfficeUrl = await serve(relayMetrics(h.relay, { perOffice: true }));
    const all = await scrapeMetrics(perOfficeUrl);
    expect(all.value('contact_point_relay_office_peers', { office: 'acme-hq' })).toBe(1);
    expect(all.value('contact_point_relay_office_peers', { office: 'branch' })).toBe(0);
    expect(all.value('contact_point_relay_office_bytes_received_total', { office: 'acme-hq' })).toBeGreaterThan(0);
    expect(all.value('contact_point_relay_offices_not_exported')).toBe(0);

    // Capped at one: the office connected first keeps its series, the other is counted as left out.
    const capped = await scrapeMetrics(await serve(relayMetrics(h.relay, { perOffice: true, maxOffices: 1 })));
    expect(capped.value('contact_point_relay_office_peers', { office: 'acme-hq' })).toBe(1);
    expect(capped.value('contact_point_relay_office_peers', { office: 'branch' })).toBeUndefined();
    expect(capped.value('contact_point_relay_offices_not_exported')).toBe(1);
    expect(() => relayMetrics(h.relay, { perOffice: true, maxOffices: 0 })).toThrow(/maxOffices 0/);

    // An office that leaves leaves the output.
    await branch.stop();
    await waitFor(() => h.relay.status().tunnels === 1, 5_000, 'branch tunnel gone');
    const after = await scrapeMetrics(perOfficeUrl);
    expect(after.value('contact_point_relay_office_peers', { office: 'branch' })).toBeUndefined();
    expect(after.value('contact_point_relay_tunnels')).toBe(1);
  });

  it('answer GET /metrics only: other paths 404, other methods 405, upgrades refused', async () => {
    const url = await serve(relayMetrics(h.relay));
    const base = url.slice(0, -'/metrics'.length);
    expect((await get(url)).status).toBe(200);
    expect((await get(url, 'HEAD')).status).toBe(200);
    expect(await get(`${base}/`)).toMatchObject({ status: 404 });
    expect(await get(`${base}/metrics/x`)).toMatchObject({ status: 404 });
    expect(await get(url, 'POST')).toMatchObject({ status: 405 });
    expect(await get(url, 'DELETE')).toMatchObject({ status: 405 });
    await expect(RawClient.open(url.replace('http:', 'ws:'))).rejects.toThrow(/HTTP 404/);
    const res = await fetch(url);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.headers.get('connection')).toBe('close');
  });

  it('on loopback, answer only requests that name it: a page rebinding its own name to 127.0.0.1 gets 421', async () => {
    const url = await serve(relayMetrics(h.relay));
    const port = new URL(url).port;
    expect((await get(url, 'GET', { host: `attacker.example:${port}` })).status).toBe(421);
    expect((await get(url, 'GET', { host: 'attacker.example' })).status).toBe(421);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`]) expect((await get(url, 'GET', { host })).status).toBe(200);
  });
});
