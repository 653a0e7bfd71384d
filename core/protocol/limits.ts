/**
 * Every limit and timeout of the wire protocol, with its default. Services take these as
 * defaults and let their options override them; docs/PROTOCOL.md lists the same table.
 */

/** Largest application payload one MSG frame may carry (1 MiB). Larger sends are refused with TOO_LARGE. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;
/** Largest ws message (one frame) any endpoint accepts: a full MSG plus headers and addresses. Bigger closes the link (ws 1009). */
export const MAX_FRAME_BYTES = MAX_MESSAGE_BYTES + 4096;
/** Largest JSON body of a control frame (64 KiB); checked before parsing. */
export const MAX_CONTROL_BYTES = 64 * 1024;
/**
 * The largest ws message a server end takes before the far end's hello is done (a HELLO or a
 * PROOF: a control frame and its 6-byte header); MAX_FRAME_BYTES once admitted. Pending hellos
 * are many (MAX_PENDING_HELLOS): at MAX_FRAME_BYTES each, a few addresses could make a relay
 * hold 256 MiB of half-sent frames before any credential.
 */
export const MAX_HELLO_MESSAGE_BYTES = MAX_CONTROL_BYTES + 6;
/** Longest name part of an address (`printer` in `printer@acme-hq`) and longest contact point id. */
export const MAX_NAME_LENGTH = 63;
/** Longest message id, in bytes. */
export const MAX_MESSAGE_ID_LENGTH = 64;
/** Longest human-readable reason in an ACK or ERROR. */
export const MAX_REASON_LENGTH = 256;
/**
 * BATCH (0x17, capability `batch`, PROTOCOL.md 3.3): a sender puts the frames of one event-loop
 * turn into one ws message; once a batch holds this many bytes it goes out and a new one starts.
 */
export const BATCH_MAX_BYTES = 32 * 1024;
/** BATCH: a frame larger than this goes out alone (copying it into a batch would cost more than its ws frame). */
export const BATCH_FRAME_MAX_BYTES = 8 * 1024;
/** Names per PEERS frame (announcements to the relay are chunked so a frame stays under MAX_CONTROL_BYTES). */
export const MAX_PEERS_PER_ANNOUNCE = 512;

/** A connection that has not completed its hello by then is closed with HELLO_TIMEOUT. */
export const HELLO_TIMEOUT_MS = 5_000;
/** Keepalive ping interval on every link: well below common NAT/firewall idle timeouts (30 s and up). */
export const PING_INTERVAL_MS = 10_000;
/** A link with no pong (or any other traffic) this long after a ping is declared dead. */
export const PONG_TIMEOUT_MS = 5_000;
/** The relay pings each of its links this often (the first at once) to show their round trip in its status; it is not a liveness check. */
export const RELAY_RTT_PING_MS = 30_000;

/*
 * Adaptive keepalive (HELLO/WELCOME capability `adaptive-keepalive`, PROTOCOL.md 12.1): a link
 * that owes nothing is checked rarely, one that waits for ACKs often. With the defaults an idle
 * tunnel costs one small ping and pong every ~20 s, and a dead one is still noticed within 5 s
 * while messages wait for their ACK and within 30 s when nothing waits (see adaptiveBounds()).
 * The idle pace follows the link's ping interval P (PING_INTERVAL_MS, or timing.pingIntervalMs):
 */
/** Adaptive, nothing waiting: the client end pings after this many ping intervals of silence (2 x 10 s: NAT mappings with idle timeouts of 30 s and up stay open). */
export const ADAPTIVE_IDLE_PINGS = 2;
/** Adaptive, nothing waiting: the server end drops a client silent for this long beyond 2 P + its pong timeout (timer slack of a loaded client). */
export const ADAPTIVE_SILENCE_SLACK_MS = 3_000;
/** Adaptive, MSGs sent on the link wait for their ACK: either end pings after this much silence (at most P). */
export const ADAPTIVE_BUSY_PING_MS = 1_000;
/** Adaptive, MSGs waiting: a ping unanswered (no pong, no other traffic) this long means the link is dead (at most the pong timeout). */
export const ADAPTIVE_BUSY_PONG_TIMEOUT_MS = 2_500;
/** Adaptive: how often a link checks while it waits for ACKs or a pong, and while it does not (each at most P / 2). */
export const ADAPTIVE_BUSY_TICK_MS = 500;
export const ADAPTIVE_IDLE_TICK_MS = 2_000;
/** Adaptive: MSGs whose ACK has not come this long after the last MSG sent are no longer waited for (their senders retry with new MSGs). */
export const ADAPTIVE_OWED_FORGET_MS = 30_000;

/*
 * Heartbeat (capability `heartbeat` on top of `adaptive-keepalive`, PROTOCOL.md 12.2): on an idle
 * link the server sends, the client listens. A ws ping answered costs three TCP segments (ping,
 * pong, the ACK of the pong: ~172 B on the wire with IPv4 + TCP headers), a one-way heartbeat two
 * (~106 B); noticing a silent far end within 30 s needs something from it at least every ~26 s,
 * so only one-way heartbeats fit in 300 B a minute. Defaults with P = 10 s:
 */
/** Heartbeat: the server sends an empty ws pong (no answer is due) after this many ping intervals of sending nothing (2.5 x 10 s = 25 s). */
export const HEARTBEAT_PINGS = 2.5;
/** Heartbeat: the server checks that every min(this, P / 2) while nothing waits. */
export const HEARTBEAT_SERVER_TICK_MS = 1_000;
/** Heartbeat: the client pings once nothing was heard for a heartbeat interval + the server's tick + this (26.5 s), and gives up after min(ADAPTIVE_BUSY_PONG_TIMEOUT_MS, pong timeout). */
export const HEARTBEAT_GRACE_MS = 500;
/** Heartbeat: the client wakes when a heartbeat would be overdue (and at least every HEARTBEAT_SERVER_TICK_MS); while its ping waits, every min(this, P / 4). */
export const HEARTBEAT_CLIENT_TICK_MS = 250;
/** Heartbeat: the client pings after this many ping intervals of sending nothing (20 x 10 s = 200 s), so the server hears it; the server drops a client silent for that + its pong timeout + ADAPTIVE_SILENCE_SLACK_MS (208 s). */
export const HEARTBEAT_CLIENT_PINGS = 20;

/** Reconnect backoff: first delay, cap, and growth factor; each delay is drawn with full jitter. */
export const RECONNECT_BASE_MS = 250;
export const RECONNECT_MAX_MS = 30_000;
export const RECONNECT_FACTOR = 2;
/**
 * A contact point refused with ID_IN_USE (another live instance holds its id at the relay)
 * dials again after a random delay between this and twice this (30-60 s), not at backoff pace.
 */
export const ID_IN_USE_RETRY_MS = 30_000;
/**
 * A hello for a contact point id whose tunnel another instance holds: the relay pings that
 * holder and waits this long for a sign of life. Silent: it is dropped and the newcomer admitted;
 * alive: the newcomer is refused with ID_IN_USE.
 */
export const TAKEOVER_PROBE_MS = 3_000;

/** Registered + known peers one contact point keeps (records beyond that are refused with RESOURCE_LIMIT). */
export const MAX_PEERS_PER_CONTACT_POINT = 10_000;
/**
 * Registration requests the admin has not decided on (records `pending`, or `unregistered` and
 * never rejected) kept in total; past it the oldest request of the source address holding the
 * most is forgotten to make room, so a flood cannot lock newcomers out.
 */
export const MAX_UNDECIDED_PEERS = 1_000;
/** The same, per source address: past it the oldest undecided request from that address is forgotten. */
export const MAX_UNDECIDED_PER_ADDRESS = 16;
/** New peer identities (hellos with a name the contact point does not know) one source address may bring a minute (burst: as many); more are refused with RATE_LIMITED. */
export const NEW_PEERS_PER_ADDRESS_PER_MINUTE = 60;
/**
 * Connections that have not finished their hello (relay and peer port), in total and per source
 * (an IPv4 address or an IPv6 /64). A source at its own limit gets HTTP 503. When the table is
 * full, a newcomer takes the slot of the oldest pending hello of the source holding the most, so
 * a flood from some sources cannot lock others out (see PRESSURE_TIMEOUT_MS).
 */
export const MAX_PENDING_HELLOS = 256;
export const MAX_PENDING_HELLOS_PER_ADDRESS = 32;
/**
 * Under pressure (a pending-hello or un-upgraded-connection table more than half full), a
 * newcomer first closes every entry older than this: the short deadline for idle holders.
 */
export const PRESSURE_TIMEOUT_MS = 2_000;

/**
 * Plain HTTP on the relay, the peer port and the admin endpoint. Every answer that is not an
 * upgrade closes the connection without reading a request body. A connection must send its
 * request head (after its TLS handshake, on wss) within HTTP_HEADERS_TIMEOUT_MS and be done
 * within HTTP_REQUEST_TIMEOUT_MS of connecting; HTTP_KEEPALIVE_TIMEOUT_MS is Node's idle
 * keep-alive timer, a backstop since no connection is kept alive.
 */
export const HTTP_HEADERS_TIMEOUT_MS = 10_000;
export const HTTP_REQUEST_TIMEOUT_MS = 30_000;
export const HTTP_KEEPALIVE_TIMEOUT_MS = 5_000;
/**
 * Connections not (yet) upgraded to a WebSocket, per server, in total and per source. A source
 * over its limit is closed at once; when the total is full, a newcomer takes the slot of the
 * oldest connection of the source holding the most.
 */
export const MAX_HTTP_CONNECTIONS = 512;
export const MAX_HTTP_CONNECTIONS_PER_ADDRESS = 32;
/** REGISTER requests a peer connection may make per minute (token bucket, burst as many); one more closes it RATE_LIMITED (4015). */
export const MAX_REGISTER_PER_MINUTE = 10;

/** Messages delivered to one receiver and not yet acknowledged; more are refused with QUEUE_FULL (retryable). */
export const MAX_IN_FLIGHT_PER_PEER = 1_024;
/** Bytes queued in one socket's send buffer before new deliveries to it are refused with QUEUE_FULL. */
export const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
/** A receiver whose send buffer stays over MAX_BUFFERED_BYTES this long is closed with SLOW_CONSUMER. */
export const SLOW_CONSUMER_TIMEOUT_MS = 10_000;
/**
 * A peer that sends a frame while this much of what was sent to it is still unread is closed
 * with SLOW_CONSUMER at once. Deliveries stop at MAX_BUFFERED_BYTES (plus one message), so only
 * the answers to its own frames (ACKs, refusals) take a peer past this: one that sends and never
 * reads would make them pile up in memory without end.
 */
export const MAX_UNREAD_BYTES = 2 * MAX_BUFFERED_BYTES;

/** Unacknowledged messages one SDK client keeps for retry; more are refused at once with QUEUE_FULL. */
export const MAX_OUTBOX = 10_000;
/** First retry of an unacknowledged message after this long; doubles up to ACK_TIMEOUT_MAX_MS. */
export const ACK_TIMEOUT_MS = 2_000;
export const ACK_TIMEOUT_MAX_MS = 16_000;
/** How long an SDK keeps retrying a message refused for a transient reason (offline, rate limited, queue full). */
export const DELIVERY_DEADLINE_MS = 60_000;
/** (sender, message id) pairs a receiver remembers to drop duplicates of at-least-once delivery. */
export const DEDUPE_WINDOW = 65_536;

/**
 * REACHABLE (PROTOCOL.md 9.5): senders the relay remembers per offline contact point (and a contact
 * point per unreachable domain) to tell at once when it is back; the oldest is forgotten first.
 */
export const REACHABLE_WAITERS_PER_DOMAIN = 1_024;
/** Such entries in all; past that, new refusals are not remembered and those senders keep their backoff. */
export const REACHABLE_WAITERS_MAX = 65_536;
/** How long such an entry counts: the default delivery deadline, after which the sender has given up. */
export const REACHABLE_WAIT_MS = 60_000;

/**
 * Sessions one external (or operator) credential may hold at the relay at once (issue 18): a
 * few `expose` commands, an SDK app and a `peer send` side by side. One more is refused with
 * SESSION_LIMIT. Each holds a socket, up to MAX_BUFFERED_BYTES of queue and its exposures;
 * a session whose connection died silently counts until the relay drops it (25 s, PROTOCOL.md 12).
 */
export const MAX_SESSIONS_PER_CREDENTIAL = 8;
/** Tunnels one contact point holds at once, to different relay nodes (issue 12; HELLO `slot` 0..TUNNEL_SLOTS-1). */
export const TUNNEL_SLOTS = 2;
/**
 * While a credential has two or more sessions, the relay remembers which of them sent each
 * message it routed, until that message's ACK comes back, so the ACK reaches its sender;
 * beyond this many the oldest entry is forgotten (that ACK is dropped, and the sender retries).
 */
export const MAX_ACK_ROUTES_PER_CREDENTIAL = 16_384;
/**
 * While a credential has two or more sessions, the relay remembers which of them last sent a
 * message to each address, so a message from that address (a reply) goes to that session and
 * not to the newest; beyond this many addresses the least recently used is forgotten.
 */
export const MAX_REPLY_ROUTES_PER_CREDENTIAL = 1_024;
/**
 * A relay cluster node remembers, for each message from an external sender on another node that
 * it delivered, which node to send the ACK back to (the same credential may have sessions on
 * both). Past this many in flight the oldest is forgotten: that ACK then goes to the node the
 * presence records name, and a sender that misses it retries.
 */
export const MAX_REMOTE_ACK_ROUTES = 65_536;
/**
 * Relay cluster: (external peer, address it wrote to) pairs whose latest message came from a
 * session on another node, kept so a reply to that peer goes to that node (oldest forgotten
 * first; a forgotten one falls back to a session here, as a single relay's newest).
 */
export const MAX_REMOTE_REPLY_ROUTES = 65_536;

/** Messages per second one external sender (all sessions of its credential together) may push through the relay (token bucket, burst = 2 s worth). */
export const RELAY_RATE_PER_SENDER = 50_000;
/** Messages per second one internal peer may send through its contact point. */
export const CONTACT_POINT_RATE_PER_PEER = 50_000;

/**
 * Connections (streams) one exposure carries at once, at the relay and at the contact point;
 * more are refused with STREAM_LIMIT (the client's connection is reset, the others go on).
 * An idle stream costs about 6 KB on each side; a busy one up to its window (256 KiB).
 */
export const MAX_STREAMS_PER_EXPOSURE = 4_096;
/** Streams through one contact point at once (exposures, operator connects, accepted connections); the relay caps its exposures of one contact point the same. */
export const MAX_STREAMS_PER_CONTACT_POINT = 16_384;
