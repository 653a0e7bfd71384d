import type { Link } from '../protocol/link.js';
import { CodeCounts } from '../runtime/code-counts.js';
import type { Exposer } from './expose.js';
import type { SessionRegistry } from './sessions.js';
import type { RelayUdpService } from './udp-service.js';

/**
 * The relay's counters, in one place for its status, its /metrics and a future cluster view.
 * Message paths only bump plain numbers here (a few nanoseconds); everything that can be read
 * from the sessions, links and exposures the relay already holds is read when asked
 * (snapshot()), never counted per message.
 */
export class RelayStats {
  /** MSG frames passed on to their receiver's link */
  routed = 0;
  /** MSG frames passed on to another relay node of a cluster (that node counts them routed, or refused) */
  forwarded = 0;
  /** MSG frames refused with an ACK, by status code */
  readonly refused = new CodeCounts();
  /** ACKs dropped: a `to` that is not an address */
  droppedAcks = 0;
  /** connections closed by the relay before or during their hello, by status code (BAD_CREDENTIALS: credential failures) */
  readonly helloRefused = new CodeCounts();
  /** sessions admitted since start */
  tunnelsOpened = 0;
  externalsOpened = 0;
  /** frame bytes of links that have closed (live links are summed from their Link.stats when read) */
  private closedBytesIn = 0;
  private closedBytesOut = 0;

  /** A link closed: its byte counts move into the totals. */
  retire(link: Link): void {
    this.closedBytesIn += link.stats.bytesIn;
    this.closedBytesOut += link.stats.bytesOut;
  }

  /** Counters and gauges now, read from the relay's own tables (`links`: every open connection). */
  snapshot(view: RelayView): RelayStatsSnapshot {
    let bytesIn = this.closedBytesIn;
    let bytesOut = this.closedBytesOut;
    for (const link of view.links) {
      bytesIn += link.stats.bytesIn;
      bytesOut += link.stats.bytesOut;
    }
    let streams = 0;
    for (const t of view.sessions.allTunnels()) streams += t.control.mux.size;
    let operators = 0;
    let operatorPorts = 0;
    for (const e of view.sessions.all()) {
      if (e.kind !== 'external' || !e.operator) continue;
      operators++;
      operatorPorts += e.operator.portCount;
    }
    let exposures = 0;
    let exposureConnections = 0;
    for (const e of view.exposer.list()) {
      exposures++;
      exposureConnections += e.active;
    }
    const tunnels = view.sessions.tunnels.size;
    const externals = view.sessions.size.externals;
    return {
      routed: this.routed,
      forwarded: this.forwarded,
      refused: this.refused.byName(),
      droppedAcks: this.droppedAcks,
      helloRefused: this.helloRefused.byName(),
      tunnelsOpened: this.tunnelsOpened,
      externalsOpened: this.externalsOpened,
      bytesIn,
      bytesOut,
      connections: { contactPoint: tunnels, external: externals, pending: Math.max(0, view.links.size - tunnels - externals) },
      tunnels,
      externals,
      operators,
      officesKnown: view.officesKnown(),
      streams,
      operatorPorts,
      exposures,
      exposureConnections,
      udp: view.udp ? { ...view.udp.stats } : undefined,
    };
  }
}

/** What snapshot() reads: the relay's sessions, links, exposures, UDP service and credentials. */
export interface RelayView {
  readonly sessions: SessionRegistry;
  readonly links: ReadonlySet<Link>;
  readonly exposer: Exposer;
  readonly udp: RelayUdpService | undefined;
  /** contact point credentials the relay holds (offices that may connect) */
  officesKnown(): number;
}

export interface RelayStatsSnapshot {
  readonly routed: number;
  readonly forwarded: number;
  /** by status name */
  readonly refused: Readonly<Record<string, number>>;
  readonly droppedAcks: number;
  /** by status name */
  readonly helloRefused: Readonly<Record<string, number>>;
  readonly tunnelsOpened: number;
  readonly externalsOpened: number;
  /** frame bytes received and sent on every link since start */
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** open connections by role; `pending`: not admitted yet (in their hello, or waiting for a takeover probe) */
  readonly connections: { readonly contactPoint: number; readonly external: number; readonly pending: number };
  readonly tunnels: number;
  readonly externals: number;
  /** external sessions driving port mediation */
  readonly operators: number;
  readonly officesKnown: number;
  /** streams through the tunnels (exposure connections and operators' connects) */
  readonly streams: number;
  /** ports operators have open at contact points */
  readonly operatorPorts: number;
  readonly exposures: number;
  /** TCP connections open through exposures */
  readonly exposureConnections: number;
  readonly udp: { readonly datagramsIn: number; readonly datagramsOut: number; readonly rejected: number; readonly replayed: number } | undefined;
}
