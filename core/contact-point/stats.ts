import type { FlowDirection, PeerState, TunnelView } from '../admin/contract.js';
import type { CodeCounts } from '../runtime/code-counts.js';
import type { FlowRecorder } from './flow-recorder.js';
import type { Gateway } from './gateway.js';
import type { PortMediator } from './mediation.js';
import type { PeerPort } from './peer-interface.js';
import type { Registrar } from './registrar.js';

/**
 * The contact point's counters in one snapshot, for /metrics and status views. Nothing here is
 * counted per message: the flow recorder, the gateway's link, the registrar and port mediation
 * already keep what it reads, and it is read only when asked.
 */
export interface ContactPointStatsSnapshot {
  /** bytes and frames: since start, every reconnect included */
  readonly tunnel: Pick<TunnelView, 'state' | 'reconnects' | 'rttMs' | 'bytesIn' | 'bytesOut' | 'framesIn' | 'framesOut'>;
  readonly peers: {
    readonly byState: Readonly<Record<PeerState, number>>;
    /** registered or not, connected to the peer port now */
    readonly online: number;
    /** peer port connections, in their hello or admitted */
    readonly connections: number;
  };
  readonly messages: {
    /** messages with an outcome (delivered, refused, or forwarded without tracking), by where they came from */
    readonly byDirection: Readonly<Record<FlowDirection, number>>;
    readonly delivered: number;
    /** refused, by status name */
    readonly refused: Readonly<Record<string, number>>;
    readonly payloadBytes: number;
  };
  readonly ports: {
    readonly open: number;
    readonly streams: number;
    readonly bytesIn: number;
    readonly bytesOut: number;
    /** refused port requests, connections and datagrams, by status name */
    readonly refused: Readonly<Record<string, number>>;
  };
}

/** The parts of a contact point the snapshot reads. */
export interface ContactPointParts {
  readonly gateway: Gateway;
  readonly registrar: Registrar;
  readonly flow: FlowRecorder;
  /** every port mediator: the relay tunnels' and, in direct mode, its own (one contact point's ports) */
  readonly ports: readonly PortMediator[];
  readonly peerPort: PeerPort;
  /**
   * Port mediation refusals the flow recorder also counted (the admin's flow view shows them
   * as inbound refusals); taken out of the message counts.
   */
  readonly portRefusalsInFlow: CodeCounts;
}

export function contactPointStats(p: ContactPointParts): ContactPointStatsSnapshot {
  const t = p.gateway.status();
  const flow = p.flow.totals();
  const refused: Record<string, number> = { ...flow.refusals };
  for (const [name, n] of Object.entries(p.portRefusalsInFlow.byName())) {
    const left = (refused[name] ?? 0) - n;
    if (left > 0) refused[name] = left;
    else delete refused[name];
  }
  const byDirection = { ...flow.byDirection, in: flow.byDirection.in - p.portRefusalsInFlow.total };
  const peers = p.registrar.stateCounts();
  const bytes = { bytesIn: 0, bytesOut: 0 };
  const portRefusals: Record<string, number> = {};
  let open = 0;
  let streams = 0;
  for (const m of p.ports) {
    const b = m.byteTotals();
    bytes.bytesIn += b.bytesIn;
    bytes.bytesOut += b.bytesOut;
    open += m.size;
    streams += m.streamCount;
    for (const [name, n] of Object.entries(m.refusedByCode.byName())) portRefusals[name] = (portRefusals[name] ?? 0) + n;
  }
  return {
    tunnel: { state: t.state, reconnects: t.reconnects, rttMs: t.rttMs, bytesIn: t.bytesIn, bytesOut: t.bytesOut, framesIn: t.framesIn, framesOut: t.framesOut },
    peers: { byState: peers.byState, online: peers.online, connections: p.peerPort.connections },
    messages: { byDirection, delivered: flow.delivered, refused, payloadBytes: flow.bytes },
    ports: { open, streams, bytesIn: bytes.bytesIn, bytesOut: bytes.bytesOut, refused: portRefusals },
  };
}
