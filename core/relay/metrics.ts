import { MetricSet } from '../runtime/metrics.js';
import type { Relay } from './relay.js';
import type { TunnelSession } from './sessions.js';
import type { RelayStatsSnapshot } from './stats.js';

/** Offices exported with per-office series (`--metrics-per-office`) unless told otherwise. */
export const METRICS_MAX_OFFICES = 1_000;
/** Largest --metrics-max-offices: each office is 6 series, so a scrape of 10,000 is 60,000 lines. */
export const METRICS_MAX_OFFICES_LIMIT = 10_000;

export interface RelayMetricsOptions {
  /** per-office series (`office` label): off by default, they cost a scrape */
  readonly perOffice?: boolean;
  /**
   * At most this many offices get per-office series (default METRICS_MAX_OFFICES): the ones
   * connected longest, so the exported set stays stable between scrapes. The rest are counted
   * in `contact_point_relay_offices_not_exported`.
   */
  readonly maxOffices?: number;
}

/**
 * The relay's Prometheus series (names below, each `contact_point_relay_`-prefixed). Everything
 * is read at scrape time from one Relay.statsSnapshot() and, for per-office series, from the
 * live tunnels.
 */
export function relayMetrics(relay: Relay, opts: RelayMetricsOptions = {}): MetricSet {
  const maxOffices = opts.maxOffices ?? METRICS_MAX_OFFICES;
  if (!Number.isInteger(maxOffices) || maxOffices < 1 || maxOffices > METRICS_MAX_OFFICES_LIMIT) {
    throw new RangeError(`maxOffices ${maxOffices}: expected a whole number from 1 to ${METRICS_MAX_OFFICES_LIMIT}`);
  }
  // Set by refresh(), which every scrape runs before it reads a series.
  let s!: RelayStatsSnapshot;
  const m = new MetricSet(() => (s = relay.statsSnapshot()));
  const r = 'relay_';

  m.gauge(`${r}connections`, 'Open WebSocket connections by role (pending: not admitted yet).', ['role'], (set) => {
    set({ role: 'contact-point' }, s.connections.contactPoint);
    set({ role: 'external' }, s.connections.external);
    set({ role: 'pending' }, s.connections.pending);
  });
  m.gauge(`${r}tunnels`, 'Contact point tunnels up now (one per office).', [], (set) => set({}, s.tunnels));
  m.counter(`${r}tunnels_opened_total`, 'Tunnels admitted since start (reconnects included).', [], (set) => set({}, s.tunnelsOpened));
  m.gauge(`${r}offices_known`, 'Contact point credentials the relay holds.', [], (set) => set({}, s.officesKnown));
  m.gauge(`${r}external_sessions`, 'External peers connected now.', [], (set) => set({}, s.externals));
  m.counter(`${r}external_sessions_opened_total`, 'External sessions admitted since start.', [], (set) => set({}, s.externalsOpened));
  m.gauge(`${r}operator_sessions`, 'External sessions driving port mediation now.', [], (set) => set({}, s.operators));
  m.counter(`${r}messages_routed_total`, 'Messages passed on to their receiver.', [], (set) => set({}, s.routed));
  m.counter(`${r}messages_forwarded_total`, 'Messages passed on to another relay node of the cluster (routed or refused there).', [], (set) => set({}, s.forwarded));
  m.counter(`${r}messages_refused_total`, 'Messages refused with an ACK, by status code name.', ['code'], (set) => {
    for (const [code, n] of Object.entries(s.refused)) set({ code }, n);
  });
  m.counter(`${r}acks_dropped_total`, 'ACKs dropped because their `to` is not an address.', [], (set) => set({}, s.droppedAcks));
  m.counter(`${r}hello_refusals_total`, 'Connections closed before admission, by status code name (BAD_CREDENTIALS: credential failures).', ['code'], (set) => {
    for (const [code, n] of Object.entries(s.helloRefused)) set({ code }, n);
  });
  m.counter(`${r}bytes_received_total`, 'Frame bytes received on every connection.', [], (set) => set({}, s.bytesIn));
  m.counter(`${r}bytes_sent_total`, 'Frame bytes sent on every connection.', [], (set) => set({}, s.bytesOut));
  m.gauge(`${r}streams`, 'Streams open through the tunnels (exposure connections, operator connects).', [], (set) => set({}, s.streams));
  m.gauge(`${r}operator_ports`, 'Ports operators have open at contact points.', [], (set) => set({}, s.operatorPorts));
  m.gauge(`${r}exposures`, 'Public ports the relay listens on for exposures.', [], (set) => set({}, s.exposures));
  m.gauge(`${r}exposure_connections`, 'TCP connections open through exposures.', [], (set) => set({}, s.exposureConnections));
  m.counter(`${r}udp_datagrams_total`, 'Datagrams on the UDP service port (contact points\' UDP channels), by direction.', ['direction'], (set) => {
    if (!s.udp) return;
    set({ direction: 'in' }, s.udp.datagramsIn);
    set({ direction: 'out' }, s.udp.datagramsOut);
  });
  m.counter(`${r}udp_packets_rejected_total`, 'Packets on the UDP service port that failed authentication or decoding.', [], (set) => {
    if (s.udp) set({}, s.udp.rejected);
  });
  m.counter(`${r}udp_packets_replayed_total`, 'Packets on the UDP service port that opened but repeated a sequence number (replays, dropped).', [], (set) => {
    if (s.udp) set({}, s.udp.replayed);
  });

  if (opts.perOffice) officeSeries(m, relay, maxOffices);
  return m;
}

/** Per-office series: six per connected office, for at most `max` offices (the longest connected). */
function officeSeries(m: MetricSet, relay: Relay, max: number): void {
  const each =
    (read: (t: TunnelSession) => number) =>
    (set: (labels: { office?: string }, v: number) => void): void => {
      let n = 0;
      for (const t of relay.sessions.tunnels.values()) {
        if (n++ >= max) return;
        set({ office: t.id }, read(t));
      }
    };
  const o = 'relay_office_';
  m.gauge(`${o}connected_seconds`, "Seconds since this office's tunnel connected.", ['office'], each((t) => (Date.now() - t.since) / 1000));
  m.gauge(`${o}peers`, 'Peers this office announced.', ['office'], each((t) => t.peers.size));
  m.gauge(`${o}streams`, "Streams open through this office's tunnel.", ['office'], each((t) => t.control.mux.size));
  m.counter(`${o}bytes_received_total`, 'Frame bytes received from this office (this tunnel session: restarts at 0 on a reconnect).', ['office'], each((t) => t.link.stats.bytesIn));
  m.counter(`${o}bytes_sent_total`, 'Frame bytes sent to this office (this tunnel session).', ['office'], each((t) => t.link.stats.bytesOut));
  m.counter(`${o}frames_received_total`, 'Frames received from this office (this tunnel session).', ['office'], each((t) => t.link.stats.framesIn));
  m.gauge('relay_offices_not_exported', `Connected offices left out of the per-office series (over the cap of ${max}).`, [], (set) => set({}, Math.max(0, relay.sessions.tunnels.size - max)));
}
