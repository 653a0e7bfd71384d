import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV, type KvWatchEntry } from '@nats-io/kv';
import { connect, type Msg, type NatsConnection, type QueuedIterator, type Subscription } from '@nats-io/transport-node';
import type { ClusterView } from '../admin/relay-contract.js';
import { decodeFrame, encodeBatch, splitBatch } from '../protocol/codec.js';
import { FrameType, MAX_ADVERTISE_URL_LENGTH, offersMediation } from '../protocol/frames.js';
import { BATCH_FRAME_MAX_BYTES, TUNNEL_SLOTS } from '../protocol/limits.js';
import { Backoff } from '../runtime/backoff.js';
import type { Logger } from '../runtime/logger.js';
import { ClusterMediation, protocolWriter } from './cluster-mediation.js';
import { ClusterNames } from './cluster-names.js';
import { NatsTurnWriter } from './nats-turn-writer.js';
import { NODE_ID_PATTERN, NODE_ID_RULE, REMOTE_PROBE_MARGIN_MS, type Cluster, type ClusterHost, type HolderInfo, type NodePlace, type RemotePlace } from './cluster.js';
import { CredentialStore, parseCredentialRecord, type CredentialKind } from './credentials.js';
import type { ExternalSession, RelaySession, SessionRegistry, TunnelSession } from './sessions.js';

/**
 * Relay nodes joined by NATS (issue 12; docs/PROTOCOL.md "Relay cluster"). Written for
 * nats-server 2.9 (Debian bookworm's 2.9.10): JetStream key-value buckets with a bucket-wide
 * max_age, no per-key TTL, and no watch event when a key expires (both came in 2.11), so a
 * record's lease is also timed here, from the last renewal this node saw.
 *
 * - Presence: bucket PRESENCE_BUCKET, key `t.<hex cp id>.<node>` for a tunnel and
 *   `e.<hex peer name>.<node>` for an external session, value {node, session, since}; the
 *   holder puts it again every RENEW_MS, the bucket drops it LEASE_MS after the last put, and
 *   it is deleted when the session ends. Every node watches the bucket into a map: routing
 *   never waits on the store.
 * - Frames: a node subscribes `relay.cp.<hex cp id>` for each tunnel it holds and
 *   `relay.node.<node>` (and `.>`) for itself. A MSG or ACK for a contact point on another node
 *   is published, raw, on its cp subject; one for an external peer on another node on that
 *   node's subject. Its reply subject names the sending node, which takes the refusal ACKs and
 *   the server's "no responders" notice (the holder is gone: its record is dropped at once).
 *   Frames for one subject within one event-loop turn go as one NATS message holding a BATCH
 *   (0x17) of them, when every node that subscribes it said `batch` in its heartbeat record
 *   (an older node gets them one by one).
 * - Credentials: bucket CREDENTIALS_BUCKET (hashes only; see openClusterCredentials).
 */

/** Presence bucket: where each contact point's tunnel and each external peer's session is. */
export const PRESENCE_BUCKET = 'cp_tunnels';
/** Credentials bucket: the same records as the single relay's credentials.json, one key each. */
export const CREDENTIALS_BUCKET = 'cp_credentials';
/** A presence record lives this long after its last renewal (the bucket's max_age, and this node's own clock for records it watches). */
export const LEASE_MS = 15_000;
/** The holder renews its presence records this often (a third of the lease: two renewals may be lost). */
export const RENEW_MS = 5_000;
/** NATS client keepalive: a half-open connection is noticed after NATS_MAX_PINGS_OUT unanswered pings. */
export const NATS_PING_INTERVAL_MS = 5_000;
export const NATS_MAX_PINGS_OUT = 2;
/** How long the first connection to NATS may take before the relay gives up (it exits with the URL). */
export const NATS_CONNECT_TIMEOUT_MS = 5_000;
/** Reconnects (for ever) back off from RECONNECT_BASE_MS to RECONNECT_MAX_MS, with jitter. */
export const NATS_RECONNECT_BASE_MS = 250;
export const NATS_RECONNECT_MAX_MS = 5_000;
/**
 * What the NATS client collects before it writes inline rather than at the end of the turn (its
 * default is 32 KiB). Stream data crossing nodes (cluster-mediation.ts) is then written in
 * fewer, larger writes: the operator's node spent about 2 ms of CPU per MB moved instead of
 * 3.7 (bench cluster-bulk). Small frames still go out at the end of the turn, as before.
 */
export const NATS_PENDING_LIMIT_BYTES = 256 * 1024;
/**
 * A BATCH of frames for one subject (see NatsCluster.forward) goes out once it holds this many
 * bytes, else at the end of the event-loop turn: twice a ws BATCH (BATCH_MAX_BYTES), so
 * nats-server and the receiving node handle half as many messages. Not more: a NATS message
 * longer than a socket read (64 KiB) is joined from the reads by the client's parser (copies
 * into buffers it grows), and the office's node spent more CPU per message with 128 and 256
 * KiB batches than with 32 or 56 KiB ones (bench cluster). Kept under half the server's
 * max_payload.
 */
export const NATS_BATCH_MAX_BYTES = 64 * 1024;
/**
 * The buffer a node builds each turn's forwarded PUBs in (nats-turn-writer.ts), used again turn
 * after turn: a few batches of NATS_BATCH_MAX_BYTES; a turn that forwards more writes when it is full.
 */
const NATS_TURN_SCRATCH_BYTES = 256 * 1024;
/** Routes (subject strings and the turn's frames) kept for contact points on other nodes; emptied when full. */
const TUNNEL_ROUTES_KEPT = 4_096;
/** After a reconnect, how often a node retries its presence watch while JetStream is not back. */
const REWATCH_MS = 500;
/** A node puts its own heartbeat record (`n.<node>`) this often (see WATCH_STALL_MS). */
export const HEARTBEAT_MS = 2_000;
/**
 * A node expects to see its heartbeat record come back through its presence watch. A watch whose
 * consumer sat on a NATS server that died can stay silent for a long time while the connection
 * itself is fine (the client reconnected elsewhere, or never lost it; a server the node was given
 * by URL leaving is not reported to it); unseen for this long, both watches are made anew
 * (routing would otherwise miss every tunnel that moved since, and refuse their messages).
 */
export const WATCH_STALL_MS = 2 * HEARTBEAT_MS + 1_000;
/**
 * A NATS server left the cluster (the client's "update" status names it): a watch whose
 * consumer was on it sees nothing more, without any error. The node watches both buckets anew at
 * once rather than waiting WATCH_STALL_MS for its heartbeat, retrying every REWATCH_MS while
 * JetStream elects new leaders, for up to this long (then the heartbeat check takes over).
 */
export const SERVER_LEFT_REWATCH_MS = 20_000;
/**
 * JetStream request timeout when a watch is made anew (its consumer is created and read): for
 * some seconds after a NATS server of a cluster dies, some consumer creations are never answered
 * (a new watch failed about one attempt in three for 10-15 s after a kill, nats-server 2.9.10),
 * so a short timeout and a quick retry get a watch sooner than the client's default 5 s.
 */
export const WATCH_REQUEST_TIMEOUT_MS = 2_000;
/** How long a watch may take to replay a bucket's current records before the node starts anyway. */
const WATCH_READY_MS = 5_000;
/**
 * How long a credential write keeps trying while JetStream does not answer (a timeout, or no
 * responders): after a NATS server of a cluster dies, its streams elect new leaders, and writes
 * in that window time out. An admin's add or remove is retried rather than failed at once. 30 s:
 * nats-server 2.9.10 on a loaded 2-core host once took over 20 s to answer after a kill (the
 * whole test suite running beside test/cli/nats-cluster.test.ts).
 */
export const CREDENTIAL_WRITE_RETRY_MS = 30_000;

/** Runs a JetStream request (a write, opening the bucket or its watch) again while it times out or finds no responders, up to CREDENTIAL_WRITE_RETRY_MS. */
async function retryWhileUnavailable<T>(write: () => Promise<T>, logger: Logger): Promise<T> {
  const until = Date.now() + CREDENTIAL_WRITE_RETRY_MS;
  for (let wait = 250; ; wait = Math.min(wait * 2, 2_000)) {
    try {
      return await write();
    } catch (err: unknown) {
      const transient = /timeout|no responders|503/i.test((err as Error).message);
      if (!transient || Date.now() + wait > until) throw err;
      logger.info('JetStream did not answer a credential write; trying again', { error: (err as Error).message, retryInMs: wait });
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}


/**
 * Runs the steps at once, each again every REWATCH_MS while it fails, `go()` holds and
 * `untilMs` (a time, if given) is not reached; rejects with the first step that gives up. A
 * step that succeeded is not run again when another fails (each bucket's watch on its own).
 */
async function eachUntilDone(steps: readonly (() => Promise<void>)[], go: () => boolean, untilMs: number | undefined, onRetry: (err: Error, attempt: number) => void): Promise<void> {
  await Promise.all(
    steps.map(async (step) => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await step();
        } catch (err: unknown) {
          if (!go() || (untilMs !== undefined && Date.now() + REWATCH_MS > untilMs)) throw err;
          onRetry(err as Error, attempt);
          await new Promise((r) => setTimeout(r, REWATCH_MS));
        }
      }
    }),
  );
}

/** A second handle on bucket `name` whose JetStream requests time out after WATCH_REQUEST_TIMEOUT_MS (for watching it anew). */
function watchHandle(nc: NatsConnection, name: string): Promise<KV> {
  return new Kvm(jetstream(nc, { timeout: WATCH_REQUEST_TIMEOUT_MS })).open(name);
}

/** Ids and names may contain `.` (a subject's token separator); subjects and keys carry them as hex. */
export function subjectToken(id: string): string {
  return Buffer.from(id, 'utf8').toString('hex');
}

function fromToken(token: string): string | undefined {
  if (!/^(?:[0-9a-f]{2})+$/.test(token)) return undefined;
  return Buffer.from(token, 'hex').toString('utf8');
}

/** Connects to NATS (any of `servers`), keepalive and reconnect-for-ever set; the error names the URLs. */
export async function connectNats(servers: readonly string[], name: string, logger: Logger): Promise<NatsConnection> {
  const backoff = new Backoff(NATS_RECONNECT_BASE_MS, NATS_RECONNECT_MAX_MS);
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: [...servers],
      name,
      timeout: NATS_CONNECT_TIMEOUT_MS,
      pingInterval: NATS_PING_INTERVAL_MS,
      maxPingOut: NATS_MAX_PINGS_OUT,
      maxReconnectAttempts: -1,
      reconnectDelayHandler: () => backoff.next(),
      ...{ pendingLimit: NATS_PENDING_LIMIT_BYTES }, // not in the client's typed options, but read by it
    });
  } catch (err: unknown) {
    throw new Error(`cannot reach NATS at ${servers.join(', ')}: ${(err as Error).message}`, { cause: err });
  }
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'reconnect') backoff.reset();
      if (s.type === 'disconnect' || s.type === 'reconnect') logger.info(`NATS ${s.type}`, { server: s.server });
    }
  })();
  return nc;
}

/** Opens a key-value bucket, naming the server and JetStream when it is not there. */
async function openBucket(nc: NatsConnection, name: string, opts: { ttl?: number; replicas: number }): Promise<KV> {
  try {
    // An existing bucket keeps the replicas (and max_age) it was created with.
    return await new Kvm(nc).create(name, { history: 1, ...opts });
  } catch (err: unknown) {
    throw new Error(`NATS at ${nc.getServer()}: cannot open the key-value bucket "${name}" (is JetStream on? nats-server -js): ${(err as Error).message}`, { cause: err });
  }
}

/** Watches a bucket; `ready` resolves once its current records were replayed (or WATCH_READY_MS passed). */
interface BucketWatch {
  readonly ready: Promise<void>;
  readonly stop: () => void;
}

async function watchBucket(kv: KV, onEntry: (e: KvWatchEntry) => void, logger: Logger): Promise<BucketWatch> {
  const empty = (await kv.status()).values === 0;
  const iter: QueuedIterator<KvWatchEntry> = await kv.watch({ key: '>' });
  let markReady!: () => void;
  const ready = new Promise<void>((r) => (markReady = r));
  if (empty) markReady();
  const timer = setTimeout(markReady, WATCH_READY_MS);
  timer.unref();
  void (async () => {
    for await (const e of iter) {
      try {
        onEntry(e);
      } catch (err: unknown) {
        logger.warn('cluster record ignored', { bucket: e.bucket, key: e.key, error: (err as Error).message });
      }
      if (e.isUpdate || e.delta === 0) markReady();
    }
  })().catch((err: unknown) => logger.warn('cluster watch ended', { error: (err as Error).message }));
  return {
    ready: ready.then(() => clearTimeout(timer)),
    stop: () => {
      clearTimeout(timer);
      iter.stop();
    },
  };
}

/**
 * The cluster's credentials as a CredentialStore: every record of CREDENTIALS_BUCKET (key
 * `<kind>.<hex id>`, value the record as credentials.json holds it: the secret's SHA-256, never
 * the secret), kept current by a watch; add/remove write the bucket. Resolves once the current
 * records are loaded.
 */
export async function openClusterCredentials(
  nc: NatsConnection,
  logger: Logger,
  replicas = 1,
): Promise<{ readonly store: CredentialStore; readonly stop: () => void; readonly rewatch: () => Promise<void> }> {
  const kv = await retryWhileUnavailable(() => openBucket(nc, CREDENTIALS_BUCKET, { replicas }), logger);
  const keyOf = (kind: CredentialKind, id: string): string => `${kind}.${subjectToken(id)}`;
  const store = CredentialStore.replicated({
    put: async (r) => void (await retryWhileUnavailable(() => kv.put(keyOf(r.kind, r.id), JSON.stringify(r)), logger)),
    remove: async (kind, id) => void (await retryWhileUnavailable(() => kv.delete(keyOf(kind, id)), logger)),
  });
  const onEntry = (e: KvWatchEntry): void => {
      if (e.operation === 'PUT') return store.applyRemote(parseCredentialRecord(e.json()));
      const [kind, token] = e.key.split('.');
      const id = token !== undefined ? fromToken(token) : undefined;
      if ((kind === 'contact-point' || kind === 'external') && id !== undefined) store.dropRemote(kind, id);
  };
  let w = await retryWhileUnavailable(() => watchBucket(kv, onEntry, logger), logger);
  await w.ready;
  const rewatchKv = await watchHandle(nc, CREDENTIALS_BUCKET);
  let stopped = false;
  return {
    store,
    stop: () => {
      stopped = true;
      w.stop();
    },
    // After a reconnect the old watch's consumer may have been on a server that is gone, and the
    // client can take many seconds to notice: a new watch replays every key's last entry (delete
    // markers too), so what changed in between is applied at once.
    // The new watch is made before the old one stops (both apply the same records meanwhile), so a
    // rewatch that cannot reach JetStream yet leaves the old watch in place.
    rewatch: async () => {
      if (stopped) return;
      const next = await watchBucket(rewatchKv, onEntry, logger);
      w.stop();
      w = next;
      await w.ready;
    },
  };
}

/**
 * Where forwarded frames for one subject go (a contact point's, or another node's), with its
 * subject strings made once, whether that way takes a BATCH (as of `version`), and the frames
 * of this event-loop turn waiting for flushOutbox.
 */
interface Route {
  readonly subject: string;
  readonly reply: string;
  /** `PUB <subject> <reply> `: the start of a NATS PUB line for this route */
  readonly pubPrefix: string;
  /** whether frames go batched; valid while `version` is the cluster's routesVersion */
  batch: boolean;
  version: number;
  /** a contact point's route: its tunnel's holders decide `batch`; a node's: that node */
  readonly cp: string | undefined;
  readonly node: string | undefined;
  frames: Buffer[];
  bytes: number;
  /** in the outbox (flushOutbox writes it at the end of the turn) */
  queued: boolean;
}

/** A presence record another node holds. */
interface Claim {
  readonly session: string;
  /** revision of the first put of this session's record: the newer claim of one contact point wins */
  readonly firstRevision: number;
  /** when this node last saw it put (the lease runs from here) */
  seenAt: number;
  readonly place: RemotePlace;
  /** a tunnel's HELLO instance, when its client said */
  readonly instance: string | undefined;
}

interface PresenceRecord {
  readonly node: string;
  readonly session: string;
  readonly since: string;
  /** a tunnel's HELLO instance (same-instance reconnects replace at once, others are probed) */
  readonly instance?: string | undefined;
  /** a tunnel whose HELLO does not offer port mediation: false (absent: it does), so other nodes refuse operators at once */
  readonly mediation?: false;
}

type PresenceKind = 't' | 'e';

export interface NatsClusterOptions {
  readonly node: string;
  readonly logger: Logger;
  /** the cluster's credentials (openClusterCredentials), stopped with the cluster */
  readonly stopCredentials?: () => void;
  /** watches the credentials bucket anew (openClusterCredentials), after a reconnect */
  readonly rewatchCredentials?: () => Promise<void>;
  /** JetStream replicas of the presence bucket when this node creates it (default 1; 3 on a 3-server NATS cluster) */
  readonly replicas?: number;
  /** where clients reach this node (`relay --advertise-url`), put in its heartbeat record for placement (PROTOCOL.md 17.6) */
  readonly advertiseUrl?: string | undefined;
}

/** One relay node of a NATS cluster (see the top of this file). */
export class NatsCluster implements Cluster {
  readonly node: string;
  private host: ClusterHost | undefined;
  private connected = true;
  private stopped = false;
  /** contact point id -> node (and slot) -> its claim of a tunnel */
  private readonly remoteTunnels = new Map<string, Map<string, Claim>>();
  /** external peer name -> node -> its claim of a session */
  private readonly remoteExternals = new Map<string, Map<string, Claim>>();
  /** bumped whenever a claim comes or goes or a node's `batch` changes: each Route's `batch` is computed anew */
  private routesVersion = 0;
  /** routes to contact points' subjects (tunnels elsewhere) and to other nodes, made on first use */
  private readonly tunnelRoutes = new Map<string, Route>();
  private readonly nodeRoutes = new Map<string, Route>();
  /** writes the turn's PUBs as bytes made here, in one socket write (nats-turn-writer.ts); undefined: publish() */
  private readonly writer: NatsTurnWriter | undefined;
  /** presence keys this node wrote -> the revision of the first put of the session it holds */
  private readonly own = new Map<string, { session: string; revision: number | undefined }>();
  /** cp id -> this node's subscription to its subject (one for both slots when both are here) */
  private readonly cpSubs = new Map<string, Subscription>();
  private nodeSubs: Subscription[] = [];
  private watcher: BucketWatch | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** this node's heartbeat record in the presence bucket, and when the watch last brought it back */
  private readonly heartbeatKey: string;
  private heartbeatSeenAt = Date.now();
  private rewatching = false;
  /** other nodes whose heartbeat record says they take a BATCH of frames in one NATS message */
  private readonly batchNodes = new Set<string>();
  /** other nodes' URLs for clients, from their heartbeat records (placement, PROTOCOL.md 17.6) */
  private readonly nodeUrls = new Map<string, string>();
  /** routes holding frames that wait for the end of this event-loop turn (see flushOutbox) */
  private outbox: Route[] = [];
  /** flushOutbox is queued (setImmediate) */
  private flushQueued = false;
  private readonly logger: Logger;
  /** port mediation with tunnels on other nodes (cluster-mediation.ts) */
  readonly mediation: ClusterMediation;
  /** peer-level lookups with tunnels on other nodes (cluster-names.ts) */
  readonly names: ClusterNames;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly kv: KV,
    /** the presence bucket again, with WATCH_REQUEST_TIMEOUT_MS, for watching it anew */
    private readonly rewatchKv: KV,
    private readonly sessions: SessionRegistry,
    private readonly o: NatsClusterOptions,
  ) {
    this.node = o.node;
    this.heartbeatKey = `n.${o.node}`;
    this.logger = o.logger;
    const w = protocolWriter(nc);
    this.writer = w ? new NatsTurnWriter(nc, w, NATS_TURN_SCRATCH_BYTES) : undefined;
    this.mediation = new ClusterMediation(nc, o.node, o.logger);
    this.names = new ClusterNames(nc, o.node, o.logger);
  }

  /** Opens the presence bucket; the relay gets the cluster from the returned factory. */
  static async open(nc: NatsConnection, o: NatsClusterOptions): Promise<(sessions: SessionRegistry) => NatsCluster> {
    if (!NODE_ID_PATTERN.test(o.node)) throw new RangeError(`node id "${o.node}": ${NODE_ID_RULE}`);
    // Like the credentials bucket: JetStream may time out while it places a replicated bucket.
    const kv = await retryWhileUnavailable(() => openBucket(nc, PRESENCE_BUCKET, { ttl: LEASE_MS, replicas: o.replicas ?? 1 }), o.logger);
    const rewatchKv = await watchHandle(nc, PRESENCE_BUCKET);
    return (sessions) => new NatsCluster(nc, kv, rewatchKv, sessions, o);
  }

  get available(): boolean {
    return this.connected;
  }

  async start(host: ClusterHost): Promise<void> {
    this.host = host;
    const me = `relay.node.${this.node}`;
    this.nodeSubs = [me, `${me}.>`].map((subject) => this.nc.subscribe(subject, { callback: (err, m) => (err ? undefined : this.onNodeMsg(m)) }));
    this.mediation.start();
    this.names.start();
    await this.watchPresence(this.kv);
    this.heartbeat(); // at once: other nodes learn now, not HEARTBEAT_MS later, that this one takes batches
    this.renewTimer = setInterval(() => this.renewAll(), RENEW_MS);
    this.renewTimer.unref();
    this.heartbeatTimer = setInterval(() => this.heartbeat(), HEARTBEAT_MS);
    this.heartbeatTimer.unref();
    void (async () => {
      for await (const s of this.nc.status()) {
        if (s.type === 'disconnect') this.lost();
        else if (s.type === 'reconnect') void this.regained();
        else if (s.type === 'update' && (s.deleted?.length ?? 0) > 0) void this.serverLeft(s.deleted!);
      }
    })();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.renewTimer);
    clearInterval(this.heartbeatTimer);
    this.mediation.stop();
    this.names.stop();
    this.watcher?.stop();
    this.o.stopCredentials?.();
    this.flushOutbox(); // frames forwarded this turn go before the connection drains
    if (this.connected) await Promise.allSettled([...this.own.keys(), this.heartbeatKey].map((k) => this.kv.delete(k)));
    this.own.clear();
    if (this.nc.isClosed()) return;
    if (this.connected) await this.nc.drain().catch(() => this.nc.close());
    else await this.nc.close();
  }

  tunnel(cp: string): TunnelSession | RemotePlace | undefined {
    return this.sessions.tunnels.get(cp) ?? this.bestClaim(this.remoteTunnels, cp)?.place;
  }

  external(name: string): ExternalSession | RemotePlace | undefined {
    return this.sessions.external(name) ?? this.bestClaim(this.remoteExternals, name)?.place;
  }

  contestTunnel(cp: string, instance: string | undefined, probeMs: number): Promise<HolderInfo | undefined> | undefined {
    const far = this.bestClaim(this.remoteTunnels, cp);
    if (!far || (instance !== undefined && instance === far.instance)) return undefined;
    const node = far.place.node;
    return this.nc
      .request(`relay.node.${node}.probe.${subjectToken(cp)}`, undefined, { timeout: probeMs + REMOTE_PROBE_MARGIN_MS })
      .then((m) => {
        const a = m.data.length > 0 ? m.json<{ remote?: unknown; host?: unknown; since?: unknown }>() : {};
        return typeof a.remote === 'string' && typeof a.since === 'number' ? { remote: a.remote, host: typeof a.host === 'string' ? a.host : undefined, since: a.since, node } : undefined;
      })
      // No answer in time, nobody there any more, or an answer that does not parse: nothing alive holds it.
      .catch(() => undefined);
  }

  externalAt(name: string, node: string): boolean {
    const c = this.connected ? this.remoteExternals.get(name)?.get(node) : undefined;
    return c !== undefined && Date.now() - c.seenAt <= LEASE_MS;
  }

  opened(s: RelaySession): void {
    if (s.kind === 'contact-point' && !this.cpSubs.has(s.id)) {
      const sub = this.nc.subscribe(`relay.cp.${subjectToken(s.id)}`, { queue: 'cp', callback: (err, m) => (err ? undefined : this.deliver(m)) });
      this.cpSubs.set(s.id, sub);
    }
    const key = this.ownKey(s);
    this.own.set(key, { session: s.session, revision: undefined });
    this.claim(key, s);
  }

  closed(s: RelaySession): void {
    if (s.kind === 'contact-point' && this.sessions.tunnelsOf(s.id).length === 0) {
      try {
        this.cpSubs.get(s.id)?.unsubscribe();
      } catch {
        // the connection is closed already (the relay is stopping): nothing to unsubscribe from
      }
      this.cpSubs.delete(s.id);
    }
    const key = this.ownKey(s);
    if (this.own.get(key)?.session !== s.session) return;
    // Other sessions of this external credential still here (issue 18): the record names the newest of them.
    const rest = s.kind === 'external' ? this.sessions.externalsOf(s.id) : [];
    const newest = rest[rest.length - 1];
    if (newest) {
      this.own.set(key, { session: newest.session, revision: undefined });
      if (this.connected && !this.stopped) this.claim(key, newest);
      return;
    }
    this.own.delete(key);
    if (this.connected && !this.stopped) this.kv.delete(key).catch((err: unknown) => this.logger.debug('presence record not deleted; its lease ends it', { key, error: (err as Error).message }));
  }

  sendToTunnel(cp: string, raw: Buffer): void {
    let route = this.tunnelRoutes.get(cp);
    if (route === undefined) {
      if (this.tunnelRoutes.size >= TUNNEL_ROUTES_KEPT) this.tunnelRoutes.clear();
      const token = subjectToken(cp);
      route = this.route(`relay.cp.${token}`, `relay.node.${this.node}.nr.t.${token}`, cp, undefined);
      this.tunnelRoutes.set(cp, route);
    }
    this.forward(route, raw);
  }

  sendToNode(node: string, raw: Buffer): void {
    let route = this.nodeRoutes.get(node);
    if (route === undefined) {
      // Node ids are checked (NODE_ID_PATTERN) where they come from: this map holds the nodes seen.
      route = this.route(`relay.node.${node}`, `relay.node.${this.node}.nr.n.${node}`, undefined, node);
      this.nodeRoutes.set(node, route);
    }
    this.forward(route, raw);
  }

  private route(subject: string, reply: string, cp: string | undefined, node: string | undefined): Route {
    return { subject, reply, pubPrefix: `PUB ${subject} ${reply} `, batch: false, version: -1, cp, node, frames: [], bytes: 0, queued: false };
  }

  /** Whether frames on `route` go batched: every node holding the tunnel (or that node) said `batch` in its heartbeat. */
  private batches(route: Route): boolean {
    if (route.version !== this.routesVersion) {
      route.version = this.routesVersion;
      if (route.node !== undefined) route.batch = this.batchNodes.has(route.node);
      else {
        const holders = this.remoteTunnels.get(route.cp!);
        let batch = holders !== undefined && holders.size > 0;
        if (holders) for (const c of holders.values()) if (!this.batchNodes.has(c.place.node)) batch = false;
        route.batch = batch;
      }
    }
    return route.batch;
  }

  /**
   * A frame for another node: when its way takes them, kept until the end of this event-loop
   * turn and sent with the others for that subject in one NATS message (a BATCH, PROTOCOL.md 3.3
   * and 17); per-message work in the NATS client and server is most of a cross-node message's
   * cost. A frame that cannot wait goes out after those queued before it for its subject (order kept).
   */
  private forward(route: Route, raw: Buffer): void {
    if (!this.batches(route) || raw.length > BATCH_FRAME_MAX_BYTES) {
      if (route.frames.length > 0) this.flushRoute(route);
      const w = this.writer;
      // Over the server's max_payload: publish() refuses it (the server would close the connection).
      if (w === undefined || raw.length > (this.nc.info?.max_payload ?? Infinity)) return this.publish(route.subject, raw, route.reply);
      // Alone, after the frames queued before it (as publish() would send it).
      if (this.nc.isClosed() || this.nc.isDraining()) return; // the senders retry
      w.addFrame(route.pubPrefix, raw);
      return this.queueWrite();
    }
    route.frames.push(raw);
    route.bytes += raw.length;
    if (route.bytes >= this.batchMaxBytes()) return this.flushRoute(route);
    if (!route.queued) {
      route.queued = true;
      this.queueWrite();
      this.outbox.push(route);
    }
  }

  /** flushOutbox at the end of this turn (once). */
  private queueWrite(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(this.flushOutbox);
  }

  /** NATS_BATCH_MAX_BYTES, or less when the server takes smaller messages (a frame may add BATCH_FRAME_MAX_BYTES). */
  private batchMaxBytes(): number {
    const max = this.nc.info?.max_payload;
    return max === undefined ? NATS_BATCH_MAX_BYTES : Math.min(NATS_BATCH_MAX_BYTES, (max >> 1) - BATCH_FRAME_MAX_BYTES);
  }

  /** Whether frames for `node` go batched: its heartbeat record said `batch` (see forward()). */
  batchesTo(node: string): boolean {
    return this.batchNodes.has(node);
  }

  private readonly flushOutbox = (): void => {
    this.flushQueued = false;
    const routes = this.outbox;
    this.outbox = [];
    for (const route of routes) {
      route.queued = false;
      if (route.frames.length > 0) this.flushRoute(route);
    }
    this.writer?.write();
  };

  private flushRoute(route: Route): void {
    const frames = route.frames;
    const bytes = route.bytes;
    route.frames = [];
    route.bytes = 0;
    const w = this.writer;
    if (!w) {
      if (frames.length === 1) return this.publish(route.subject, frames[0]!, route.reply);
      return this.publish(route.subject, encodeBatch(frames, bytes), route.reply);
    }
    if (this.nc.isClosed() || this.nc.isDraining()) return; // the senders retry
    // A batch of one frame goes as that frame.
    if (frames.length === 1) w.addFrame(route.pubPrefix, frames[0]!);
    else w.addBatch(route.pubPrefix, frames, bytes);
    this.queueWrite();
  }

  answer(reply: string, raw: Buffer): void {
    this.publish(reply, raw, undefined);
  }

  private publish(subject: string, raw: Buffer, reply: string | undefined): void {
    try {
      // What this turn's writer holds was forwarded before: it goes first, as it would have.
      if (this.writer?.pending) this.writer.write();
      this.nc.publish(subject, raw, reply ? { reply } : undefined);
    } catch (err: unknown) {
      // Closed or draining: the sender retries, and its retry finds the way (or a refusal).
      this.logger.debug('forward not sent', { subject, error: (err as Error).message });
    }
  }

  private deliver(m: Msg): void {
    const raw = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
    const reply = m.reply || undefined;
    if (raw[0] !== FrameType.BATCH) return this.deliverOne(raw, reply, m.subject);
    let frames: Buffer[];
    try {
      frames = splitBatch(decodeFrame(raw));
    } catch (err: unknown) {
      this.logger.warn('forwarded batch dropped', { subject: m.subject, error: (err as Error).message });
      return;
    }
    // One bad frame costs only itself: the senders of the others wait for their ACKs as before.
    for (const f of frames) this.deliverOne(f, reply, m.subject);
  }

  private deliverOne(raw: Buffer, reply: string | undefined, subject: string): void {
    try {
      this.host?.deliver(raw, reply);
    } catch (err: unknown) {
      this.logger.warn('forwarded frame dropped', { subject, error: (err as Error).message });
    }
  }

  /** Frames for this node, refusals of what it forwarded, the server's "no responders" for them, and liveness probes. */
  private onNodeMsg(m: Msg): void {
    if (m.data.length === 0 && m.headers?.code === 503) return this.noResponders(m.subject);
    const probe = m.subject.startsWith(this.probePrefix) ? fromToken(m.subject.slice(this.probePrefix.length)) : undefined;
    if (probe !== undefined) {
      void this.host?.probeTunnel(probe).then((alive) => {
        try {
          m.respond(alive ? JSON.stringify(alive) : '');
        } catch {
          // closed meanwhile: the asking node times out and admits the newcomer
        }
      });
      return;
    }
    this.deliver(m);
  }

  /** Nobody subscribes where a record said: that holder is gone; forget it now, not after its lease. */
  private noResponders(subject: string): void {
    const [, , , , kind, token] = subject.split('.');
    if (kind === 't' && token) {
      const cp = fromToken(token);
      if (cp !== undefined && this.remoteTunnels.delete(cp)) this.routesVersion++;
    } else if (kind === 'n' && token) {
      for (const remote of [this.remoteTunnels, this.remoteExternals]) {
        for (const [k, byNode] of remote) {
          for (const [where, c] of byNode) if (c.place.node === token) byNode.delete(where);
          if (byNode.size === 0) remote.delete(k);
        }
      }
      this.routesVersion++;
    }
  }

  view(): ClusterView {
    const tally = new ClusterTally();
    const here = tally.node(this.node); // listed even while it holds nothing
    here.externals = this.sessions.size.externals;
    for (const id of this.sessions.tunnels.keys()) {
      here.offices++;
      tally.offices.push({ id, node: this.node });
    }
    const now = Date.now();
    for (const [kind, remote] of [['t', this.remoteTunnels], ['e', this.remoteExternals]] as const) for (const [id, byNode] of remote) {
      for (const c of byNode.values()) {
        const node = c.place.node;
        if (now - c.seenAt > LEASE_MS) continue;
        if (kind === 'e') tally.node(node).externals++;
        else {
          tally.node(node).offices++;
          if (!this.sessions.tunnels.has(id)) tally.offices.push({ id, node });
        }
      }
    }
    return { node: this.node, connected: this.connected, ...tally.sorted((node) => this.urlOf(node)) };
  }

  /** The presence key of a session held here. */
  private ownKey(s: RelaySession): string {
    return s.kind === 'contact-point' ? presenceKey('t', s.id, this.node, s.slot) : presenceKey('e', s.id, this.node);
  }

  private get probePrefix(): string {
    return `relay.node.${this.node}.probe.`;
  }

  /** The newest live claim of `id` (in `remote`, remoteTunnels or remoteExternals) on another node. */
  private bestClaim(remote: Map<string, Map<string, Claim>>, id: string): Claim | undefined {
    const byNode = remote.get(id);
    if (!byNode || !this.connected) return undefined;
    const now = Date.now();
    let best: Claim | undefined;
    for (const [node, c] of byNode) {
      if (now - c.seenAt > LEASE_MS) {
        byNode.delete(node);
        this.routesVersion++;
      } else if (!best || c.firstRevision > best.firstRevision) best = c;
    }
    if (byNode.size === 0) remote.delete(id);
    return best;
  }

  private claim(key: string, s: RelaySession): void {
    const record: PresenceRecord = {
      node: this.node,
      session: s.session,
      since: new Date(s.since).toISOString(),
      ...(s.kind === 'contact-point' && s.instance !== undefined ? { instance: s.instance } : {}),
      ...(s.kind === 'contact-point' && !offersMediation(s.env?.capabilities ?? []) ? { mediation: false as const } : {}),
    };
    this.kv.put(key, JSON.stringify(record)).then(
      (revision) => {
        const mine = this.own.get(key);
        if (mine?.session === s.session && mine.revision === undefined) mine.revision = revision;
      },
      (err: unknown) => this.logger.debug('presence record not written; the next renewal retries', { key, error: (err as Error).message }),
    );
  }

  /** Puts this node's heartbeat record; watches anew when the last one did not come back in time (WATCH_STALL_MS). */
  private heartbeat(): void {
    if (!this.connected) return;
    if (Date.now() - this.heartbeatSeenAt > WATCH_STALL_MS && !this.rewatching) void this.rewatch();
    // `batch`: this node takes a BATCH of frames in one NATS message (see forward()).
    // `url`: where clients reach this node (placement, PROTOCOL.md 17.6).
    const url = this.o.advertiseUrl !== undefined ? { url: this.o.advertiseUrl } : {};
    void this.kv.put(this.heartbeatKey, JSON.stringify({ node: this.node, at: new Date().toISOString(), batch: true, ...url })).catch(() => undefined);
  }

  private renewAll(): void {
    if (!this.connected) return;
    for (const s of [...this.sessions.all()]) {
      const key = this.ownKey(s);
      if (this.own.get(key)?.session === s.session) this.claim(key, s);
    }
  }

  /** The presence (and credentials) watch went silent: watch anew (see WATCH_STALL_MS). */
  private async rewatch(): Promise<void> {
    this.logger.warn('the cluster watch saw nothing for a while; watching the presence and credentials buckets anew', { silentMs: Date.now() - this.heartbeatSeenAt });
    await this.rewatchWhileConnected();
  }

  /** A NATS server left the cluster: watch both buckets anew now (see SERVER_LEFT_REWATCH_MS). */
  private async serverLeft(servers: readonly string[]): Promise<void> {
    if (!this.connected || this.stopped || this.rewatching) return;
    this.logger.info('a NATS server left the cluster; watching the presence and credentials buckets anew', { servers: servers.join(', ') });
    await this.rewatchWhileConnected();
  }

  /** Both buckets watched anew, each retried every REWATCH_MS for up to SERVER_LEFT_REWATCH_MS (then the heartbeat check takes over). */
  private async rewatchWhileConnected(): Promise<void> {
    if (this.rewatching) return;
    this.rewatching = true;
    try {
      await this.watchBoth(Date.now() + SERVER_LEFT_REWATCH_MS);
    } catch (err: unknown) {
      this.logger.warn('cannot watch the cluster buckets anew; the heartbeat check will try again', { error: (err as Error).message });
    } finally {
      this.rewatching = false;
    }
  }

  /**
   * Both buckets watched anew at once, each retried on its own every REWATCH_MS while this node
   * is connected (until `untilMs`, if given); each new watch replaces its old one once it runs.
   */
  private async watchBoth(untilMs?: number): Promise<void> {
    const steps = [() => this.watchPresence(this.rewatchKv), ...(this.o.rewatchCredentials ? [this.o.rewatchCredentials] : [])];
    const go = (): boolean => !this.stopped && !this.nc.isClosed() && (untilMs === undefined || this.connected);
    await eachUntilDone(steps, go, untilMs, (err, attempt) => {
      if (attempt === 1) this.logger.info('JetStream does not answer a new watch yet; retrying', { error: err.message });
    });
  }

  /**
   * Watches the presence bucket anew. The new watch is made before the old one stops, and the
   * records seen so far stay: its replay refreshes them (a deleted record comes as its delete
   * marker; one that expired meanwhile ends by its lease), so routing keeps its way while
   * JetStream is slow to answer.
   */
  private async watchPresence(kv: KV): Promise<void> {
    const next = await watchBucket(kv, (e) => this.onPresence(e), this.logger);
    this.heartbeatSeenAt = Date.now();
    this.watcher?.stop();
    this.watcher = next;
    await next.ready;
  }

  private onPresence(e: KvWatchEntry): void {
    if (e.key === this.heartbeatKey) {
      this.heartbeatSeenAt = Date.now();
      return;
    }
    if (e.key.startsWith('n.')) return this.onHeartbeat(e);
    const parsed = parsePresenceKey(e.key);
    if (!parsed) return;
    const { kind, id, node, slot } = parsed;
    if (node === this.node) {
      // A record of ours for a session we no longer hold (left from before a disconnect): remove it.
      if (e.operation === 'PUT' && !this.own.has(e.key)) void this.kv.delete(e.key).catch(() => undefined);
      return;
    }
    const remote = kind === 't' ? this.remoteTunnels : this.remoteExternals;
    // A contact point's two tunnels (issue 12) may both be on one node: one claim per node and slot.
    const where = slot === 0 ? node : `${node}.${slot}`;
    let byNode = remote.get(id);
    if (e.operation !== 'PUT') {
      const had = byNode?.delete(where) ?? false;
      if (byNode?.size === 0) remote.delete(id);
      if (had) {
        this.routesVersion++;
        this.host?.goneElsewhere(kind === 't' ? 'contact-point' : 'external', id);
      }
      return;
    }
    const record = e.json<PresenceRecord>();
    if (typeof record.session !== 'string') return;
    const prev = byNode?.get(where);
    if (prev?.session === record.session) {
      prev.seenAt = Date.now();
      return;
    }
    if (!byNode) remote.set(id, (byNode = new Map<string, Claim>()));
    this.routesVersion++;
    byNode.set(where, { session: record.session, firstRevision: e.revision, seenAt: Date.now(), place: { kind: 'remote', node, ...(record.mediation === false ? { mediation: false as const } : {}) }, instance: typeof record.instance === 'string' ? record.instance : undefined });
    if (kind === 't') {
      // Two nodes with a tunnel of one contact point in one slot: the newer claim stands, the older tunnel closes.
      const mine = this.own.get(presenceKey('t', id, this.node, slot));
      if (mine?.revision !== undefined && e.revision > mine.revision) this.host?.tunnelMoved(id, node, slot);
      this.host?.reachableElsewhere('contact-point', id);
    } else {
      this.host?.reachableElsewhere('external', id);
    }
  }

  /** Another node's heartbeat record: whether it takes batches, and its URL for clients. */
  private onHeartbeat(e: KvWatchEntry): void {
    const node = e.key.slice(2);
    let batch = false;
    let url: string | undefined;
    if (e.operation === 'PUT') {
      try {
        const h = e.json<{ batch?: unknown; url?: unknown }>();
        batch = h.batch === true;
        url = advertisedUrl(h.url);
      } catch {
        // not JSON: an unknown writer; no batches for it
      }
    }
    if (url !== undefined) this.nodeUrls.set(node, url);
    else this.nodeUrls.delete(node);
    if (batch === this.batchNodes.has(node)) return;
    if (batch) this.batchNodes.add(node);
    else this.batchNodes.delete(node);
    this.routesVersion++;
  }

  /** A node's URL for clients (placement): this node's own --advertise-url, else what its heartbeat said. */
  private urlOf(node: string): string | undefined {
    return node === this.node ? this.o.advertiseUrl : this.nodeUrls.get(node);
  }

  places(cp: string): NodePlace[] {
    const out: NodePlace[] = [];
    const add = (node: string): void => {
      if (out.some((p) => p.node === node)) return;
      const url = this.urlOf(node);
      out.push({ node, ...(url !== undefined ? { url } : {}) });
    };
    if (this.sessions.tunnelsOf(cp).length > 0) add(this.node);
    const byNode = this.connected ? this.remoteTunnels.get(cp) : undefined;
    const now = Date.now();
    // The newest claim first: of two nodes, the one an office came to last is where it stays.
    const live = [...(byNode?.values() ?? [])].filter((c) => now - c.seenAt <= LEASE_MS).sort((a, b) => b.firstRevision - a.firstRevision);
    for (const c of live) add(c.place.node);
    return out;
  }

  /** NATS is gone: nobody can reach the tunnels here, so they close and their offices re-home. */
  private lost(): void {
    if (!this.connected || this.stopped) return;
    this.connected = false;
    this.remoteTunnels.clear();
    this.remoteExternals.clear();
    this.routesVersion++;
    this.mediation.lost('this relay node lost its cluster connection');
    this.logger.warn('cut off from the cluster (NATS): closing every tunnel so its contact point re-homes to another node');
    this.host?.dropTunnels('this relay node lost its cluster connection; connect to another node');
  }

  private async regained(): Promise<void> {
    if (this.connected || this.stopped) return;
    // A restarted nats-server takes a moment to bring JetStream back: keep trying until the
    // watch runs (tunnels stay turned away meanwhile), or the connection drops again.
    try {
      await this.watchBoth();
    } catch {
      // closed or stopped meanwhile
    }
    if (this.stopped || this.nc.isClosed()) return;
    this.logger.info('cluster (NATS) connection back: taking tunnels again');
    this.connected = true;
    this.heartbeat();
    this.renewAll();
  }
}

/** A heartbeat record's `url` when it is a ws:// or wss:// URL of sensible length; undefined otherwise (another writer's, or none). */
function advertisedUrl(v: unknown): string | undefined {
  return typeof v === 'string' && v.length <= MAX_ADVERTISE_URL_LENGTH && /^wss?:\/\/[^\s]+$/i.test(v) ? v : undefined;
}

/** A tunnel in slot 1 (issue 12) has its own record, `t.<hex cp id>.<node>.1`; slot 0's key is as before. */
function presenceKey(kind: PresenceKind, id: string, node: string, slot = 0): string {
  return `${kind}.${subjectToken(id)}.${node}${slot === 0 ? '' : `.${slot}`}`;
}

/** The reverse of presenceKey(); undefined for a key of another form. */
function parsePresenceKey(key: string): { kind: PresenceKind; id: string; node: string; slot: number } | undefined {
  const [kind, token, node, slotToken] = key.split('.');
  const id = token !== undefined ? fromToken(token) : undefined;
  const slot = slotToken === undefined ? 0 : /^[1-9]$/.test(slotToken) && Number(slotToken) < TUNNEL_SLOTS ? Number(slotToken) : -1;
  return (kind === 't' || kind === 'e') && id !== undefined && node !== undefined && slot >= 0 ? { kind, id, node, slot } : undefined;
}

/** Per-node office and session counts and where each office is, sorted as the status shows them. */
class ClusterTally {
  private readonly nodes = new Map<string, { offices: number; externals: number }>();
  readonly offices: { id: string; node: string }[] = [];

  node(node: string): { offices: number; externals: number } {
    let n = this.nodes.get(node);
    if (!n) this.nodes.set(node, (n = { offices: 0, externals: 0 }));
    return n;
  }

  /** `url`: the URL each node advertises for clients (placement), if it does */
  sorted(url: (node: string) => string | undefined = () => undefined): Omit<ClusterView, 'node' | 'connected'> {
    return {
      nodes: [...this.nodes]
        .map(([node, n]) => {
          const u = url(node);
          return { node, ...n, ...(u !== undefined ? { url: u } : {}) };
        })
        .sort((a, b) => a.node.localeCompare(b.node)),
      offices: [...this.offices].sort((a, b) => a.id.localeCompare(b.id) || a.node.localeCompare(b.node)),
    };
  }
}

/**
 * What `contact-point relay --cluster` needs: a connection to NATS, the cluster's credentials,
 * and the node (the relay's `cluster` option). Any failure closes the connection and names the URLs.
 */
export async function joinNatsCluster(o: { servers: readonly string[]; node: string; logger: Logger; replicas?: number; advertiseUrl?: string | undefined }): Promise<{ credentials: CredentialStore; cluster: (sessions: SessionRegistry) => NatsCluster }> {
  const nc = await connectNats(o.servers, `contact-point relay ${o.node}`, o.logger);
  try {
    const creds = await openClusterCredentials(nc, o.logger, o.replicas);
    const cluster = await NatsCluster.open(nc, {
      node: o.node,
      logger: o.logger,
      stopCredentials: creds.stop,
      rewatchCredentials: creds.rewatch,
      ...(o.replicas !== undefined ? { replicas: o.replicas } : {}),
      ...(o.advertiseUrl !== undefined ? { advertiseUrl: o.advertiseUrl } : {}),
    });
    return { credentials: creds.store, cluster };
  } catch (err: unknown) {
    await nc.close();
    throw err;
  }
}

/**
 * `relay status --cluster`: the nodes and where each office's tunnel is, read from the presence
 * bucket itself (records put within their lease), without asking any node.
 */
export async function readClusterPresence(servers: readonly string[], logger: Logger): Promise<Omit<ClusterView, 'node' | 'connected'>> {
  const nc = await connectNats(servers, 'contact-point relay status', logger);
  try {
    const kv = await openBucket(nc, PRESENCE_BUCKET, { ttl: LEASE_MS, replicas: 1 });
    const tally = new ClusterTally();
    /** office and slot -> the newest record within its lease (a node cut off from NATS cannot delete its old one) */
    const tunnels = new Map<string, { id: string; node: string; revision: number }>();
    const urls = new Map<string, string>();
    const now = Date.now();
    for await (const key of await kv.keys()) {
      if (key.startsWith('n.')) {
        // A live node's heartbeat record: listed even while it holds nothing, with the URL it advertises for clients (placement).
        const e = await kv.get(key);
        if (!e || e.operation !== 'PUT' || now - e.created.getTime() > LEASE_MS) continue;
        tally.node(key.slice(2));
        try {
          const url = advertisedUrl(e.json<{ url?: unknown }>().url);
          if (url !== undefined) urls.set(key.slice(2), url);
        } catch {
          // not JSON: an unknown writer
        }
        continue;
      }
      const parsed = parsePresenceKey(key);
      if (!parsed) continue;
      const e = await kv.get(key);
      if (!e || e.operation !== 'PUT' || now - e.created.getTime() > LEASE_MS) continue;
      if (parsed.kind === 'e') tally.node(parsed.node).externals++;
      else if ((tunnels.get(`${parsed.id}\n${parsed.slot}`)?.revision ?? -1) < e.revision) tunnels.set(`${parsed.id}\n${parsed.slot}`, { id: parsed.id, node: parsed.node, revision: e.revision });
    }
    for (const t of tunnels.values()) {
      tally.node(t.node).offices++;
      tally.offices.push({ id: t.id, node: t.node });
    }
    return tally.sorted((node) => urls.get(node));
  } finally {
    await nc.close();
  }
}
