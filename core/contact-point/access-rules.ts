import type { RuleRefusalsView, RuleRefusalView, RuleSetView, RulesView, ContentCheckView } from '../admin/contract.js';
import { contentCheckSchema, MAX_ALLOW_PATTERNS, SENDER_PATTERN } from '../admin/contract.js';
import type { MsgFrame } from '../protocol/codec.js';
import { messageCount } from '../protocol/seal.js';
import { MAX_PEERS_PER_CONTACT_POINT } from '../protocol/limits.js';
import { int, list, obj, optional, str } from '../protocol/schema.js';
import { Status, statusName, type StatusCode } from '../protocol/status.js';
import { TokenBucket } from '../runtime/token-bucket.js';

/** Refusals the rules caused that a peer's page lists (the newest, per peer; the counts go on). */
export const RULE_REFUSALS_KEPT = 10;

const ruleSetFields = {
  allow: optional(list(str({ min: 1, max: 127, pattern: SENDER_PATTERN }), { max: MAX_ALLOW_PATTERNS })),
  maxBytes: optional(int({ min: 1, max: 1024 * 1024 * 1024 })),
  perMinute: optional(int({ min: 1, max: 1_000_000 })),
};

/**
 * The rules' part of the state file (`access`): the office default, each peer's own, and the
 * content check. Absent in files from before the rules: anyone may message any peer, no check.
 */
export const accessStateSchema = obj({
  office: obj(ruleSetFields),
  peers: list(obj({ name: str({ min: 1, max: 63 }), ...ruleSetFields }), { max: MAX_PEERS_PER_CONTACT_POINT }),
  check: contentCheckSchema,
});
export type AccessState = RulesView;

export const NO_RULES: AccessState = { office: {}, peers: [], check: { kind: 'none' } };

/** A sender pattern as a matcher: `*` anyone; else each side of the @ a name where `*` stands for any run of characters. */
export function senderMatcher(pattern: string): (address: string) => boolean {
  if (!SENDER_PATTERN.test(pattern)) throw new Error(`"${pattern}" is not a sender pattern: use *, or name@domain where either part may use * (tech@relay, *@relay, *@branch)`);
  if (pattern === '*') return () => true;
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.]/g, '\\.')).join('[^@]*')}$`);
  return (address) => re.test(address);
}

/** A rule set with only the fields that are set (what the state file and the admin see). */
export function cleanRuleSet(r: RuleSetView): RuleSetView {
  return {
    ...(r.allow !== undefined ? { allow: [...r.allow] } : {}),
    ...(r.maxBytes !== undefined ? { maxBytes: r.maxBytes } : {}),
    ...(r.perMinute !== undefined ? { perMinute: r.perMinute } : {}),
  };
}

function isEmpty(r: RuleSetView): boolean {
  return r.allow === undefined && r.maxBytes === undefined && r.perMinute === undefined;
}

/** What the rules decide for one message: pass, or refuse with a code, the sender's reason and the admin's detail. */
export type RuleVerdict = { readonly ok: true } | { readonly ok: false; readonly code: StatusCode; readonly reason: string; readonly detail: string };
const PASS: RuleVerdict = { ok: true };

interface Compiled {
  readonly set: RuleSetView;
  readonly allow: ((address: string) => boolean)[] | undefined;
}

function compile(set: RuleSetView): Compiled {
  return { set: cleanRuleSet(set), allow: set.allow?.map(senderMatcher) };
}

/**
 * Who may reach whom and what may pass (issue 15, seed [0041]: the contact point is the one
 * point of entry, so it is where the checks go). Per peer and an office default: which senders
 * may message it, the largest payload it takes, and how many messages a minute. A field a peer
 * does not set comes from the office default; the office default's absent fields let everything
 * through. The content check's configuration is kept here too (content-check.ts runs it).
 *
 * A sender that may not message a peer hears NOT_ALLOWED whether the peer exists or not (the
 * check runs before the registration check, with the office default for unknown names), so the
 * rules do not reveal the peer list to senders the office does not let in.
 */
export class AccessRules {
  private office: Compiled = compile({});
  private readonly peers = new Map<string, Compiled>();
  private checkConfig: ContentCheckView = { kind: 'none' };
  /** per-peer rate buckets, for peers whose rules (or the office's) set perMinute; rebuilt when the rate changes */
  private readonly buckets = new Map<string, { perMinute: number; bucket: TokenBucket }>();
  private readonly refusals = new Map<string, { counts: Record<string, number>; recent: RuleRefusalView[] }>();

  constructor(initial: AccessState = NO_RULES) {
    this.load(initial);
  }

  /** Replaces every rule (checked first: a bad pattern throws and nothing changes). */
  load(state: AccessState): void {
    const office = compile(state.office);
    const peers = state.peers.map((p) => [p.name, compile(p)] as const);
    this.office = office;
    this.peers.clear();
    for (const [name, c] of peers) if (!isEmpty(c.set)) this.peers.set(name, c);
    this.checkConfig = state.check;
    this.buckets.clear();
  }

  get check(): ContentCheckView {
    return this.checkConfig;
  }

  view(): RulesView {
    return {
      office: this.office.set,
      peers: [...this.peers].map(([name, c]) => ({ name, ...c.set })).sort((a, b) => a.name.localeCompare(b.name)),
      check: this.checkConfig,
    };
  }

  /** The state with `peer`'s rules (undefined: the office default) replaced by `set`; throws on a bad pattern. */
  static with(state: AccessState, peer: string | undefined, set: RuleSetView): AccessState {
    const clean = cleanRuleSet(set);
    compile(clean); // checks the patterns
    if (peer === undefined) return { ...state, office: clean };
    const peers = state.peers.filter((p) => p.name !== peer);
    if (!isEmpty(clean)) peers.push({ name: peer, ...clean });
    return { ...state, peers };
  }

  /** The sender patterns that apply to `peer` (its own, else the office default's; undefined: anyone). */
  private allowFor(peer: string): ((address: string) => boolean)[] | undefined {
    return this.peers.get(peer)?.allow ?? this.office.allow;
  }

  /** Whether `from` may message `peer` (its own patterns, else the office default's). */
  allows(peer: string, from: string): boolean {
    const allow = this.allowFor(peer);
    return allow === undefined || allow.some((m) => m(from));
  }

  /** Whether `peer` has an allow list of its own or from the office default (the office then hides its peers from senders it does not let in). */
  restricts(peer: string): boolean {
    return this.allowFor(peer) !== undefined;
  }

  /** The sender check alone: before the registration check, so it answers the same for every name. */
  admit(msg: MsgFrame, peer: string): RuleVerdict {
    if (this.allows(peer, msg.from)) return PASS;
    return { ok: false, code: Status.NOT_ALLOWED, reason: `${msg.from} may not message ${msg.to}`, detail: `not on ${this.peers.get(peer)?.allow ? "the peer's" : "the office's"} allow list` };
  }

  /** Size and rate for a registered peer: its own limits, else the office default's. A refused message takes no token. */
  limit(msg: MsgFrame, peer: string): RuleVerdict {
    const own = this.peers.get(peer)?.set;
    const maxBytes = own?.maxBytes ?? this.office.set.maxBytes;
    if (maxBytes !== undefined && msg.payload.length > maxBytes) {
      return { ok: false, code: Status.TOO_LARGE, reason: `${msg.payload.length} bytes; ${msg.to} takes at most ${maxBytes}`, detail: `over the ${own?.maxBytes !== undefined ? "peer's" : "office's"} size limit (${maxBytes} bytes)` };
    }
    const perMinute = own?.perMinute ?? this.office.set.perMinute;
    if (perMinute === undefined) return PASS;
    let b = this.buckets.get(peer);
    if (b?.perMinute !== perMinute) this.buckets.set(peer, (b = { perMinute, bucket: TokenBucket.perMinute(perMinute) }));
    // A sealed bundle (PROTOCOL.md 19.6) takes a token for each message it carries.
    if (b.bucket.take(messageCount(msg.flags, msg.payload))) return PASS;
    return { ok: false, code: Status.RATE_LIMITED, reason: `${msg.to} takes at most ${perMinute} messages a minute`, detail: `over the ${own?.perMinute !== undefined ? "peer's" : "office's"} rate limit` };
  }

  /** Counts a refusal the rules or the content check caused for `peer` (a known peer: the caller checks, so this stays bounded). */
  recordRefusal(peer: string, from: string, code: number, reason: string): void {
    let r = this.refusals.get(peer);
    if (!r) this.refusals.set(peer, (r = { counts: {}, recent: [] }));
    const name = statusName(code);
    r.counts[name] = (r.counts[name] ?? 0) + 1;
    r.recent.unshift({ at: Date.now(), from, code, reason });
    if (r.recent.length > RULE_REFUSALS_KEPT) r.recent.length = RULE_REFUSALS_KEPT;
  }

  refusalsOf(peer: string): RuleRefusalsView {
    const r = this.refusals.get(peer);
    return { name: peer, counts: { ...(r?.counts ?? {}) }, recent: [...(r?.recent ?? [])] };
  }

  /** A peer was forgotten: its rules and counters go with it. */
  forget(peer: string): void {
    this.refusals.delete(peer);
    this.buckets.delete(peer);
  }
}
