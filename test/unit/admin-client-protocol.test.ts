import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ADMIN_CALL_TIMEOUT_MS, AdminClientProtocol, readServerMessage } from '../../core/admin/client-protocol.js';
import { AdminError, type PeerView } from '../../core/admin/contract.js';

// The client side of the admin ws protocol that the Node client and the GUI's client share.

let sent: { id: number; method: string; params: unknown }[];
let p: AdminClientProtocol;
const send = (text: string): void => void sent.push(JSON.parse(text) as (typeof sent)[number]);

beforeEach(() => {
  vi.useFakeTimers();
  sent = [];
  p = new AdminClientProtocol({ makeError: (code, message) => new AdminError(code, message) });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('admin client protocol', () => {
  it('numbers calls and settles each by its id, in any order', async () => {
    const a = p.call('peers:approve', { name: 'printer' }, send);
    const b = p.call('peers:revoke', { name: 'scanner' }, send);
    expect(sent).toEqual([
      { type: 'call', id: 1, method: 'peers:approve', params: { name: 'printer' } },
      { type: 'call', id: 2, method: 'peers:revoke', params: { name: 'scanner' } },
    ]);
    expect(p.pending).toBe(2);
    p.receive(JSON.stringify({ type: 'result', id: 2, ok: false, error: { code: 'NOT_FOUND', message: 'no peer scanner' } }));
    p.receive(JSON.stringify({ type: 'result', id: 1, ok: true, value: { name: 'printer' } }));
    await expect(a).resolves.toEqual({ name: 'printer' });
    await expect(b).rejects.toEqual(new AdminError('NOT_FOUND', 'no peer scanner'));
    expect(p.pending).toBe(0);
  });

  it(`fails a call with no answer within ${ADMIN_CALL_TIMEOUT_MS / 1000} s, and ignores its late result`, async () => {
    const call = p.call('snapshot:get', {}, send);
    const failed = expect(call).rejects.toMatchObject({ code: 'UNAVAILABLE', message: 'snapshot:get: no answer within 15 s' });
    vi.advanceTimersByTime(ADMIN_CALL_TIMEOUT_MS - 1);
    expect(p.pending).toBe(1);
    vi.advanceTimersByTime(1);
    await failed;
    expect(p.pending).toBe(0);
    expect(p.receive(JSON.stringify({ type: 'result', id: 1, ok: true, value: {} })).type).toBe('result');
  });

  it('takes a shorter call timeout, and refuses a nonsense one', async () => {
    const quick = new AdminClientProtocol({ makeError: (code, message) => new AdminError(code, message), callTimeoutMs: 100 });
    const call = quick.call('tunnel:reconnect', {}, send);
    const failed = expect(call).rejects.toMatchObject({ code: 'UNAVAILABLE', message: 'tunnel:reconnect: no answer within 0.1 s' });
    vi.advanceTimersByTime(100);
    await failed;
    expect(() => new AdminClientProtocol({ makeError: (c, m) => new AdminError(c, m), callTimeoutMs: 0 })).toThrow(RangeError);
  });

  it('fails a call it cannot send at once, with no timer left behind', async () => {
    await expect(
      p.call('snapshot:get', {}, () => {
        throw new Error('socket is closing');
      }),
    ).rejects.toMatchObject({ code: 'UNAVAILABLE', message: 'snapshot:get: cannot send: socket is closing' });
    expect(p.pending).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('fails every waiting call when the connection goes', async () => {
    const calls = [p.call('snapshot:get', {}, send), p.call('tunnel:reconnect', {}, send)];
    p.failAll('UNAVAILABLE', 'admin connection closed (1006)');
    for (const c of calls) await expect(c).rejects.toMatchObject({ code: 'UNAVAILABLE', message: 'admin connection closed (1006)' });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('hands events to their listeners until they unsubscribe', () => {
    const seen: string[] = [];
    const off = p.subscribe('peer:changed', (v: PeerView) => seen.push(v.name));
    p.subscribe('peer:removed', (v) => seen.push(`-${v.name}`));
    p.receive(JSON.stringify({ type: 'event', name: 'peer:changed', data: { name: 'printer' } }));
    p.receive(JSON.stringify({ type: 'event', name: 'peer:removed', data: { name: 'scanner' } }));
    off();
    p.receive(JSON.stringify({ type: 'event', name: 'peer:changed', data: { name: 'again' } }));
    expect(seen).toEqual(['printer', '-scanner']);
  });

  it('reads what is not a message of the protocol as malformed, and never throws on it', () => {
    for (const [text, problem] of [
      ['{not json', 'not JSON'],
      ['', 'not JSON'],
      ['null', 'not a JSON object'],
      ['42', 'not a JSON object'],
      ['[1]', 'not a JSON object'],
      ['{}', 'no message type'],
      ['{"type":7}', 'no message type'],
      ['{"type":"ready"}', 'ready without a snapshot'],
      ['{"type":"result","id":"1","ok":true}', 'result without a numeric id and ok flag'],
      ['{"type":"result","id":1,"ok":false}', 'failed result without an error code and message'],
      ['{"type":"event","data":{}}', 'event without a name'],
    ] as const) {
      expect(p.receive(text), text).toEqual({ type: 'malformed', problem });
    }
    expect(readServerMessage('{"type":"hint","text":"from a newer endpoint"}')).toEqual({ type: 'other' });
    expect(readServerMessage('{"type":"ready","snapshot":{}}')).toEqual({ type: 'ready', snapshot: {} });
  });
});
