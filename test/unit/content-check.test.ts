import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { senderMatcher } from '../../core/contact-point/access-rules.js';
import { ContentGate, jsonDepthOver, MAX_CHECK_QUEUE_PER_PEER, type CheckRequest, type GateOutcome } from '../../core/contact-point/content-check.js';
import { silentLogger } from '../../core/runtime/logger.js';
import { waitFor } from '../helpers.js';

const CHECK = fileURLToPath(new URL('../fixtures/content-check.mjs', import.meta.url));
const req = (id: string, to = 'printer@acme-hq'): CheckRequest => ({ id, from: 'alice@relay', to, size: 1, dir: 'in', sealed: false });

describe('sender patterns', () => {
  it('match whole addresses, * within a part, never across the @', () => {
    const m = (p: string, a: string): boolean => senderMatcher(p)(a);
    expect(m('*', 'anyone@anywhere')).toBe(true);
    expect(m('tech@relay', 'tech@relay')).toBe(true);
    expect(m('tech@relay', 'tech2@relay')).toBe(false);
    expect(m('*@relay', 'alice@relay')).toBe(true);
    expect(m('*@relay', 'alice@relay2')).toBe(false);
    expect(m('*@branch', 'clerk@branch')).toBe(true);
    expect(m('scan*@acme-hq', 'scanner@acme-hq')).toBe(true);
    expect(m('a.b@relay', 'aXb@relay')).toBe(false); // a dot is a dot
    expect(() => senderMatcher('no-at')).toThrow(/not a sender pattern/);
    expect(() => senderMatcher('a@b@c')).toThrow(/not a sender pattern/);
  });
});

describe('the built-in JSON depth check', () => {
  it('counts [ and { outside strings, escapes included', () => {
    const over = (text: string, depth: number): boolean => jsonDepthOver(Buffer.from(text), depth);
    expect(over('[[1]]', 2)).toBe(false);
    expect(over('[[[1]]]', 2)).toBe(true);
    expect(over('{"a":"[[[[[[[["}', 1)).toBe(false);
    expect(over('{"a":"\\"[[[["}', 1)).toBe(false); // an escaped quote does not end the string
    expect(over('{"a":"\\\\"}[[', 1)).toBe(true); // an escaped backslash does
    expect(over('not json at all', 1)).toBe(false);
    expect(over('[]'.repeat(1000), 1)).toBe(false); // siblings, not depth
  });
});

describe('the content gate', () => {
  let gate: ContentGate | undefined;
  afterEach(async () => {
    await gate?.close();
  });

  it('hands one peer\'s messages on in arrival order and refuses past its queue at once (busy), while another peer\'s pass', async () => {
    gate = new ContentGate(silentLogger);
    gate.configure({ kind: 'command', argv: [process.execPath, CHECK], timeoutMs: 5_000, failure: 'closed', concurrency: 4 });
    const outcomes: [string, GateOutcome][] = [];
    const submit = (peer: string, id: string, text: string): void => gate!.submit(peer, req(id, `${peer}@acme-hq`), Buffer.from(text), (o) => void outcomes.push([id, o]));

    // printer: its checks hang; the queue holds MAX_CHECK_QUEUE_PER_PEER, the next is refused at once.
    for (let i = 0; i < MAX_CHECK_QUEUE_PER_PEER + 2; i++) submit('printer', `p${i}`, 'slow');
    expect(outcomes.map(([id, o]) => [id, o.pass, !o.pass && o.busy])).toEqual([
      [`p${MAX_CHECK_QUEUE_PER_PEER}`, false, true],
      [`p${MAX_CHECK_QUEUE_PER_PEER + 1}`, false, true],
    ]);
    outcomes.length = 0;

    // scanner: answered in order, though the check may answer out of order.
    submit('scanner', 's1', 'ok');
    submit('scanner', 's2', 'bad');
    submit('scanner', 's3', 'ok');
    await waitFor(() => outcomes.length === 3, 5_000, 'scanner outcomes');
    expect(outcomes.map(([id, o]) => [id, o.pass, o.pass ? '' : o.reason])).toEqual([
      ['s1', true, ''],
      ['s2', false, 'no bad words here (alice@relay to scanner@acme-hq)'],
      ['s3', true, ''],
    ]);
    expect(gate.pending).toBe(MAX_CHECK_QUEUE_PER_PEER);
  });
});
