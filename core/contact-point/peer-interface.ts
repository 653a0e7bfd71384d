import { randomText } from '../runtime/random-pool.js';
import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { decodeControl, type Frame } from '../protocol/codec.js';
import { ProtocolError } from '../protocol/errors.js';
import { CAPABILITY_BATCH, CAPABILITY_PROOF_2, CAPABILITY_REACHABLE, CAPABILITY_SEAL_AES, CAPABILITY_SEAL_BUNDLE, FrameType, frameTypeName, type PeerState } from '../protocol/frames.js';
import { checkEveryMs, closeIfNotReading, KeepaliveSweep, Link, type LinkHandler, type LinkOptions } from '../protocol/link.js';
import {
  CONTACT_POINT_RATE_PER_PEER,
  MAX_BUFFERED_BYTES,
  MAX_FRAME_BYTES,
  MAX_HELLO_MESSAGE_BYTES,
  MAX_MESSAGE_BYTES,
  MAX_PENDING_HELLOS,
  MAX_PENDING_HELLOS_PER_ADDRESS,
  MAX_REGISTER_PER_MINUTE,
  PONG_TIMEOUT_MS,
  PRESSURE_TIMEOUT_MS,
} from '../protocol/limits.js';
import { verifyProof, verifyProof2, verifySealKey } from '../protocol/peer-auth.js';
import { Status, type StatusCode } from '../protocol/status.js';
import type { Timing } from '../protocol/timing.js';
import { negotiateVersion } from '../protocol/version.js';
import { acceptWebSocket, type ServerWebSocket } from '../protocol/ws-server.js';
import { FairSlots, releaseOnClose, sourceKey, type EvictReason } from '../runtime/fair-slots.js';
import { createGuardedServer, refuseUpgrade, type HttpLimits } from '../runtime/http-guard.js';
import type { Logger } from '../runtime/logger.js';
import { ChurnTable } from '../runtime/churn-table.js';
import { TokenBucket } from '../runtime/token-bucket.js';
import { closeServer, listen } from '../runtime/server-lifecycle.js';

/** Path internal peers connect to on the peer port. */
export const PEER_PATH = '/v1/peer';

export interface InFlight {
  readonly size: number;
  /** messages it carries: more than 1 for a sealed bundle (PROTOCOL.md 19.6) */
  readonly count: number;
  readonly at: number;
  /** where the ACK must go and how to record it */
  readonly dir: 'in' | 'local';
  /** from the tunnel (`in`): the way back, the tunnel it came on (issue 12: there may be two) */
  readonly back?: (frame: Buffer) => void;
}

/** One connected internal peer (seed 000, peer interface 250). */
export interface PeerSession {
  readonly name: string;
  readonly address: string;
  readonly link: Link;
  readonly remote: string;
  readonly session: string;
  /** messages delivered to this peer and not yet acknowledged, by `from\nid` (a ChurnTable: one entry per message in flight, core/runtime/churn-table.ts) */
  readonly inflight: ChurnTable<InFlight>;
  /** its MSG rate (CONTACT_POINT_RATE_PER_PEER) */
  readonly bucket: TokenBucket;
  /** its REGISTER rate (MAX_REGISTER_PER_MINUTE) */
  readonly registerBucket: TokenBucket;
  /** since when its send buffer has been over the limit (0: it is not) */
  congestedSince: number;
  /** its HELLO listed the `reachable` capability: it may be sent REACHABLE (0x12) */
  readonly reachable: boolean;
}

export interface PeerPortHandler {
  /** A peer proved its key for `name`; admit it (its registration state) or refuse with a code. */
  /** `sealKey`: the X25519 sealing key its identity signed (absent: it does not seal) */
  /** `sealAes`: its HELLO listed `seal-aes` (it opens seal version 2); `sealBundle`: `seal-bundle` (it opens version 3, bundles) */
  hello(name: string, publicKey: string, remote: string, sealKey?: string, sealAes?: boolean, sealBundle?: boolean): { ok: true; state: PeerState } | { ok: false; code: StatusCode; reason: string };
  up(session: PeerSession): void;
  frame(session: PeerSession, frame: Frame): void;
  down(session: PeerSession): void;
}

export interface PeerPortOptions {
  readonly contactPointId: string;
  readonly host: string;
  readonly port: number;
  readonly logger: Logger;
  readonly handler: PeerPortHandler;
  /** the contact point's timing: its hello deadline and ping interval apply here (the rest is for client ends) */
  readonly timing: Timing;
  readonly ratePerPeer?: number;
  /** timeouts and connection caps of the plain HTTP side (see core/runtime/http-guard.ts) */
  readonly http?: HttpLimits | undefined;
  /** the contact point's Ed25519 key, told to peers in WELCOME so they can check the statements it signs */
  readonly cpKey?: string;
}

/**
 * The peer interface (seed 000), the LAN side of the contact point: a ws server internal peers
 * connect to. It runs the hello (HELLO -> CHALLENGE -> PROOF -> WELCOME), caps unauthenticated
 * connections in total and per address so a hello flood cannot starve real peers, and keeps one
 * session per name.
 */
export class PeerPort {
  private server: Server | undefined;
  private readonly sessions = new Map<string, PeerSession>();
  private readonly links = new Set<Link>();
  /** connections in their hello: capped per source, shared fairly (see FairSlots) */
  private readonly helloSlots = new FairSlots({ max: MAX_PENDING_HELLOS, maxPerKey: MAX_PENDING_HELLOS_PER_ADDRESS, pressureAgeMs: PRESSURE_TIMEOUT_MS });
  private boundUrl = '';
  /** one keepalive timer for every peer's link (their pong timeout is the default) */
  private readonly sweep: KeepaliveSweep;

  /** every peer's link's options: one object for all (the label names each far end when read) */
  private readonly linkOptions: LinkOptions;

  constructor(private readonly opts: PeerPortOptions) {
    this.sweep = new KeepaliveSweep(checkEveryMs(opts.timing.pingIntervalMs, PONG_TIMEOUT_MS));
    this.linkOptions = { role: 'server', logger: opts.logger, label: 'peer-port<-', labelRemote: true, pingIntervalMs: opts.timing.pingIntervalMs, sweep: this.sweep };
  }

  get url(): string {
    return this.boundUrl;
  }

  get(name: string): PeerSession | undefined {
    return this.sessions.get(name);
  }

  get connections(): number {
    return this.links.size;
  }

  async start(): Promise<string> {
    const server = createGuardedServer({
      limits: this.opts.http,
      onRequest: (_req, res) => {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end(`contact-point peer port: connect with a WebSocket to ${PEER_PATH}\n`);
      },
      onUpgrade: this.onUpgrade,
    });
    const { address, urlHost } = await listen(server, this.opts.port, this.opts.host);
    this.server = server;
    this.boundUrl = `ws://${urlHost}:${address.port}${PEER_PATH}`;
    return this.boundUrl;
  }

  async stop(): Promise<void> {
    for (const link of this.links) {
      link.sendControl(FrameType.GOAWAY, { reason: 'contact point shutting down' });
      link.close(1001, 'contact point shutting down');
    }
    const server = this.server;
    this.server = undefined;
    if (server) await closeServer(server);
    for (const link of this.links) link.terminate();
    this.links.clear();
  }

  /** Cut a peer off with a reason (revoked, forgotten; flood evictions log at debug: the flood summary counts them). */
  disconnect(name: string, code: StatusCode, reason: string, logLevel: 'info' | 'debug' = 'info'): void {
    this.sessions.get(name)?.link.fault(code, reason, logLevel);
  }

  sendState(name: string, state: PeerState, by: string | undefined): void {
    this.sessions.get(name)?.link.sendControl(FrameType.PEER_STATE, { state, ...(by ? { by } : {}) });
  }

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const remote = (socket as Socket).remoteAddress ?? 'unknown';
    if ((req.url ?? '').split('?')[0] !== PEER_PATH) return refuseUpgrade(socket, 404, 'Not Found');
    let link: Link | undefined;
    const slot = this.helloSlots.take(sourceKey(remote), (why) => evictPending(why, link, socket));
    if (!slot) return refuseUpgrade(socket, 503, 'Service Unavailable');
    const release = releaseOnClose(socket, slot);
    // No closure here may name `req` or `head`: they would stay in memory as long as the peer is connected.
    const ws = acceptWebSocket(req, socket, head, MAX_HELLO_MESSAGE_BYTES);
    if (ws) link = this.onConnection(ws, socket as Socket, remote, release);
  };

  private onConnection(ws: ServerWebSocket, socket: Socket, remote: string, releaseSlot: () => void): Link {
    const { helloTimeoutMs } = this.opts.timing;
    const link = new Link(ws, socket, this.linkOptions);
    this.links.add(link);
    let settled = false;
    const settle = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      releaseSlot();
    };
    const timer = setTimeout(() => link.fault(Status.HELLO_TIMEOUT, `hello not completed within ${helloTimeoutMs} ms`), helloTimeoutMs);
    timer.unref();
    let claimed: { name: string; publicKey: string; nonce: string; proof2: boolean; version: number; reachable: boolean; batch: boolean; sealKey: string | undefined; sealAes: boolean; sealBundle: boolean } | undefined;

    link.setHandler({
      onFrame: (frame) => {
        if (!claimed) {
          if (frame.type !== FrameType.HELLO) throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(frame.type)} before HELLO`);
          const hello = decodeControl(frame, FrameType.HELLO);
          const version = negotiateVersion(hello.versions);
          if (version === undefined) throw new ProtocolError(Status.VERSION_MISMATCH, `peer offered ${hello.versions.min}-${hello.versions.max}; this contact point speaks 1`);
          if (hello.role !== 'peer') throw new ProtocolError(Status.PROTOCOL_VIOLATION, `the peer port is for internal peers, not ${hello.role}`);
          if (!hello.publicKey) throw new ProtocolError(Status.BAD_CREDENTIALS, 'HELLO without publicKey');
          // With proof 2 the PROOF vouches for the sealing key (one signature to check, not two)
          // and `sealKeySig` is not read; otherwise `sealKeySig` does, checked now.
          const proof2 = hello.env?.capabilities?.includes(CAPABILITY_PROOF_2) ?? false;
          if (!proof2 && hello.sealKey !== undefined && (hello.sealKeySig === undefined || !verifySealKey(hello.publicKey, hello.id, hello.sealKey, hello.sealKeySig))) {
            throw new ProtocolError(Status.BAD_CREDENTIALS, 'the sealing key is not signed by the public key');
          }
          claimed = {
            name: hello.id,
            publicKey: hello.publicKey,
            nonce: randomText(24, 'base64'),
            proof2,
            version,
            reachable: hello.env?.capabilities?.includes(CAPABILITY_REACHABLE) ?? false,
            batch: hello.env?.capabilities?.includes(CAPABILITY_BATCH) ?? false,
            sealKey: hello.sealKey,
            sealAes: hello.env?.capabilities?.includes(CAPABILITY_SEAL_AES) ?? false,
            sealBundle: hello.env?.capabilities?.includes(CAPABILITY_SEAL_BUNDLE) ?? false,
          };
          link.sendControl(FrameType.CHALLENGE, claimed.proof2 ? { nonce: claimed.nonce, proof: 2 } : { nonce: claimed.nonce });
          return;
        }
        if (frame.type !== FrameType.PROOF) throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(frame.type)} before PROOF`);
        const { signature } = decodeControl(frame, FrameType.PROOF);
        if (!(claimed.proof2 ? verifyProof2(claimed.publicKey, claimed.name, claimed.nonce, claimed.sealKey, signature) : verifyProof(claimed.publicKey, claimed.name, claimed.nonce, signature))) {
          throw new ProtocolError(Status.BAD_CREDENTIALS, 'the signature does not match the public key');
        }
        settle();
        const verdict = this.opts.handler.hello(claimed.name, claimed.publicKey, remote, claimed.sealKey, claimed.sealAes, claimed.sealBundle);
        if (!verdict.ok) {
          // A flood's refusals are summed up by the contact point's flood summary, not logged one by one.
          link.fault(verdict.code, verdict.reason, verdict.code === Status.RATE_LIMITED ? 'debug' : 'info');
          return;
        }
        // Full-size frames once admitted (before WELCOME goes out: the peer sends nothing before it).
        ws.maxPayload = MAX_FRAME_BYTES;
        this.admit(link, claimed.name, remote, claimed.version, verdict.state, claimed.reachable, claimed.batch);
      },
      onClose: () => {
        settle();
        this.links.delete(link);
      },
    });
    return link;
  }

  private admit(link: Link, name: string, remote: string, version: number, state: PeerState, reachable: boolean, batch: boolean): void {
    const session = new Session(this, name, `${name}@${this.opts.contactPointId}`, link, remote, new TokenBucket(this.opts.ratePerPeer ?? CONTACT_POINT_RATE_PER_PEER), reachable);
    const old = this.sessions.get(name);
    this.sessions.set(name, session);
    if (old) {
      old.link.fault(Status.REPLACED, 'the same peer connected again');
      this.opts.handler.down(old);
    }
    link.setHandler(session);
    link.sendControl(FrameType.WELCOME, {
      version,
      session: session.session,
      address: session.address,
      state,
      limits: { maxMessageBytes: MAX_MESSAGE_BYTES, pingIntervalMs: this.opts.timing.pingIntervalMs },
      ...(this.opts.cpKey !== undefined ? { cpKey: this.opts.cpKey } : {}),
      ...(batch ? { capabilities: [CAPABILITY_BATCH] } : {}),
    });
    if (batch) link.enableBatching();
    this.opts.handler.up(session);
  }

  /** @internal A session's frame (Session.onFrame). */
  sessionFrame(session: PeerSession, frame: Frame): void {
    this.opts.handler.frame(session, frame);
  }

  /** @internal A session's link closed (Session.onClose): not for other callers (it tears the session down). */
  sessionClosed(session: PeerSession): void {
    this.links.delete(session.link);
    if (this.sessions.get(session.name) === session) {
      this.sessions.delete(session.name);
      this.opts.handler.down(session);
    }
  }
}

/**
 * An answer from beyond the tunnel for a LAN peer (an ACK of a message it sent out, another
 * contact point's key statement), passed on only to a registered peer that keeps reading (less
 * than MAX_BUFFERED_BYTES unread): an unregistered one sent nothing out to be answered, and a
 * relay that sends such frames for a peer that reads nothing would grow our memory without end.
 * What is dropped comes again with the sender's retry. True when it was sent.
 */
export function passOn(session: PeerSession | undefined, registered: boolean, raw: Buffer): boolean {
  if (!session || !registered || session.link.bufferedAmount > MAX_BUFFERED_BYTES) return false;
  return session.link.send(raw);
}

/**
 * A connected peer's session, and its link's handler: prototype methods rather than a handler
 * object of two closures per peer (bench footprint: a contact point's memory per peer).
 */
class Session implements PeerSession, LinkHandler {
  readonly session = randomText(9, 'base64url');
  private table: ChurnTable<InFlight> | undefined;
  readonly registerBucket = TokenBucket.perMinute(MAX_REGISTER_PER_MINUTE);
  congestedSince = 0;

  constructor(
    private readonly port: PeerPort,
    readonly name: string,
    readonly address: string,
    readonly link: Link,
    readonly remote: string,
    readonly bucket: TokenBucket,
    readonly reachable: boolean,
  ) {}

  /** Made with the first message delivered to the peer: a LAN peer nobody has sent anything keeps none (160 B). */
  get inflight(): ChurnTable<InFlight> {
    return (this.table ??= new ChurnTable<InFlight>());
  }

  onFrame(frame: Frame): void {
    this.port.sessionFrame(this, frame);
    closeIfNotReading(this.link);
  }

  onClose(): void {
    this.port.sessionClosed(this);
  }
}

/** A pending hello lost its slot to a newcomer: idle past the pressure deadline, or the table was full. */
function evictPending(why: EvictReason, link: Link | undefined, socket: Duplex): void {
  if (!link) return void socket.destroy();
  if (why === 'expired') link.fault(Status.HELLO_TIMEOUT, `hello not completed within ${PRESSURE_TIMEOUT_MS} ms while the peer port is busy`);
  else link.fault(Status.RESOURCE_LIMIT, 'too many connections in their hello; this one gave its place to a newer one');
}
