import type { TunnelState } from '../admin/contract.js';
import { MetricSet } from '../runtime/metrics.js';
import type { ContactPoint } from './contact-point.js';
import type { ContactPointStatsSnapshot } from './stats.js';

const TUNNEL_STATES: readonly TunnelState[] = ['connecting', 'connected', 'reconnecting', 'offline'];

/**
 * The contact point's Prometheus series (names below, each `contact_point_`-prefixed), read at
 * scrape time from one ContactPoint.statsSnapshot().
 */
export function contactPointMetrics(cp: ContactPoint): MetricSet {
  // Set by refresh(), which every scrape runs before it reads a series.
  let s!: ContactPointStatsSnapshot;
  const m = new MetricSet(() => (s = cp.statsSnapshot()));

  m.gauge('tunnel_up', '1 while the tunnel to the relay is connected, else 0.', [], (set) => set({}, s.tunnel.state === 'connected' ? 1 : 0));
  m.gauge('tunnel_state', 'The tunnel state: 1 for the current one.', ['state'], (set) => {
    for (const state of TUNNEL_STATES) set({ state }, s.tunnel.state === state ? 1 : 0);
  });
  m.counter('tunnel_reconnects_total', 'Tunnel reconnects since start.', [], (set) => set({}, s.tunnel.reconnects));
  m.gauge('tunnel_rtt_seconds', 'Round trip of the last keepalive ping on the tunnel (absent until one was answered).', [], (set) => {
    if (s.tunnel.rttMs !== undefined && s.tunnel.state === 'connected') set({}, s.tunnel.rttMs / 1000);
  });
  m.counter('tunnel_bytes_received_total', 'Frame bytes received over the tunnel, every reconnect included.', [], (set) => set({}, s.tunnel.bytesIn));
  m.counter('tunnel_bytes_sent_total', 'Frame bytes sent over the tunnel, every reconnect included.', [], (set) => set({}, s.tunnel.bytesOut));
  m.gauge('peers', 'Known peers by registration state.', ['state'], (set) => {
    for (const [state, n] of Object.entries(s.peers.byState)) set({ state }, n);
  });
  m.gauge('peers_online', 'Known peers connected to the peer port now.', [], (set) => set({}, s.peers.online));
  m.gauge('peer_connections', 'Peer port connections (in their hello or admitted).', [], (set) => set({}, s.peers.connections));
  m.counter('messages_total', 'Messages with an outcome, by where they came from: in (from the relay), out (from a LAN peer to the relay), local (LAN to LAN).', ['direction'], (set) => {
    for (const [direction, n] of Object.entries(s.messages.byDirection)) set({ direction }, n);
  });
  m.counter('messages_delivered_total', 'Messages acknowledged OK by their receiver.', [], (set) => set({}, s.messages.delivered));
  m.counter('messages_refused_total', 'Messages refused, by status code name (here or, for outbound ones, by the relay or the far side).', ['code'], (set) => {
    for (const [code, n] of Object.entries(s.messages.refused)) set({ code }, n);
  });
  m.counter('message_payload_bytes_total', 'Payload bytes of messages with an outcome.', [], (set) => set({}, s.messages.payloadBytes));
  m.gauge('ports_open', 'Ports port mediation holds open on the LAN.', [], (set) => set({}, s.ports.open));
  m.gauge('streams', 'Streams open through the tunnel (mediated TCP connections).', [], (set) => set({}, s.ports.streams));
  m.counter('port_bytes_total', 'Bytes through mediated ports: in = from the relay towards the LAN.', ['direction'], (set) => {
    set({ direction: 'in' }, s.ports.bytesIn);
    set({ direction: 'out' }, s.ports.bytesOut);
  });
  m.counter('port_refusals_total', 'Port mediation refusals (requests, connections, datagrams), by status code name.', ['code'], (set) => {
    for (const [code, n] of Object.entries(s.ports.refused)) set({ code }, n);
  });
  return m;
}
