import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  MAX_PEERS_PER_CONTACT_POINT,
  MAX_UNDECIDED_PEERS,
  MAX_UNDECIDED_PER_ADDRESS,
  NEW_PEERS_PER_ADDRESS_PER_MINUTE,
} from '../protocol/limits.js';
import { Status, type StatusCode } from '../protocol/status.js';
import { KeyedBuckets } from '../runtime/token-bucket.js';
import type { AdminSurface, PeerState, PeerView, PolicyView } from '../admin/contract.js';
import { AdminError } from '../admin/contract.js';
import { canonicalIp, RegistrationPolicy } from './policy.js';
import { hashSecret } from '../runtime/secrets.js';
import { StateDraft, type PeerRecord, type PersistedState } from './state-store.js';

export interface RegistrarEvents {
  /** a record changed; `previous` is its state before (undefined for a new record) */
  changed: [PeerRecord, PeerState | undefined];
  /** the admin forgot a record */
  removed: [string];
  /** an undecided request was forgotten to make room (flood limit): its record, source address and why */
  evicted: [PeerRecord, string, string];
  /** a hello with a new identity was refused (flood limit): source address, code, reason */
  refused: [string, StatusCode, string];
  policy: [PolicyView];
}

/**
 * An admin decision checked and written into a StateDraft but not applied: apply() makes it in
 * memory (and emits the events) once the draft is on disk, abandon() gives it up. Between the
 * two the record is pinned, so room-making eviction cannot take it.
 */
export interface PlannedDecision<T> {
  apply(): T;
  abandon(): void;
}

interface DecidedFields {
  readonly state: PeerState;
  readonly decidedAt: number;
  /** kept only on a registered record */
  readonly admittedBy: string | undefined;
  /** the admin surface the decision came through */
  readonly via: AdminSurface;
}

/** How many records and requests the registrar keeps; every value an integer of at least 1. */
export interface RegistrarLimits {
  /** records in any state (MAX_PEERS_PER_CONTACT_POINT) */
  readonly maxPeers: number;
  /** undecided requests in total (MAX_UNDECIDED_PEERS) */
  readonly maxUndecided: number;
  /** undecided requests per source address (MAX_UNDECIDED_PER_ADDRESS) */
  readonly maxUndecidedPerAddress: number;
  /** new identities per source address a minute (NEW_PEERS_PER_ADDRESS_PER_MINUTE) */
  readonly newPeersPerAddressPerMinute: number;
}

export const DEFAULT_REGISTRAR_LIMITS: RegistrarLimits = {
  maxPeers: MAX_PEERS_PER_CONTACT_POINT,
  maxUndecided: MAX_UNDECIDED_PEERS,
  maxUndecidedPerAddress: MAX_UNDECIDED_PER_ADDRESS,
  newPeersPerAddressPerMinute: NEW_PEERS_PER_ADDRESS_PER_MINUTE,
};

/** Source addresses whose new-identity rate is tracked at once; past it the least recently seen is forgotten. */
const MAX_TRACKED_SOURCES = 10_000;

/** The source address a record counts against: IPv4-mapped IPv6 as IPv4, `unknown` when none. */
export function sourceOf(lanAddress: string | undefined): string {
  return lanAddress ? canonicalIp(lanAddress).address : 'unknown';
}

/**
 * A request the admin has not decided on, which the flood limits may forget: `pending`, or
 * `unregistered` and never rejected (a rejection sets decidedAt and is the admin's decision).
 */
export function isUndecided(r: PeerRecord): boolean {
  return r.state === 'pending' || (r.state === 'unregistered' && r.decidedAt === undefined);
}

export function checkRegistrarLimits(limits: RegistrarLimits): RegistrarLimits {
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || (value as number) < 1) throw new Error(`registrar limit ${key} must be an integer of at least 1, not ${String(value)}`);
  }
  return limits;
}

export type HelloOutcome = { readonly ok: true; readonly record: PeerRecord } | { readonly ok: false; readonly code: StatusCode; readonly reason: string };

/**
 * The registrar (seed 000, registrar 230): the list of internal peers and the admin's decision
 * on each. A name is bound to the public key it first said hello with. States:
 *
 *   unregistered --REGISTER--> pending --approve--> registered --revoke--> revoked
 *        \___________ policy (subnet / join code) ___/^          approve ___/
 *   pending --reject--> unregistered;  revoked stays revoked until the admin approves again.
 */
export class Registrar extends EventEmitter<RegistrarEvents> {
  private readonly records = new Map<string, PeerRecord>();
  private readonly online = new Set<string>();
  /** peers whose message counters moved since the last drainCounted() */
  private readonly counted = new Set<string>();
  /** records with admin decisions being saved (how many): not evicted meanwhile, nor counted as undecided */
  private readonly pinned = new Map<string, number>();
  /** undecided requests by source address, each oldest first (the order they said hello) */
  private readonly undecided = new Map<string, Map<string, PeerRecord>>();
  /** the source each undecided request is filed under, by name */
  private readonly undecidedSource = new Map<string, string>();
  /** new identities per source address (token buckets, bounded) */
  private readonly newIdentities: KeyedBuckets;
  readonly policy: RegistrationPolicy;
  readonly limits: RegistrarLimits;

  constructor(
    readonly contactPointId: string,
    initial: PersistedState,
    private readonly now: () => number = Date.now,
    limits: Partial<RegistrarLimits> = {},
  ) {
    super();
    this.limits = checkRegistrarLimits({ ...DEFAULT_REGISTRAR_LIMITS, ...limits });
    this.newIdentities = KeyedBuckets.perMinute(this.limits.newPeersPerAddressPerMinute, MAX_TRACKED_SOURCES, now);
    for (const r of [...initial.peers].sort((a, b) => a.firstSeen - b.firstSeen)) {
      const rec = { ...r };
      this.records.set(r.name, rec);
      this.index(rec);
    }
    this.policy = new RegistrationPolicy(initial.policy);
  }

  get(name: string): PeerRecord | undefined {
    return this.records.get(name);
  }

  isRegistered(name: string): boolean {
    return this.records.get(name)?.state === 'registered';
  }

  registeredNames(): string[] {
    return [...this.records.values()].filter((r) => r.state === 'registered').map((r) => r.name);
  }

  get size(): number {
    return this.records.size;
  }

  /** Records by state, and how many of them are connected (for status and metrics; walks the records). */
  stateCounts(): { readonly byState: Record<PeerState, number>; readonly online: number } {
    const byState: Record<PeerState, number> = { unregistered: 0, pending: 0, registered: 0, revoked: 0 };
    for (const r of this.records.values()) byState[r.state]++;
    return { byState, online: this.online.size };
  }

  /**
   * A peer proved its key for `name`: create or refresh its record. `sealKey`: the sealing key
   * its identity signed (a new one replaces the old: the identity key vouches for it).
   */
  hello(name: string, publicKey: string, lanAddress: string | undefined, sealKey?: string): HelloOutcome {
    const existing = this.records.get(name);
    const t = this.now();
    if (existing) {
      if (existing.publicKey !== publicKey) {
        return { ok: false, code: Status.IDENTITY_MISMATCH, reason: `"${name}" is registered to another key; pick another name or ask the admin to forget it` };
      }
      existing.lastSeen = t;
      if (lanAddress) existing.lanAddress = lanAddress;
      // What it presents now: a peer that stopped sealing gets no more statements for its old key.
      if (sealKey !== undefined) existing.sealKey = sealKey;
      else delete existing.sealKey;
      this.index(existing);
      this.emit('changed', existing, existing.state);
      return { ok: true, record: existing };
    }
    // A new identity. Flood limits: a rate per source address (not for subnets the admin's
    // policy trusts), then room among the undecided requests, made by forgetting the oldest.
    const source = sourceOf(lanAddress);
    if (this.policy.admits(lanAddress, undefined) === undefined && !this.newIdentities.take(source)) {
      const reason = `more than ${this.limits.newPeersPerAddressPerMinute} new peers from ${source} within a minute (flood limit); try again later`;
      this.emit('refused', source, Status.RATE_LIMITED, reason);
      return { ok: false, code: Status.RATE_LIMITED, reason };
    }
    this.makeRoom(source);
    if (this.records.size >= this.limits.maxPeers && !this.evictOne(`this contact point keeps at most ${this.limits.maxPeers} peers`)) {
      return { ok: false, code: Status.RESOURCE_LIMIT, reason: 'this contact point knows too many peers; ask the admin to forget some' };
    }
    const record: PeerRecord = { name, publicKey, state: 'unregistered', firstSeen: t, lastSeen: t, messagesIn: 0, messagesOut: 0 };
    if (lanAddress) record.lanAddress = lanAddress;
    if (sealKey !== undefined) record.sealKey = sealKey;
    this.records.set(name, record);
    this.index(record);
    this.emit('changed', record, undefined);
    return { ok: true, record };
  }

  /** Undecided requests from one source address (after canonicalising it), or in total. */
  undecidedCount(source?: string): number {
    if (source === undefined) return this.undecidedSource.size;
    return this.undecided.get(sourceOf(source))?.size ?? 0;
  }

  /** The peer asks to be registered. The policy may register it at once; else it is pending. */
  requestRegistration(name: string, joinCode: string | undefined): PeerRecord | undefined {
    const r = this.records.get(name);
    if (!r || r.state === 'registered' || r.state === 'revoked') return r;
    r.requestedAt = this.now();
    const rule = this.policy.admits(r.lanAddress, joinCode);
    if (rule) return this.decide(r, 'registered', rule);
    if (r.state === 'pending') return r;
    return this.decide(r, 'pending', undefined);
  }

  approve(name: string): PeerRecord {
    return this.planApprove(name, this.draft()).apply();
  }

  reject(name: string): PeerRecord {
    return this.planReject(name, this.draft()).apply();
  }

  revoke(name: string): PeerRecord {
    return this.planRevoke(name, this.draft()).apply();
  }

  /** Removes the record (and so the name's key binding). A connected peer is cut off by the caller. */
  forget(name: string): void {
    this.planForget(name, this.draft()).apply();
  }

  /** approve into `draft`, to be applied once it is saved: registered, by `admin` (also from revoked), through `via`. */
  planApprove(name: string, draft: StateDraft, via: AdminSurface = 'api'): PlannedDecision<PeerRecord> {
    const r = this.drafted(name, draft);
    return this.planDecision(r, draft, r.state === 'registered' ? undefined : { state: 'registered', decidedAt: this.now(), admittedBy: 'admin', via });
  }

  /** reject into `draft`: a pending request back to unregistered; CONFLICT otherwise. */
  planReject(name: string, draft: StateDraft, via: AdminSurface = 'api'): PlannedDecision<PeerRecord> {
    const r = this.drafted(name, draft);
    if (r.state !== 'pending') throw new AdminError('CONFLICT', `${name} is ${r.state}, not pending`);
    return this.planDecision(r, draft, { state: 'unregistered', decidedAt: this.now(), admittedBy: undefined, via });
  }

  /** revoke into `draft`. */
  planRevoke(name: string, draft: StateDraft, via: AdminSurface = 'api'): PlannedDecision<PeerRecord> {
    const r = this.drafted(name, draft);
    return this.planDecision(r, draft, r.state === 'revoked' ? undefined : { state: 'revoked', decidedAt: this.now(), admittedBy: undefined, via });
  }

  /** forget into `draft`. */
  planForget(name: string, draft: StateDraft): PlannedDecision<void> {
    this.drafted(name, draft);
    draft.peers.delete(name);
    return {
      apply: () => {
        if (!this.records.delete(name)) return;
        this.unindex(name);
        this.emit('removed', name);
      },
      abandon: () => undefined,
    };
  }

  setOnline(name: string, online: boolean): void {
    if (online) this.online.add(name);
    else this.online.delete(name);
    const r = this.records.get(name);
    if (r) {
      r.lastSeen = this.now();
      this.emit('changed', r, r.state);
    }
  }

  isOnline(name: string): boolean {
    return this.online.has(name);
  }

  /** `count` messages of `name` (a sealed bundle carries several) */
  countMessage(name: string, dir: 'in' | 'out', count = 1): void {
    const r = this.records.get(name);
    if (!r) return;
    if (dir === 'in') r.messagesIn += count;
    else r.messagesOut += count;
    r.lastSeen = this.now();
    this.counted.add(name);
  }

  /** Names whose counters changed since the last call (for a periodic admin refresh). */
  drainCounted(): string[] {
    const names = [...this.counted];
    this.counted.clear();
    return names;
  }

  setPolicy(subnets: readonly string[], joinCode: string | undefined): PolicyView {
    return this.planPolicy(subnets, joinCode, this.draft()).apply();
  }

  /** The auto-approve policy into `draft`, to be applied once saved. A bad CIDR throws here. */
  planPolicy(subnets: readonly string[], joinCode: string | undefined, draft: StateDraft): PlannedDecision<PolicyView> {
    const current = draft.policy.joinCodeHash;
    const joinCodeHash = joinCode === undefined ? current : joinCode === '' ? undefined : hashSecret(joinCode);
    const checked = new RegistrationPolicy({ subnets, joinCodeHash }); // throws on a bad CIDR
    draft.policy = { subnets: [...checked.subnets], ...(joinCodeHash ? { joinCodeHash } : {}) };
    return {
      apply: () => {
        this.policy.setSubnets(checked.subnets);
        this.policy.setJoinCodeHash(joinCodeHash);
        const view = this.policyView();
        this.emit('policy', view);
        return view;
      },
      abandon: () => undefined,
    };
  }

  policyView(): PolicyView {
    return { subnets: [...this.policy.subnets], joinCode: this.policy.hasJoinCode };
  }

  view(r: PeerRecord): PeerView {
    return {
      name: r.name,
      address: `${r.name}@${this.contactPointId}`,
      state: r.state,
      online: this.online.has(r.name),
      lanAddress: r.lanAddress,
      firstSeen: r.firstSeen,
      lastSeen: r.lastSeen,
      messagesIn: r.messagesIn,
      messagesOut: r.messagesOut,
      admittedBy: r.admittedBy,
      decidedAt: r.decidedAt,
      decidedVia: r.decidedVia,
      requestedAt: r.requestedAt,
      keyFingerprint: createHash('sha256').update(Buffer.from(r.publicKey, 'base64')).digest('hex').slice(0, 16),
    };
  }

  views(): PeerView[] {
    return [...this.records.values()].map((r) => this.view(r)).sort((a, b) => a.name.localeCompare(b.name));
  }

  persisted(): PersistedState {
    const joinCodeHash = this.policy.storedJoinCodeHash;
    return {
      version: 1,
      peers: [...this.records.values()].map((r) => ({ ...r })),
      policy: { subnets: [...this.policy.subnets], ...(joinCodeHash ? { joinCodeHash } : {}) },
    };
  }

  /** Registration the peer asked for (REGISTER, policy): applied at once, saved with the bookkeeping. */
  private decide(r: PeerRecord, state: PeerState, admittedBy: string | undefined): PeerRecord {
    const previous = r.state;
    r.state = state;
    r.decidedAt = this.now();
    delete r.decidedVia; // the peer's request or the policy, not an admin surface
    if (state === 'registered' && admittedBy) r.admittedBy = admittedBy;
    if (state !== 'registered') delete r.admittedBy;
    this.index(r);
    this.emit('changed', r, previous);
    return r;
  }

  /** A draft of what is in memory now, for a decision applied at once (the synchronous calls above). */
  private draft(): StateDraft {
    return new StateDraft(this.persisted());
  }

  /** The record as `draft` has it (earlier decisions of the same write included); NOT_FOUND if none. */
  private drafted(name: string, draft: StateDraft): PeerRecord {
    const r = draft.peers.get(name);
    if (!r) throw new AdminError('NOT_FOUND', `no peer named "${name}"`);
    return r;
  }

  /**
   * An admin decision on `r` (`fields` undefined: nothing to change, the current state is saved
   * as it is). Applying sets the decided fields on the live record whatever happened to it in
   * between (a REGISTER, a policy admission), so memory ends up as the file says.
   */
  private planDecision(r: PeerRecord, draft: StateDraft, fields: DecidedFields | undefined): PlannedDecision<PeerRecord> {
    const name = r.name;
    const planned = fields ? withDecision(r, fields) : { ...r };
    if (fields) draft.peers.set(name, planned);
    this.pinned.set(name, (this.pinned.get(name) ?? 0) + 1);
    this.reindex(name); // pinned: out of the flood limits' reach until applied or abandoned
    let done = false;
    const unpin = (): void => {
      if (done) return;
      done = true;
      const n = (this.pinned.get(name) ?? 1) - 1;
      if (n > 0) this.pinned.set(name, n);
      else this.pinned.delete(name);
      this.reindex(name);
    };
    return {
      apply: () => {
        unpin();
        let live = this.records.get(name);
        if (!live) {
          // Cannot happen while pinned (only decisions forget, in the order they were planned); keep memory equal to the file anyway.
          live = { ...planned };
          this.records.set(name, live);
          this.index(live);
          this.emit('changed', live, undefined);
          return live;
        }
        if (!fields) return live;
        const previous = live.state;
        live.state = planned.state;
        live.decidedAt = fields.decidedAt;
        live.decidedVia = fields.via;
        if (planned.admittedBy !== undefined) live.admittedBy = planned.admittedBy;
        else delete live.admittedBy;
        this.index(live);
        this.emit('changed', live, previous);
        return live;
      },
      abandon: unpin,
    };
  }

  private must(name: string): PeerRecord {
    const r = this.records.get(name);
    if (!r) throw new AdminError('NOT_FOUND', `no peer named "${name}"`);
    return r;
  }

  private reindex(name: string): void {
    const r = this.records.get(name);
    if (r) this.index(r);
  }

  /**
   * Files `r` under its source address while it is undecided, and nowhere once it is not (nor
   * while an admin decision on it is being saved: the flood limits never take such a record).
   */
  private index(r: PeerRecord): void {
    const was = this.undecidedSource.get(r.name);
    const now = isUndecided(r) && !this.pinned.has(r.name) ? sourceOf(r.lanAddress) : undefined;
    if (was === now) return;
    if (was !== undefined) this.unindex(r.name);
    if (now === undefined) return;
    let bySource = this.undecided.get(now);
    if (!bySource) this.undecided.set(now, (bySource = new Map<string, PeerRecord>()));
    bySource.set(r.name, r);
    this.undecidedSource.set(r.name, now);
  }

  private unindex(name: string): void {
    const source = this.undecidedSource.get(name);
    if (source === undefined) return;
    this.undecidedSource.delete(name);
    const bySource = this.undecided.get(source);
    bySource?.delete(name);
    if (bySource?.size === 0) this.undecided.delete(source);
  }

  /** Before a new request from `source`: forget the oldest undecided ones over the per-address and total caps. */
  private makeRoom(source: string): void {
    const { maxUndecidedPerAddress: perAddress, maxUndecided: total } = this.limits;
    for (let mine = this.undecided.get(source); mine && mine.size >= perAddress; mine = this.undecided.get(source)) {
      this.evict(mine.values().next().value!, source, `more than ${perAddress} requests from ${source} are waiting for the admin`);
    }
    while (this.undecidedSource.size >= total && this.evictOne(`more than ${total} requests are waiting for the admin`)) {
      // evictOne forgot one
    }
  }

  /**
   * Forgets one undecided request to make room in total: the oldest of the source address that
   * holds the most (ties: the one with the oldest request). A flood from many addresses thus
   * pushes out its own requests before a lone request from an address that made one.
   */
  private evictOne(why: string): boolean {
    let victim: { source: string; record: PeerRecord; count: number } | undefined;
    for (const [source, bySource] of this.undecided) {
      const oldest = bySource.values().next().value!;
      if (!victim || bySource.size > victim.count || (bySource.size === victim.count && oldest.firstSeen < victim.record.firstSeen)) {
        victim = { source, record: oldest, count: bySource.size };
      }
    }
    if (!victim) return false;
    this.evict(victim.record, victim.source, why);
    return true;
  }

  private evict(r: PeerRecord, source: string, why: string): void {
    this.records.delete(r.name);
    this.unindex(r.name);
    this.online.delete(r.name);
    this.counted.delete(r.name);
    this.emit('evicted', r, source, `registration request dropped: ${why} (flood limit)`);
  }
}

/** `r` with an admin decision's fields: state, when, and who admitted it (only a registered record keeps that). */
function withDecision(r: PeerRecord, d: DecidedFields): PeerRecord {
  const next: PeerRecord = { ...r, state: d.state, decidedAt: d.decidedAt, decidedVia: d.via };
  if (d.state === 'registered' && d.admittedBy !== undefined) next.admittedBy = d.admittedBy;
  else delete next.admittedBy;
  return next;
}
