import type { ClusterView } from '../admin/relay-contract.js';
import type { ClusterMediation } from './cluster-mediation.js';
import type { ClusterNames } from './cluster-names.js';
import type { ExternalSession, RelaySession, TunnelSession } from './sessions.js';

/** A relay node's id is one subject token (no `.`, `*`, `>`), so it names subjects and keys as it is. */
export const NODE_ID_PATTERN = /^[a-z0-9_-]{1,32}$/;
export const NODE_ID_RULE = 'use 1-32 characters of a-z, 0-9, "_" and "-"';

/**
 * Where a relay's routing looks up contact points' tunnels and external peers' sessions (issue
 * 12). A single relay answers from its own maps (cluster-local.ts, the default: no engine, no
 * cost on the hot path). Relay nodes joined by NATS (cluster-nats.ts) also know which other node
 * holds a tunnel or a session, and forward frames there as the raw bytes they are.
 */
export interface Cluster {
  /** this node's id in the cluster; undefined for a single relay */
  readonly node: string | undefined;
  /**
   * False while a node is cut off from the cluster: contact points are turned away (and the ones
   * it held were closed) so they re-home to a node that others can reach.
   */
  readonly available: boolean;
  start(host: ClusterHost): Promise<void>;
  stop(): Promise<void>;
  /** The contact point's tunnel: here, on another node, or nowhere. */
  tunnel(cp: string): TunnelSession | RemotePlace | undefined;
  /** The external peer's session (by name): here, on another node, or nowhere. */
  external(name: string): ExternalSession | RemotePlace | undefined;
  /**
   * A contact point says hello here while another node holds its tunnel (PROTOCOL 6.1.1 across
   * nodes): undefined when there is nothing to contest (no tunnel elsewhere, or the same instance
   * reconnecting: it is admitted and the old tunnel closes on the newer claim). Else the holding
   * node probes its tunnel (its own takeover probe, at most `probeMs` + REMOTE_PROBE_MARGIN_MS
   * awaited): the holder when it answered, undefined when it did not (or its node is gone).
   */
  contestTunnel(cp: string, instance: string | undefined, probeMs: number): Promise<HolderInfo | undefined> | undefined;
  /** Whether `node` (another node) holds a session of external peer `name` now. */
  externalAt(name: string, node: string): boolean;
  /** A session was admitted here (after it is in the relay's maps). */
  opened(s: RelaySession): void;
  /** A session here ended (after it left the relay's maps). */
  closed(s: RelaySession): void;
  /** A MSG or ACK frame for contact point `cp`, whose tunnel is on another node. Refusals of a MSG come back to deliver(). */
  sendToTunnel(cp: string, raw: Buffer): void;
  /** A MSG or ACK frame for a session on `node`. Refusals of a MSG come back to deliver(). */
  sendToNode(node: string, raw: Buffer): void;
  /** Answers a forwarded MSG (a refusal ACK) to the node it came from. */
  answer(reply: string, raw: Buffer): void;
  /** The nodes and where each tunnel and session is, for the status endpoint; undefined for a single relay. */
  view(): ClusterView | undefined;
  /** Port mediation with tunnels on other nodes (cluster-mediation.ts); absent on a single relay. */
  readonly mediation?: ClusterMediation | undefined;
  /** Peer-level lookups with tunnels on other nodes (cluster-names.ts); absent on a single relay. */
  readonly names?: ClusterNames | undefined;
  /**
   * Placement (PROTOCOL.md 17.6): the nodes holding tunnels of `cp` now (this one included), each
   * with the URL it advertises for clients when it has one; empty when the office is offline.
   * Absent on a single relay.
   */
  places?(cp: string): NodePlace[];
}

/** A node holding a tunnel of an office, and where clients reach it (its `--advertise-url`), if it says. */
export interface NodePlace {
  readonly node: string;
  readonly url?: string;
}

/**
 * The node a forwarded frame's reply subject names: `relay.node.<node>.…` (cluster-nats.ts makes
 * them), or undefined for any other subject.
 */
export function replyNode(reply: string): string | undefined {
  const parts = reply.split('.', 3);
  return parts.length === 3 && parts[0] === 'relay' && parts[1] === 'node' && NODE_ID_PATTERN.test(parts[2]!) ? parts[2] : undefined;
}

/** What a newcomer refused ID_IN_USE is told of the live holder of its contact point id. */
export interface HolderInfo {
  /** `host:port` the holder's tunnel comes from */
  readonly remote: string;
  /** the holder's HELLO env.host, if it said */
  readonly host: string | undefined;
  readonly since: number;
  /** the relay node holding it (undefined: this one) */
  readonly node?: string | undefined;
}

/** A remote liveness probe waits this much longer than the probe itself (the NATS round trip). */
export const REMOTE_PROBE_MARGIN_MS = 1_000;

/** A tunnel or session held by another relay node. */
export interface RemotePlace {
  readonly kind: 'remote';
  readonly node: string;
  /** a tunnel whose office does not offer port mediation (its presence record says so) */
  readonly mediation?: false;
}

/** What the cluster calls back into the relay. */
export interface ClusterHost {
  /** A MSG or ACK frame forwarded by another node, for a session here; `reply` takes refusals of a MSG. */
  deliver(raw: Buffer, reply: string | undefined): void;
  /** A contact point's tunnel (or an external peer's session) is now held by another node. */
  reachableElsewhere(kind: 'contact-point' | 'external', id: string): void;
  /** A contact point's tunnel (or an external peer's session) another node held has ended there (its record was deleted). */
  goneElsewhere(kind: 'contact-point' | 'external', id: string): void;
  /** A newer tunnel of this contact point in `slot` is held by `node`: close the one here in that slot (REPLACED). */
  tunnelMoved(cp: string, node: string, slot: number): void;
  /** Another node asks: is this node's tunnel of `cp` alive (a liveness probe)? Undefined: none here, or silent. */
  probeTunnel(cp: string): Promise<HolderInfo | undefined>;
  /** This node lost the cluster: close every tunnel so its office re-homes (never a black hole). */
  dropTunnels(reason: string): void;
}
