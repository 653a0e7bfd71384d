import { describe, expect, it } from 'vitest';
import type { TunnelView } from '../../../core/admin/contract.js';
import { keepaliveText } from '../../../core/admin/tunnel-slots.js';
import { proxyText, reconnectPrompt, tunnelSentence } from './tunnel-view';

const base: TunnelView = {
  state: 'reconnecting', stateSince: 0, everConnected: false, relayUrl: 'ws://relay', session: undefined, connectedAt: undefined, lastError: undefined, lastErrorAt: undefined, lastErrorKind: undefined, nextRetryAt: undefined,
  idInUse: undefined, reconnects: 0, rttMs: undefined, bytesIn: 0, bytesOut: 0, framesIn: 0, framesOut: 0, peersServed: 0, keepaliveMs: 10_000, proxy: undefined,
};

describe('the Tunnel view sentence', () => {
  it('says that another instance holds the id, with the relay\'s words naming it, and when this one tries again', () => {
    const held = 'contact point id "acme-hq" is held by another instance at 192.0.2.7:51234 (host "office-pc") since 2026-12-01T09:12:03.512Z';
    const t: TunnelView = { ...base, lastError: `ID_IN_USE: ${held}`, idInUse: held, nextRetryAt: 41_000 };
    expect(tunnelSentence(t, 1_000)).toBe(
      `Another running contact point holds this id at the relay: ${held}. This one stays off while that one is alive and tries again in 40 s. ` +
        'Stop one of the two, or give each its own credential.',
    );
  });

  it('says a plain loss as before', () => {
    expect(tunnelSentence({ ...base, everConnected: true, lastError: 'ECONNREFUSED', lastErrorKind: 'network', nextRetryAt: 3_000 }, 1_000)).toBe('Tunnel lost: ECONNREFUSED. Next try in 2 s.');
    expect(tunnelSentence({ ...base, state: 'connected', connectedAt: 1_000 }, 61_000)).toBe('Connected to the relay for 1 min 0 s.');
  });

  it('says when waiting cannot help (a certificate not trusted, a wrong URL, a refusal), and that it never came up', () => {
    const t: TunnelView = { ...base, lastError: 'self-signed certificate: … trust it with --ca FILE', lastErrorKind: 'trust', nextRetryAt: 31_000 };
    expect(tunnelSentence(t, 1_000)).toBe(
      'Tunnel not up: self-signed certificate: … trust it with --ca FILE. Waiting will not fix this; it keeps trying slowly. Next try in 30 s.',
    );
  });

  it('says there is no relay when the contact point runs in direct mode only', () => {
    expect(tunnelSentence({ ...base, state: 'offline', relayUrl: '' }, 1_000)).toBe('No relay: this contact point runs in direct mode only (external peers connect to it directly).');
  });
});

describe('the Tunnel view details', () => {
  it('says which keepalive the relay took up and how soon a dead tunnel is noticed, bounds rounded up', () => {
    expect(keepaliveText(base)).toBe('ping every 10 s');
    expect(keepaliveText({ ...base, keepalive: { mode: 'heartbeat', noticeIdleMs: 29_500, noticeBusyMs: 4_500 } })).toBe(
      'heartbeat from the relay · a dead tunnel is noticed within 30 s idle, 5 s with messages waiting',
    );
    expect(keepaliveText({ ...base, keepalive: { mode: 'fixed', noticeIdleMs: 25_000, noticeBusyMs: 25_000 } })).toBe('ping every 10 s · a dead tunnel is noticed within 25 s');
  });

  it('says "none" for no HTTP proxy (not "direct", which is direct mode), else the proxy', () => {
    expect(proxyText(base)).toBe('none');
    expect(proxyText({ ...base, proxy: 'http://proxy.lan:3128' })).toBe('http://proxy.lan:3128');
  });

  it('asks before a reconnect as it will happen: one tunnel drops for a moment, two go one at a time', () => {
    const up: TunnelView = { ...base, state: 'connected', peersServed: 1 };
    expect(reconnectPrompt(up)).toBe('The tunnel is up. Reconnecting drops it for a moment: messages in flight are retried by their senders, and open port streams (1 peer served) are reset.');
    const slot = { relayUrl: 'ws://relay', node: undefined, note: undefined };
    const two: TunnelView = { ...up, peersServed: 3, tunnels: [{ ...slot, slot: 0, state: 'connected' }, { ...slot, slot: 1, state: 'connected' }] };
    expect(reconnectPrompt(two)).toBe(
      'Both tunnels are up. Reconnecting drops them one at a time, the second once the first is back, so the office stays reachable; on each, messages in flight are retried by their senders, and open port streams (3 peers served) are reset.',
    );
    // One of the two down: the reconnect drops the one that is up, as with one tunnel.
    expect(reconnectPrompt({ ...two, tunnels: [{ ...slot, slot: 0, state: 'connected' }, { ...slot, slot: 1, state: 'reconnecting' }] })).toMatch(/^The tunnel is up\./);
  });
});
