import { parseAddress } from '../protocol/address.js';
import { encodeAck, encodeMsg, type MsgFrame } from '../protocol/codec.js';
import { FLAG_SEAL_AES, FLAG_SEAL_BUNDLE, FLAG_SEALED, FrameType } from '../protocol/frames.js';
import { keysRequestSchema, type ContactPointKey, type KeysAnswer } from '../protocol/key-statement.js';
import { MAX_NAME_LENGTH, MAX_PEERS_PER_CONTACT_POINT } from '../protocol/limits.js';
import { nameSchema } from '../protocol/name.js';
import { bool, int, list, obj, str, type Infer } from '../protocol/schema.js';
import { envelopeSenderKey, SealError } from '../protocol/seal.js';
import { Status, type StatusCode } from '../protocol/status.js';
import type { Registrar } from './registrar.js';

/** External (and other contact points') addresses whose sealing key this contact point remembers; more are refused. */
export const MAX_KEY_BINDINGS = 65_536;

export const sealStateSchema = obj({
  /** office-wide: every message through this contact point must be sealed */
  required: bool,
  /** peers that send and accept sealed payloads only */
  peers: list(nameSchema, { max: MAX_PEERS_PER_CONTACT_POINT }),
  /** address -> sealing key, bound at first contact (like a LAN peer's name to its identity key) */
  bindings: list(obj({ address: str({ min: 3, max: 2 * MAX_NAME_LENGTH + 1 }), key: str({ min: 1, max: 48 }), firstSeen: int({ min: 0, max: Number.MAX_SAFE_INTEGER }) }), { max: MAX_KEY_BINDINGS }),
});
export type SealState = Infer<typeof sealStateSchema>;

/** What admins see and set: the key's fingerprint, the policy, how many addresses are bound. */
export interface SealView {
  readonly fingerprint: string;
  readonly required: boolean;
  readonly peers: readonly string[];
  readonly bindings: number;
}

export interface SealRefusal {
  readonly code: StatusCode;
  readonly reason: string;
}

/**
 * The contact point's part in sealed messages (issue 14; PROTOCOL.md 19). It never opens a
 * seal: it checks metadata, as with every other check here (seed [0041]):
 *
 * - the policy "sealed payloads only" (office-wide, or per peer: for what it sends and receives);
 * - the sender's key in a sealed envelope: a LAN peer's must be the one its identity signed at
 *   hello; an address from beyond the tunnel is bound to the first key it used (KEY_CHANGED after);
 * - KEYS requests: answered with a statement this contact point signs, for its registered peers
 *   and for the addresses it has bound.
 */
export class SealGuard {
  private required: boolean;
  private readonly peers: Set<string>;
  private readonly bindings: Map<string, { key: string; firstSeen: number }>;
  /**
   * The flags of KEYS answers for addresses that open seal version 2 (AES-256-GCM): FLAG_SEAL_AES,
   * with FLAG_SEAL_BUNDLE for those that also open bundles (version 3). LAN peers whose last
   * HELLO said `seal-aes` (`seal-bundle`), external askers whose KEYS_REQUEST carried
   * FLAG_SEAL_AES (FLAG_SEAL_BUNDLE). In memory: until one says so again, its KEYS answers leave
   * the flags off and senders seal in version 1, which it also opens.
   */
  private readonly readerFlags = new Map<string, number>();

  constructor(
    readonly key: ContactPointKey,
    private readonly id: string,
    private readonly registrar: Registrar,
    initial: SealState | undefined,
    /** a binding was added: save it with the next bookkeeping write */
    private readonly changed: () => void,
    private readonly now: () => number = Date.now,
  ) {
    this.required = initial?.required ?? false;
    this.peers = new Set(initial?.peers ?? []);
    this.bindings = new Map((initial?.bindings ?? []).map((b) => [b.address, { key: b.key, firstSeen: b.firstSeen }]));
  }

  view(): SealView {
    return { fingerprint: this.key.fingerprint, required: this.required, peers: [...this.peers].sort(), bindings: this.bindings.size };
  }

  /** The state file's `seal` key, left out while nothing is set or bound (files stay as they were before sealing). */
  persistedPart(): { seal?: SealState } {
    return this.required || this.peers.size > 0 || this.bindings.size > 0 ? { seal: this.persisted() } : {};
  }

  persisted(): SealState {
    return { required: this.required, peers: [...this.peers], bindings: [...this.bindings].map(([address, b]) => ({ address, ...b })) };
  }

  /** The policy as the state file will have it; applied by apply() once saved. */
  planPolicy(required: boolean, peers: readonly string[], forget: readonly string[]): { state: SealState; apply: () => SealView } {
    const bindings = this.persisted().bindings.filter((b) => !forget.includes(b.address));
    const state: SealState = { required, peers: [...new Set(peers)], bindings };
    return {
      state,
      apply: () => {
        this.required = required;
        this.peers.clear();
        for (const p of state.peers) this.peers.add(p);
        for (const a of forget) this.bindings.delete(a);
        return this.view();
      },
    };
  }

  /** `address` opens seal version 2 (`reads`), or not (any more); and bundles, version 3 (`bundles`), or not. */
  noteAes(address: string, reads: boolean, bundles = false): void {
    if (!reads) this.readerFlags.delete(address);
    // At the bound, the rest get version 1 (which every sealing peer opens).
    else if (this.readerFlags.has(address) || this.readerFlags.size < MAX_KEY_BINDINGS + MAX_PEERS_PER_CONTACT_POINT) {
      this.readerFlags.set(address, FLAG_SEAL_AES | (bundles ? FLAG_SEAL_BUNDLE : 0));
    }
  }

  isBound(address: string): boolean {
    return this.bindings.has(address);
  }

  /**
   * A MSG passing through: undefined when it may pass, else the refusal. `sender` / `recipient`:
   * the LAN peer names at either end (undefined for an address beyond the tunnel).
   */
  check(msg: MsgFrame, sender: string | undefined, recipient: string | undefined): SealRefusal | undefined {
    if ((msg.flags & FLAG_SEALED) === 0) {
      if (this.required) return { code: Status.SEAL_REQUIRED, reason: `contact point ${this.id} accepts sealed payloads only` };
      if (sender !== undefined && this.peers.has(sender)) return { code: Status.SEAL_REQUIRED, reason: `${msg.from} may send sealed payloads only` };
      if (recipient !== undefined && this.peers.has(recipient)) return { code: Status.SEAL_REQUIRED, reason: `${msg.to} accepts sealed payloads only` };
      return undefined;
    }
    let senderKey: string;
    try {
      senderKey = envelopeSenderKey(msg.payload).toString('base64');
    } catch (err: unknown) {
      if (err instanceof SealError) return { code: err.code, reason: err.reason };
      throw err;
    }
    if (sender !== undefined) {
      if (this.registrar.get(sender)?.sealKey !== senderKey) return { code: Status.KEY_CHANGED, reason: `sealed with a key ${msg.from} did not present at hello` };
      return undefined;
    }
    return this.bind(msg.from, senderKey);
  }

  /**
   * A KEYS request (from a LAN peer `lanPeer`, or from the tunnel): the frame to answer with (a
   * KEYS answer, or an ACK refusal), or 'forward' for a LAN peer's request about a peer of
   * another contact point this one knows no key for (that contact point answers).
   */
  answer(req: MsgFrame, lanPeer: string | undefined): Buffer | 'forward' {
    const refuse = (code: StatusCode, reason: string): Buffer => encodeAck({ id: req.id, to: req.from, from: req.to, status: code, reason });
    let body: { key?: string | undefined };
    try {
      body = keysRequestSchema.parse(JSON.parse(req.payload.toString('utf8')));
    } catch (err: unknown) {
      return refuse(Status.BAD_ADDRESS, `malformed key request: ${(err as Error).message}`);
    }
    // A LAN peer's sealing key is the one its hello proved, stated by this contact point: a key in
    // its request would go up the tunnel for other contact points to bind to its address.
    if (body.key !== undefined && lanPeer !== undefined) return refuse(Status.UNAUTHORIZED, 'an internal peer asks without a key: its contact point states its key');
    if (body.key !== undefined) {
      // The requester's own key, bound to its address at first contact (as its sealed messages are).
      const refusal = this.bind(req.from, body.key);
      if (refusal) return refuse(refusal.code, refusal.reason);
      this.noteAes(req.from, (req.flags & FLAG_SEAL_AES) !== 0, (req.flags & FLAG_SEAL_BUNDLE) !== 0);
    }
    const target = parseAddress(req.to);
    if (!target) return refuse(Status.BAD_ADDRESS, `"${req.to}" is not name@domain`);
    let key: string | undefined;
    if (target.domain === this.id) {
      const rec = this.registrar.get(target.name);
      // As for messages (distributor.ts): one answer whatever the record's state, so no one outside can probe names.
      if (rec?.state !== 'registered') return refuse(Status.PEER_NOT_REGISTERED, `peer ${req.to} is not registered`);
      if (rec.sealKey === undefined) return refuse(Status.UNKNOWN_PEER, `${req.to} has no sealing key (its software does not seal)`);
      key = rec.sealKey;
    } else {
      key = this.bindings.get(req.to)?.key;
      if (key === undefined) {
        if (lanPeer !== undefined) return 'forward';
        return refuse(Status.UNKNOWN_PEER, `contact point ${this.id} knows no sealing key for ${req.to}`);
      }
    }
    const statement: KeysAnswer = this.key.statement(req.to, key, this.now());
    const flags = this.readerFlags.get(req.to) ?? 0;
    return encodeMsg({ id: req.id, to: req.from, from: req.to, payload: Buffer.from(JSON.stringify(statement), 'utf8') }, flags, FrameType.KEYS_ANSWER);
  }

  /** First contact binds `address` to `key`; a different key later is refused. */
  private bind(address: string, key: string): SealRefusal | undefined {
    const bound = this.bindings.get(address);
    if (bound) {
      if (bound.key === key) return undefined;
      return { code: Status.KEY_CHANGED, reason: `${address} is bound to another sealing key at contact point ${this.id} since ${new Date(bound.firstSeen).toISOString()}; its admin can forget the binding` };
    }
    if (Buffer.from(key, 'base64').length !== 32) return { code: Status.BAD_SEAL, reason: 'a sealing key is 32 bytes' };
    if (this.bindings.size >= MAX_KEY_BINDINGS) return { code: Status.UNAUTHORIZED, reason: `contact point ${this.id} holds ${MAX_KEY_BINDINGS} key bindings, its limit` };
    this.bindings.set(address, { key, firstSeen: this.now() });
    this.changed();
    return undefined;
  }
}
