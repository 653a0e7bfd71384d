import { afterEach, describe, expect, it } from 'vitest';
import { Operator } from '../../core/peer/operator.js';
import { PORT_REQUEST_TIMEOUT_MS } from '../../core/relay/control.js';
import { Status } from '../../core/protocol/status.js';
import { CAPABILITY_MEDIATION, CAPABILITY_REACHABLE, CAPABILITY_UDP_AEAD, FrameType } from '../../core/protocol/frames.js';
import { decodeControl, encodeControl } from '../../core/protocol/codec.js';
import { FAST, logger, startHarness, waitFor, type Harness } from '../helpers.js';
import { RawClient } from '../raw-client.js';

let h: Harness | undefined;
const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await h?.close();
  h = undefined;
});

async function operator(harness: Harness, name: string): Promise<Operator> {
  const secret = await harness.credentials.add('external', name, ['send', 'mediate']);
  const op = new Operator({ url: harness.relay.url, name, secret, logger, timing: FAST });
  closers.push(() => op.stop());
  op.start();
  await op.ready();
  return op;
}

const capabilitiesAtRelay = (harness: Harness): readonly string[] => harness.relay.statusSnapshot().offices.find((o) => o.id === 'acme-hq')!.env.capabilities;

describe('the contact point says what it offers, and the relay acts on it', () => {
  it('announces mediation and the encrypted UDP channel when they are on, and the relay keeps what it announced', async () => {
    h = await startHarness();
    const caps = capabilitiesAtRelay(h);
    expect(caps).toEqual(expect.arrayContaining(['messages', CAPABILITY_REACHABLE, CAPABILITY_MEDIATION, CAPABILITY_UDP_AEAD]));
    expect(new Set(caps).size).toBe(caps.length);
  });

  it('leaves out what is off: mediation (--no-mediation) and udp-aead (udp: false)', async () => {
    h = await startHarness({ cp: { mediation: false, udp: false } });
    const caps = capabilitiesAtRelay(h);
    expect(caps).toEqual(expect.arrayContaining(['messages', CAPABILITY_REACHABLE]));
    expect(caps).not.toContain(CAPABILITY_MEDIATION);
    expect(caps).not.toContain(CAPABILITY_UDP_AEAD);
    // No UDP channel was offered to it (it did not list udp-aead).
    expect(h.relay.sessions.tunnels.get('acme-hq')!.control.udpPath).toBeUndefined();
  });

  it('an operator asking an office without mediation is refused NOT_OFFERED at once by the relay; the office never sees it', async () => {
    h = await startHarness({ cp: { mediation: false } });
    await h.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: ['tcp:1-65535', 'udp:1-65535'] });
    const op = await operator(h, 'tech');
    const started = Date.now();
    await expect(op.open('acme-hq', { proto: 'tcp' })).rejects.toMatchObject({ code: Status.NOT_OFFERED, message: expect.stringMatching(/does not offer port mediation/) as string });
    await expect(op.expose('acme-hq', '127.0.0.1', 80)).rejects.toMatchObject({ code: Status.NOT_OFFERED });
    // Far below the wait for an answer the relay would otherwise give the office (PORT_REQUEST_TIMEOUT_MS).
    expect(Date.now() - started).toBeLessThan(PORT_REQUEST_TIMEOUT_MS / 5);
    expect(h.relay.exposures()).toEqual([]);
    expect(h.cp.ports.refusedByCode.byName()).toEqual({});
    expect(h.relay.refusals.recent().filter((r) => r.code === Status.NOT_OFFERED).map((r) => r.who)).toEqual(['operator tech', 'operator tech']);
  });

  it('the office itself answers NOT_OFFERED to a port request that reaches it anyway, and records it in its flow', async () => {
    h = await startHarness({ cp: { mediation: false } });
    await h.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: ['tcp:1-65535', 'udp:1-65535'] });
    // The relay's in-process control channel does not look at the office's capabilities.
    const answer = await h.relay.control('acme-hq')!.request({ op: 'open', operator: 'tech', proto: 'tcp' });
    expect(answer).toMatchObject({ ok: false, code: Status.NOT_OFFERED, reason: 'the office does not offer port mediation' });
    expect(h.cp.ports.refusedByCode.byName()).toEqual({ NOT_OFFERED: 1 });
    expect(h.cp.ports.list()).toEqual([]);
  });

  it('an office from before these capabilities (listing neither mediation nor udp-aead) still gets its operators\' requests', async () => {
    h = await startHarness();
    const secret = await h.credentials.add('contact-point', 'old-office');
    const old = await RawClient.open(h.relay.url);
    closers.push(() => old.ws.close());
    old.hello({ versions: { min: 1, max: 1 }, role: 'contact-point', id: 'old-office', secret, env: { software: 'contact-point/0.0.9', capabilities: ['messages', CAPABILITY_REACHABLE] } });
    await waitFor(() => old.frames.some((f) => f.type === FrameType.WELCOME), 3_000, 'welcome');
    const op = await operator(h, 'tech');
    const asked = op.open('old-office', { proto: 'tcp' });
    await waitFor(() => old.frames.some((f) => f.type === FrameType.PORT_REQUEST), 3_000, 'the request forwarded to the old office');
    const req = decodeControl(old.frames.find((f) => f.type === FrameType.PORT_REQUEST)!, FrameType.PORT_REQUEST);
    expect(req).toMatchObject({ op: 'open', operator: 'tech', proto: 'tcp' });
    old.send(encodeControl(FrameType.PORT_RESULT, { req: req.req, ok: true, portId: 4, port: 5000, address: '0.0.0.0' }));
    expect(await asked).toMatchObject({ portId: 4, port: 5000 });
  });

  it('an office with mediation on still forwards the operator (the check refuses only what is not offered)', async () => {
    h = await startHarness();
    await h.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: ['tcp:1-65535'] });
    const op = await operator(h, 'tech');
    const port = await op.open('acme-hq', { proto: 'tcp' });
    expect(port.portId).toBeGreaterThan(0);
    expect(h.cp.ports.list().map((p) => p.operator)).toEqual(['tech']);
  });
});
