import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scrapeMetrics } from '../helpers.js';
import { cliSuite } from './cli-process.js';

const suite = cliSuite();
const { cli, start } = suite;

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('--metrics on relay, serve and start', () => {
  it('refuses bad values and a non-loopback address without --metrics-public, with a clear error', async () => {
    const serveArgs = ['serve', '--relay', 'ws://127.0.0.1:1/v1', '--id', 'acme-hq'];
    const cases: [string[], RegExp][] = [
      [['relay', '--metrics', 'nope'], /--metrics "nope": expected HOST:PORT such as 127\.0\.0\.1:7901/],
      [['relay', '--metrics', '127.0.0.1:70000'], /--metrics "127\.0\.0\.1:70000": port 70000 is not between 0 and 65535/],
      [['relay', '--metrics', '0.0.0.0:9464'], /--metrics "0\.0\.0\.0:9464": 0\.0\.0\.0 is not a loopback address\. The metrics endpoint has no authentication.*add --metrics-public/],
      [[...serveArgs, '--metrics', '[::]:9464'], /:: is not a loopback address.*--metrics-public/],
      [['start', '--metrics', '192.0.2.7:9464'], /192\.0\.2\.7 is not a loopback address/],
      [['relay', '--metrics-public'], /--metrics-public needs --metrics HOST:PORT/],
      [['relay', '--metrics-per-office'], /--metrics-per-office needs --metrics HOST:PORT/],
      [['relay', '--metrics', '127.0.0.1:0', '--metrics-max-offices', '10'], /--metrics-max-offices needs --metrics-per-office/],
      [['relay', '--metrics', '127.0.0.1:0', '--metrics-per-office', '--metrics-max-offices', '0'], /--metrics-max-offices "0": expected a whole number from 1 to 10000/],
    ];
    for (const [args, message] of cases) {
      const r = await cli([...args, '--state', join(suite.home, 'state')]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
  });

  it('a non-loopback address with --metrics-public is served, with a warning that it has no authentication', async () => {
    const relay = await start(['relay', '--listen', '127.0.0.1:0', '--metrics', '0.0.0.0:0', '--metrics-public', '--state', join(suite.home, 'relay'), '--json']);
    const url = String(relay.ready.metricsUrl);
    expect(url).toMatch(/^http:\/\/0\.0\.0\.0:\d+\/metrics$/);
    expect(relay.stderr()).toMatch(/warn +metrics endpoint on a non-loopback address: it has no authentication/);
    const m = await scrapeMetrics(url.replace('0.0.0.0', '127.0.0.1'));
    expect(m.value('contact_point_relay_tunnels')).toBe(0);
    expect(await relay.stop('SIGTERM')).toBe(0);
  });

  it('relay and serve count a message, a refusal and a tunnel reconnect across a relay restart on the same port', async () => {
    const relayState = join(suite.home, 'relay');
    const cpCred = join(suite.home, 'acme-hq.credential');
    const aliceCred = join(suite.home, 'alice.credential');
    expect((await cli(['relay', 'credential', 'add', '--kind', 'contact-point', '--id', 'acme-hq', '--out', cpCred, '--state', relayState])).code).toBe(0);
    expect((await cli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'alice', '--out', aliceCred, '--state', relayState])).code).toBe(0);
    const relayArgs = (listen: string): string[] => ['relay', '--listen', listen, '--metrics', '127.0.0.1:0', '--metrics-per-office', '--state', relayState, '--json'];
    let relay = await start(relayArgs('127.0.0.1:0'));
    const relayUrl = String(relay.ready.url);
    const serve = await start([
      'serve', '--relay', relayUrl, '--id', 'acme-hq', '--credential-file', cpCred, '--auto-approve-subnet', '127.0.0.0/8',
      '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--state', join(suite.home, 'cp'), '--json',
    ]);
    const cpMetrics = String(serve.ready.metricsUrl);
    expect(cpMetrics).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const printer = await start(['peer', 'join', '--cp', String(serve.ready.peerPortUrl), '--name', 'printer', '--register', '--json', '--state', join(suite.home, 'peer')]);
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'registered', 'registered state');

    // --seal off: this counts plain payload bytes; a sealed one would count its envelope's.
    const asAlice = ['peer', 'send', '--relay', relayUrl, '--id', 'alice', '--credential-file', aliceCred, '--seal', 'off'];
    const sent = await cli([...asAlice, '--to', 'printer@acme-hq', 'hello printer']);
    expect(sent.code, sent.stderr).toBe(0);
    const refused = await cli([...asAlice, '--to', 'printer@elsewhere', 'hello?']);
    expect(refused.code).toBe(3);

    const r = await scrapeMetrics(String(relay.ready.metricsUrl));
    expect(r.value('contact_point_relay_messages_routed_total')).toBe(1);
    expect(r.value('contact_point_relay_messages_refused_total', { code: 'UNKNOWN_CONTACT_POINT' })).toBe(1);
    expect(r.value('contact_point_relay_office_peers', { office: 'acme-hq' })).toBe(1);
    const c = await scrapeMetrics(cpMetrics);
    expect(c.value('contact_point_messages_delivered_total')).toBe(1);
    expect(c.value('contact_point_message_payload_bytes_total')).toBe('hello printer'.length);
    expect(c.value('contact_point_peers', { state: 'registered' })).toBe(1);
    expect(c.value('contact_point_tunnel_reconnects_total')).toBe(0);

    // The relay process goes and a new one takes the same port: the contact point reconnects.
    expect(await relay.stop('SIGTERM')).toBe(0);
    const port = new URL(relayUrl).port;
    relay = await start(relayArgs(`127.0.0.1:${port}`));
    expect(relay.ready.url).toBe(relayUrl);
    await eventually(async () => (await scrapeMetrics(cpMetrics)).value('contact_point_tunnel_up') === 1, 'the tunnel to come back');
    const after = await scrapeMetrics(cpMetrics);
    expect(after.value('contact_point_tunnel_reconnects_total')).toBe(1);
    expect(after.value('contact_point_messages_delivered_total')).toBe(1);
    const r2 = await scrapeMetrics(String(relay.ready.metricsUrl));
    expect(r2.value('contact_point_relay_tunnels')).toBe(1);

    expect(await printer.stop('SIGTERM')).toBe(0);
    expect(await serve.stop('SIGTERM')).toBe(0);
    expect(await relay.stop('SIGTERM')).toBe(0);
  });

  it('start serves the embedded relay and the contact point on one endpoint', async () => {
    const demo = await start(['start', '--state', join(suite.home, 'demo'), '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--json']);
    const m = await scrapeMetrics(String(demo.ready.metricsUrl));
    expect(m.value('contact_point_relay_tunnels')).toBe(1);
    expect(m.value('contact_point_tunnel_up')).toBe(1);
    // Node's process metrics once, not once per part.
    expect(m.text.match(/^# TYPE contact_point_process_cpu_user_seconds_total /gm)).toHaveLength(1);
    expect(demo.stderr()).toContain(`metrics        ${String(demo.ready.metricsUrl)}`);
    expect(await demo.stop('SIGTERM')).toBe(0);
  });
});
