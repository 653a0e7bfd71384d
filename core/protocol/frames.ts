import { MAX_MESSAGE_BYTES, MAX_NAME_LENGTH, MAX_PEERS_PER_ANNOUNCE, MAX_REASON_LENGTH, TUNNEL_SLOTS } from './limits.js';
import { nameSchema } from './name.js';
import { bool, int, list, obj, oneOf, optional, str, type Infer, type Schema } from './schema.js';
import { TIMING_RANGES } from './timing.js';

/** Protocol versions this build speaks. HELLO carries the sender's range; WELCOME the chosen one. */
export const PROTOCOL_VERSION = 1;
export const MIN_PROTOCOL_VERSION = 1;

/**
 * The frame table: type number -> name -> body. Control frames carry a JSON body validated by
 * its schema; MSG and ACK are binary (hot path, payload bytes never re-encoded).
 * 0x30-0x4f are reserved for port mediation.
 */
export const FrameType = {
  HELLO: 0x01,
  WELCOME: 0x02,
  CHALLENGE: 0x03,
  PROOF: 0x04,
  ERROR: 0x05,
  GOAWAY: 0x06,
  MSG: 0x10,
  ACK: 0x11,
  REACHABLE: 0x12,
  LOOKUP: 0x13,
  LOOKUP_RESULT: 0x14,
  PRESENCE: 0x15,
  SUBSCRIBE: 0x16,
  // Several frames in one ws message (capability `batch`, PROTOCOL.md 3.3); unpacked by the Link.
  BATCH: 0x17,
  PEERS: 0x20,
  REGISTER: 0x21,
  PEER_STATE: 0x22,
  // Key statements (issue 14): laid out like MSG (id, to, from, JSON payload) and routed like it.
  KEYS_REQUEST: 0x23,
  KEYS_ANSWER: 0x24,
  // Port mediation (seed 002): control requests and events are JSON, stream and datagram data binary.
  PORT_REQUEST: 0x30,
  PORT_RESULT: 0x31,
  PORT_EVENT: 0x32,
  UDP_CHANNEL: 0x33,
  STREAM_DATA: 0x40,
  STREAM_FIN: 0x41,
  STREAM_RST: 0x42,
  STREAM_WINDOW: 0x43,
  DATAGRAM: 0x44,
} as const;
export type FrameTypeName = keyof typeof FrameType;
export type FrameTypeCode = (typeof FrameType)[FrameTypeName];

/**
 * HELLO `env.capabilities` entry: the client understands REACHABLE (0x12). Servers send that
 * frame only to clients that said so: an older client faults on a frame type it does not know.
 */
export const CAPABILITY_REACHABLE = 'reachable';
/**
 * HELLO `env.capabilities` entry: the client seals payloads (FLAG_SEALED, PROTOCOL.md 19) and
 * understands KEYS_REQUEST / KEYS_ANSWER (0x23 / 0x24).
 */
export const CAPABILITY_SEALED = 'sealed';
/**
 * HELLO `env.capabilities` entry of an internal peer: it opens seal version 2 (AES-256-GCM,
 * PROTOCOL.md 19.1), so its contact point marks KEYS answers for it FLAG_SEAL_AES.
 */
export const CAPABILITY_SEAL_AES = 'seal-aes';
/**
 * HELLO `env.capabilities` entry of an internal peer: it opens sealed bundles (seal version 3,
 * several messages under one seal, PROTOCOL.md 19.6), so its contact point marks KEYS answers for
 * it FLAG_SEAL_BUNDLE.
 */
export const CAPABILITY_SEAL_BUNDLE = 'seal-bundle';

/**
 * HELLO `env.capabilities` entry of a contact point: it also accepts external peers and operators
 * itself, on its direct listener (seed 000 [0027], [0040]; PROTOCOL.md "Direct mode").
 */
export const CAPABILITY_DIRECT = 'direct';

/**
 * Contact point HELLO `env.capabilities` entries the relay acts on (PROTOCOL.md, HELLO):
 * `mediation`: the office takes port requests (without it the relay answers them NOT_OFFERED);
 * `udp-aead`: it speaks the encrypted UDP channel (version 2; without it the relay offers no
 * UDP channel and datagrams stay inside the tunnel).
 */
export const CAPABILITY_MEDIATION = 'mediation';
export const CAPABILITY_UDP_AEAD = 'udp-aead';

/**
 * Whether an office takes port requests, by its HELLO capabilities. Contact points from before
 * these capabilities listed neither `mediation` nor `udp-aead` and did take them: such a list
 * counts as offering (their requests are forwarded as they always were).
 */
export function offersMediation(capabilities: readonly string[]): boolean {
  return capabilities.includes(CAPABILITY_MEDIATION) || !capabilities.includes(CAPABILITY_UDP_AEAD);
}

/**
 * HELLO `env.capabilities` entry and WELCOME `capabilities` entry: the link uses the adaptive
 * keepalive (PROTOCOL.md 12.1). A client lists it in HELLO; a server that speaks it answers with
 * it in WELCOME (sent only to clients that listed it: older clients refuse unknown fields), and
 * from then on both ends keep the link alive that way.
 */
export const CAPABILITY_ADAPTIVE_KEEPALIVE = 'adaptive-keepalive';

/**
 * HELLO `env.capabilities` and WELCOME `capabilities` entry, together with
 * CAPABILITY_ADAPTIVE_KEEPALIVE: on an idle link the server sends heartbeats (empty ws pongs) and
 * the client pings only when one is overdue (PROTOCOL.md 12.2). A server takes it up only with
 * adaptive-keepalive; either end that does not speak it leaves the link on 12.1 alone.
 */
export const CAPABILITY_HEARTBEAT = 'heartbeat';

/**
 * HELLO `env.capabilities` entry of a contact point: it answers LOOKUP (0x13) for its peers and
 * sends PRESENCE hints. The relay forwards lookups only to contact points that said so; of an
 * older one it answers the office's state alone.
 */
export const CAPABILITY_LOOKUP = 'lookup';

/**
 * HELLO `env.capabilities` entry: the client understands WELCOME `node` (issue 12). A relay node
 * names itself only to clients that said so (or sent a `slot`): an older client refuses a
 * WELCOME with a field it does not know.
 */
export const CAPABILITY_NODE = 'node';

/**
 * HELLO `env.capabilities` entry and WELCOME `capabilities` entry: the link may carry BATCH
 * (0x17), several frames in one ws message (PROTOCOL.md 3.3). A client lists it in HELLO; a
 * server that speaks it answers with it in WELCOME, and from then on either end may batch. A
 * Link unpacks a BATCH whatever was agreed; an end sends one only to a far end that said `batch`.
 */
export const CAPABILITY_BATCH = 'batch';

/**
 * HELLO `env.capabilities` entry of an operator and WELCOME `capabilities` entry of a relay node
 * (PROTOCOL.md 17.6): the operator asks where an office's tunnels are (PORT_REQUEST op `locate`,
 * answered with the nodes and the URLs they advertise) and may dial that node itself, so its
 * exposure's bytes never cross the cluster's engine. The `-1` is the version: an incompatible
 * change gets a new name, and both ends take up only the versions they know.
 */
export const CAPABILITY_PLACEMENT = 'placement-1';

/**
 * HELLO `env.capabilities` entry of an internal peer (PROTOCOL.md 7.2): it can sign the proof
 * text of version 2, which covers its HELLO `sealKey` as well as the nonce. A peer port that
 * takes it up says so with CHALLENGE `proof: 2` and then checks that one signature instead of
 * two (`sealKeySig` and the version 1 proof): one Ed25519 verification less per hello.
 */
export const CAPABILITY_PROOF_2 = 'proof-2';

/** MSG flag: this is a retry of an id sent before (informational; receivers dedupe by id anyway). */
export const FLAG_RETRY = 0x01;
/** MSG flag: the payload is a sealed envelope (core/protocol/seal.ts); metadata, so the contact point can require it. */
export const FLAG_SEALED = 0x02;
/**
 * KEYS_REQUEST flag: the asker opens seal version 2 (AES-256-GCM). KEYS_ANSWER flag: the address
 * opens it, so a sender may seal for it in version 2 (PROTOCOL.md 19.4). Not signed: a hop that
 * clears it only makes the sender use version 1.
 */
export const FLAG_SEAL_AES = 0x04;
/**
 * KEYS_REQUEST flag: the asker opens sealed bundles (seal version 3). KEYS_ANSWER flag: the
 * address opens them, so a sender may seal several of its messages for it as one (PROTOCOL.md
 * 19.6). Not signed: a hop that clears it only makes the sender seal each message alone.
 */
export const FLAG_SEAL_BUNDLE = 0x08;

// The one name grammar (core/protocol/name.ts), so every name the schema admits is addressable.
const name = nameSchema;
const versions = obj({ min: int({ min: 1, max: 255 }), max: int({ min: 1, max: 255 }) });
const reason = str({ max: MAX_REASON_LENGTH });
const secret = str({ min: 16, max: 256 });
const id32Schema = (): Schema<number> => int({ min: 1, max: 0xffffffff });
const b64 = (max: number): Schema<string> => str({ max, pattern: /^[A-Za-z0-9+/_-]*={0,2}$/, patternText: 'must be base64' });

export const helloSchema = obj({
  versions,
  role: oneOf(['contact-point', 'external', 'peer'] as const),
  /** contact point id, external peer name, or internal peer name */
  id: name,
  /** bearer credential (contact points and external peers at the relay) */
  secret: optional(secret),
  /** Ed25519 public key, SPKI DER base64 (internal peers at the contact point) */
  publicKey: optional(b64(128)),
  /** internal peers: X25519 sealing key, raw base64, and its Ed25519 signature by `publicKey` (peer-auth.ts sealKeyText) */
  sealKey: optional(b64(48)),
  sealKeySig: optional(b64(128)),
  /** what the client runs and where: shown to admins; its capabilities steer what a server offers, never what it allows (PROTOCOL.md, HELLO) */
  env: optional(
    obj({
      software: optional(str({ max: 64 })),
      host: optional(str({ max: 255 })),
      addresses: optional(list(str({ max: 64 }), { max: 32 })),
      capabilities: optional(list(str({ max: 32 }), { max: 32 })),
    }),
  ),
  /**
   * contact points: a random id drawn once per running instance, never stored. The relay tells
   * by it the same instance reconnecting (replaced at once) from another instance with the same
   * credential (the holder is probed, and while alive it keeps the id: ID_IN_USE).
   */
  instance: optional(str({ min: 8, max: 64, pattern: /^[A-Za-z0-9_-]+$/, patternText: 'must be base64url' })),
  /**
   * contact points with two tunnels (issue 12): which of them this is, 0 or 1 (TUNNEL_SLOTS).
   * Absent: 0. Tunnels in different slots live side by side; a new one replaces only its own slot.
   */
  slot: optional(int({ min: 0, max: TUNNEL_SLOTS - 1 })),
});

export const welcomeSchema = obj({
  version: int({ min: 1, max: 255 }),
  session: str({ min: 1, max: 64 }),
  /** the address this client has now, e.g. `alice@relay` or `printer@acme-hq` */
  address: optional(str({ max: 2 * MAX_NAME_LENGTH + 1 })),
  /** internal peers: their registration state at the contact point */
  state: optional(oneOf(['unregistered', 'pending', 'registered', 'revoked'] as const)),
  /** internal peers: the contact point's Ed25519 key (SPKI DER base64), which signs key statements (PROTOCOL.md 19) */
  cpKey: optional(b64(64)),
  /** a relay node of a cluster: its node id, to clients whose HELLO had a `slot` or CAPABILITY_NODE */
  node: optional(str({ min: 1, max: 32 })),
  limits: obj({
    maxMessageBytes: int({ min: 1, max: MAX_MESSAGE_BYTES }),
    pingIntervalMs: int(TIMING_RANGES.pingIntervalMs),
  }),
  /** capabilities the client listed in HELLO that the server takes up (only those; absent: none) */
  capabilities: optional(list(str({ max: 32 }), { max: 32 })),
});

/** `proof`: which proof text to sign (peer-auth.ts); absent means 1. Sent only to a peer whose HELLO listed CAPABILITY_PROOF_2. */
export const challengeSchema = obj({ nonce: b64(64), proof: optional(int({ min: 1, max: 2 })) });
export const proofSchema = obj({ signature: b64(128) });
export const errorSchema = obj({ code: int({ min: 0, max: 999 }), reason });
export const goawaySchema = obj({ reason });
export const peersSchema = obj({
  op: oneOf(['add', 'remove'] as const),
  names: list(name, { max: MAX_PEERS_PER_ANNOUNCE }),
});
/**
 * Server -> client: contact point `domain`, which refused this client's messages as offline, is
 * back; with `name`, only the address `name@domain` (an external peer refused PEER_OFFLINE).
 */
export const reachableSchema = obj({ domain: name, name: optional(name) });
const address = str({ min: 3, max: 2 * MAX_NAME_LENGTH + 1, pattern: /^[a-z0-9._-]+@[a-z0-9._-]+$/, patternText: 'must be name@domain' });
const officeState = oneOf(['connected', 'disconnected', 'unknown'] as const);
const peerPresence = oneOf(['online', 'offline', 'unregistered', 'hidden'] as const);
/**
 * Name service (docs/PROTOCOL.md 9.7). External peer -> relay: what is known of `address`
 * (`req` comes back in the answer). Relay -> contact point: the same for one of its peers,
 * `from` the asker's address (set by the relay), `req` the relay's own.
 */
export const lookupSchema = obj({ req: id32Schema(), address, from: optional(address) });
/** The answer: the office's state, and the peer's unless the office hides it from the asker or cannot say. */
export const lookupResultSchema = obj({ req: id32Schema(), address, office: officeState, peer: optional(peerPresence), reason: optional(reason) });
/**
 * Relay -> external peer: `address` (one it subscribed to) changed, with its state now.
 * Contact point -> relay: a hint without states: `address` changed; the relay looks it up again
 * for each subscriber, so what each learns still follows the office's rules.
 */
export const presenceSchema = obj({ address, office: optional(officeState), peer: optional(peerPresence) });
/** External peer -> relay: start (add) or stop (remove) PRESENCE pushes for `address`. */
export const subscribeSchema = obj({ op: oneOf(['add', 'remove'] as const), address });
export const registerSchema = obj({ joinCode: optional(str({ min: 1, max: 128 })), note: optional(str({ max: 256 })) });
export const peerStateSchema = obj({
  state: oneOf(['unregistered', 'pending', 'registered', 'revoked'] as const),
  by: optional(str({ max: 128 })),
  final: optional(bool),
});

const port = int({ min: 0, max: 65535 });
/** a relay node's id (core/relay/cluster.ts NODE_ID_PATTERN) */
const nodeId = str({ min: 1, max: 32 });
/** Longest URL a relay node advertises for clients (`relay --advertise-url`). */
export const MAX_ADVERTISE_URL_LENGTH = 512;
const id32 = int({ min: 1, max: 0xffffffff });
const hostText = str({ min: 1, max: 253 });

/**
 * The PORT_REQUEST keys and their types, whatever the op (docs/PROTOCOL.md 16.2). Which op
 * takes which of them, and which it requires, is core/protocol/port-requests.ts.
 */
export const portRequestFields = {
  /** the requester's correlation id; the answer carries it back */
  req: id32,
  /** expose / unexpose: operator -> relay only (a public port at the relay, see core/relay/expose.ts); locate: operator -> relay node only (placement, PROTOCOL.md 17.6) */
  op: oneOf(['open', 'redirect', 'connect', 'listen', 'close', 'expose', 'unexpose', 'locate'] as const),
  /** who asked: set by the relay from the operator's authenticated session */
  operator: name,
  /** operator -> relay only: which contact point the request is for */
  cp: name,
  portId: id32,
  proto: oneOf(['tcp', 'udp'] as const),
  /** local address of the contact point to bind (it may have several); default: all */
  address: str({ max: 64 }),
  port,
  importance: oneOf(['desired', 'obligatory'] as const),
  /** connect target (LAN address or name) and port */
  host: hostText,
  targetPort: int({ min: 1, max: 65535 }),
  /** connect: the stream id the relay already opened for it (even; the contact point uses odd ids for accepted connections) */
  streamId: id32,
  /** expose (operator -> relay): at most this many connections at once; the relay's own limit caps it */
  maxStreams: int({ min: 1, max: 1_000_000 }),
};

/**
 * Seed 002 requests as a frame: every key typed, the op's own keys optional. Decoding checks
 * this (INVALID_BODY); the receiver then checks the keys of the op (port-requests.ts), and a
 * request with keys its op does not take, or without one it needs, is answered BAD_REQUEST.
 */
export const portRequestSchema = obj({
  req: portRequestFields.req,
  op: portRequestFields.op,
  operator: portRequestFields.operator,
  cp: optional(portRequestFields.cp),
  portId: optional(portRequestFields.portId),
  proto: optional(portRequestFields.proto),
  address: optional(portRequestFields.address),
  port: optional(portRequestFields.port),
  importance: optional(portRequestFields.importance),
  host: optional(portRequestFields.host),
  targetPort: optional(portRequestFields.targetPort),
  streamId: optional(portRequestFields.streamId),
  maxStreams: optional(portRequestFields.maxStreams),
});
export const portResultSchema = obj({
  req: id32,
  ok: bool,
  portId: optional(id32),
  port: optional(port),
  address: optional(str({ max: 64 })),
  streamId: optional(id32),
  code: optional(int({ min: 0, max: 999 })),
  reason: optional(reason),
  /** locate (PROTOCOL.md 17.6): the relay node that answered */
  node: optional(nodeId),
  /** locate: the nodes holding the office's tunnels now, each with the URL it advertises for clients (if any); empty: offline */
  places: optional(list(obj({ node: nodeId, url: optional(str({ min: 1, max: MAX_ADVERTISE_URL_LENGTH })) }), { max: 2 * TUNNEL_SLOTS })),
});
export const portEventSchema = obj({
  portId: id32,
  /** refused: relay -> operator, connections to one of its exposures (portId = the exposure id) were refused */
  event: oneOf(['accepted', 'closed', 'refused'] as const),
  streamId: optional(id32),
  remoteAddress: optional(str({ max: 64 })),
  remotePort: optional(port),
  reason: optional(reason),
  /** refused: how many since the last such event, and the status of the last one */
  count: optional(int({ min: 1, max: 0xffffffff })),
  code: optional(int({ min: 0, max: 999 })),
});

/** Relay -> contact point after WELCOME: where and how to open the authenticated UDP channel. */
export const udpChannelSchema = obj({
  port: int({ min: 1, max: 65535 }),
  /** 8 random bytes naming this tunnel's UDP session, base64 */
  session: b64(16),
  /** 32 bytes of key material for this session, base64: each direction's AEAD key is derived from it (PROTOCOL.md 16.9) */
  key: b64(48),
  /**
   * the packet format (UDP_VERSION, 2: AES-256-GCM). Optional so an older relay's offer still
   * decodes: a contact point uses the channel only when this is its own UDP_VERSION.
   */
  version: optional(int({ min: 1, max: 255 })),
});

export type HelloBody = Infer<typeof helloSchema>;
export type WelcomeBody = Infer<typeof welcomeSchema>;
export type ChallengeBody = Infer<typeof challengeSchema>;
export type ProofBody = Infer<typeof proofSchema>;
export type ErrorBody = Infer<typeof errorSchema>;
export type GoawayBody = Infer<typeof goawaySchema>;
export type PeersBody = Infer<typeof peersSchema>;
export type RegisterBody = Infer<typeof registerSchema>;
export type PeerStateBody = Infer<typeof peerStateSchema>;
export type ReachableBody = Infer<typeof reachableSchema>;
export type LookupBody = Infer<typeof lookupSchema>;
export type LookupResultBody = Infer<typeof lookupResultSchema>;
export type PresenceBody = Infer<typeof presenceSchema>;
export type SubscribeBody = Infer<typeof subscribeSchema>;
export type PeerState = PeerStateBody['state'];
export type PortRequestBody = Infer<typeof portRequestSchema>;
export type PortResultBody = Infer<typeof portResultSchema>;
export type PortEventBody = Infer<typeof portEventSchema>;
export type UdpChannelBody = Infer<typeof udpChannelSchema>;

/** The control half of the frame table. */
export const CONTROL_SCHEMAS = {
  [FrameType.HELLO]: helloSchema,
  [FrameType.WELCOME]: welcomeSchema,
  [FrameType.CHALLENGE]: challengeSchema,
  [FrameType.PROOF]: proofSchema,
  [FrameType.ERROR]: errorSchema,
  [FrameType.GOAWAY]: goawaySchema,
  [FrameType.PEERS]: peersSchema,
  [FrameType.REGISTER]: registerSchema,
  [FrameType.PEER_STATE]: peerStateSchema,
  [FrameType.REACHABLE]: reachableSchema,
  [FrameType.LOOKUP]: lookupSchema,
  [FrameType.LOOKUP_RESULT]: lookupResultSchema,
  [FrameType.PRESENCE]: presenceSchema,
  [FrameType.SUBSCRIBE]: subscribeSchema,
  [FrameType.PORT_REQUEST]: portRequestSchema,
  [FrameType.PORT_RESULT]: portResultSchema,
  [FrameType.PORT_EVENT]: portEventSchema,
  [FrameType.UDP_CHANNEL]: udpChannelSchema,
} as const;

export interface ControlBodies {
  [FrameType.HELLO]: HelloBody;
  [FrameType.WELCOME]: WelcomeBody;
  [FrameType.CHALLENGE]: ChallengeBody;
  [FrameType.PROOF]: ProofBody;
  [FrameType.ERROR]: ErrorBody;
  [FrameType.GOAWAY]: GoawayBody;
  [FrameType.PEERS]: PeersBody;
  [FrameType.REGISTER]: RegisterBody;
  [FrameType.PEER_STATE]: PeerStateBody;
  [FrameType.REACHABLE]: ReachableBody;
  [FrameType.LOOKUP]: LookupBody;
  [FrameType.LOOKUP_RESULT]: LookupResultBody;
  [FrameType.PRESENCE]: PresenceBody;
  [FrameType.SUBSCRIBE]: SubscribeBody;
  [FrameType.PORT_REQUEST]: PortRequestBody;
  [FrameType.PORT_RESULT]: PortResultBody;
  [FrameType.PORT_EVENT]: PortEventBody;
  [FrameType.UDP_CHANNEL]: UdpChannelBody;
}
export type ControlType = keyof ControlBodies;

const NAMES = new Map<number, FrameTypeName>(
  (Object.entries(FrameType) as [FrameTypeName, number][]).map(([n, c]) => [c, n]),
);

export function frameTypeName(type: number): string {
  return NAMES.get(type) ?? `0x${type.toString(16).padStart(2, '0')}`;
}

export function isControlType(type: number): type is ControlType {
  return Object.hasOwn(CONTROL_SCHEMAS, type);
}

export function isKnownFrameType(type: number): boolean {
  return NAMES.has(type);
}
