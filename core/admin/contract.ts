/**
 * The admin API contract: the one module that says what an admin can see and do. The
 * contact point implements it; two transports carry it (the loopback ws endpoint here, and
 * Electron IPC in the desktop app); the CLI and the GUI call it without knowing which.
 * Channel names are `area:verb`. Parameters are checked against these schemas at every
 * transport boundary before they reach the core.
 */
import type { DialErrorKind } from '../protocol/dial-failure.js';
import type { LaunchView } from './launch.js';
import { nameSchema } from '../protocol/name.js';
import { MAX_REASON_LENGTH } from '../protocol/limits.js';
import { bool, int, list, obj, oneOf, optional, str, union, type Infer, type Schema } from '../protocol/schema.js';

export type PeerState = 'unregistered' | 'pending' | 'registered' | 'revoked';

/**
 * Which admin surface made a call: the GUI (desktop window or browser), the CLI, or another
 * program on the admin API. The caller says which it is (the ws `auth` message, the Electron
 * IPC handler); the contact point records it in the audit trail.
 */
export type AdminSurface = 'gui' | 'cli' | 'api';
export const ADMIN_SURFACES = ['gui', 'cli', 'api'] as const satisfies readonly AdminSurface[];

/** What an audit entry records: every admin decision, port close and settings change. */
export const AUDIT_ACTIONS = ['peer:approve', 'peer:reject', 'peer:revoke', 'peer:forget', 'policy:set', 'ports:policy', 'ports:close', 'settings:save', 'history:retention', 'rules:set', 'rules:check', 'seal:policy'] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];
/** A value before or after a decision: a flat object of scalars and string lists; null when there was none (a forgotten peer after). */
export type AuditValue = Readonly<Record<string, string | number | boolean | readonly string[]>> | null;

/** One entry of the audit trail (core/contact-point/audit-log.ts). */
export interface AuditEntry {
  /** 1, 2, 3... in the order the decisions were saved */
  readonly seq: number;
  readonly at: number;
  readonly surface: AdminSurface;
  readonly action: AuditAction;
  /** what it acted on: a peer name, `policy`, `ports`, `port 7`, `settings` */
  readonly target: string;
  readonly before: AuditValue;
  readonly after: AuditValue;
}
export type TunnelState = 'connecting' | 'connected' | 'reconnecting' | 'offline';

export interface PeerView {
  readonly name: string;
  /** `printer@acme-hq` */
  readonly address: string;
  readonly state: PeerState;
  readonly online: boolean;
  /** LAN address the peer last connected from */
  readonly lanAddress: string | undefined;
  readonly firstSeen: number;
  readonly lastSeen: number;
  readonly messagesIn: number;
  readonly messagesOut: number;
  /** who or what admitted it: `admin`, `policy:subnet 10.0.0.0/24`, `policy:join-code` */
  readonly admittedBy: string | undefined;
  readonly decidedAt: number | undefined;
  /** the admin surface of the last admin decision on it (undefined: none, or decided by the policy) */
  readonly decidedVia: AdminSurface | undefined;
  /** when it last asked to be registered (REGISTER); undefined if it never did */
  readonly requestedAt: number | undefined;
  /** short SHA-256 fingerprint of the peer's public key, to tell two devices apart */
  readonly keyFingerprint: string;
}

export interface TunnelView {
  readonly state: TunnelState;
  /** when `state` began (ms since epoch, the contact point's clock) */
  readonly stateSince: number;
  /** whether the tunnel has been up since the contact point started (a relay URL that worked once is right) */
  readonly everConnected: boolean;
  readonly relayUrl: string;
  readonly session: string | undefined;
  readonly connectedAt: number | undefined;
  /** the last error, kept after the tunnel recovers (the cause of the last outage); undefined: none since start */
  readonly lastError: string | undefined;
  /** when lastError happened (ms since epoch) */
  readonly lastErrorAt: number | undefined;
  /**
   * network: the relay is down or unreachable now (retried with backoff); url: the relay URL is
   * wrong; trust: the relay's certificate is not accepted; refused: the relay refused the hello
   * (a credential, version or id problem). All but network are retried slowly (core/protocol/dial-failure.ts).
   */
  readonly lastErrorKind: DialErrorKind | undefined;
  readonly nextRetryAt: number | undefined;
  /**
   * Set while the relay refuses this contact point because another live instance (a copy with
   * the same credential) holds its id: the relay's words, naming that instance's address and
   * since when. This one stays off and retries every 30-60 s.
   */
  readonly idInUse: string | undefined;
  readonly reconnects: number;
  readonly rttMs: number | undefined;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly framesIn: number;
  readonly framesOut: number;
  /** registered peers reachable over this one tunnel: sockets the relay does not have to hold */
  readonly peersServed: number;
  /** the contact point's ping interval (the heartbeat's pace follows the shorter of it and the relay's) */
  readonly keepaliveMs: number;
  /**
   * while the tunnel is up: the keepalive the relay took up (PROTOCOL.md 12: `heartbeat`, 12.2;
   * `adaptive`, 12.1; `fixed`) and how long a dead tunnel takes at worst to be noticed, idle and
   * with messages waiting for their ACK
   */
  readonly keepalive?: { readonly mode: 'heartbeat' | 'adaptive' | 'fixed'; readonly noticeIdleMs: number; readonly noticeBusyMs: number } | undefined;
  readonly proxy: string | undefined;
  /** the relay node of the tunnel above, when the relay is a cluster node (WELCOME `node`) */
  readonly node?: string | undefined;
  /** with two or more relay URLs (issue 12): each of the two tunnels, slot 0 first; absent with one URL */
  readonly tunnels?: readonly TunnelSlotView[];
}

/** One of a contact point's two tunnels to two relay nodes (issue 12). */
export interface TunnelSlotView {
  readonly slot: number;
  readonly state: TunnelState;
  /** the URL it is connected to, or dials next */
  readonly relayUrl: string;
  /** the relay node it is connected to (WELCOME `node`), while connected */
  readonly node: string | undefined;
  /** why it is not connected (the last error), or that it left a node its other tunnel is on */
  readonly note: string | undefined;
}

/** One external peer's or operator's session on the contact point's direct listener. */
export interface DirectSessionView {
  /** its credential's name (contact-point credential add --id) */
  readonly id: string;
  /** its address, `NAME@DOMAIN` of the direct listener (`alice@direct`) */
  readonly address: string;
  /** the WELCOME's session id */
  readonly session: string;
  /** it has driven port mediation (its credential has the mediate right and it asked) */
  readonly operator: boolean;
  /** `host:port` it connects from */
  readonly remote: string;
  /** when it was admitted (ms since epoch) */
  readonly since: number;
}

/**
 * Direct mode (seed 000 [0027], [0040]): the contact point accepts external peers and operators
 * itself on a second listener, with credentials it manages, beside (or instead of) the tunnel.
 */
export interface DirectView {
  /** the listener's URL as bound (wss:// with a certificate) */
  readonly url: string;
  /** the domain of direct peers' addresses (`alice@direct`) */
  readonly domain: string;
  readonly tls: boolean;
  /** credentials in the contact point's direct store */
  readonly credentials: number;
  readonly sessions: readonly DirectSessionView[];
}

export interface PolicyView {
  /** CIDRs whose peers are registered without asking the admin */
  readonly subnets: readonly string[];
  /** whether a join code is set (the code itself is stored hashed and never shown) */
  readonly joinCode: boolean;
}

export type FlowDirection = 'in' | 'out' | 'local';
export type FlowOutcome = 'delivered' | 'refused' | 'forwarded';

export interface FlowEvent {
  readonly at: number;
  readonly id: string;
  readonly dir: FlowDirection;
  readonly from: string;
  readonly to: string;
  readonly size: number;
  readonly outcome: FlowOutcome;
  /** status code (0 when delivered) and its text */
  readonly code: number;
  readonly reason: string;
  /** the messages this MSG carried, when more than one: a sealed bundle (PROTOCOL.md 19.6). Not kept in the history. */
  readonly count?: number;
}

export interface FlowTotals {
  readonly messages: number;
  readonly bytes: number;
  readonly delivered: number;
  readonly refused: number;
  readonly byDirection: Readonly<Record<FlowDirection, number>>;
  /** refusals by status name */
  readonly refusals: Readonly<Record<string, number>>;
}

export interface FlowBatch {
  readonly at: number;
  /** the most recent events since the last batch, oldest first (capped) */
  readonly events: readonly FlowEvent[];
  /** events in this interval that were counted but not listed (over the cap) */
  readonly omitted: number;
  readonly intervalMs: number;
  readonly totals: FlowTotals;
}

/** A history entry's outcome: a message's (as in the flow) or a mediated port's opening and closing. */
export type HistoryOutcome = FlowOutcome | 'opened' | 'closed';
export const HISTORY_OUTCOMES = ['delivered', 'refused', 'forwarded', 'opened', 'closed'] as const satisfies readonly HistoryOutcome[];

/**
 * One stored observation: a message's metadata and outcome (never its payload), or a port
 * event (`id` port:N, `from` the operator, `to` what was opened, `size` its bytes at close).
 * `seq` numbers entries in the order they were recorded, across restarts: the paging cursor.
 */
export interface HistoryEntry extends Omit<FlowEvent, 'outcome'> {
  readonly seq: number;
  readonly outcome: HistoryOutcome;
}

/** How much history the contact point keeps on disk (serve/start --history-entries/--history-days, or history:retention). */
export interface HistoryRetention {
  /** at least this many of the newest entries are kept (whole segment files are dropped past it) */
  readonly entries: number;
  /** entries older than this many days are dropped too; 0: no age limit */
  readonly days: number;
}

/**
 * Stored entries per time bucket (history:traffic): bucket i covers
 * [since + i * bucketMs, since + (i + 1) * bucketMs). Messages only; port events are not counted.
 */
export interface HistoryTraffic {
  readonly since: number;
  readonly bucketMs: number;
  readonly delivered: readonly number[];
  readonly refused: readonly number[];
  /** forwarded: sent on to the relay, no receipt tracked */
  readonly forwarded: readonly number[];
  readonly enabled: boolean;
}

/** One page of history, newest first. */
export interface HistoryPage {
  readonly entries: readonly HistoryEntry[];
  /** pass as `before` for the next (older) page; absent when this was the last */
  readonly next?: number;
  /** entries in the whole stored history that match the filters, and their outcomes */
  readonly matched: number;
  readonly counts: Readonly<Record<HistoryOutcome, number>>;
  /** false when this contact point keeps no history (no state folder, or turned off) */
  readonly enabled: boolean;
  readonly retention: HistoryRetention;
  /** what is on disk: entries, bytes, segment files, and the oldest entry's time */
  readonly stored: { readonly entries: number; readonly bytes: number; readonly segments: number; readonly oldestAt: number | undefined };
  /** observations lost since start because the disk did not keep up or a write failed */
  readonly lost: number;
}

export interface ContactPointInfo {
  readonly id: string;
  readonly version: string;
  readonly startedAt: number;
  /** true when `npm start` runs its own relay on loopback: a demo, not an office setup */
  readonly embeddedRelay: boolean;
  readonly peerPortUrl: string;
  /** how a headless contact point was started (serve, start): the GUI prints the command to restart it with a change */
  readonly launch?: LaunchView;
}

/** A LAN port the relay had the contact point open (port mediation, seed 002). */
export interface PortView {
  readonly id: number;
  readonly proto: 'tcp' | 'udp';
  readonly address: string;
  readonly port: number;
  /** exposed: a relay exposure of `target`, whose every connection is one of its streams */
  readonly state: 'open' | 'connecting' | 'connected' | 'listening' | 'redirecting' | 'exposed';
  /** the operator (relay credential) that asked for it */
  readonly operator: string;
  /** connect target, `host:port` */
  readonly target: string | undefined;
  readonly streams: number;
  /** connections refused on this port so far (stream limits, failed connects, policy) */
  readonly refused: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly createdAt: number;
}

/** What port mediation may do: LAN targets (`192.168.1.0/24:80,443`) and local binds (`tcp:8000-8100`). Empty: nothing. */
export interface PortPolicyView {
  readonly targets: readonly string[];
  readonly listen: readonly string[];
}

/** One source address of a registration flood: what the flood limits dropped from it. */
export interface FloodSourceView {
  /** the source address (IPv4-mapped IPv6 shown as IPv4), or `other addresses` past the tracked ones */
  readonly address: string;
  /** undecided requests forgotten to make room (their sessions closed with RESOURCE_LIMIT) */
  readonly evicted: number;
  /** hellos with a new identity refused with RATE_LIMITED */
  readonly refused: number;
  readonly lastAt: number;
}

/**
 * Registration requests the flood limits dropped in the current flood episode (it ends 10
 * minutes after the last drop). `dropped` 0: no flood now. A bounded summary: at most 8
 * sources, most dropped first; `otherSources` counts the rest.
 */
export interface FloodView {
  readonly dropped: number;
  readonly evicted: number;
  readonly refused: number;
  /** first and last drop of the episode (ms since epoch); undefined when no flood */
  readonly since: number | undefined;
  readonly lastAt: number | undefined;
  readonly sources: readonly FloodSourceView[];
  readonly otherSources: number;
  /** the limits in force: undecided requests per address and in total, new identities per address a minute */
  readonly limits: { readonly perAddress: number; readonly total: number; readonly newPerMinute: number };
}

/**
 * Access rules of one peer, or the office default (core/contact-point/access-rules.ts). A field
 * left out: a peer takes the office default's; the office default lets anyone through and sets
 * no limit.
 */
export interface RuleSetView {
  /** sender patterns that may message it: `*`, `tech@relay`, `*@relay`, `*@branch`, `scanner@acme-hq` */
  readonly allow?: string[];
  /** largest payload it takes, in bytes (within the contact point's MAX_MESSAGE_BYTES) */
  readonly maxBytes?: number;
  /** messages a minute it takes (a token bucket per peer: bursts up to this many) */
  readonly perMinute?: number;
}

/**
 * The content check every message to a LAN peer passes: none; `json-depth`, built in, refuses
 * payloads nested deeper than `depth`; `command`, the admin's program, one long-lived child
 * process speaking JSON lines (docs/PROTOCOL.md, "Content check") with `timeoutMs` per message,
 * `failure` what a timeout or crash means (closed refuses the message, open delivers it) and
 * `concurrency` messages at the check at once.
 */
export type ContentCheckView = Infer<typeof contentCheckSchema>;

/** The access rules: the office default, each peer's own (only peers that have some), and the content check. */
export interface RulesView {
  readonly office: RuleSetView;
  readonly peers: (RuleSetView & { readonly name: string })[];
  readonly check: ContentCheckView;
}

/** A refusal an access rule or the content check caused (kept in memory: the last few per peer). */
export interface RuleRefusalView {
  readonly at: number;
  readonly from: string;
  readonly code: number;
  readonly reason: string;
}

/** What the rules refused for one peer since the contact point started. */
export interface RuleRefusalsView {
  readonly name: string;
  /** counts by status name: NOT_ALLOWED, TOO_LARGE, RATE_LIMITED, CONTENT_REFUSED, QUEUE_FULL */
  readonly counts: Readonly<Record<string, number>>;
  /** newest first */
  readonly recent: readonly RuleRefusalView[];
}

export interface Snapshot {
  readonly contactPoint: ContactPointInfo;
  readonly tunnel: TunnelView;
  readonly peers: readonly PeerView[];
  readonly policy: PolicyView;
  readonly flow: FlowTotals;
  readonly ports: readonly PortView[];
  readonly portPolicy: PortPolicyView;
  /** registration requests dropped by the flood limits (absent from contact points before them) */
  readonly flood: FloodView;
  /** direct mode, when it is on (serve --direct-listen) */
  readonly direct?: DirectView;
  /** access rules and the content check */
  readonly rules: RulesView;
  /** sealed payloads: the contact point's key fingerprint and the "sealed only" policy (absent from contact points before them) */
  readonly seal?: SealView;
}

/** The contact point's key and the "sealed payloads only" policy (core/contact-point/seal-guard.ts). */
export interface SealView {
  /** SHA-256 of its Ed25519 public key, hex in groups of four: what external peers pin */
  readonly fingerprint: string;
  /** every message through this contact point must be sealed */
  readonly required: boolean;
  /** peers that send and accept sealed payloads only */
  readonly peers: readonly string[];
  /** addresses beyond the tunnel whose sealing key is bound */
  readonly bindings: number;
}

export interface AdminEvents {
  'peer:changed': PeerView;
  'peer:removed': { readonly name: string };
  'tunnel:status': TunnelView;
  /** direct mode's listener and sessions, once a second while it is on (like tunnel:status) */
  'direct:status': DirectView;
  'flow:batch': FlowBatch;
  'policy:changed': PolicyView;
  /** the whole port list, whenever a port opens, changes state or closes */
  'ports:changed': readonly PortView[];
  /** the port policy, whenever an admin (GUI, CLI, another window) sets it */
  'ports:policy-changed': PortPolicyView;
  /** the registration flood summary, at most once a second while it changes, and once when the flood is over */
  'peers:flood': FloodView;
  /** an audit entry, once its decision is saved */
  'audit:entry': AuditEntry;
  /** the access rules, whenever an admin sets them */
  'rules:changed': RulesView;
  /** the "sealed only" policy, whenever an admin sets it */
  'seal:changed': SealView;
}
export type AdminEventName = keyof AdminEvents;
export const ADMIN_EVENTS: readonly AdminEventName[] = ['peer:changed', 'peer:removed', 'tunnel:status', 'direct:status', 'flow:batch', 'policy:changed', 'ports:changed', 'ports:policy-changed', 'peers:flood', 'audit:entry', 'rules:changed', 'seal:changed'];

const peerName = nameSchema;

/** Most entries one history:query page returns. */
export const MAX_HISTORY_PAGE = 1_000;
/** Most entries the history may be set to keep (its index costs about 40 bytes each in memory). */
export const MAX_HISTORY_ENTRIES = 1_000_000;
/** Most time buckets one history:traffic call counts. */
export const MAX_HISTORY_BUCKETS = 500;
/** Longest age limit the history takes, in days. */
export const MAX_HISTORY_DAYS = 3_650;
/** Defaults: the newest 100,000 entries, no age limit. */
export const DEFAULT_HISTORY_RETENTION: HistoryRetention = { entries: 100_000, days: 0 };
const cidr = str({ min: 3, max: 49, pattern: /^[0-9a-fA-F:.]+\/\d{1,3}$/, patternText: 'must be a CIDR such as 192.168.1.0/24' });

/** Sender patterns one rule set may list. */
export const MAX_ALLOW_PATTERNS = 64;
/** Most arguments (program included) of a content check command. */
export const MAX_CHECK_ARGV = 32;
/** Longest a content check may take per message, in ms (its budget is the admin's choice up to this). */
export const MAX_CHECK_TIMEOUT_MS = 60_000;
/** Most messages at a content check at once. */
export const MAX_CHECK_CONCURRENCY = 256;
/** Deepest nesting the json-depth check may be set to allow. */
export const MAX_CHECK_JSON_DEPTH = 10_000;
/** `*`, or `name@domain` where each part is a name that may hold `*` wildcards. */
export const SENDER_PATTERN = /^(\*|[a-z0-9._*-]{1,63}@[a-z0-9._*-]{1,63})$/;
const senderPattern = str({ min: 1, max: 127, pattern: SENDER_PATTERN, patternText: 'must be *, or name@domain where either part may use * (tech@relay, *@relay, *@branch)' });
const ruleSetShape = {
  allow: optional(list(senderPattern, { max: MAX_ALLOW_PATTERNS })),
  maxBytes: optional(int({ min: 1, max: 1024 * 1024 * 1024 })),
  perMinute: optional(int({ min: 1, max: 1_000_000 })),
};
export const contentCheckSchema = union('kind', {
  none: obj({}),
  'json-depth': obj({ depth: int({ min: 1, max: MAX_CHECK_JSON_DEPTH }) }),
  command: obj({
    argv: list(str({ min: 1, max: 1024 }), { max: MAX_CHECK_ARGV }),
    timeoutMs: int({ min: 1, max: MAX_CHECK_TIMEOUT_MS }),
    failure: oneOf(['closed', 'open'] as const),
    concurrency: int({ min: 1, max: MAX_CHECK_CONCURRENCY }),
  }),
});

/** Every call: its parameter schema. Results are typed by AdminResults. */
export const ADMIN_CALLS = {
  'snapshot:get': obj({}),
  'peers:approve': obj({ name: peerName }),
  'peers:reject': obj({ name: peerName }),
  'peers:revoke': obj({ name: peerName }),
  'peers:forget': obj({ name: peerName }),
  'policy:set': obj({
    subnets: list(cidr, { max: 64 }),
    /** a new join code; omitted keeps the current one, "" clears it */
    joinCode: optional(str({ max: 128 })),
  }),
  'tunnel:reconnect': obj({}),
  'ports:close': obj({ id: int({ min: 1, max: 0xffffffff }) }),
  'seal:policy': obj({ required: bool, peers: list(peerName, { max: 4096 }), forget: optional(list(str({ min: 3, max: 127 }), { max: 1024 })) }),
  'ports:policy': obj({
    targets: list(str({ min: 1, max: 80 }), { max: 256 }),
    listen: list(str({ min: 1, max: 80 }), { max: 256 }),
  }),
  'history:query': obj({
    /** a cursor: only entries older than this seq (a page's `next`) */
    before: optional(int({ min: 1, max: Number.MAX_SAFE_INTEGER })),
    limit: optional(int({ min: 1, max: MAX_HISTORY_PAGE })),
    /** an address (has @): entries from or to exactly it; else a part of a from or to address */
    peer: optional(str({ min: 1, max: 200 })),
    /** the same, for the sender (`from`) only */
    sender: optional(str({ min: 1, max: 200 })),
    outcome: optional(oneOf(HISTORY_OUTCOMES)),
    /** a status name (PEER_OFFLINE) or a part of the reason text */
    reason: optional(str({ min: 1, max: MAX_REASON_LENGTH })),
    /** time range, ms since the epoch, inclusive */
    since: optional(int({ min: 0, max: Number.MAX_SAFE_INTEGER })),
    until: optional(int({ min: 0, max: Number.MAX_SAFE_INTEGER })),
  }),
  /** counts per time bucket of the entries matching `peer` from `since` to `until` (default now): a traffic chart */
  'history:traffic': obj({
    peer: optional(str({ min: 1, max: 200 })),
    since: int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    until: optional(int({ min: 0, max: Number.MAX_SAFE_INTEGER })),
    buckets: int({ min: 1, max: MAX_HISTORY_BUCKETS }),
  }),
  'history:retention': obj({
    entries: int({ min: 1, max: MAX_HISTORY_ENTRIES }),
    days: int({ min: 0, max: MAX_HISTORY_DAYS }),
  }),
  /** the audit trail, newest first: `limit` entries older than `beforeSeq`, about `target` when given */
  'audit:list': obj({
    target: optional(str({ min: 1, max: 128 })),
    beforeSeq: optional(int({ min: 1, max: Number.MAX_SAFE_INTEGER })),
    limit: optional(int({ min: 1, max: 1_000 })),
  }),
  'rules:get': obj({}),
  /** a peer's rules (`peer`), or the office default (no `peer`): replaces them whole; `{}` clears */
  'rules:set': obj({ peer: optional(peerName), ...ruleSetShape }),
  /** the content check: replaces it whole */
  'rules:check': obj({ check: contentCheckSchema }),
  /** what the rules refused for one peer since start */
  'rules:refusals': obj({ peer: peerName }),
} satisfies Record<string, Schema<unknown>>;

export type AdminMethod = keyof typeof ADMIN_CALLS;
export type AdminParams<M extends AdminMethod> = Infer<(typeof ADMIN_CALLS)[M]>;
export interface AdminResults {
  'snapshot:get': Snapshot;
  'peers:approve': PeerView;
  'peers:reject': PeerView;
  'peers:revoke': PeerView;
  'peers:forget': { readonly name: string };
  'policy:set': PolicyView;
  'tunnel:reconnect': TunnelView;
  'ports:close': { readonly id: number };
  'ports:policy': PortPolicyView;
  'seal:policy': SealView;
  'history:query': HistoryPage;
  'history:retention': HistoryRetention;
  'history:traffic': HistoryTraffic;
  'audit:list': { readonly entries: readonly AuditEntry[]; readonly more: boolean };
  'rules:get': RulesView;
  'rules:set': RulesView;
  'rules:check': RulesView;
  'rules:refusals': RuleRefusalsView;
}

/**
 * Stable error codes an admin call can fail with. NOT_SAVED: a decision could not be written to
 * the state folder (disk full, folder gone or read-only); the message says why, and nothing changed.
 */
export type AdminErrorCode = 'INVALID_PARAMS' | 'NOT_FOUND' | 'CONFLICT' | 'UNAUTHORIZED' | 'UNKNOWN_METHOD' | 'INTERNAL' | 'UNAVAILABLE' | 'NOT_SAVED';

export class AdminError extends Error {
  override readonly name = 'AdminError';
  constructor(
    readonly code: AdminErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** What both transports expose, and what the CLI and the GUI program against. */
export interface AdminApi {
  call<M extends AdminMethod>(method: M, params: AdminParams<M>): Promise<AdminResults[M]>;
  subscribe<E extends AdminEventName>(event: E, listener: (data: AdminEvents[E]) => void): () => void;
}

/**
 * The contact point's side of the contract (and its desktop host's): a call also says which
 * admin surface it came from, for the audit trail; a caller that does not say is `api`.
 */
export interface AdminHostApi extends AdminApi {
  call<M extends AdminMethod>(method: M, params: AdminParams<M>, surface?: AdminSurface): Promise<AdminResults[M]>;
}

export function isAdminMethod(m: unknown): m is AdminMethod {
  return typeof m === 'string' && Object.hasOwn(ADMIN_CALLS, m);
}

/**
 * The UNKNOWN_METHOD message for whatever arrived as a method: a name is quoted (cut at 64
 * characters), anything else is named by its kind. Never String(m): an object whose toString
 * is not a function makes that throw, and in a socket's message handler that ended the process.
 */
export function unknownMethodMessage(m: unknown): string {
  if (typeof m === 'string') return `no admin call named ${JSON.stringify(m.length > 64 ? `${m.slice(0, 64)}…` : m)}`;
  return `the method must be a call's name, not ${m === null ? 'null' : Array.isArray(m) ? 'an array' : `a value of type ${typeof m}`}`;
}

/** Wire messages of the ws admin transport (JSON text frames). */
export type AdminClientMessage =
  | { readonly type: 'auth'; readonly token: string; readonly surface?: AdminSurface }
  | { readonly type: 'call'; readonly id: number; readonly method: string; readonly params: unknown };
export type AdminServerMessage =
  | { readonly type: 'ready'; readonly snapshot: Snapshot }
  | { readonly type: 'result'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly type: 'result'; readonly id: number; readonly ok: false; readonly error: { readonly code: AdminErrorCode; readonly message: string } }
  | { readonly type: 'event'; readonly name: AdminEventName; readonly data: unknown };

/** ws subprotocol of the admin endpoint. */
export const ADMIN_PROTOCOL = 'contact-point-admin.v1';
export const ADMIN_PATH = '/admin';
