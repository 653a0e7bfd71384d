import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AdminError } from '../../core/admin/contract.js';
import { Registrar, type RegistrarLimits } from '../../core/contact-point/registrar.js';
import { emptyState, STATE_FILE, StateDraft, StateStore, type PersistedState } from '../../core/contact-point/state-store.js';
import { Status } from '../../core/protocol/status.js';
import { writeJsonAtomic } from '../../core/runtime/json-file.js';

const KEY_A = Buffer.alloc(44, 1).toString('base64');
const KEY_B = Buffer.alloc(44, 2).toString('base64');
const KEY_C = Buffer.alloc(44, 3).toString('base64');

let t = 1_000;
const now = (): number => t;
let r: Registrar;
let log: string[];

function make(limits?: Partial<RegistrarLimits>): Registrar {
  const reg = new Registrar('acme-hq', emptyState(), now, limits);
  reg.on('changed', (rec, prev) => log.push(`changed ${rec.name} ${prev ?? 'new'}->${rec.state}`));
  reg.on('removed', (name) => log.push(`removed ${name}`));
  return reg;
}

function adminCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err: unknown) {
    if (err instanceof AdminError) return err.code;
    throw err;
  }
  throw new Error('expected an AdminError');
}

beforeEach(() => {
  t = 1_000;
  log = [];
  r = make();
});

describe('registrar: hello and identity', () => {
  it('a first hello creates an unregistered record bound to the key', () => {
    const out = r.hello('printer', KEY_A, '10.0.0.5');
    expect(out.ok).toBe(true);
    expect(r.get('printer')).toMatchObject({ name: 'printer', publicKey: KEY_A, state: 'unregistered', lanAddress: '10.0.0.5', firstSeen: 1_000 });
    expect(log).toEqual(['changed printer new->unregistered']);
    expect(r.view(r.get('printer')!).address).toBe('printer@acme-hq');
  });

  it('the same name with another key is IDENTITY_MISMATCH, and the record is untouched', () => {
    r.hello('printer', KEY_A, '10.0.0.5');
    t = 2_000;
    const out = r.hello('printer', KEY_B, '10.0.0.6');
    expect(out.ok).toBe(false);
    if (!out.ok) expect(out.code).toBe(Status.IDENTITY_MISMATCH);
    expect(r.get('printer')).toMatchObject({ publicKey: KEY_A, lanAddress: '10.0.0.5', lastSeen: 1_000 });
  });

  it('the same key again refreshes lastSeen and the LAN address, keeping the state', () => {
    r.hello('printer', KEY_A, '10.0.0.5');
    r.requestRegistration('printer', undefined);
    t = 5_000;
    expect(r.hello('printer', KEY_A, '10.0.0.7').ok).toBe(true);
    expect(r.get('printer')).toMatchObject({ state: 'pending', lastSeen: 5_000, lanAddress: '10.0.0.7', firstSeen: 1_000 });
  });

  it('forget releases the name for another key', () => {
    r.hello('printer', KEY_A, undefined);
    r.forget('printer');
    expect(r.get('printer')).toBeUndefined();
    expect(r.hello('printer', KEY_B, undefined).ok).toBe(true);
    expect(log).toContain('removed printer');
    expect(adminCode(() => r.forget('nobody'))).toBe('NOT_FOUND');
  });
});

describe('registrar: decisions', () => {
  beforeEach(() => {
    r.hello('printer', KEY_A, '10.0.0.5');
    log = [];
  });

  it('REGISTER makes it pending; asking again changes nothing', () => {
    expect(r.requestRegistration('printer', undefined)?.state).toBe('pending');
    expect(r.requestRegistration('printer', undefined)?.state).toBe('pending');
    expect(log).toEqual(['changed printer unregistered->pending']);
    expect(r.requestRegistration('nobody', undefined)).toBeUndefined();
  });

  it('approve registers it, by the admin, and lists it as registered', () => {
    r.requestRegistration('printer', undefined);
    t = 3_000;
    const rec = r.approve('printer');
    expect(rec).toMatchObject({ state: 'registered', admittedBy: 'admin', decidedAt: 3_000 });
    expect(r.isRegistered('printer')).toBe(true);
    expect(r.registeredNames()).toEqual(['printer']);
    expect(adminCode(() => r.approve('nobody'))).toBe('NOT_FOUND');
  });

  it('reject works only from pending, and returns it to unregistered', () => {
    expect(adminCode(() => r.reject('printer'))).toBe('CONFLICT');
    r.requestRegistration('printer', undefined);
    expect(r.reject('printer').state).toBe('unregistered');
    r.approve('printer');
    expect(adminCode(() => r.reject('printer'))).toBe('CONFLICT');
    r.revoke('printer');
    expect(adminCode(() => r.reject('printer'))).toBe('CONFLICT');
  });

  it('revoke stops it at once and stays until the admin approves again, whatever the policy says', () => {
    r.setPolicy(['10.0.0.0/8'], 'join-me');
    r.approve('printer');
    const rec = r.revoke('printer');
    expect(rec.state).toBe('revoked');
    expect(rec.admittedBy).toBeUndefined();
    expect(r.isRegistered('printer')).toBe(false);
    expect(r.registeredNames()).toEqual([]);
    // REGISTER with a matching subnet and the right join code: still revoked.
    expect(r.requestRegistration('printer', 'join-me')?.state).toBe('revoked');
    // A new hello with the same key does not clear it either.
    expect(r.hello('printer', KEY_A, '10.0.0.5').ok).toBe(true);
    expect(r.get('printer')?.state).toBe('revoked');
    expect(r.approve('printer')).toMatchObject({ state: 'registered', admittedBy: 'admin' });
  });

  it('the policy registers at once and records which rule did', () => {
    r.setPolicy(['10.0.0.0/24'], undefined);
    expect(r.requestRegistration('printer', undefined)).toMatchObject({ state: 'registered', admittedBy: 'policy:subnet 10.0.0.0/24' });
    r.hello('laptop', KEY_B, '172.16.0.9');
    expect(r.requestRegistration('laptop', undefined)?.state).toBe('pending');
    r.setPolicy(['10.0.0.0/24'], 'join-me');
    expect(r.requestRegistration('laptop', 'join-me')).toMatchObject({ state: 'registered', admittedBy: 'policy:join-code' });
    expect(r.policyView()).toEqual({ subnets: ['10.0.0.0/24'], joinCode: true });
  });
});

describe('registrar: limits', () => {
  let evicted: string[];
  let refused: string[];
  function limited(limits: Partial<RegistrarLimits>): Registrar {
    const reg = make(limits);
    evicted = [];
    refused = [];
    reg.on('evicted', (rec, source, reason) => evicted.push(`${rec.name} ${source} ${reason}`));
    reg.on('refused', (source, code, reason) => refused.push(`${source} ${code} ${reason}`));
    return reg;
  }

  it('over the per-address cap, forgets the oldest undecided request of that address, pending or online alike', () => {
    r = limited({ maxUndecidedPerAddress: 3 });
    for (const [i, n] of ['a', 'b', 'c'].entries()) {
      t = 1_000 + i;
      r.hello(n, KEY_A, '10.0.0.5');
    }
    r.requestRegistration('a', undefined);
    r.setOnline('a', true);
    r.hello('other', KEY_A, '10.0.0.6');
    t = 2_000;
    expect(r.hello('d', KEY_A, '::ffff:10.0.0.5').ok).toBe(true); // IPv4-mapped counts as the same address
    expect(r.get('a')).toBeUndefined();
    expect(r.isOnline('a')).toBe(false);
    expect(evicted).toEqual(['a 10.0.0.5 registration request dropped: more than 3 requests from 10.0.0.5 are waiting for the admin (flood limit)']);
    expect(log).toContain('changed d new->unregistered');
    expect(log).not.toContain('removed a'); // an eviction is not the admin's forget
    expect(r.undecidedCount('10.0.0.5')).toBe(3);
    expect(r.undecidedCount('10.0.0.6')).toBe(1);
    expect(r.undecidedCount()).toBe(4);
  });

  it('never forgets what the admin decided: registered, revoked and rejected records stay', () => {
    r = limited({ maxUndecidedPerAddress: 1, maxUndecided: 1 });
    r.hello('kept', KEY_A, '10.0.0.5');
    r.approve('kept');
    r.hello('cut', KEY_A, '10.0.0.5');
    r.revoke('cut');
    r.hello('turned-down', KEY_A, '10.0.0.5');
    r.requestRegistration('turned-down', undefined);
    r.reject('turned-down');
    for (const n of ['x1', 'x2', 'x3']) expect(r.hello(n, KEY_A, '10.0.0.5').ok).toBe(true);
    expect(['kept', 'cut', 'turned-down', 'x1', 'x2', 'x3'].map((n) => r.get(n)?.state)).toEqual(['registered', 'revoked', 'unregistered', undefined, undefined, 'unregistered']);
    expect(evicted.map((e) => e.split(' ')[0])).toEqual(['x1', 'x2']);
    // A rejected peer asking again is an undecided request again.
    r.requestRegistration('turned-down', undefined);
    expect(r.undecidedCount()).toBe(2);
  });

  it('over the total cap, forgets the oldest request of the address holding the most, so a lone request survives', () => {
    r = limited({ maxUndecided: 5, maxUndecidedPerAddress: 10 });
    t = 1;
    r.hello('lone', KEY_A, '10.0.0.9'); // the oldest of all
    for (let i = 0; i < 4; i++) {
      t = 10 + i;
      r.hello(`busy${i}`, KEY_A, '10.0.0.1');
    }
    t = 20;
    r.hello('new1', KEY_A, '10.0.0.2');
    t = 21;
    r.hello('new2', KEY_A, '10.0.0.3');
    expect(evicted.map((e) => e.split(' ').slice(0, 2).join(' '))).toEqual(['busy0 10.0.0.1', 'busy1 10.0.0.1']);
    expect(evicted[0]).toContain('more than 5 requests are waiting for the admin (flood limit)');
    expect(r.get('lone')?.state).toBe('unregistered');
    expect(r.undecidedCount()).toBe(5);
  });

  it('refuses new names beyond MAX_PEERS when nothing undecided can make room; known names still say hello', () => {
    r = limited({ maxPeers: 2 });
    r.hello('a', KEY_A, undefined);
    r.approve('a');
    r.hello('b', KEY_A, undefined);
    r.approve('b');
    const out = r.hello('c', KEY_A, undefined);
    expect(out.ok).toBe(false);
    if (!out.ok) expect(out.code).toBe(Status.RESOURCE_LIMIT);
    expect(r.hello('a', KEY_A, undefined).ok).toBe(true);
    // An undecided record makes room instead.
    r.forget('b');
    r.hello('b', KEY_A, undefined);
    expect(r.hello('c', KEY_A, undefined).ok).toBe(true);
    expect(r.get('b')).toBeUndefined();
  });

  it('rate-limits new identities per source address, refilling over the minute, not known peers nor the policy subnets', () => {
    r = limited({ newPeersPerAddressPerMinute: 3 });
    r.setPolicy(['10.9.0.0/16'], undefined);
    for (const n of ['a', 'b', 'c']) expect(r.hello(n, KEY_A, '10.0.0.5').ok).toBe(true);
    const out = r.hello('d', KEY_A, '10.0.0.5');
    expect(out).toEqual({ ok: false, code: Status.RATE_LIMITED, reason: 'more than 3 new peers from 10.0.0.5 within a minute (flood limit); try again later' });
    expect(refused).toEqual([`10.0.0.5 ${Status.RATE_LIMITED} more than 3 new peers from 10.0.0.5 within a minute (flood limit); try again later`]);
    expect(r.get('d')).toBeUndefined();
    expect(r.hello('a', KEY_A, '10.0.0.5').ok).toBe(true); // known: not a new identity
    expect(r.hello('e', KEY_A, '10.0.0.6').ok).toBe(true); // another address
    for (let i = 0; i < 10; i++) expect(r.hello(`trusted${i}`, KEY_A, '10.9.1.1').ok).toBe(true);
    t += 20_000; // a third of a minute: one more
    expect(r.hello('d', KEY_A, '10.0.0.5').ok).toBe(true);
    expect(r.hello('f', KEY_A, '10.0.0.5').ok).toBe(false);
  });

  it('files records loaded from the state file by age, so the oldest loaded request goes first', () => {
    const state = emptyState();
    const rec = (name: string, firstSeen: number): PersistedState['peers'][number] => ({ name, publicKey: KEY_A, state: 'pending', firstSeen, lastSeen: firstSeen, lanAddress: '10.0.0.5', decidedAt: firstSeen, messagesIn: 0, messagesOut: 0 });
    state.peers.push(rec('young', 50), rec('old', 10));
    r = new Registrar('acme-hq', state, now, { maxUndecidedPerAddress: 2 });
    r.hello('newest', KEY_A, '10.0.0.5');
    expect(r.get('old')).toBeUndefined();
    expect(r.get('young')?.state).toBe('pending');
  });

  it('refuses limits that are not whole numbers of at least 1', () => {
    expect(() => make({ maxUndecidedPerAddress: 0 })).toThrow('registrar limit maxUndecidedPerAddress must be an integer of at least 1, not 0');
    expect(() => make({ newPeersPerAddressPerMinute: 1.5 })).toThrow(/newPeersPerAddressPerMinute/);
  });
});

describe('registrar: admin decisions planned, saved, then applied', () => {
  const draftOf = (reg: Registrar): StateDraft => new StateDraft(reg.persisted());

  it('a plan changes nothing in memory and writes the decision into the draft; apply() makes it so and tells', () => {
    r.hello('printer', KEY_A, undefined);
    r.approve('printer');
    log = [];
    t = 5_000;
    const draft = draftOf(r);
    const plan = r.planRevoke('printer', draft);
    expect(draft.state().peers).toEqual([expect.objectContaining({ name: 'printer', state: 'revoked', decidedAt: 5_000 })]);
    expect(draft.state().peers[0]).not.toHaveProperty('admittedBy');
    expect(r.get('printer')).toMatchObject({ state: 'registered', admittedBy: 'admin' });
    expect(log).toEqual([]);
    t = 6_000;
    expect(plan.apply()).toMatchObject({ state: 'revoked', decidedAt: 5_000 });
    expect(r.persisted()).toEqual(draft.state());
    expect(log).toEqual(['changed printer registered->revoked']);

    const policyDraft = draftOf(r);
    const policy = r.planPolicy(['10.0.0.0/8'], 'blue-door-42', policyDraft);
    expect(r.policyView()).toEqual({ subnets: [], joinCode: false });
    expect(policy.apply()).toEqual({ subnets: ['10.0.0.0/8'], joinCode: true });
    expect(r.persisted()).toEqual(policyDraft.state()); // the same join code hash as planned
    expect(() => r.planPolicy(['nonsense/99'], undefined, draftOf(r))).toThrow();

    const forgetDraft = draftOf(r);
    const forget = r.planForget('printer', forgetDraft);
    expect(forgetDraft.state().peers).toEqual([]);
    expect(r.get('printer')).toBeDefined();
    forget.apply();
    expect(r.get('printer')).toBeUndefined();
  });

  it('decisions planned into one draft see each other, and apply in order', () => {
    r.hello('printer', KEY_A, undefined);
    r.requestRegistration('printer', undefined);
    const draft = draftOf(r);
    const reject = r.planReject('printer', draft);
    expect(() => r.planReject('printer', draft)).toThrow(/printer is unregistered, not pending/); // the first reject is in the draft
    const forget = r.planForget('printer', draft);
    expect(() => r.planApprove('printer', draft)).toThrow(/no peer named "printer"/);
    reject.apply();
    forget.apply();
    expect(r.persisted()).toEqual(draft.state());
    expect(log.slice(-2)).toEqual(['changed printer pending->unregistered', 'removed printer']);
  });

  it('applies what was saved even if the peer moved meanwhile (a REGISTER the policy admitted)', () => {
    r.setPolicy(['10.0.0.0/8'], undefined);
    r.hello('printer', KEY_A, '10.0.0.5');
    const draft = draftOf(r);
    const plan = r.planApprove('printer', draft);
    r.requestRegistration('printer', undefined); // admitted by the subnet while the approval is written
    expect(r.get('printer')?.admittedBy).toBe('policy:subnet 10.0.0.0/8');
    plan.apply();
    // requestedAt is bookkeeping (like lastSeen): the REGISTER set it after the draft; it is saved with the next write.
    const { requestedAt, ...live } = r.persisted().peers[0]!;
    expect(requestedAt).toBeGreaterThan(0);
    expect({ ...r.persisted(), peers: [live] }).toEqual(draft.state());
    expect(r.get('printer')).toMatchObject({ state: 'registered', admittedBy: 'admin' });
  });

  it('a peer with a decision being saved is not evicted to make room', () => {
    r = make({ maxPeers: 100, maxUndecided: 1 });
    r.hello('old', KEY_A, undefined);
    const draft = draftOf(r);
    const first = r.planApprove('old', draft);
    const second = r.planRevoke('old', draft);
    // Pinned: out of the flood limits' reach, so newcomers make room among the others.
    expect(r.hello('newcomer1', KEY_B, undefined).ok).toBe(true);
    expect(r.hello('newcomer2', KEY_C, undefined).ok).toBe(true);
    expect(r.get('old')).toBeDefined();
    expect(r.get('newcomer1')).toBeUndefined();
    first.abandon();
    expect(r.hello('newcomer3', KEY_A, undefined).ok).toBe(true);
    expect(r.get('old')).toBeDefined(); // still pinned by the second
    second.abandon();
    expect(r.undecidedCount()).toBe(2); // counted again once nothing is being saved...
    expect(r.hello('newcomer4', KEY_B, undefined).ok).toBe(true);
    expect(r.undecidedCount()).toBe(1); // ...and made room for like the rest
    expect(r.get('old')).toBeUndefined();
  });
});

describe('registrar: persistence', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cp-unit-registrar-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('persisted() survives a write and load, decisions and policy included', async () => {
    r.hello('printer', KEY_A, '10.0.0.5');
    r.hello('scanner', KEY_B, '10.0.0.6');
    r.hello('laptop', KEY_A, undefined);
    r.requestRegistration('scanner', undefined);
    t = 7_000;
    r.approve('printer');
    r.countMessage('printer', 'in');
    r.countMessage('printer', 'out');
    r.countMessage('printer', 'out');
    r.setPolicy(['192.168.0.0/16'], 'join-me');

    await writeJsonAtomic(join(dir, STATE_FILE), r.persisted());
    const loaded = await StateStore.load(dir);
    const again = new Registrar('acme-hq', loaded, now);

    expect(again.views()).toEqual(r.views());
    expect(again.get('printer')).toMatchObject({ state: 'registered', admittedBy: 'admin', decidedAt: 7_000, messagesIn: 1, messagesOut: 2 });
    expect(again.get('scanner')?.state).toBe('pending');
    expect(again.policyView()).toEqual({ subnets: ['192.168.0.0/16'], joinCode: true });
    expect(again.policy.admits(undefined, 'join-me')).toBe('policy:join-code');
    expect(JSON.stringify(loaded)).not.toContain('join-me');
    // The key binding survives too.
    const out = again.hello('printer', KEY_B, undefined);
    expect(out.ok).toBe(false);
  });

  it('persisted() is a copy: later changes do not leak into it', () => {
    r.hello('printer', KEY_A, undefined);
    const snap = r.persisted();
    r.approve('printer');
    expect(snap.peers[0]?.state).toBe('unregistered');
  });
});
