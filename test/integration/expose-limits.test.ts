import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { PortEventBody } from '../../core/protocol/frames.js';
import { Operator } from '../../core/peer/operator.js';
import { Status } from '../../core/protocol/status.js';
import { FAST, logger, startHarness, waitFor, type Harness } from '../helpers.js';
import { echoServer } from '../net-fixtures.js';

/**
 * The connection limits of exposures per contact point, at the relay and at the contact
 * point (issue 10, item 3): a connection past a limit is reset, the others go on, and the
 * refusal is counted where the operator and the admin look. Real relay, contact point,
 * operator and a TCP echo service on loopback.
 */

let h: Harness | undefined;
const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await h?.close();
  h = undefined;
});

async function harness(opts: Parameters<typeof startHarness>[0]): Promise<Harness> {
  h = await startHarness(opts);
  await h.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: [] });
  return h;
}

async function operator(hh: Harness): Promise<Operator> {
  const secret = await hh.credentials.add('external', 'tech', ['send', 'mediate']);
  const op = new Operator({ url: hh.relay.url, name: 'tech', secret, logger, timing: FAST });
  closers.push(() => op.stop());
  op.start();
  await op.ready();
  return op;
}

/** A LAN echo service that counts the connections it holds. */
async function echo(): Promise<{ port: number; held: () => number }> {
  const e = await echoServer();
  closers.push(() => e.close());
  return e;
}

/** A client connection to a public port; `outcome` settles with how it ended. */
function client(port: number): { socket: Socket; outcome: Promise<string> } {
  const socket = connect(port, '127.0.0.1');
  closers.push(() => socket.destroy());
  let error = '';
  socket.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
  // Not events.once: it would reject on the 'error' that comes before 'close'.
  const outcome = new Promise<string>((resolve) => socket.once('close', () => resolve(error || 'closed')));
  return { socket, outcome };
}

async function echoes(socket: Socket, text: string): Promise<string> {
  const got = once(socket, 'data');
  socket.write(text);
  return ((await got) as [Buffer])[0].toString();
}

describe('exposure connection limits per contact point', () => {
  it('at the relay: connections of all exposures of one contact point are capped together', async () => {
    const hh = await harness({ relay: { maxExposeConnectionsPerContactPoint: 3 } });
    const lan = await echo();
    const op = await operator(hh);
    const refused: PortEventBody[] = [];
    op.on('refused', (e) => refused.push(e));
    const a = await op.expose('acme-hq', '127.0.0.1', lan.port);
    const b = await op.expose('acme-hq', '127.0.0.1', lan.port);
    const open = [client(a.publicPort), client(a.publicPort), client(b.publicPort)];
    await waitFor(() => lan.held() === 3, 10_000, '3 connections at the LAN service');

    const extra = client(b.publicPort);
    expect(await extra.outcome).toBe('ECONNRESET');
    await waitFor(() => refused.length > 0, 5_000, 'the refusal reported to the operator');
    expect(refused).toEqual([expect.objectContaining({ portId: b.exposeId, event: 'refused', count: 1, code: Status.STREAM_LIMIT, reason: "the relay's limit of connections to the exposures of acme-hq is reached" })]);
    expect(hh.relay.exposures().find((e) => e.id === b.exposeId)).toMatchObject({ refused: 1, active: 1 });
    // The contact point never saw it: its two exposed ports have refused nothing.
    expect(hh.cp.ports.list().map((p) => [p.state, p.refused])).toEqual([['exposed', 0], ['exposed', 0]]);

    // The others were not touched; once one ends, there is room again.
    for (const c of open) expect(await echoes(c.socket, 'still here')).toBe('still here');
    open[0]!.socket.end();
    await open[0]!.outcome;
    await waitFor(() => lan.held() === 2 && hh.relay.exposures().reduce((n, e) => n + e.active, 0) === 2, 5_000, 'the ended connection released');
    const again = client(b.publicPort);
    expect(await echoes(again.socket, 'room again')).toBe('room again');
  });

  it('at the contact point: its stream limit refuses the extra connection, counted on the port in the admin snapshot', async () => {
    const hh = await harness({ cp: { streamLimits: { maxStreams: 2 } } });
    const lan = await echo();
    const op = await operator(hh);
    const refused: PortEventBody[] = [];
    op.on('refused', (e) => refused.push(e));
    const x = await op.expose('acme-hq', '127.0.0.1', lan.port);
    const open = [client(x.publicPort), client(x.publicPort)];
    await waitFor(() => lan.held() === 2, 10_000, '2 connections at the LAN service');

    expect(await client(x.publicPort).outcome).toBe('ECONNRESET');
    await waitFor(() => refused.length > 0, 5_000, 'the refusal reported to the operator');
    expect(refused[0]).toMatchObject({ portId: x.exposeId, count: 1, code: Status.STREAM_LIMIT, reason: '2 streams are open at this contact point' });
    await waitFor(() => hh.cp.ports.list()[0]?.refused === 1, 5_000, 'the refusal counted on the port');
    expect((await hh.cp.call('snapshot:get', {})).ports).toEqual([expect.objectContaining({ state: 'exposed', streams: 2, refused: 1, operator: 'tech', target: `127.0.0.1:${lan.port}` })]);
    for (const c of open) expect(await echoes(c.socket, 'unaffected')).toBe('unaffected');
  });

  it('refuses limits that are not positive integers', async () => {
    const { Relay } = await import('../../core/relay/relay.js');
    const { CredentialStore } = await import('../../core/relay/credentials.js');
    expect(() => new Relay({ credentials: CredentialStore.inMemory(), maxExposeConnections: 0 })).toThrow(/maxConnections: expected a positive integer, got 0/);
    const { ContactPoint } = await import('../../core/contact-point/contact-point.js');
    await expect(ContactPoint.create({ id: 'acme-hq', relayUrl: 'ws://127.0.0.1:9/v1', secret: 'x'.repeat(20), streamLimits: { maxStreamsPerExposure: 1.5 } })).rejects.toThrow(
      /streamLimits\.maxStreamsPerExposure: expected a positive integer, got 1\.5/,
    );
  });
});
