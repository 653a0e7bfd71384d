import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Operator } from '../../core/peer/operator.js';
import { MAX_PORTS_PER_OPERATOR } from '../../core/contact-point/mediation.js';
import { MAX_EXPOSURES_PER_OPERATOR } from '../../core/relay/operators.js';
import { Status } from '../../core/protocol/status.js';
import { FAST, logger, startHarness, waitFor, type Harness } from '../helpers.js';

/**
 * What an authenticated operator (an external credential with the `mediate` right) can do with
 * requests sent together, or by leaving mid-request: each case was found by a review of the
 * control channel, reproduced against the real relay and contact point, and ended past a limit
 * or with something left open at the office or the relay (issue 17's session of 4 Dec 2026).
 */

let h: Harness | undefined;
const operators: Operator[] = [];
afterEach(async () => {
  for (const o of operators.splice(0)) await o.stop();
  await h?.close();
  h = undefined;
});

async function setup(): Promise<{ hh: Harness; op: Operator; secret: string }> {
  const hh = (h = await startHarness());
  await hh.cp.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: ['tcp:1-65535', 'udp:1-65535'] });
  const secret = await hh.credentials.add('external', 'tech', ['send', 'mediate']);
  return { hh, op: await operator(hh, secret), secret };
}

async function operator(hh: Harness, secret: string): Promise<Operator> {
  const op = new Operator({ url: hh.relay.url, name: 'tech', secret, logger, timing: FAST });
  operators.push(op);
  op.start();
  await op.ready();
  return op;
}

const portsOf = (hh: Harness, operatorName: string): number => hh.cp.ports.list().filter((p) => p.operator === operatorName).length;

describe('port requests sent together, or left behind', () => {
  it('opens sent at once stop at the operator\'s 64 ports (all 300 were bound before)', async () => {
    const { hh, op } = await setup();
    const answers = await Promise.all(Array.from({ length: 300 }, () => op.request('acme-hq', { op: 'open', proto: 'udp' })));
    expect(answers.filter((a) => a.ok)).toHaveLength(MAX_PORTS_PER_OPERATOR);
    expect(answers.filter((a) => !a.ok).every((a) => a.code === Status.PORT_LIMIT)).toBe(true);
    expect(portsOf(hh, 'tech')).toBe(MAX_PORTS_PER_OPERATOR);
  });

  it('a listen and a close of one port sent together leave no listener behind at the office', async () => {
    const { hh, op } = await setup();
    const bound: number[] = [];
    for (let i = 0; i < 5; i++) {
      const o = await op.open('acme-hq', { proto: 'tcp', port: 0 });
      const [l] = await Promise.all([op.request('acme-hq', { op: 'listen', portId: o.portId }), op.request('acme-hq', { op: 'close', portId: o.portId })]);
      if (l.ok && l.port) bound.push(l.port);
    }
    expect(hh.cp.ports.list()).toEqual([]);
    for (const port of bound) {
      const outcome = await new Promise<string>((resolve) => {
        const s = connect(port, '127.0.0.1');
        s.on('connect', () => {
          s.destroy();
          resolve('listening');
        });
        s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      });
      expect(outcome).toBe('ECONNREFUSED');
    }
  });

  // The window is the office's answer crossing the operator's close at the relay: the review's
  // script (built code, its own harness) left 40 of 40 open twice; here it is timing, so this
  // test guards the outcome more than it reproduces the race every run.
  it('ports whose open was answered after the operator left are closed at the office', async () => {
    const { hh, op, secret } = await setup();
    for (let i = 0; i < 40; i++) void op.request('acme-hq', { op: 'open', proto: 'udp' });
    await new Promise((r) => setImmediate(r));
    // The connection drops while the office is answering (the requests are on their way).
    op.client.currentLink!.terminate();
    await waitFor(() => portsOf(hh, 'tech') === 0, 5_000, 'no port of tech left at the office');
    // The operator's 64 are all there for its next session.
    const again = await operator(hh, secret);
    const answers = await Promise.all(Array.from({ length: MAX_PORTS_PER_OPERATOR }, () => again.request('acme-hq', { op: 'open', proto: 'udp' })));
    expect(answers.every((a) => a.ok)).toBe(true);
  });

  it('exposures are bounded per operator session, and a UDP one needs an IP address (a name crashed the relay at its first datagram)', async () => {
    const { hh, op } = await setup();
    const named = await op.request('acme-hq', { op: 'expose', proto: 'udp', host: `${'a'.repeat(70)}.example`, targetPort: 9 });
    expect(named).toMatchObject({ ok: false, code: Status.BAD_REQUEST });
    const answers = await Promise.all(Array.from({ length: MAX_EXPOSURES_PER_OPERATOR + 36 }, () => op.request('acme-hq', { op: 'expose', proto: 'udp', host: '127.0.0.1', targetPort: 9 })));
    expect(answers.filter((a) => a.ok)).toHaveLength(MAX_EXPOSURES_PER_OPERATOR);
    expect(answers.filter((a) => !a.ok).every((a) => a.code === Status.PORT_LIMIT)).toBe(true);
    expect(hh.relay.exposures()).toHaveLength(MAX_EXPOSURES_PER_OPERATOR);
  });
});
