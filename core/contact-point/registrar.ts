import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { MAX_PEERS_PER_CONTACT_POINT, MAX_UNDECIDED_PEERS } from '../protocol/limits.js';
import { Status, type StatusCode } from '../protocol/status.js';
import type { PeerState, PeerView, PolicyView } from '../admin/contract.js';
import { AdminError } from '../admin/contract.js';
import { RegistrationPolicy } from './policy.js';
import { hashSecret } from '../runtime/secrets.js';
import { StateDraft, type PeerRecord, type PersistedState } from './state-store.js';

export interface RegistrarEvents {
  /** a record changed; `previous` is its state before (undefined for a new record) */
  changed: [PeerRecord, PeerState | undefined];
  removed: [string];
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
  /** records with admin decisions being saved (how many): not evicted meanwhile */
  private readonly pinned = new Map<string, number>();
  readonly policy: RegistrationPolicy;

  constructor(
    readonly contactPointId: string,
    initial: PersistedState,
    private readonly now: () => number = Date.now,
    private readonly limits = { maxPeers: MAX_PEERS_PER_CONTACT_POINT, maxUndecided: MAX_UNDECIDED_PEERS },
  ) {
    super();
    for (const r of initial.peers) this.records.set(r.name, { ...r });
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

  /** A peer proved its key for `name`: create or refresh its record. */
  hello(name: string, publicKey: string, lanAddress: string | undefined): HelloOutcome {
    const existing = this.records.get(name);
    const t = this.now();
    if (existing) {
      if (existing.publicKey !== publicKey) {
        return { ok: false, code: Status.IDENTITY_MISMATCH, reason: `"${name}" is registered to another key; pick another name or ask the admin to forget it` };
      }
      existing.lastSeen = t;
      if (lanAddress) existing.lanAddress = lanAddress;
      this.emit('changed', existing, existing.state);
      return { ok: true, record: existing };
    }
    if (this.records.size >= this.limits.maxPeers || (this.undecidedCount() >= this.limits.maxUndecided && !this.evictUndecided())) {
      return { ok: false, code: Status.RESOURCE_LIMIT, reason: 'this contact point knows too many peers; ask the admin to forget some' };
    }
    const record: PeerRecord = { name, publicKey, state: 'unregistered', firstSeen: t, lastSeen: t, messagesIn: 0, messagesOut: 0 };
    if (lanAddress) record.lanAddress = lanAddress;
    this.records.set(name, record);
    this.emit('changed', record, undefined);
    return { ok: true, record };
  }

  /** The peer asks to be registered. The policy may register it at once; else it is pending. */
  requestRegistration(name: string, joinCode: string | undefined): PeerRecord | undefined {
    const r = this.records.get(name);
    if (!r || r.state === 'registered' || r.state === 'revoked') return r;
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

  /** approve into `draft`, to be applied once it is saved: registered, by `admin` (also from revoked). */
  planApprove(name: string, draft: StateDraft): PlannedDecision<PeerRecord> {
    const r = this.drafted(name, draft);
    return this.planDecision(r, draft, r.state === 'registered' ? undefined : { state: 'registered', decidedAt: this.now(), admittedBy: 'admin' });
  }

  /** reject into `draft`: a pending request back to unregistered; CONFLICT otherwise. */
  planReject(name: string, draft: StateDraft): PlannedDecision<PeerRecord> {
    const r = this.drafted(name, draft);
    if (r.state !== 'pending') throw new AdminError('CONFLICT', `${name} is ${r.state}, not pending`);
    return this.planDecision(r, draft, { state: 'unregistered', decidedAt: this.now(), admittedBy: undefined });
  }

  /** revoke into `draft`. */
  planRevoke(name: string, draft: StateDraft): PlannedDecision<PeerRecord> {
    const r = this.drafted(name, draft);
    return this.planDecision(r, draft, r.state === 'revoked' ? undefined : { state: 'revoked', decidedAt: this.now(), admittedBy: undefined });
  }

  /** forget into `draft`. */
  planForget(name: string, draft: StateDraft): PlannedDecision<void> {
    this.drafted(name, draft);
    draft.peers.delete(name);
    return {
      apply: () => {
        if (!this.records.delete(name)) return;
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

  countMessage(name: string, dir: 'in' | 'out'): void {
    const r = this.records.get(name);
    if (!r) return;
    if (dir === 'in') r.messagesIn++;
    else r.messagesOut++;
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
    if (state === 'registered' && admittedBy) r.admittedBy = admittedBy;
    if (state !== 'registered') delete r.admittedBy;
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
    let done = false;
    const unpin = (): void => {
      if (done) return;
      done = true;
      const n = (this.pinned.get(name) ?? 1) - 1;
      if (n > 0) this.pinned.set(name, n);
      else this.pinned.delete(name);
    };
    return {
      apply: () => {
        unpin();
        let live = this.records.get(name);
        if (!live) {
          // Cannot happen while pinned (only decisions forget, in the order they were planned); keep memory equal to the file anyway.
          live = { ...planned };
          this.records.set(name, live);
          this.emit('changed', live, undefined);
          return live;
        }
        if (!fields) return live;
        const previous = live.state;
        live.state = planned.state;
        live.decidedAt = fields.decidedAt;
        if (planned.admittedBy !== undefined) live.admittedBy = planned.admittedBy;
        else delete live.admittedBy;
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

  private undecidedCount(): number {
    let n = 0;
    for (const r of this.records.values()) if (r.state === 'unregistered' || r.state === 'pending') n++;
    return n;
  }

  /** Forget the longest-unseen offline unregistered peer to make room; false if none can go. */
  private evictUndecided(): boolean {
    let victim: PeerRecord | undefined;
    for (const r of this.records.values()) {
      if (r.state !== 'unregistered' || this.online.has(r.name) || this.pinned.has(r.name)) continue;
      if (!victim || r.lastSeen < victim.lastSeen) victim = r;
    }
    if (!victim) return false;
    this.records.delete(victim.name);
    this.emit('removed', victim.name);
    return true;
  }
}

/** `r` with an admin decision's fields: state, when, and who admitted it (only a registered record keeps that). */
function withDecision(r: PeerRecord, d: DecidedFields): PeerRecord {
  const next: PeerRecord = { ...r, state: d.state, decidedAt: d.decidedAt };
  if (d.state === 'registered' && d.admittedBy !== undefined) next.admittedBy = d.admittedBy;
  else delete next.admittedBy;
  return next;
}
