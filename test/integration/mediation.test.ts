import { createHash, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer as createHttpServer, get } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Status } from '../../core/protocol/status.js';
import { startHarness, waitFor, type Harness } from '../helpers.js';

let h: Harness;
const closers: (() => unknown)[] = [];
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await h.close();
});

/** Allow the loopback test services explicitly (loopback is refused unless named). */
async function allowLoopback(): Promise<void> {
  await h.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: ['tcp:1-65535', 'udp:1-65535'] });
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(() => new Promise((r) => server.close(r)));
  return (server.address() as AddressInfo).port;
}

function echoServer(opts: { onSocket?: (s: Socket) => void } = {}): Promise<number> {
  return listen(
    createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      if (opts.onSocket) opts.onSocket(s);
      else s.pipe(s);
    }),
  );
}

function httpGet(port: number, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

/** Fails with `what` instead of hanging the test. */
function within<T>(p: Promise<T>, what: string, ms = 5_000): Promise<T> {
  return Promise.race([p, new Promise<T>((_r, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))]);
}

function dial(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

function readAll(s: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.once('end', () => resolve(out));
    s.once('error', reject);
  });
}

describe('port mediation through the tunnel', () => {
  it('exposes a LAN web page through the relay (one exposed port, a stream per connection)', async () => {
    await allowLoopback();
    const web = await listen(createHttpServer((req, res) => res.end(`printer config page for ${req.url}`)));
    const e = await h.relay.expose({ cp: 'acme-hq', proto: 'tcp', host: '127.0.0.1', port: web, operator: 'tech' });
    closers.push(() => h.relay.unexpose(e.id));
    for (const path of ['/', '/status', '/ink']) {
      expect(await httpGet(e.publicPort, path)).toEqual({ status: 200, body: `printer config page for ${path}` });
    }
    expect(e.view()).toMatchObject({ connections: 3, refused: 0 });
    expect(h.cp.ports.list()).toEqual([expect.objectContaining({ state: 'exposed', operator: 'tech', target: `127.0.0.1:${web}`, refused: 0 })]);
  });

  it('needs only a target rule to expose TCP; listening on a LAN port needs a listen rule', async () => {
    await h.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: [] });
    const web = await listen(createHttpServer((_q, r) => r.end('ok')));
    const e = await h.relay.expose({ cp: 'acme-hq', proto: 'tcp', host: '127.0.0.1', port: web, operator: 'tech' });
    closers.push(() => h.relay.unexpose(e.id));
    expect((await httpGet(e.publicPort)).body).toBe('ok');
    const ch = h.relay.control('acme-hq')!;
    const opened = await ch.request({ op: 'open', operator: 'tech', proto: 'tcp', port: 0 });
    expect(opened.ok).toBe(true);
    expect(await ch.request({ op: 'listen', operator: 'tech', portId: opened.portId! })).toMatchObject({ ok: false, code: Status.PERMISSION_DENIED });
    expect(await ch.request({ op: 'open', operator: 'tech', proto: 'udp', port: 0 })).toMatchObject({ ok: false, code: Status.PERMISSION_DENIED });
  });

  it('refuses what the admin did not allow, resets the client, and shows it in the flow', async () => {
    const batches: { code: number; reason: string; to: string }[] = [];
    h.cp.subscribe('flow:batch', (b) => batches.push(...b.events));
    const web = await listen(createHttpServer((_q, r) => r.end('secret')));
    const e = await h.relay.expose({ cp: 'acme-hq', proto: 'tcp', host: '127.0.0.1', port: web, operator: 'tech' });
    closers.push(() => h.relay.unexpose(e.id));
    await expect(httpGet(e.publicPort)).rejects.toThrow(/ECONNRESET|socket hang up/);
    await waitFor(() => batches.length > 0, 3_000, 'refusal in the flow');
    // Nothing allowed: the connect's target check refuses (loopback, which no rule names).
    expect(batches[0]).toMatchObject({ code: Status.UNSAFE_TARGET });
    expect(e.view().refused).toBe(1);
    expect(h.cp.ports.list()).toEqual([]);
  });

  it('a connect that reuses a stream id, or a port already connecting, is refused before it dials (a relay could crash us with one)', async () => {
    await allowLoopback();
    const ch = h.relay.control('acme-hq')!;
    const lan: Socket[] = [];
    const target = await echoServer({ onSocket: (s) => void lan.push(s) });
    // A relay that reuses stream id 2: two connects in one turn, so they arrive together. The
    // second used to pass the check before the first's await, dial too, fail to open the stream,
    // and leave its socket untracked and without an error listener: the LAN end's reset ended the process.
    const opened = await ch.request({ op: 'open', operator: 'tech', proto: 'tcp', port: 0 });
    const other = await ch.request({ op: 'open', operator: 'tech', proto: 'tcp', port: 0 });
    const [a, b] = await Promise.all([
      ch.request({ op: 'connect', operator: 'tech', portId: opened.portId!, host: '127.0.0.1', targetPort: target, streamId: 2 }),
      ch.request({ op: 'connect', operator: 'tech', portId: other.portId!, host: '127.0.0.1', targetPort: target, streamId: 2 }),
    ]);
    expect([a.ok, b.ok]).toEqual([true, false]);
    expect(b).toMatchObject({ code: Status.BAD_REQUEST, reason: 'stream 2 is in use' });
    // Five connects on one open port at once: one connection, the rest WRONG_STATE (they all
    // dialled, past the stream limit).
    const third = await ch.request({ op: 'open', operator: 'tech', proto: 'tcp', port: 0 });
    const many = await Promise.all([4, 6, 8, 10, 12].map((streamId) => ch.request({ op: 'connect', operator: 'tech', portId: third.portId!, host: '127.0.0.1', targetPort: target, streamId })));
    expect(many.filter((r) => r.ok)).toHaveLength(1);
    expect(many.filter((r) => !r.ok).every((r) => r.code === Status.WRONG_STATE)).toBe(true);
    await waitFor(() => lan.length === 2, 3_000, 'two LAN connections');
    await new Promise((r) => setTimeout(r, 100));
    expect(lan).toHaveLength(2);
    // The LAN end resets both: the contact point stays up and closes its ports.
    for (const s of lan) s.resetAndDestroy();
    await waitFor(() => h.cp.ports.list().filter((p) => p.state === 'connected').length === 0, 3_000, 'connected ports closed');
    expect(h.cp.ports.list().find((p) => p.id === other.portId)?.state).toBe('open');
  });

  it('answers each request type with an id and port, or a numbered error', async () => {
    await allowLoopback();
    const ch = h.relay.control('acme-hq')!;
    const busy = await echoServer();
    const obligatory = await ch.request({ op: 'open', operator: 'tech', proto: 'tcp', port: busy, importance: 'obligatory' });
    expect(obligatory).toMatchObject({ ok: false, code: Status.PORT_IN_USE });
    const desired = await ch.request({ op: 'open', operator: 'tech', proto: 'tcp', port: busy, importance: 'desired' });
    expect(desired.ok).toBe(true);
    expect(desired.port).toBeGreaterThan(busy);
    expect(await ch.request({ op: 'close', operator: 'tech', portId: 999_999 })).toMatchObject({ ok: false, code: Status.UNKNOWN_PORT });
    expect(await ch.request({ op: 'redirect', operator: 'tech', portId: desired.portId! })).toMatchObject({ ok: false, code: Status.WRONG_STATE });

    // make-server: a LAN host connects to the opened port; the relay gets the accept event and the stream.
    const listening = await ch.request({ op: 'listen', operator: 'tech', portId: desired.portId! });
    expect(listening).toMatchObject({ ok: true, port: desired.port });
    const accepted = new Promise((r) => ch.once('accepted', (...a) => r(a)));
    const lanClient = await dial(desired.port!);
    const [event, stream] = (await accepted) as [{ remoteAddress: string }, Duplex];
    expect(event.remoteAddress).toBe('127.0.0.1');
    const streamError = new Promise((r) => stream.once('error', r));
    stream.write('hello from the relay side');
    const got = await new Promise<string>((r) => lanClient.once('data', (d: Buffer) => r(d.toString())));
    expect(got).toBe('hello from the relay side');
    lanClient.destroy();
    expect(await ch.request({ op: 'close', operator: 'tech', portId: desired.portId! })).toMatchObject({ ok: true });
    expect(await streamError).toMatchObject({ code: 'ECONNRESET' }); // closing a port resets its streams
    await expect(dial(desired.port!)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('keeps half-close: the client finishes sending and still receives the answer', async () => {
    await allowLoopback();
    // Answers only after the client's FIN: proves one direction ended while the other flowed.
    const port = await echoServer({
      onSocket: (s) => {
        let n = 0;
        s.on('data', (d: Buffer) => (n += d.length));
        s.on('end', () => s.end(`got ${n} bytes`));
      },
    });
    const e = await h.relay.expose({ cp: 'acme-hq', proto: 'tcp', host: '127.0.0.1', port, operator: 'tech' });
    closers.push(() => h.relay.unexpose(e.id));
    const c = await dial(e.publicPort);
    const answer = readAll(c);
    c.end(Buffer.alloc(300_000, 1));
    expect(await answer).toBe('got 300000 bytes');
  });

  it('relays RST both ways', async () => {
    await allowLoopback();
    const port = await echoServer({ onSocket: (s) => s.once('data', () => s.resetAndDestroy()) });
    const e = await h.relay.expose({ cp: 'acme-hq', proto: 'tcp', host: '127.0.0.1', port, operator: 'tech' });
    closers.push(() => h.relay.unexpose(e.id));
    const c = await dial(e.publicPort);
    c.write('x');
    await expect(within(readAll(c), 'client sees the LAN reset')).rejects.toMatchObject({ code: 'ECONNRESET' });
    // The first connection's stream gone, so the wait below is for the second one's (not a
    // leftover of the first: the client would then reset before its stream was set up).
    await waitFor(() => h.cp.ports.streamCount === 0);

    let serverSide: Promise<unknown> = Promise.resolve();
    const port2 = await echoServer({
      onSocket: (s) => {
        serverSide = new Promise((resolve) => s.once('error', resolve));
        s.pipe(s);
      },
    });
    const e2 = await h.relay.expose({ cp: 'acme-hq', proto: 'tcp', host: '127.0.0.1', port: port2, operator: 'tech' });
    closers.push(() => h.relay.unexpose(e2.id));
    const c2 = await dial(e2.publicPort);
    c2.write('y');
    // The 'y' back from the LAN server: the stream is set up end to end (on a busy host the
    // stream could be counted at the contact point before the relay had its answer, and a reset
    // then closed the half-made stream instead of resetting a live one).
    await within(new Promise((resolve) => c2.once('data', resolve)), 'the echo through the new stream');
    expect(h.cp.ports.streamCount).toBe(1);
    c2.resetAndDestroy();
    expect(await within(serverSide, 'LAN server sees the client reset')).toMatchObject({ code: 'ECONNRESET' });
  });

  it('100 concurrent streams with one stalled reader: the others finish, memory stays bounded', async () => {
    await allowLoopback();
    // The echo counts what reaches it on the stalled connection (the one whose bytes are 7s).
    let stalledEchoed = 0;
    const port = await echoServer({
      onSocket: (s) => {
        let stalledOne: boolean | undefined;
        s.on('data', (d: Buffer) => {
          stalledOne ??= d[0] === 7;
          if (stalledOne) stalledEchoed += d.length;
        });
        s.pipe(s);
      },
    });
    const e = await h.relay.expose({ cp: 'acme-hq', proto: 'tcp', host: '127.0.0.1', port, operator: 'tech' });
    closers.push(() => h.relay.unexpose(e.id));
    const stalled = await dial(e.publicPort);
    stalled.pause(); // never reads its echo
    let stalledError: Error | undefined;
    stalled.on('error', (err) => (stalledError = err));
    const big = Buffer.alloc(64 * 1024 * 1024, 7);
    const buffersBefore = process.memoryUsage().arrayBuffers;
    const queued = 4 * big.length; // 256 MiB queued, from one 64 MiB buffer
    for (let i = 0; i < 4; i++) stalled.write(big);
    const payload = Buffer.alloc(64 * 1024, 3);
    const results = await Promise.all(
      Array.from({ length: 99 }, async () => {
        const c = await dial(e.publicPort);
        const got = new Promise<number>((resolve, reject) => {
          let n = 0;
          c.on('data', (d: Buffer) => {
            n += d.length;
            if (n === payload.length) {
              c.destroy();
              resolve(n);
            }
          });
          c.on('error', reject);
        });
        c.write(payload);
        return got;
      }),
    );
    expect(results.every((n) => n === payload.length)).toBe(true);
    // Backpressure reached the stalled client: what got through stops growing, far short of
    // what it queued (socket buffers and credit windows along the way hold a few tens of MiB at
    // most, however the kernel tunes them), and the connection is still open.
    let last = -1;
    for (let i = 0; i < 50 && stalledEchoed !== last; i++) {
      last = stalledEchoed;
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(stalledEchoed).toBe(last);
    expect(stalledEchoed).toBeLessThan(queued / 2);
    expect(stalledError).toBeUndefined();
    expect(stalled.destroyed).toBe(false);
    expect(stalled.writableLength).toBeGreaterThan(queued / 2);
    // relay and contact point (this process) hold windows and socket buffers, not the data.
    const grown = process.memoryUsage().arrayBuffers - buffersBefore;
    expect(grown).toBeLessThan(big.length + 24 * 1024 * 1024);
    stalled.destroy();
  });

  it('carries a LAN source intact to a fast reader while a client that does not read holds its source back', async () => {
    // The contact point reads the sockets it dials into one shared, reused buffer (DirectRead):
    // every byte must still arrive, in order, on each connection; a stalled one must pause.
    await allowLoopback();
    const total = 24 * 1024 * 1024;
    const data = randomBytes(total);
    const sources: Socket[] = [];
    const port = await echoServer({
      onSocket: (s) => {
        sources.push(s);
        s.end(data);
      },
    });
    const e = await h.relay.expose({ cp: 'acme-hq', proto: 'tcp', host: '127.0.0.1', port, operator: 'tech' });
    closers.push(() => h.relay.unexpose(e.id));
    const stalled = await dial(e.publicPort);
    stalled.pause();
    const readers = await Promise.all([dial(e.publicPort), dial(e.publicPort)]);
    const digests = await within(
      Promise.all(
        readers.map(
          (c) =>
            new Promise<string>((resolve, reject) => {
              const hash = createHash('sha256');
              let n = 0;
              c.on('data', (d: Buffer) => {
                n += d.length;
                hash.update(d);
              });
              c.once('end', () => resolve(`${n}:${hash.digest('hex')}`));
              c.once('error', reject);
            }),
        ),
      ),
      'two readers to receive 24 MiB each',
      20_000,
    );
    const want = `${total}:${createHash('sha256').update(data).digest('hex')}`;
    expect(digests).toEqual([want, want]);
    await new Promise((r) => setTimeout(r, 200));
    // The stalled client's source is held back: most of its 24 MiB is still in its own buffer.
    expect(sources).toHaveLength(3);
    expect(Math.max(...sources.map((s) => s.writableLength))).toBeGreaterThan(total / 2);
    stalled.destroy();
  });

  it('relays UDP both ways inside the tunnel', async () => {
    await allowLoopback();
    const echo = createSocket('udp4');
    echo.on('message', (m, r) => echo.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
    echo.bind(0, '127.0.0.1');
    await once(echo, 'listening');
    closers.push(() => echo.close());
    const e = await h.relay.expose({ cp: 'acme-hq', proto: 'udp', host: '127.0.0.1', port: echo.address().port, operator: 'tech' });
    closers.push(() => h.relay.unexpose(e.id));
    const client = createSocket('udp4');
    client.bind(0, '127.0.0.1');
    await once(client, 'listening');
    closers.push(() => client.close());
    const replies: string[] = [];
    client.on('message', (m) => replies.push(m.toString()));
    // The first datagram sets up the mapping (UDP may drop it meanwhile); keep sending until answered.
    for (let i = 0; i < 50 && replies.length < 3; i++) {
      client.send(`ping ${i}`, e.publicPort, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(replies.length).toBeGreaterThanOrEqual(3);
    expect(replies[0]).toMatch(/^echo:ping \d+$/);
    expect(h.cp.ports.list()).toMatchObject([{ proto: 'udp', state: 'redirecting', operator: 'tech' }]);
    // In = towards the LAN (the pings), out = from the LAN (the longer echoes), as for TCP.
    await waitFor(() => {
      const [p] = h.cp.ports.list();
      return p !== undefined && p.bytesIn > 0 && p.bytesOut > p.bytesIn;
    }, 3_000, 'UDP byte counters: in = pings towards the LAN, out = longer echoes back');
  });

  it('refuses every unsafe spelling of loopback and the metadata address, even under a wide rule', async () => {
    await h.cp.call('ports:policy', { targets: ['0.0.0.0/0:1-65535', '[::/0]:1-65535'], listen: ['tcp:1-65535'] });
    const ch = h.relay.control('acme-hq')!;
    const spellings = ['127.0.0.1', '2130706433', '0x7f000001', '0x7f.1', '0177.0.0.1', '127.1', '::ffff:127.0.0.1', '[::ffff:7f00:1]', '64:ff9b::7f00:1', '::1', '0.0.0.0', 'localhost', '169.254.169.254', '0xa9fea9fe'];
    for (const host of spellings) {
      const opened = await ch.request({ op: 'open', operator: 'tech', proto: 'tcp', port: 0 });
      const r = await ch.request({ op: 'connect', operator: 'tech', portId: opened.portId!, host, targetPort: 80, streamId: 2 });
      expect({ host, code: r.code }).toEqual({ host, code: Status.UNSAFE_TARGET });
      await ch.request({ op: 'close', operator: 'tech', portId: opened.portId! });
    }
  });

  it('closes every port and resets every stream when the tunnel drops', async () => {
    await allowLoopback();
    const ch = h.relay.control('acme-hq')!;
    const opened = await ch.request({ op: 'open', operator: 'tech', proto: 'tcp', port: 0, importance: 'desired' });
    const listening = await ch.request({ op: 'listen', operator: 'tech', portId: opened.portId! });
    const port = await echoServer();
    const e = await h.relay.expose({ cp: 'acme-hq', proto: 'tcp', host: '127.0.0.1', port, operator: 'tech' });
    const c = await dial(e.publicPort);
    c.write('hi');
    await waitFor(() => h.cp.ports.streamCount === 1);
    const reset = readAll(c).then(() => 'ended', (err: NodeJS.ErrnoException) => err.code);
    await h.relay.stop();
    expect(await reset).toBe('ECONNRESET');
    await waitFor(() => h.cp.ports.list().length === 0, 3_000, 'ports closed');
    await expect(dial(listening.port!)).rejects.toThrow(/ECONNREFUSED/);
  });
});
