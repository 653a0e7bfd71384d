import type { ClusterView, EnvView, RelayStatusView, TrafficView } from '../admin/relay-contract.js';
import { offersMediation, type HelloBody } from '../protocol/frames.js';
import type { LinkStats } from '../protocol/link.js';
import { VERSION } from '../version.js';
import type { ExposureView } from './expose.js';
import type { RefusalLog } from './refusals.js';
import type { SessionRegistry } from './sessions.js';

/** What the relay hands statusSnapshot(): its parts, read and never changed here. */
export interface StatusSources {
  readonly name: string;
  readonly url: string;
  readonly startedAt: number;
  readonly udpPort: number | undefined;
  readonly sessions: SessionRegistry;
  /** open links, admitted or in their hello */
  readonly sockets: number;
  readonly routed: number;
  readonly forwarded: number;
  readonly refused: number;
  readonly exposures: readonly ExposureView[];
  readonly refusals: RefusalLog;
  /** a cluster node's view of the cluster (undefined for a single relay) */
  readonly cluster?: ClusterView | undefined;
}

/**
 * The relay's status (`GET /api/status`, `relay status`, the dashboard): every read of relay
 * state for them is here, so a change to the session table changes this one function. Its
 * cost is one pass over the sessions (a few hundred bytes of JSON per office).
 */
export function statusSnapshot(src: StatusSources, now = Date.now()): RelayStatusView {
  const offices = [...src.sessions.tunnels.values()]
    .map((t) => ({
      id: t.id,
      session: t.session,
      since: t.since,
      remote: t.remote,
      env: envView(t.env),
      rttMs: rtt(t.link.stats),
      peers: t.peers.size,
      traffic: traffic(t.link.stats),
      streams: t.control.mux.size,
      mediation: offersMediation(t.env?.capabilities ?? []),
    }))
    .sort((a, b) => a.id.localeCompare(b.id));
  const externals = [...src.sessions.all()]
    .filter((e) => e.kind === 'external')
    .map((e) => ({
      name: e.id,
      address: e.address,
      session: e.session,
      since: e.since,
      remote: e.link.remote,
      rights: [...e.rights],
      software: e.env?.software,
      rttMs: rtt(e.link.stats),
      traffic: traffic(e.link.stats),
      operator: e.operator?.view(),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
  return {
    relay: { name: src.name, url: src.url, version: VERSION, startedAt: src.startedAt, now, udpPort: src.udpPort },
    totals: {
      offices: offices.length,
      externals: externals.length,
      operators: externals.filter((e) => e.operator !== undefined).length,
      sockets: src.sockets,
      exposures: src.exposures.length,
      routed: src.routed,
      forwarded: src.forwarded,
      refused: src.refused,
    },
    offices,
    externals,
    exposures: [...src.exposures].sort((a, b) => a.id - b.id),
    ...(src.cluster ? { cluster: src.cluster } : {}),
    refusals: { recent: src.refusals.recent(), total: src.refusals.total, notLogged: src.refusals.notLogged },
  };
}

function envView(env: HelloBody['env']): EnvView {
  return { software: env?.software, host: env?.host, addresses: env?.addresses ?? [], capabilities: env?.capabilities ?? [] };
}

function rtt(s: LinkStats): number | undefined {
  return s.rttMs === undefined ? undefined : Math.round(s.rttMs * 10) / 10;
}

function traffic(s: LinkStats): TrafficView {
  return { framesIn: s.framesIn, framesOut: s.framesOut, bytesIn: s.bytesIn, bytesOut: s.bytesOut };
}
