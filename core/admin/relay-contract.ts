/**
 * The relay's status endpoint (`relay --admin-listen`): what `GET /api/status` answers, the
 * same object `contact-point relay status --json` prints and the relay dashboard shows. Types
 * only (and the paths), so the dashboard compiles against the very shapes the relay writes.
 */

/** The status JSON, with `Authorization: Bearer <token>`. */
export const RELAY_STATUS_PATH = '/api/status';
/** The dashboard page of the built renderer, served at `/`. */
export const RELAY_DASHBOARD_PAGE = 'relay.html';

/** Counters of one link, each way, since it opened (ws messages are protocol frames). */
export interface TrafficView {
  readonly framesIn: number;
  readonly framesOut: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

/** What a client said about itself in its hello (`env`): shown, never trusted. */
export interface EnvView {
  readonly software: string | undefined;
  readonly host: string | undefined;
  readonly addresses: readonly string[];
  readonly capabilities: readonly string[];
}

/** A connected contact point (an office's tunnel). */
export interface OfficeView {
  readonly id: string;
  readonly session: string;
  /** ms since the epoch when its tunnel was admitted */
  readonly since: number;
  /** `host:port` the tunnel comes from */
  readonly remote: string;
  readonly env: EnvView;
  /** round trip of the relay's last ping on this tunnel; undefined until one was answered */
  readonly rttMs: number | undefined;
  /** peers its contact point announced (PEERS) */
  readonly peers: number;
  readonly traffic: TrafficView;
  /** mediated streams open through this tunnel */
  readonly streams: number;
  /** whether the relay forwards operators' port requests to it (by its capabilities; else NOT_OFFERED) */
  readonly mediation: boolean;
}

/** An external peer's session; `operator` when it drives port mediation (right `mediate`). */
export interface ExternalSessionView {
  readonly name: string;
  readonly address: string;
  readonly session: string;
  readonly since: number;
  readonly remote: string | undefined;
  readonly rights: readonly string[];
  readonly software: string | undefined;
  readonly rttMs: number | undefined;
  readonly traffic: TrafficView;
  readonly operator: OperatorView | undefined;
}

export interface OperatorView {
  /** ports it opened at contact points */
  readonly ports: number;
  /** public ports of the relay it exposes */
  readonly exposures: number;
  /** its streams through the relay */
  readonly streams: number;
}

/** A public port of the relay forwarding to a LAN target behind a contact point. */
export interface ExposureView {
  readonly id: number;
  readonly cp: string;
  readonly proto: 'tcp' | 'udp';
  readonly target: string;
  readonly publicPort: number;
  readonly operator: string;
  readonly connections: number;
  readonly refused: number;
  /** TCP connections open now, and the most this exposure carries at once */
  readonly active: number;
  readonly maxConnections: number;
}

/** Where a refusal happened. */
export type RefusalKind = 'message' | 'hello' | 'upgrade' | 'port' | 'exposure';

/** One refusal the relay made (or `count` of them, for an exposure's connections in one second). */
export interface RefusalView {
  /** ms since the epoch */
  readonly at: number;
  readonly kind: RefusalKind;
  /** the status code and its name (docs/PROTOCOL.md section 13) */
  readonly code: number;
  readonly name: string;
  /** who was refused: `contact-point acme-hq`, `external alice`, an operator; `-` before a hello */
  readonly who: string;
  /** remote address, when there is a connection */
  readonly address: string | undefined;
  readonly reason: string;
  readonly count: number;
}

/** What one cluster node knows of the cluster: itself, and every tunnel and external session by node. */
export interface ClusterView {
  /** the node that answered */
  readonly node: string;
  /** false while this node is cut off from NATS (what it knows of the others is then stale) */
  readonly connected: boolean;
  /** every node holding a tunnel or session (this one too), with counts, and the URL it advertises for clients (`relay --advertise-url`, placement) if any */
  readonly nodes: readonly { readonly node: string; readonly offices: number; readonly externals: number; readonly url?: string | undefined }[];
  /** where each connected office's tunnel is */
  readonly offices: readonly { readonly id: string; readonly node: string }[];
}

export interface RelayStatusView {
  readonly relay: {
    readonly name: string;
    readonly url: string;
    readonly version: string;
    readonly startedAt: number;
    /** the relay's clock when it answered (ages are now - since) */
    readonly now: number;
    readonly udpPort: number | undefined;
  };
  readonly totals: {
    readonly offices: number;
    readonly externals: number;
    readonly operators: number;
    readonly sockets: number;
    readonly exposures: number;
    /** MSG frames routed and refused since start */
    readonly routed: number;
    /** MSG frames passed on to another node of a relay cluster (counted routed or refused there) */
    readonly forwarded: number;
    readonly refused: number;
  };
  readonly offices: readonly OfficeView[];
  readonly externals: readonly ExternalSessionView[];
  readonly exposures: readonly ExposureView[];
  /** a node of a relay cluster (issue 12): the nodes and where each office's tunnel is, from this node's presence map */
  readonly cluster?: ClusterView | undefined;
  readonly refusals: {
    /** newest first, at most RECENT_REFUSALS */
    readonly recent: readonly RefusalView[];
    /** every refusal since start */
    readonly total: number;
    /** refusals not logged line by line (over the log rate; summed in one line a second) */
    readonly notLogged: number;
  };
}
